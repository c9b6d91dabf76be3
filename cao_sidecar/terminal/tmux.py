"""Our private tmux server, driven through control-mode clients, asyncio-native.

* One tmux server per sidecar (``tmux -L NAME``), started with ``-f /dev/null`` so a
  user's ``~/.tmux.conf`` cannot change its behaviour.
* One control-mode client (``tmux -C``) per session we use (``clients.ClientPool``): tmux 3.3a
  sends ``%output`` only for panes of the session a control client is attached to.
  A client exits when its session is destroyed; the next use re-creates it.
* Commands go through control mode (about 0.1 ms a round trip). The only fork on a
  hot path is ``tmux load-buffer -b NAME -`` with the text on stdin (paste_text).
* Process exit is an event: a pidfd on the pane's pid, read with ``loop.add_reader``
  (``exits.PaneExitWatcher``).
* tmux output is read by field name: formats are built from tuples of names (``formats``).
* Output is an activity trigger: each ``%output`` calls the listeners with the pane id
  (once per pane per read chunk); there is no polling.

tmux 3.3a traps handled here (measured):

* ``paste-buffer`` into a dead pane (remain-on-exit) **crashes the server**, taking
  every agent with it. We paste through ``if-shell -F '#{pane_dead}' ...`` so the
  check and the paste run in one step inside tmux.
* A global ``window-size manual`` makes ``new-session`` crash the server. We leave the
  global default (``latest``; control clients without a size are ignored by it) and
  pin each window we create with ``resize-window``, which sets ``manual`` on that
  window only: a human attaching (``tmux -L NAME attach``) sees it, and it is not
  resized under the agent.
* With ``remain-on-exit`` the "Pane is dead" line scrolls the last screen by one row;
  ``remain-on-exit-format`` is set empty so a dead pane's capture is its last screen.
* The server sometimes misses a SIGCHLD (a dead pane without exit status): ``exits.py``.
* Not fixable here: when a process prints and exits within a few ms, tmux may handle
  SIGCHLD before reading the pty and drop that last output (about 1 in 60 such
  windows, also with plain ``tmux new-window``).
* A command written to a fresh control client can run before the client's own
  command-line command (attach/new-session) did: wait for ``%session-changed`` first.
* ``if-shell -F`` answers with two reply blocks (its own and the inserted command's).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Sequence

from . import formats
from .clients import PLACEHOLDER_WINDOW, ClientPool
from .errors import ControlClientExited, PaneGone, TmuxError, TmuxMissing, target_missing
from .exits import PaneExitWatcher
from .panes import CONTROL_CHARS, PaneBook, PaneInfo, check_pane_id, new_window_line, pane_info
from .quoting import quote

__all__ = ["PaneInfo", "TmuxError", "PaneGone", "TmuxServer", "PLACEHOLDER_WINDOW"]

log = logging.getLogger("cao_sidecar.terminal")

#: Session option marking a viewer's session (see TmuxServer.attach_command): not an agent's.
VIEW_OPTION = "@cao-view"
_DEAD_MARK = "cao-pane-is-dead"


BRACKETED_PASTE_START = b"\x1b[200~"
BRACKETED_PASTE_END = b"\x1b[201~"


def default_socket_path(socket_name: str) -> str:
    """Where `tmux -L socket_name` listens."""
    tmpdir = os.environ.get("TMUX_TMPDIR") or "/tmp"
    return os.path.join(tmpdir, f"tmux-{os.getuid()}", socket_name)


class TmuxServer:
    """Our private tmux server (``tmux -L socket_name``)."""

    def __init__(
        self,
        socket_name: str,
        *,
        tmux_bin: str = "tmux",
        default_size: tuple[int, int] = (220, 50),
        history_limit: int = 10000,
    ) -> None:
        if not socket_name or "/" in socket_name or CONTROL_CHARS.search(socket_name):
            raise ValueError(f"bad tmux socket name: {socket_name!r}")
        self.socket_name = socket_name
        self.tmux_bin = tmux_bin
        self.default_size = (int(default_size[0]), int(default_size[1]))
        self.history_limit = int(history_limit)
        self._socket_path = default_socket_path(socket_name)
        self._env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        self._base = [tmux_bin, "-u", "-L", socket_name, "-f", "/dev/null"]
        self._started = False
        self._server_pid: int | None = None
        self._start_lock: asyncio.Lock | None = None
        self._pool = ClientPool(
            base=self._base,
            env=self._env,
            label=socket_name,
            default_size=self.default_size,
            option_commands=self._option_commands,
            start_server=self.start,
            run_tmux=self._run_tmux,
            on_output=self._dispatch_output,
            on_window_close=self._on_window_close,
            on_server_pid=self._set_server_pid,
        )
        self._panes = PaneBook(unwatch=lambda pane_id: self._exits.unwatch(pane_id), closing=lambda: self._closing)
        self._exits = PaneExitWatcher(
            dead_state=self._dead_state,
            dead_states=self._dead_states,
            report=self._panes.report_exit,
            settled=self._panes.settled,
            server_pid=lambda: self._server_pid,
            replaced=self._panes.replaced,
        )
        self._output_listeners: list[Callable[[str], None]] = []
        self._data_listeners: list[Callable[[str, bytes], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._buffer_ids = itertools.count(1)
        self._buffer_prefix = f"cao-{os.getpid()}-{secrets.token_hex(4)}"

    # ================================================================ properties

    def attach_command(self, session: str, pane_id: str) -> list[str]:
        """An argv that shows the window of `pane_id` live in a terminal. It opens a new session
        grouped with `session` (each viewer picks its own window without moving the others), marked
        as a viewer's (VIEW_OPTION) and gone when its terminal closes. TMUX is unset so that it
        also works from a terminal inside another tmux."""
        tmux = shutil.which(self.tmux_bin) or self.tmux_bin
        viewer = ["env", "-u", "TMUX", tmux, "-u", "-S", self.socket_path, "new-session", "-t", f"={session}", ";"]
        viewer += ["set-option", "destroy-unattached", "on", ";", "set-option", VIEW_OPTION, "1", ";"]
        return viewer + ["select-window", "-t", pane_id]

    @property
    def socket_path(self) -> str:
        """The server's socket, as tmux reports it (``#{socket_path}``) once started."""
        return self._socket_path

    def add_output_listener(self, callback: Callable[[str], None]) -> None:
        """``callback(pane_id)`` when a pane printed something (at most once per read chunk)."""
        self._output_listeners.append(callback)

    def add_output_data_listener(self, callback: Callable[[str, bytes], None]) -> None:
        """``callback(pane_id, data)`` with the raw bytes every pane prints (for logs). Costs a
        decode per output line, so only paid once somebody listens."""
        self._data_listeners.append(callback)
        self._pool.set_data_listener(self._dispatch_data)

    def _dispatch_data(self, pane_id: str, data: bytes) -> None:
        if self._closing:
            return
        for callback in self._data_listeners:
            try:
                callback(pane_id, data)
            except Exception:
                log.exception("output data listener failed for %s", pane_id)

    def add_exit_listener(self, callback: Callable[[str, int | None], None]) -> None:
        """``callback(pane_id, status)`` when a pane's process exited (status None if unknown)."""
        self._panes.add_exit_listener(callback)

    # ================================================================ forks

    async def _run_tmux(self, args: Sequence[str], data: bytes | None = None) -> tuple[int, str, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._base,
                *args,
                stdin=asyncio.subprocess.PIPE if data is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
            )
        except FileNotFoundError as exc:
            raise TmuxMissing(f"cannot run {self.tmux_bin}") from exc
        except OSError as exc:
            raise TmuxError(f"cannot run {self.tmux_bin}: {exc}") from exc
        out, err = await proc.communicate(data)
        assert proc.returncode is not None
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace").strip()

    def _option_commands(self) -> list[str]:
        """Server options, as tmux command-line arguments joined by ';' (constant strings)."""
        w, h = self.default_size
        cmds = [
            ["set-option", "-s", "exit-empty", "off"],
            ["set-option", "-g", "remain-on-exit", "on"],
            ["set-option", "-g", "remain-on-exit-format", ""],
            ["set-option", "-g", "history-limit", str(self.history_limit)],
            ["set-option", "-g", "default-size", f"{w}x{h}"],
            ["set-option", "-g", "allow-rename", "off"],
            ["set-option", "-g", "detach-on-destroy", "on"],
        ]
        out: list[str] = []
        for cmd in cmds:
            out += cmd + [";"]
        return out

    async def start(self) -> None:
        """Start (or reach) the server and set its options. Idempotent."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            rc, out, err = await self._run_tmux(
                ["start-server", ";", *self._option_commands(), "display-message", "-p", formats.SERVER.format]
            )
            if rc != 0:
                raise TmuxError(err or f"tmux start-server failed (exit {rc})")
            server = formats.SERVER.parse(out.strip()) or {}
            if server.get("socket_path"):
                self._socket_path = server["socket_path"]
            if server.get("pid", "").isdigit():
                self._server_pid = int(server["pid"])
            log.debug("tmux server %s started (%s), version %s", self.socket_name, self._socket_path, server.get("version"))
            self._closing = False
            self._started = True

    async def _load_buffer(self, name: str, data: bytes) -> None:
        rc, _out, err = await self._run_tmux(["load-buffer", "-b", name, "-"], data)
        if rc != 0:
            raise TmuxError(err or f"tmux load-buffer failed (exit {rc})")

    def _set_server_pid(self, pid: int) -> None:
        self._server_pid = pid

    # ================================================================ events

    def _dispatch_output(self, panes: list[str]) -> None:
        if self._closing:
            return
        for pane_id in panes:
            for callback in self._output_listeners:
                try:
                    callback(pane_id)
                except Exception:
                    log.exception("output listener failed for %s", pane_id)

    def _on_window_close(self, window_id: str) -> None:
        pane_id = self._panes.pane_of_window(window_id)
        if pane_id is not None:
            self._spawn_task(self._window_closed(window_id, pane_id))

    async def _window_exists(self, window_id: str) -> bool:
        client = self._pool.live()
        try:
            if client is not None:
                await client.command(f"display-message -p -t {quote(window_id)} '#{{window_id}}'")
                return True
        except ControlClientExited:
            pass
        except TmuxError:
            return False
        rc, _out, _err = await self._run_tmux(["display-message", "-p", "-t", window_id, "#{window_id}"])
        return rc == 0

    async def _window_closed(self, window_id: str, pane_id: str) -> None:
        # tmux also says %window-close to a session's client when the window leaves *another*
        # session of its group (a viewer's session, see attach_command, closing): only a window
        # that is gone is closed.
        if not await self._window_exists(window_id):
            self._panes.window_gone(window_id, pane_id)

    def _spawn_task(self, coro: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _dead_state(self, pane_id: str) -> tuple[bool, int | None]:
        lines = await self._pane_command(pane_id, f"display-message -p -t {quote(pane_id)} {quote(formats.DEAD.format)}")
        row = (formats.DEAD.parse(lines[0]) if lines else None) or {}
        return row.get("pane_dead") == "1", formats.dead_status(row)

    async def _dead_states(self) -> dict[str, tuple[bool, int | None]] | None:
        """Every pane's (dead, status); None when no session is left (for the slow exit check)."""
        client = await self._pool.any()
        if client is None:
            return None
        lines = await client.command(f"list-panes -a -F {quote(formats.PANE_DEAD.format)}")
        return {
            row["pane_id"]: (row["pane_dead"] == "1", formats.dead_status(row)) for row in formats.PANE_DEAD.parse_rows(lines)
        }

    # ================================================================ pane commands

    async def _pane_command(self, pane_id: str, line: str, *, blocks: int = 1, retry: bool = True) -> list[bytes]:
        """Run a command about ``pane_id`` on a control client; map missing targets to PaneGone."""
        for attempt in range(2):
            client = await self._pool.any(self._panes.session_of(pane_id))
            if client is None:
                raise PaneGone(f"pane {pane_id} not found: no tmux sessions")
            try:
                return await client.command(line, blocks=blocks)
            except ControlClientExited:
                if attempt == 0 and retry:
                    continue
                raise
            except TmuxError as exc:
                if target_missing(exc):
                    raise PaneGone(str(exc)) from None
                raise
        raise AssertionError("unreachable")

    async def _if_alive(self, pane_id: str, inner: str) -> None:
        """Run ``inner`` only if ``pane_id`` exists and its process is alive, atomically in tmux.

        tmux 3.3a segfaults on ``paste-buffer`` into a dead pane, so the liveness check
        and the command must not be two separate steps.
        """
        if self._panes.exited(pane_id):
            raise PaneGone(f"pane {pane_id} has exited")
        line = (
            f"if-shell -F -t {quote(pane_id)} {quote('#{pane_dead}')} {quote('display-message -p ' + _DEAD_MARK)} {quote(inner)}"
        )
        try:
            lines = await self._pane_command(pane_id, line, blocks=2, retry=False)
        except ControlClientExited:
            # Did it run? Find out whether the pane still lives, for the right error.
            try:
                dead, _ = await self._dead_state(pane_id)
            except TmuxError:
                raise PaneGone(f"pane {pane_id} is gone") from None
            if dead:
                raise PaneGone(f"pane {pane_id} has exited") from None
            raise
        if lines == [_DEAD_MARK.encode()]:
            raise PaneGone(f"pane {pane_id} has exited")

    # ================================================================ public API

    async def new_window(
        self,
        session: str,
        window_name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: str,
    ) -> PaneInfo:
        """Run ``argv`` (exec'd directly, no shell) in a new window of ``session``.

        The session is created if needed (windows are ``default_size``). ``env`` is
        added to the server's environment for this process; ``cwd`` must exist.
        """
        line = new_window_line(session, window_name, argv, env=env, cwd=cwd)
        opening = asyncio.ensure_future(self._open_window(session, window_name, line))
        try:
            pane = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # tmux may have made the window already, and our caller will never learn its pane:
            # close it here, so a cancelled start leaves nothing behind.
            await asyncio.shield(self._spawn_task(self._close_unclaimed(opening)))  # a second cancel leaves it alone
            raise
        exit_status = self._panes.answered(pane.pane_id)  # in the step that gives the caller its pane
        if exit_status is not None:
            pane.dead, pane.dead_status = True, exit_status[0]
        return pane

    async def _close_unclaimed(self, opening: asyncio.Future[PaneInfo]) -> None:
        try:
            pane = await opening
        except (TmuxError, OSError):
            return  # no window was made
        self._panes.answered(pane.pane_id)  # nobody takes the answer; killed next, so no exit event
        try:
            await self.kill_window(pane.pane_id, pid=pane.pid)
        except TmuxError as exc:
            log.warning("cannot close the window of a cancelled start (%s): %s", pane.pane_id, exc)

    async def _open_window(self, session: str, window_name: str, line: str) -> PaneInfo:
        for attempt in range(2):
            client = await self._pool.ensure(session)
            try:
                lines = await client.command(line)
                break
            except ControlClientExited:
                if attempt:
                    raise
                log.debug("session %r went away while creating a window; retrying", session)
        made = formats.NEW_WINDOW.parse(lines[0]) if lines else None
        if made is None or not made["pane_pid"].isdigit():
            raise TmuxError(f"unexpected new-window reply: {lines!r}")
        pane_id, window_id, pid = made["pane_id"], made["window_id"], int(made["pane_pid"])
        # Until we return, an exit is not an event but part of our answer (dead=True):
        # the caller does not know the pane id yet.
        self._panes.created(pane_id, session, window_id, pid)
        try:
            self._exits.watch(pane_id, pid)  # at once: the pid is certainly the pane's now
            w, h = self.default_size
            cmds = [
                # pins the size and sets window-size manual for this window only
                client.command(f"resize-window -t {quote(window_id)} -x {w} -y {h}"),
                client.command(f"display-message -p -t {quote(pane_id)} {quote(formats.DEAD.format)}"),
            ]
            results = await asyncio.gather(*cmds, return_exceptions=True)
            if isinstance(results[0], BaseException):
                log.warning("resize-window %s failed: %s", window_id, results[0])
            state = results[1]
            dead = (
                not isinstance(state, BaseException)
                and bool(state)
                and (formats.DEAD.parse(state[0]) or {}).get("pane_dead") == "1"
            )
            if dead:
                await self._exits.confirm(pane_id)  # exited already (exec failed?): get its status
        except BaseException:
            self._panes.not_answered(pane_id)
            raise
        # Not answered yet: until our caller has the pane (a later step of the loop), an exit
        # is still part of the answer.
        return PaneInfo(pane_id, window_id, session, window_name, pid, dead=False, dead_status=None)

    async def paste_text(self, pane_id: str, text: str, *, bracketed: bool = True) -> None:
        """Paste ``text`` byte-exact into the pane (bracketed if the app asked for it).

        The text goes to tmux on the stdin of ``tmux load-buffer``, never as a command
        argument. Raises :class:`PaneGone` for a dead or missing pane.
        """
        check_pane_id(pane_id)
        if self._panes.exited(pane_id):
            raise PaneGone(f"pane {pane_id} has exited")
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
        if bracketed and (BRACKETED_PASTE_START in data or BRACKETED_PASTE_END in data):
            # The end marker inside the text would end the paste early and the rest would be
            # taken as typed keys (a second prompt, key presses): never let text do that.
            raise ValueError("text contains a bracketed-paste marker (ESC [200~ or ESC [201~)")
        if not data:
            dead, _ = await self._dead_state(pane_id)
            if dead:
                raise PaneGone(f"pane {pane_id} has exited")
            return
        name = f"{self._buffer_prefix}-{next(self._buffer_ids)}"
        await self._load_buffer(name, data)
        flags = "-p -d -r" if bracketed else "-d -r"
        try:
            await self._if_alive(pane_id, f"paste-buffer {flags} -b {name} -t {pane_id}")
        except BaseException:
            try:
                client = self._pool.live()
                if client is not None:
                    await client.command(f"delete-buffer -b {name}")
            except (TmuxError, asyncio.CancelledError):
                pass
            raise

    async def send_keys(self, pane_id: str, *keys: str) -> None:
        """Press tmux keys (``"Enter"``, ``"Escape"``, ``"C-c"``). Raises :class:`PaneGone`."""
        check_pane_id(pane_id)
        if not keys:
            return
        inner = f"send-keys -t {pane_id} " + " ".join(quote(k) for k in keys)
        await self._if_alive(pane_id, inner)

    async def capture(self, pane_id: str, *, history: bool = False) -> str:
        """Plain text of the pane: the visible screen, or scrollback + screen with ``history``.

        Wrapped lines are joined (``-J``); trailing spaces of each line and trailing
        empty lines are removed. Works on a dead pane (remain-on-exit).
        """
        check_pane_id(pane_id)
        line = f"capture-pane -p -J -t {quote(pane_id)}"
        if history:
            line += " -S - -E -"
        lines = [raw.decode("utf-8", "replace").rstrip() for raw in await self._pane_command(pane_id, line)]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines)

    async def rows_and_cursor(self, pane_id: str) -> tuple[list[str], tuple[int, int]]:
        """The visible rows as the terminal holds them (not joined, so their numbers are the
        cursor's; trailing spaces and the empty rows at the bottom removed) and the cursor
        (x, y), read in one tmux step."""
        check_pane_id(pane_id)
        line = f"display-message -p -t {quote(pane_id)} {quote(formats.CURSOR.format)} ; capture-pane -p -t {quote(pane_id)}"
        reply = await self._pane_command(pane_id, line, blocks=2)
        cursor = (formats.CURSOR.parse(reply[0]) if reply else None) or {}
        x, y = cursor.get("cursor_x", ""), cursor.get("cursor_y", "")
        if not (x.isdigit() and y.isdigit()):
            raise TmuxError(f"unexpected cursor reply: {reply[:1]!r}")
        rows = [raw.decode("utf-8", "replace").rstrip() for raw in reply[1:]]
        while rows and not rows[-1]:
            rows.pop()
        return rows, (int(x), int(y))

    async def kill_window(self, pane_id: str, *, pid: int | None = None) -> None:
        """Kill the pane's window (and its process). No error if it is already gone; nothing if
        ``pid`` is given and the pane id names another process's pane now (a restarted server's).

        No exit event is reported for a window we kill.
        """
        check_pane_id(pane_id)
        if pid is not None and self._panes.replaced(pane_id, pid):
            return
        self._panes.killing(pane_id)
        try:
            await self._pane_command(pane_id, f"kill-window -t {quote(pane_id)}")
        except (PaneGone, ControlClientExited):
            pass

    async def _query_panes(self) -> list[PaneInfo]:
        fields = formats.PANE
        client = await self._pool.any()
        if client is None:
            return []
        try:
            lines = await client.command(f"list-panes -a -F {quote(fields.format)}")
        except ControlClientExited:
            client = await self._pool.any()
            if client is None:
                return []
            lines = await client.command(f"list-panes -a -F {quote(fields.format)}")
        # Not the placeholder windows, nor a viewer's session (the same panes again).
        rows = fields.parse_rows(lines)
        return [pane_info(row) for row in rows if row["window_name"] != PLACEHOLDER_WINDOW and row[VIEW_OPTION] != "1"]

    async def list_panes(self) -> list[PaneInfo]:
        """All panes on our server, all sessions (placeholder windows excluded).

        Also adopts what it finds: live panes get an exit watcher, and every session
        gets a control client (output events), so a restarted sidecar can pick up the
        agents a previous one left running.
        """
        panes = await self._query_panes()
        if any(p.dead and p.dead_status is None for p in panes):
            self._exits.nudge_server()  # let tmux reap (exits.py), then look again
            await asyncio.sleep(0.01)
            panes = await self._query_panes()
        sessions = set()
        for pane in panes:
            sessions.add(pane.session)
            if not self._panes.adopt(pane):
                continue
            if not pane.dead and pane.pid > 0:
                self._exits.watch(pane.pane_id, pane.pid)
        missing = [s for s in sessions if not self._pool.attached(s)]
        if missing:
            results = await asyncio.gather(*(self._pool.ensure(s) for s in missing), return_exceptions=True)
            for name, result in zip(missing, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning("cannot attach to session %r: %s", name, result)
        return panes

    async def close(self) -> None:
        """Stop our control clients and watchers. The server and its windows keep running."""
        self._closing = True
        await self._exits.close()
        for task in list(self._tasks):
            task.cancel()
        await self._pool.close()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._started:
            await self._pool.drop_idle_sessions()
        self._panes.forget_windows()
        self._started = False
        self._closing = False

    async def kill_server(self) -> None:
        """Kill the tmux server (all windows) and remove its socket file."""
        await self.close()
        try:
            rc, _out, err = await self._run_tmux(["kill-server"])
            if rc != 0:
                log.debug("kill-server: %s", err)
        finally:
            try:
                os.unlink(self._socket_path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.debug("cannot remove %s: %s", self._socket_path, exc)
