"""The control-mode clients of our tmux server: one per session, made on first use.

tmux 3.3a sends ``%output`` only for panes of the session a control client is attached to, so
every session we use gets its own client. A session needs a window before a client can attach to
it: a session we create starts with a placeholder window (``PLACEHOLDER_WINDOW``, a long
``sleep``), and keeps it for as long as the session lives. Killing a session's last window destroys
the session, and tmux (3.3a to 3.6, tmux issue 5243) then crashes the whole server (every agent
with it) when a control client is attached and a ``session-window-changed`` notification was still
queued: killing the current window and then the last one is enough. With the placeholder, killing
agents' windows never destroys a session. A client exits when its session is destroyed anyway
(by someone else); the next use attaches a new one (creating the session again if needed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from . import formats
from .control import ControlClient
from .errors import ControlClientExited, TmuxError
from .quoting import quote, quote_format

log = logging.getLogger("cao_sidecar.terminal")

#: Name of the first window of a session we create (a session needs a window before a control
#: client can attach to it); kept for the session's life, so that it is never left empty.
PLACEHOLDER_WINDOW = "__cao_placeholder__"

RunTmux = Callable[[Sequence[str]], Awaitable[tuple[int, str, str]]]


class ClientPool:
    def __init__(
        self,
        *,
        base: Sequence[str],
        env: dict[str, str],
        label: str,
        default_size: tuple[int, int],
        option_commands: Callable[[], list[str]],
        start_server: Callable[[], Awaitable[None]],
        run_tmux: RunTmux,
        on_output: Callable[[list[str]], None],
        on_window_close: Callable[[str], None],
        on_server_pid: Callable[[int], None],
    ) -> None:
        self._base = list(base)
        self._env = env
        self._label = label
        self._default_size = default_size
        self._option_commands = option_commands
        self._start_server = start_server
        self._run_tmux = run_tmux
        self._on_output = on_output
        self._on_window_close = on_window_close
        self._on_server_pid = on_server_pid
        self._on_data: Callable[[str, bytes], None] | None = None
        self.clients: dict[str, ControlClient] = {}  # session name -> its client
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def set_data_listener(self, on_data: Callable[[str, bytes], None]) -> None:
        """Raw output of every pane goes to `on_data` from now on (clients made later too)."""
        self._on_data = on_data
        for client in self.clients.values():
            client.on_data = on_data

    def attached(self, session: str) -> bool:
        client = self.clients.get(session)
        return client is not None and client.alive

    def live(self, session: str | None = None) -> ControlClient | None:
        """A live client, preferably `session`'s; None if there is none (nothing is started)."""
        if session is not None and self.attached(session):
            return self.clients[session]
        for client in self.clients.values():
            if client.alive:
                return client
        return None

    async def any(self, session: str | None = None) -> ControlClient | None:
        """A live client, attaching one to an existing session if needed; None: no sessions."""
        client = self.live(session)
        if client is not None:
            return client
        if session is not None and session in (await self.sessions()):
            try:
                return await self.ensure(session)
            except TmuxError:
                pass
        for name in await self.sessions():
            try:
                return await self.ensure(name)
            except TmuxError as exc:
                log.debug("cannot attach to session %r: %s", name, exc)
        return None

    async def sessions(self) -> dict[str, str]:
        """Session name -> session id."""
        fields = formats.SESSION
        client = self.live()
        if client is not None:
            try:
                lines: Sequence[str | bytes] = await client.command(f"list-sessions -F {quote(fields.format)}")
            except ControlClientExited:
                return await self.sessions()
            except TmuxError:
                lines = []
        else:
            rc, text, _err = await self._run_tmux(["list-sessions", "-F", fields.format])
            lines = text.splitlines() if rc == 0 else []
        return {row["session_name"]: row["session_id"] for row in fields.parse_rows(lines) if row["session_id"]}

    async def ensure(self, session: str) -> ControlClient:
        """The control client attached to ``session``, creating the session if needed."""
        if self.attached(session):
            return self.clients[session]
        lock = self._locks.setdefault(session, asyncio.Lock())
        async with lock:
            if self.attached(session):
                return self.clients[session]
            await self._start_server()
            last_error: Exception | None = None
            for _attempt in range(3):
                sid = (await self.sessions()).get(session)
                if sid is not None:
                    try:
                        client = await self._spawn(["attach-session", "-t", sid], session)
                    except TmuxError as exc:  # the session vanished meanwhile
                        last_error = exc
                        continue
                    self.clients[session] = client
                    await self._keep_placeholder(client, session)
                    return client
                created = await self._create_session(session)
                if created is not None:
                    return created
            raise TmuxError(f"cannot attach a control client to session {session!r}: {last_error}")

    async def _spawn(self, args: Sequence[str], key: str) -> ControlClient:
        client = await ControlClient.spawn(
            [*self._base, "-C", *args],
            env=self._env,
            label=f"{self._label}:{key}",
            on_output=self._on_output,
            on_window_close=self._on_window_close,
            on_exit=self._on_client_exit,
        )
        if self._on_data is not None:
            client.on_data = self._on_data
        try:
            await client.wait_attached()
            lines = await client.command(f"display-message -p {quote(formats.CLIENT.format)}")
        except ControlClientExited:
            try:
                await asyncio.wait_for(client.wait_closed(), 3.0)  # for its stderr
            except asyncio.TimeoutError:
                pass
            raise TmuxError(client.exit_reason or "tmux control client exited") from None
        except TmuxError:
            await client.close()
            raise
        except BaseException:  # cancelled: don't leave a stray client behind
            task = asyncio.get_running_loop().create_task(client.close())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            raise
        row = formats.CLIENT.parse(lines[0]) if lines else None
        if row is None or not row["session_id"]:
            await client.close()
            raise TmuxError(f"control client is not attached: {lines!r}")
        client.session_id, client.session_name = row["session_id"], row["session_name"]
        if row["pid"].isdigit():
            self._on_server_pid(int(row["pid"]))
        return client

    async def _create_session(self, session: str) -> ControlClient | None:
        w, h = self._default_size
        client = await self._spawn(
            [
                *self._option_commands(),
                "new-session",
                "-x",
                str(w),
                "-y",
                str(h),
                "-n",
                PLACEHOLDER_WINDOW,
                "--",
                "sleep",
                "2147483647",
            ],
            session,
        )
        temp_id = client.session_id or ""
        # Registered at once (under the temporary name too) so that a cancellation
        # below cannot leave an unowned client; close() will find it.
        self.clients[session] = client
        try:
            # The name goes through the control-mode parser (quoted), never on a tmux command line.
            await client.command(f"rename-session -t {quote(temp_id)} -- {quote_format(session)}")
        except TmuxError as exc:
            log.debug("rename-session to %r failed: %s", session, exc)
            try:
                await client.command(f"kill-session -t {quote(temp_id)}")
            except TmuxError:
                pass
            self.clients.pop(session, None)
            await client.close()
            if "duplicate session" in str(exc):
                return None  # created by someone else meanwhile: attach to it
            raise
        client.session_name = session
        return client

    async def _keep_placeholder(self, client: ControlClient, session: str) -> None:
        """Give a session we attach to a placeholder window if it has none (made by an older
        version, or by a user), so that killing its agents' windows never empties it."""
        fields = formats.WINDOW
        target = client.session_id or "=" + session
        try:
            lines = await client.command(f"list-windows -t {quote(target)} -F {quote(fields.format)}")
            if not any(w["window_name"] == PLACEHOLDER_WINDOW for w in fields.parse_rows(lines)):
                await client.command(f"new-window -d -t {quote(target + ':')} -n {PLACEHOLDER_WINDOW} -- sleep 2147483647")
        except TmuxError as exc:
            log.debug("no placeholder window for session %r: %s", session, exc)

    def _on_client_exit(self, client: ControlClient) -> None:
        for key, value in list(self.clients.items()):
            if value is client:
                del self.clients[key]

    async def close(self) -> None:
        """Stop every client (their sessions and windows keep running)."""
        clients = list(self.clients.values())
        self.clients.clear()
        if clients:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def drop_idle_sessions(self) -> None:
        """Kill the sessions left with nothing but their placeholder window. Only once our clients
        are closed: killing a session with a control client attached can crash tmux (above)."""
        fields = formats.SESSION_WINDOW
        rc, out, _err = await self._run_tmux(["list-windows", "-a", "-F", fields.format])
        if rc != 0:
            return
        names: dict[str, set[str]] = {}
        for row in fields.parse_rows(out.splitlines()):
            names.setdefault(row["session_id"], set()).add(row["window_name"])
        kills: list[str] = []
        for session_id, windows in names.items():
            if windows == {PLACEHOLDER_WINDOW}:
                kills += ["kill-session", "-t", session_id, ";"]
        if kills:
            await self._run_tmux(kills[:-1])
