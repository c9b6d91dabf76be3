"""One SSH connection per host: the orchestrator's link to the host's node.

The link runs `ssh <dest> <node>` and speaks LSP-framed JSON-RPC over its stdio, multiplexed
for every agent on the host. Each request is a `cao/nodeCall` with a key of its own; one the
link could not answer before it dropped stays pending and is sent again, same key, once the
link is back (the node joins the call it already runs: it ends once). Reconnects back off from
0.5 s to 10 s. The link's state (connected or not, why, the ssh pid) is read, not streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from typing import Any, Awaitable, Callable, Optional

from cao_sidecar.core.errors import CaoError
from cao_sidecar.hosts.config import HostConfig, qualify
from cao_sidecar.hosts.install import InstallError, Probe, ensure_installed, node_argv
from cao_sidecar.hosts.node import NODE_CALL, UP_CALL

log = logging.getLogger(__name__)

BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)
HANDSHAKE_TIMEOUT = 60.0  # the node starts its orchestrator (imports, tmux) on first contact
MAX_BODY = 64 * 1024 * 1024

Notify = Callable[[str, str, Any], None]  # (host, method, params)
ServeUp = Callable[[str, Any], Awaitable[Any]]  # (host, cao/nodeUp params) -> result


class HostUnavailable(CaoError):
    """The host cannot be reached now (its link is down and not coming back)."""


def _frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def _read_message(reader: asyncio.StreamReader) -> Optional[dict[str, Any]]:
    length = None
    while True:
        line = await reader.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("ascii", "replace").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None or not 0 <= length <= MAX_BODY:
        raise ValueError(f"bad frame from the node (Content-Length {length})")
    return json.loads(await reader.readexactly(length))


class _Pending:
    def __init__(self, method: str, params: Any, carry: Optional[dict[str, Any]] = None) -> None:
        self.method = method
        self.params = params
        self.carry = carry or {}  # the orchestrator's profile and provider it starts (hosts.profiles)
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class HostLink:
    def __init__(self, host: HostConfig, on_notification: Notify, on_connected: Callable[[str], None], serve_up: ServeUp) -> None:
        self.host = host
        self._serve_up = serve_up
        self._up_tasks: set[asyncio.Task[None]] = set()
        self.state = "starting"
        self.reason = ""
        self.ssh_pid: Optional[int] = None
        self.connects = 0
        self._on_notification = on_notification
        self._on_connected = on_connected
        self._pending: dict[str, _Pending] = {}
        self._in_flight: dict[int, str] = {}  # json-rpc id -> key, on the current connection
        self._ids = itertools.count(1)
        self._writer: Optional[asyncio.StreamWriter] = None
        self._process: Optional[asyncio.subprocess.Process] = None
        self._connected = asyncio.Event()
        self._failed = asyncio.Event()
        self._task: Optional[asyncio.Task[None]] = None
        self._tag: Optional[str] = None
        self.probe: Optional[Probe] = None  # what the host had when the link was first made
        self.failed_at = 0.0  # time.monotonic() when it failed (state "failed")

    @property
    def tag(self) -> Optional[str]:
        """The node's install on the host (known once the link was first made)."""
        return self._tag

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_connected(self, timeout: float) -> None:
        """Until the link is up; raises at once if it failed (unreachable, cannot install)."""
        waits = [asyncio.ensure_future(self._connected.wait()), asyncio.ensure_future(self._failed.wait())]
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        if not self._connected.is_set():
            reason = (
                self.reason if self.state == "failed" else f"not connected after {timeout:.0f} s ({self.state}: {self.reason})"
            )
            raise HostUnavailable(reason, host=self.host.name)

    async def call(self, method: str, params: Any, carry: Optional[dict[str, Any]] = None, key: Optional[str] = None) -> Any:
        """`method` on the node; survives link drops (re-sent with its key). `carry`: the
        definitions of the profile (and user-defined provider) it starts, which the node keeps
        before it runs the call. `key`: the call's own (made again with it, it runs once)."""
        if self.state == "failed":
            raise HostUnavailable(f"host '{self.host.name}': {self.reason}", host=self.host.name)
        key = key or secrets.token_hex(8)
        pending = _Pending(method, params, carry)
        self._pending[key] = pending
        if self._connected.is_set():
            self._send_call(key, pending)
        try:
            return await asyncio.shield(pending.future)
        finally:
            if pending.future.done():
                self._pending.pop(key, None)

    def _send_call(self, key: str, pending: _Pending) -> None:
        msg_id = next(self._ids)
        self._in_flight[msg_id] = key
        call = {**pending.carry, "key": key, "method": pending.method, "params": pending.params}
        self._write({"jsonrpc": "2.0", "id": msg_id, "method": NODE_CALL, "params": call})

    def _write(self, message: dict[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(_frame(message))

    async def _run(self) -> None:
        attempt = 0
        while True:
            connects = self.connects
            try:
                if self._tag is None:
                    self.state, self.reason = "installing", ""
                    self._tag, self.probe = await ensure_installed(self.host)
                await self._connect_once()
            except InstallError as exc:
                self._fail(str(exc))
                return
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                self.reason = str(exc) or type(exc).__name__
                if self.connects == 0:  # never reached: say so now (a later request tries again)
                    self._fail(f"cannot reach host '{self.host.name}' ({self.host.ssh}): {self.reason}")
                    return
            self._connected.clear()
            self.state = "reconnecting"
            if self.connects > connects:  # it was up: the backoff starts again
                attempt = 0
            delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
            attempt += 1
            log.info("link to %s down (%s); reconnecting in %.1f s", self.host.name, self.reason, delay)
            await asyncio.sleep(delay)

    def _fail(self, reason: str) -> None:
        self.state, self.reason, self.failed_at = "failed", reason, time.monotonic()
        self._failed.set()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(HostUnavailable(reason, host=self.host.name))
        log.warning("%s", reason)

    async def _connect_once(self) -> None:
        assert self._tag is not None
        self.state = "connecting"
        process = await asyncio.create_subprocess_exec(
            *node_argv(self.host, self._tag), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=1 << 20,
        )  # fmt: skip
        self._process, self.ssh_pid = process, process.pid
        assert process.stdout is not None and process.stdin is not None and process.stderr is not None
        self._writer = process.stdin
        stderr_tail: list[bytes] = []
        drain = asyncio.get_running_loop().create_task(self._keep_tail(process.stderr, stderr_tail))
        try:
            self._write({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"processId": None, "rootUri": None, "capabilities": {},
                           "initializationOptions": {"caoNode": True, "nodeName": self.host.name, "askUser": False}},
            })  # fmt: skip
            answer = await asyncio.wait_for(_read_message(process.stdout), HANDSHAKE_TIMEOUT)
            if answer is None or "result" not in answer:
                raise OSError(f"the node did not answer initialize: {b''.join(stderr_tail).decode(errors='replace')[-500:]}")
            self._write({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            self.connects += 1
            self.state, self.reason = "connected", ""
            self._in_flight.clear()
            self._connected.set()
            for key, pending in list(self._pending.items()):  # what the last link left unanswered
                if not pending.future.done():
                    self._send_call(key, pending)
            self._on_connected(self.host.name)
            while (message := await _read_message(process.stdout)) is not None:
                self._dispatch(message)
            raise OSError(f"the link ended: {b''.join(stderr_tail).decode(errors='replace').strip()[-300:]}")
        finally:
            self._connected.clear()
            self._writer = None
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            drain.cancel()

    @staticmethod
    async def _keep_tail(stream: asyncio.StreamReader, tail: list[bytes]) -> None:
        while chunk := await stream.read(4096):
            tail.append(chunk)
            del tail[:-4]

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "method" in message:
            if "id" in message and message["method"] == UP_CALL:
                task = asyncio.get_running_loop().create_task(self._answer_up(message["id"], message.get("params")))
                self._up_tasks.add(task)
                task.add_done_callback(self._up_tasks.discard)
            elif "id" in message:  # the node asks (progress tokens, ...): nothing to show here
                self._write({"jsonrpc": "2.0", "id": message["id"], "result": None})
            else:
                self._on_notification(self.host.name, message["method"], message.get("params"))
            return
        key = self._in_flight.pop(message.get("id"), None)  # type: ignore[arg-type]
        pending = self._pending.get(key) if key is not None else None
        if pending is None or pending.future.done():
            return
        if "error" in message:
            error = message["error"] or {}
            data = qualify(error.get("data") or {}, self.host.name)
            exc = CaoError(str(error.get("message", "the node failed")), **(data if isinstance(data, dict) else {}))
            exc.code = error.get("code", exc.code)
            pending.future.set_exception(exc)
        else:
            pending.future.set_result(message.get("result"))

    async def _answer_up(self, msg_id: Any, params: Any) -> None:
        writer = self._writer  # the answer goes on the connection that asked (the node re-asks on a new one)
        try:
            reply: dict[str, Any] = {"result": await self._serve_up(self.host.name, params)}
        except CaoError as exc:
            reply = {"error": {"code": exc.code, "message": exc.message, "data": exc.data}}
        except Exception as exc:  # the node's caller sees it; the link goes on
            log.exception("a call from %s failed", self.host.name)
            reply = {"error": {"code": -32603, "message": str(exc) or type(exc).__name__}}
        if writer is not None and writer is self._writer and not writer.is_closing():
            writer.write(_frame({"jsonrpc": "2.0", "id": msg_id, **reply}))

    async def close(self) -> None:
        """End the link (the node and its agents keep running on the host)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(HostUnavailable(f"the link to '{self.host.name}' closed"))
