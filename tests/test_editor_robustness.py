"""End to end, editor face: what a client may get wrong. Unknown methods, bad params, garbage on
stdin, requests before `initialize`, floods; plus `shutdown` leaving agents running.

A real sidecar (`python -m cao_sidecar --stdio`, started by pytest-lsp) on its own tmux server.
Raw bytes go straight to the server's stdin (`lsp_client._server.stdin`); errors answered with
`id: null` are collected by a spy on the client protocol's response handler.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import Future
from typing import Any

import pytest
import pytest_asyncio
import pytest_lsp
from pygls.exceptions import JsonRpcException
from pygls.protocol import JsonRPCProtocol
from pytest_lsp import LanguageClient

from conftest import _plain, initialize, kill_tmux, request
from test_editor_common import (
    close_client,
    error_data,
    eventually,
    list_agents,
    new_sidecar,
    pane_of,
    rpc_error,
    spawn,
    terminate_all,
)

CONFIG, SIDECAR = new_sidecar("robust")
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

NULL_ID_ERRORS: list[Any] = []  # errors the server answered with id null


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def client(lsp_client: LanguageClient):
    handle_response = lsp_client.protocol._handle_response

    def spy(msg_id, result=None, error=None):
        if msg_id is None and error is not None:
            NULL_ID_ERRORS.append(error)
        return handle_response(msg_id, result, error)

    lsp_client.protocol._handle_response = spy
    await initialize(lsp_client, SIDECAR)
    yield
    await close_client(lsp_client, SIDECAR)


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def clean(client: LanguageClient):
    NULL_ID_ERRORS.clear()
    yield
    await terminate_all(client)


async def write_raw(client: LanguageClient, data: bytes) -> None:
    stdin = client._server.stdin
    stdin.write(data)
    await stdin.drain()


def frame(body: bytes, extra_headers: bytes = b"") -> bytes:
    return b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra_headers + b"\r\n" + body


async def raw_request(client: LanguageClient, msg_id: str, body: bytes, timeout: float = 5.0) -> Any:
    """Write a hand-framed request whose id is `msg_id`; return its result (or raise its error)."""
    future: Future = Future()
    client.protocol._request_futures[msg_id] = future
    await write_raw(client, body)
    return await asyncio.wait_for(asyncio.wrap_future(future), timeout)


async def null_id_errors(count: int, timeout: float = 3.0) -> list[Any]:
    await eventually(lambda: len(NULL_ID_ERRORS) >= count, timeout, what=f"{count} error(s) with id null")
    return list(NULL_ID_ERRORS)


async def still_serving(client: LanguageClient) -> None:
    assert client._server.returncode is None, "the sidecar process died"
    assert await request(client, "cao/listAgents", {}, timeout=5) == {"agents": []}


# ---- methods and params ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["cao/frobnicate", "foo/bar", "cao/"])
async def test_unknown_method(client: LanguageClient, method: str):
    exc = await rpc_error(request(client, method, {}))
    assert exc.code == -32601
    assert method in exc.message
    await still_serving(client)


async def test_unknown_notification_is_ignored(client: LanguageClient):
    client.protocol.notify("cao/noSuchNotification", {"x": 1})
    client.protocol.notify("$/noSuchNotification", {"x": 1})
    await still_serving(client)


@pytest.mark.parametrize(
    "method, params, field",
    [
        ("cao/spawn", {}, "profile"),
        ("cao/spawn", {"profile": 42}, "profile"),
        ("cao/spawn", {"profile": "mock_developer", "workingDirectory": ["/tmp"]}, "workingDirectory"),
        ("cao/spawn", {"profile": "mock_developer", "name": 7}, "name"),
        ("cao/handoff", {"profile": "mock_developer"}, "message"),
        ("cao/handoff", {"profile": "mock_developer", "message": "x", "timeoutSeconds": "10"}, "timeoutSeconds"),
        ("cao/handoff", {"profile": "mock_developer", "message": "x", "keep": 1}, "keep"),
        ("cao/handoff", {"terminalId": 12345678, "message": "x"}, "terminalId"),
        ("cao/assign", {"message": "x"}, "profile"),
        ("cao/assign", {"profile": "mock_developer", "message": None}, "message"),
        ("cao/sendMessage", {"terminalId": "5ad0b7c3"}, "message"),
        ("cao/sendMessage", {"message": "hi"}, "terminalId"),
        ("cao/sendMessage", {"terminalId": "5ad0b7c3", "message": {"text": "hi"}}, "message"),
        ("cao/getOutput", {}, "terminalId"),
        ("cao/getOutput", {"terminalId": "5ad0b7c3", "mode": "tail"}, "mode"),
        ("cao/terminate", {"terminalId": None}, "terminalId"),
        ("cao/listAgents", {"session": 3}, "session"),
    ],
)
async def test_bad_params_name_the_field(client: LanguageClient, method: str, params: dict, field: str):
    exc = await rpc_error(request(client, method, params))
    assert exc.code == -32602, (exc.code, exc.message)
    assert f"'{field}'" in exc.message, exc.message
    assert await list_agents(client) == {}


@pytest.mark.parametrize("params", [[], ["mock_developer"], "mock_developer", 42])
async def test_params_not_an_object(client: LanguageClient, params: Any):
    exc = await rpc_error(request(client, "cao/spawn", params))
    assert exc.code == -32602, (exc.code, exc.message)
    await still_serving(client)


async def test_invalid_params_error_data_has_kind(client: LanguageClient):
    """spec §8: error.data with `kind` on every -32602 the sidecar raises, field errors included."""
    exc = await rpc_error(request(client, "cao/sendMessage", {"terminalId": "5ad0b7c3"}))
    assert exc.code == -32602
    assert error_data(exc).get("kind") == "invalidParams", f"error.data = {exc.data!r}"


async def test_unknown_fields_are_ignored(client: LanguageClient):
    result = await request(client, "cao/listProfiles", {"futureField": True})
    assert result["profiles"]
    assert await request(client, "cao/listAgents", {"session": None, "somethingNew": [1, 2]}) == {"agents": []}


# ---- garbage on stdin ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(frame(b"this is not json {"), id="body-not-json"),
        pytest.param(frame(b"\xff\xfe\xfd\x00\x80 binary"), id="body-not-utf8"),
        pytest.param(b"\x00\xffGARBAGE garbage\r\nmore garbage\r\n\r\n", id="no-headers"),
        pytest.param(b"Content-Length: banana\r\n\r\n", id="bad-content-length"),
        pytest.param(b"\x1b[31mhello\x1b[0m\n\n", id="escape-sequences"),
    ],
)
async def test_garbage_on_stdin_gets_parse_error_and_server_keeps_serving(client: LanguageClient, garbage: bytes):
    await write_raw(client, garbage)
    errors = await null_id_errors(1)
    assert errors[0].code == -32700, errors
    await still_serving(client)


async def test_garbage_glued_before_a_valid_request(client: LanguageClient):
    body = json.dumps({"jsonrpc": "2.0", "id": "after-garbage", "method": "cao/listAgents", "params": {}}).encode()
    result = await raw_request(client, "after-garbage", b"\x07\x07 noise noise " + frame(body))
    assert _plain(result) == {"agents": []}
    errors = await null_id_errors(1)
    assert errors[0].code == -32700
    await still_serving(client)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[1, 2]", id="batch"),
        pytest.param(b'"a string"', id="string"),
        pytest.param(b"42", id="number"),
        pytest.param(b'{"foo": "boo"}', id="object-without-jsonrpc"),
        pytest.param(b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}', id="method-not-a-string"),
        pytest.param(b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "cao/listAgents"}', id="id-an-object"),
    ],
)
async def test_json_that_is_not_a_request_gets_invalid_request(client: LanguageClient, body: bytes):
    await write_raw(client, frame(body))
    errors = await null_id_errors(1)
    assert errors[0].code == -32600, errors
    await still_serving(client)


async def test_content_type_header_and_utf8_length(client: LanguageClient):
    """Content-Length counts UTF-8 bytes; a Content-Type header is accepted and ignored."""
    body = json.dumps(
        {"jsonrpc": "2.0", "id": "raw-utf8", "method": "cao/getOutput", "params": {"terminalId": "ü🚀"}},
        ensure_ascii=False,
    ).encode("utf-8")
    headers = b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
    with pytest.raises(JsonRpcException) as info:
        await raw_request(client, "raw-utf8", frame(body, headers))
    assert info.value.code == -31003
    assert "ü🚀" in json.dumps(info.value.data, ensure_ascii=False) or "ü🚀" in info.value.message
    assert NULL_ID_ERRORS == []
    await still_serving(client)


async def test_message_split_across_writes(client: LanguageClient):
    body = json.dumps({"jsonrpc": "2.0", "id": "raw-split", "method": "cao/listAgents"}).encode()
    data = frame(body)
    future: Future = Future()
    client.protocol._request_futures["raw-split"] = future
    for i in range(0, len(data), 7):
        await write_raw(client, data[i : i + 7])
        await asyncio.sleep(0.002)
    result = await asyncio.wait_for(asyncio.wrap_future(future), 5)
    assert result is not None
    await still_serving(client)


async def test_flood_of_requests_all_answered(client: LanguageClient):
    agent = await spawn(client)
    started = time.monotonic()
    results = await asyncio.gather(*(request(client, "cao/listAgents", {}, timeout=20) for _ in range(200)))
    elapsed = time.monotonic() - started
    assert len(results) == 200
    assert all([a["terminalId"] for a in r["agents"]] == [agent["terminalId"]] for r in results)
    assert elapsed < 10, f"200 listAgents took {elapsed:.1f}s"


async def test_flood_of_mixed_requests_with_errors(client: LanguageClient):
    calls = []
    for i in range(100):
        calls.append(request(client, "cao/listProfiles", {}, timeout=20))
        calls.append(request(client, "cao/getOutput", {"terminalId": f"{i:08d}"}, timeout=20))
    results = await asyncio.gather(*calls, return_exceptions=True)
    profiles = results[0::2]
    errors = results[1::2]
    assert all(isinstance(r, dict) and r["profiles"] for r in profiles)
    assert all(isinstance(e, JsonRpcException) and e.code == -31003 for e in errors)
    await still_serving(client)


# ---- before initialize, and shutdown -----------------------------------------------------------------

PRE_CONFIG, PRE = new_sidecar("preinit")


@pytest_lsp.fixture(config=PRE_CONFIG, loop_scope="module")
async def uninitialized(lsp_client: LanguageClient):
    yield
    await end_server(lsp_client)
    kill_tmux(PRE.socket)


async def end_server(client: LanguageClient) -> None:
    """Make sure the server process ends (pytest-lsp's teardown waits for it)."""
    server = client._server
    if server is None or server.returncode is not None:
        return
    try:
        if client.capabilities is not None:
            await terminate_all(client)
            await asyncio.wait_for(client.shutdown_async(None), 5)
        client.exit(None)
        await asyncio.wait_for(server.wait(), 5)
    except Exception:  # noqa: BLE001
        pass
    if server.returncode is None:
        server.kill()
        await server.wait()


def send_unchecked(client: LanguageClient, method: str, params: Any) -> asyncio.Future:
    """Send a request even before `initialize` (pytest-lsp refuses to: it checks capabilities)."""
    return JsonRPCProtocol.send_request_async(client.protocol, method, params)


async def test_requests_before_initialize_get_an_error(uninitialized: LanguageClient):
    client = uninitialized
    for method, params in (("cao/listAgents", {}), ("cao/spawn", {"profile": "mock_developer"})):
        exc = await rpc_error(asyncio.wait_for(send_unchecked(client, method, params), 5))
        assert exc.code == -32002, (method, exc.code, exc.message)
    assert PRE.tmux("list-panes", "-a") == "", "nothing may be started before initialize"
    # After initialize everything works.
    result = await initialize(client, PRE)
    assert result.server_info.name == "cao-sidecar"
    assert await request(client, "cao/listAgents", {}) == {"agents": []}


SHUT_CONFIG, SHUT = new_sidecar("shutdown")


@pytest_lsp.fixture(config=SHUT_CONFIG, loop_scope="module")
async def short_lived(lsp_client: LanguageClient):
    await initialize(lsp_client, SHUT)
    yield
    await end_server(lsp_client)
    kill_tmux(SHUT.socket)


async def test_shutdown_leaves_agents_running(short_lived: LanguageClient):
    client = short_lived
    tid = (await spawn(client))["terminalId"]
    pane = pane_of(SHUT, tid)
    assert pane is not None
    await asyncio.wait_for(client.shutdown_async(None), 10)
    client.exit(None)
    code = await asyncio.wait_for(client._server.wait(), 10)
    assert code == 0
    # The agent still runs in tmux, where the user can attach to it.
    after = pane_of(SHUT, tid)
    assert after is not None and after["dead"] == "0"
    assert after["pid"] == pane["pid"]
