"""One tmux control-mode client (``tmux -C``): a subprocess we write command lines to
and whose stdout we parse.

Protocol (tmux 3.3a, measured):

* Every command produces a reply block ``%begin TIME NUM FLAGS`` ... ``%end TIME NUM
  FLAGS`` (or ``%error ...``). Blocks come in the order commands were sent. ``FLAGS``
  is 1 for commands read from our stdin and 0 for the command given on the tmux
  command line when the client was spawned, so only flag-1 blocks answer our futures.
* A command that inserts another command (``if-shell -F``) produces one block for
  itself and one for the inserted command: :meth:`ControlClient.command` takes the
  number of blocks to expect, and an ``%error`` block ends the command early.
* Lines inside a block are data, whatever they look like (a pane could print
  ``%output``); a block ends only on the exact ``%end``/``%error`` line that matches
  its ``%begin``.
* Outside blocks: notifications. ``%output %PANE DATA`` is sent only for panes of
  the session this client is attached to. ``%exit [REASON]`` precedes EOF (the
  session was destroyed, the server died, or we closed stdin).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
from collections.abc import Callable, Sequence

from .errors import ControlClientExited, TmuxError
from .quoting import unescape_output

log = logging.getLogger("cao_sidecar.terminal")

OutputCallback = Callable[[list[str]], None]
WindowCloseCallback = Callable[[str], None]
ExitCallback = Callable[["ControlClient"], None]

_READ_SIZE = 1 << 18


class _Pending:
    __slots__ = ("future", "remaining", "lines", "line")

    def __init__(self, future: asyncio.Future[list[bytes]], blocks: int, line: str) -> None:
        self.future = future
        self.remaining = blocks
        self.lines: list[bytes] = []
        self.line = line


class ControlClient:
    """A ``tmux -C`` client process. Create with :meth:`spawn`."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        *,
        label: str,
        on_output: OutputCallback | None = None,
        on_window_close: WindowCloseCallback | None = None,
        on_exit: ExitCallback | None = None,
    ) -> None:
        self._proc = proc
        self.label = label
        self._on_output = on_output
        # Optional: (pane id, raw bytes) of every %output, for conversation logs.
        self.on_data: Callable[[str, bytes], None] | None = None
        self._on_window_close = on_window_close
        self._on_exit = on_exit
        self._pending: collections.deque[_Pending] = collections.deque()
        self._block: list[bytes] | None = None
        self._block_end = b""
        self._block_error = b""
        self._block_ours = False
        self._alive = True
        self._exit_reason = ""
        self._initial_error = ""
        self._stderr_tail = b""
        self.session_id: str | None = None
        self.session_name: str | None = None
        self._exited = asyncio.get_running_loop().create_future()
        self._attached = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_loop(), name=f"tmux-control-{label}")
        self._stderr_task = asyncio.create_task(self._read_stderr(), name=f"tmux-control-err-{label}")

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        label: str,
        on_output: OutputCallback | None = None,
        on_window_close: WindowCloseCallback | None = None,
        on_exit: ExitCallback | None = None,
    ) -> ControlClient:
        """Start ``argv`` (a full ``tmux ... -C ...`` command line) as a control client.

        The client gets its own process session (terminal signals aimed at our process
        group don't reach it); it exits by itself on EOF of its stdin, i.e. when we die.
        """
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise TmuxError(f"cannot run {argv[0]}: {exc}") from exc
        return cls(proc, label=label, on_output=on_output, on_window_close=on_window_close, on_exit=on_exit)

    # ------------------------------------------------------------------ state

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def exit_reason(self) -> str:
        return self._initial_error or self._exit_reason or self._stderr_tail.decode("utf-8", "replace").strip()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._exited)

    async def wait_attached(self, timeout: float = 10.0) -> None:
        """Wait for ``%session-changed`` (the client is attached to a session).

        tmux may read our stdin before it has run the command given on the command
        line (attach-session / new-session): measured on 3.3a, a command written right
        after spawning sometimes ran with no session yet. So write nothing before this.
        """
        try:
            await asyncio.wait_for(asyncio.shield(self._attached), timeout)
        except asyncio.TimeoutError:
            raise TmuxError("tmux control client did not attach in time") from None

    # --------------------------------------------------------------- commands

    async def command(self, line: str, *, blocks: int = 1) -> list[bytes]:
        """Send one command line; return the data lines of its reply block(s).

        Raises :class:`TmuxError` with tmux's message on ``%error``, and
        :class:`ControlClientExited` if the client exits before answering.
        """
        if "\n" in line or "\r" in line:
            raise ValueError("control-mode command must be one line")
        if not self._alive:
            raise ControlClientExited(f"tmux control client exited: {self.exit_reason or 'closed'}")
        stdin = self._proc.stdin
        assert stdin is not None
        fut: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        # Queue the future and write in the same step, so replies match the order.
        self._pending.append(_Pending(fut, blocks, line))
        try:
            stdin.write(line.encode("utf-8", "surrogateescape") + b"\n")
            await stdin.drain()
        except (ConnectionError, BrokenPipeError, RuntimeError) as exc:
            log.debug("control client %s: write failed: %s", self.label, exc)
            # The reader will see EOF and fail the pending future.
        return await fut

    # ----------------------------------------------------------------- reader

    async def _read_stderr(self) -> None:
        stream = self._proc.stderr
        assert stream is not None
        try:
            while True:
                chunk = await stream.read(4096)
                if not chunk:
                    return
                self._stderr_tail = (self._stderr_tail + chunk)[-2048:]
                log.debug("tmux control client %s stderr: %r", self.label, chunk)
        except Exception:  # pragma: no cover - defensive
            log.debug("control client %s: stderr reader failed", self.label, exc_info=True)

    async def _read_loop(self) -> None:
        stream = self._proc.stdout
        assert stream is not None
        buf = bytearray()
        try:
            while True:
                chunk = await stream.read(_READ_SIZE)
                if not chunk:
                    break
                buf += chunk
                end = buf.rfind(b"\n")
                if end < 0:
                    continue
                data = bytes(buf[:end])
                del buf[: end + 1]
                touched: dict[str, None] = {}
                for line in data.split(b"\n"):
                    self._handle_line(line, touched)
                if touched and self._on_output is not None:
                    try:
                        self._on_output(list(touched))
                    except Exception:
                        log.exception("output callback failed")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("control client %s: reader failed", self.label)
        finally:
            await self._finish()

    def _deliver_data(self, pane: str, escaped: bytes) -> None:
        assert self.on_data is not None
        try:
            self.on_data(pane, unescape_output(escaped))
        except Exception:
            log.exception("output data callback failed")

    def _handle_line(self, line: bytes, touched: dict[str, None]) -> None:
        if self._block is not None:
            if line == self._block_end or line == self._block_error:
                self._end_block(line == self._block_error)
            else:
                self._block.append(line)
            return
        if line.startswith(b"%output "):
            sp = line.find(b" ", 8)
            pane = line[8 : sp if sp > 0 else len(line)].decode("ascii", "replace")
            touched[pane] = None
            if self.on_data is not None and sp > 0:
                self._deliver_data(pane, line[sp + 1 :])
        elif line.startswith(b"%extended-output "):
            sp = line.find(b" ", 17)
            pane = line[17 : sp if sp > 0 else len(line)].decode("ascii", "replace")
            touched[pane] = None
            colon = line.find(b" : ", sp)
            if self.on_data is not None and colon > 0:
                self._deliver_data(pane, line[colon + 3 :])
        elif line.startswith(b"%begin "):
            rest = line[7:]
            self._block = []
            self._block_end = b"%end " + rest
            self._block_error = b"%error " + rest
            fields = rest.split(b" ")
            try:
                self._block_ours = bool(int(fields[2]) & 1)
            except (IndexError, ValueError):
                self._block_ours = True
        elif line.startswith(b"%exit"):
            self._exit_reason = line[6:].decode("utf-8", "replace").strip() or "exited"
        elif line.startswith((b"%window-close ", b"%unlinked-window-close ")):
            wid = line.split(b" ", 2)[1].decode("ascii", "replace")
            if self._on_window_close is not None:
                try:
                    self._on_window_close(wid)
                except Exception:
                    log.exception("window-close callback failed")
        elif line.startswith(b"%session-changed "):
            parts = line.split(b" ", 2)
            if len(parts) == 3:
                self.session_id = parts[1].decode("ascii", "replace")
                self.session_name = parts[2].decode("utf-8", "replace")
                if not self._attached.done():
                    self._attached.set_result(None)
        elif line.startswith(b"%session-renamed "):
            parts = line.split(b" ", 2)
            if len(parts) == 3 and parts[1].decode("ascii", "replace") == self.session_id:
                self.session_name = parts[2].decode("utf-8", "replace")
        # Everything else (%window-add, %layout-change, %sessions-changed, ...) is ignored.

    def _end_block(self, error: bool) -> None:
        lines = self._block or []
        self._block = None
        if not self._block_ours:
            if error:
                self._initial_error = b"\n".join(lines).decode("utf-8", "replace")
                log.debug("control client %s: initial command failed: %s", self.label, self._initial_error)
            return
        if not self._pending:
            log.warning("control client %s: reply block with no command waiting", self.label)
            return
        pending = self._pending[0]
        pending.remaining -= 1
        if error:
            self._pending.popleft()
            if not pending.future.done():
                msg = b"\n".join(lines).decode("utf-8", "replace").strip()
                pending.future.set_exception(TmuxError(msg or "tmux error"))
            return
        pending.lines.extend(lines)
        if pending.remaining <= 0:
            self._pending.popleft()
            if not pending.future.done():
                pending.future.set_result(pending.lines)

    async def _finish(self) -> None:
        if not self._alive and self._exited.done():
            return
        self._alive = False
        # Let waiters go at once (EOF means no more replies), then reap the process.
        reason = self.exit_reason or "exited"
        if self._on_exit is not None:
            try:
                self._on_exit(self)
            except Exception:
                log.exception("control client exit callback failed")
        while self._pending:
            p = self._pending.popleft()
            if not p.future.done():
                p.future.set_exception(ControlClientExited(f"tmux control client exited: {reason}"))
        if not self._attached.done():
            self._attached.set_exception(ControlClientExited(f"tmux control client exited: {reason}"))
            self._attached.exception()  # retrieved: no "never retrieved" warning
        try:
            await asyncio.wait_for(self._proc.wait(), 2.0)
        except (asyncio.TimeoutError, ProcessLookupError, asyncio.CancelledError):
            self._kill()
        try:
            await asyncio.wait_for(asyncio.shield(self._stderr_task), 0.5)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self._stderr_task.cancel()
        if not self._exited.done():
            self._exited.set_result(None)
        log.debug("control client %s (pid %s) gone: %s", self.label, self._proc.pid, self.exit_reason or reason)

    def _kill(self) -> None:
        if self._proc.returncode is None:
            try:
                os.kill(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def close(self, timeout: float = 2.0) -> None:
        """Detach: close stdin (tmux detaches the client and it exits). The server is untouched."""
        stdin = self._proc.stdin
        if stdin is not None and not stdin.is_closing():
            try:
                stdin.close()
            except Exception:  # noqa: BLE001 - detaching is best effort; the wait below decides  # pragma: no cover
                pass
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), timeout)
        except asyncio.TimeoutError:
            log.debug("control client %s did not exit on EOF; killing it", self.label)
            self._kill()
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), timeout)
            except asyncio.TimeoutError:
                self._reader.cancel()
