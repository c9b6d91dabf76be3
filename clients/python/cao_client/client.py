"""JSON-RPC over the LSP base protocol (Content-Length framing), stdlib only."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Generator, Optional

NotificationHandler = Callable[[str, Any], None]
RequestHandler = Callable[[str, Any], Any]  # (method, params) -> the result to send back
CANCEL_ANSWER_WAIT = 15.0  # seconds a cancelled request waits for the sidecar to answer it


class CaoError(Exception):
    """An error answer from the sidecar: `code` and `data` as in protocol/spec.md."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


class CaoClient:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._handlers: list[NotificationHandler] = []
        self._reader_task: Optional[asyncio.Task[None]] = None
        self._on_request: Optional[RequestHandler] = None
        self.server_info: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {}

    # ---- life cycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls, **options: Any) -> "Starting":
        """Start the sidecar and connect: `client = await CaoClient.start(...)`, or
        `async with CaoClient.start(...) as cao:` (closed at the end of the block). Options as
        for `connect`."""
        return Starting(cls.connect(**options))

    @classmethod
    async def connect(
        cls,
        *,
        workspace: str | os.PathLike[str] | None = None,
        tmux_socket: str | None = None,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stderr: int | None = None,
        on_notification: NotificationHandler | None = None,
        ask_user: bool = False,
        on_request: RequestHandler | None = None,
    ) -> "CaoClient":
        """Start the sidecar, initialize it and return a connected client. A script has no one to
        click: unless `ask_user`, the sidecar does not ask about agents' questions with
        window/showMessageRequest (their `prompt` in cao/agentStatus + `answer()` serve instead).
        `on_request(method, params)` answers the server's requests (default: null). `cwd`: the
        directory the sidecar starts in (its project, when it joins a team; default: ours); `stderr`:
        where its log goes (as for subprocess; default: our stderr)."""
        argv = list(command or [sys.executable, "-m", "cao_sidecar", "--stdio"])
        if tmux_socket:
            argv += ["--tmux-socket", tmux_socket]
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            stderr=stderr,
            limit=64 * 1024 * 1024,
        )
        client = cls(process)
        client._on_request = on_request
        if on_notification is not None:
            client.on_notification(on_notification)
        client._reader_task = asyncio.get_running_loop().create_task(client._read_loop())
        root = await asyncio.to_thread(Path(workspace or os.getcwd()).resolve)
        result = await client.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "capabilities": {"window": {"workDoneProgress": True}},
                "clientInfo": {"name": "cao_client"},
                "initializationOptions": {"askUser": ask_user},
            },
        )
        client.server_info = result.get("serverInfo", {})
        client.capabilities = result.get("capabilities", {})
        client.notify("initialized", {})
        return client

    async def close(self) -> int:
        """shutdown + exit; agents keep running in tmux unless terminated first."""
        if self._process.returncode is None:
            try:
                await asyncio.wait_for(self.request("shutdown", None), 10)
                self.notify("exit", None)
                return await asyncio.wait_for(self._process.wait(), 10)
            except (asyncio.TimeoutError, CaoError, ConnectionError):
                with contextlib.suppress(ProcessLookupError):  # it has exited meanwhile (its orchestrator went)
                    self._process.kill()
        return await self._process.wait()

    async def __aenter__(self) -> "CaoClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def on_notification(self, handler: NotificationHandler) -> None:
        self._handlers.append(handler)

    @property
    def pid(self) -> int:
        """The process id of the sidecar this client started (a forwarder, once teams are shared)."""
        return self._process.pid

    async def wait_closed(self) -> None:
        """Return when the connection to the sidecar is gone (it exited or closed its output)."""
        if self._reader_task is not None:
            await asyncio.shield(self._reader_task)

    # ---- the cao/* methods --------------------------------------------------------------------

    async def spawn(self, profile: str, **kw: Any) -> dict[str, Any]:
        return await self.request("cao/spawn", {"profile": profile, **_camel(kw)})

    async def handoff(self, message: str, **kw: Any) -> dict[str, Any]:
        return await self.request("cao/handoff", {"message": message, **_camel(kw)})

    async def assign(self, profile: str, message: str, **kw: Any) -> dict[str, Any]:
        return await self.request("cao/assign", {"profile": profile, "message": message, **_camel(kw)})

    async def send_message(self, terminal_id: str, message: str, sender: str | None = None) -> dict[str, Any]:
        params = {"terminalId": terminal_id, "message": message}
        if sender:
            params["sender"] = sender
        return await self.request("cao/sendMessage", params)

    async def list_agents(self, session: str | None = None) -> list[dict[str, Any]]:
        result = await self.request("cao/listAgents", {"session": session} if session else {})
        return result["agents"]

    async def get_output(self, terminal_id: str, mode: str = "last") -> str:
        return (await self.request("cao/getOutput", {"terminalId": terminal_id, "mode": mode}))["output"]

    async def terminate(self, terminal_id: str) -> None:
        await self.request("cao/terminate", {"terminalId": terminal_id})

    async def answer(self, terminal_id: str, answer: str, prompt_id: str | None = None) -> dict[str, Any]:
        """Answer the question agent `terminal_id` waits on (a choice of its prompt, or free text)."""
        params = {"terminalId": terminal_id, "answer": answer}
        if prompt_id:
            params["promptId"] = prompt_id
        return await self.request("cao/answer", params)

    async def stats(self) -> dict[str, Any]:
        return await self.request("cao/stats", {})

    async def shutdown_team(self, terminate_agents: bool = False) -> Any:
        """cao/shutdown: end the project's orchestrator for every client (and its agents if
        `terminate_agents`). An orchestrator without the method answers -32601."""
        return await self.request("cao/shutdown", {"terminateAgents": terminate_agents})

    async def list_profiles(self) -> list[dict[str, Any]]:
        return (await self.request("cao/listProfiles", {}))["profiles"]

    async def get_trust(self) -> list[dict[str, Any]]:
        """Each workspace folder's TrustInfo: trusted, why, and what its .cao/ holds back if not."""
        return (await self.request("cao/getTrust", {}))["folders"]

    async def set_trust(
        self, trusted: bool, path: str | os.PathLike[str] | None = None, persist: bool = True
    ) -> list[dict[str, Any]]:
        """Trust (or stop trusting) `path` (default: every workspace folder); `persist` writes the
        user's trust store, else only this sidecar's connection changes."""
        params: dict[str, Any] = {"trusted": trusted, "persist": persist}
        if path is not None:
            params["path"] = os.fspath(path)
        return (await self.request("cao/setTrust", params))["folders"]

    # ---- JSON-RPC -----------------------------------------------------------------------------

    async def request(self, method: str, params: Any) -> Any:
        msg_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        self._write({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        try:
            return await future
        except asyncio.CancelledError:
            if self._process.returncode is None:
                self._write({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": msg_id}})
                # Its answer comes once the sidecar has undone what it started (a handoff's
                # worker is torn down): a client that leaves right after must not leave it half done.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(future), CANCEL_ANSWER_WAIT)
            raise
        finally:
            self._pending.pop(msg_id, None)

    def notify(self, method: str, params: Any) -> None:
        self._write({"jsonrpc": "2.0", "method": method, "params": params})

    def _write(self, message: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        body = json.dumps(message).encode()
        self._process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def _read_loop(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            while True:
                length = None
                while True:
                    line = await stdout.readline()
                    if not line:
                        raise ConnectionError("the sidecar closed its output")
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("ascii", "replace").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length is None:
                    continue
                self._dispatch(json.loads(await stdout.readexactly(length)))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"sidecar connection lost: {exc}"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message and "method" not in message:
            future = self._pending.get(message["id"])
            if future is None or future.done():
                return
            if "error" in message:
                err = message["error"]
                future.set_exception(CaoError(err.get("code", 0), err.get("message", ""), err.get("data")))
            else:
                future.set_result(message.get("result"))
        elif "id" in message:
            # A request from the server (window/workDoneProgress/create, window/showMessageRequest).
            handler = self._on_request
            result = handler(message["method"], message.get("params")) if handler is not None else None
            self._write({"jsonrpc": "2.0", "id": message["id"], "result": result})
        else:
            for handler in self._handlers:
                handler(message["method"], message.get("params"))


class Starting:
    """What CaoClient.start returns: await it for the client, or use it with `async with`."""

    def __init__(self, connecting: Awaitable[CaoClient]) -> None:
        self._connecting = connecting
        self._client: Optional[CaoClient] = None

    def __await__(self) -> Generator[Any, None, CaoClient]:
        return self._connecting.__await__()

    async def __aenter__(self) -> CaoClient:
        self._client = await self._connecting
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()


def _camel(kw: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in kw.items():
        if value is None:
            continue
        head, *rest = key.split("_")
        out[head + "".join(p.title() for p in rest)] = value
    return out
