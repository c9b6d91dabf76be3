"""`cao-sidecar mcp-bridge`: a stdio MCP endpoint for CLIs that cannot speak HTTP.

It reads MCP messages (one JSON object per line) on stdin, forwards each to the sidecar's MCP
endpoint over the sidecar's 0600 Unix socket with the agent's own bearer token, and writes the
answers to stdout. Stdlib only, so it starts in tens of milliseconds.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import threading
from typing import Any, Optional


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Bridge:
    def __init__(self, socket_path: str, token: str, out: Any = None) -> None:
        self._socket_path = socket_path
        self._token = token
        self._out = out or sys.stdout
        self._write_lock = threading.Lock()

    def _write(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":")) + "\n"
        with self._write_lock:
            self._out.write(line)
            self._out.flush()

    def forward(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            self._write({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
            return
        msg_id = message.get("id") if isinstance(message, dict) else None
        try:
            # Tool calls (handoff) can take as long as the task: no read timeout.
            conn = _UnixHTTPConnection(self._socket_path, timeout=None)  # type: ignore[arg-type]
            conn.request(
                "POST",
                "/mcp",
                body=raw.encode(),
                headers={
                    "Host": "localhost",
                    "Authorization": f"Bearer {self._token}",
                    "Content-Type": "application/json",
                    "Accept": "application/json, text/event-stream",
                },
            )
            response = conn.getresponse()
            body = response.read()
            conn.close()
        except OSError as exc:
            if msg_id is not None:
                self._write({"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32000, "message": f"sidecar unreachable: {exc}"}})
            return
        if response.status == 202 or not body:
            return  # a notification or a response: nothing comes back
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if response.status >= 400 or not isinstance(answer, dict):
            if msg_id is not None:
                text = body.decode("utf-8", "replace")[:500]
                self._write(
                    {"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32000, "message": f"HTTP {response.status}: {text}"}}
                )
            return
        self._write(answer)

    def serve(self, stdin: Any = None) -> int:
        stdin = stdin or sys.stdin
        for line in stdin:
            if line.strip():
                # One thread per message: a long handoff must not hold up pings or other calls.
                threading.Thread(target=self.forward, args=(line,), daemon=True).start()
        return 0


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="cao-sidecar mcp-bridge", description=__doc__)
    parser.add_argument("--socket", default=os.environ.get("CAO_MCP_SOCKET"), help="the sidecar's MCP Unix socket")
    parser.add_argument("--token-file", help="file holding this agent's credential (default: $CAO_MCP_TOKEN)")
    args = parser.parse_args(argv)
    token = os.environ.get("CAO_MCP_TOKEN", "")
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
    if not args.socket or not token:
        print(
            "cao-sidecar mcp-bridge: need --socket (or $CAO_MCP_SOCKET) and a token ($CAO_MCP_TOKEN or --token-file)",
            file=sys.stderr,
        )
        return 2
    return Bridge(args.socket, token).serve()
