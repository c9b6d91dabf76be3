"""Property-based fuzzing of the request layer: framing, envelope vetting, params validation.

Whatever bytes arrive, the reader answers with well-formed JSON-RPC errors (or drops what the
spec says to drop), never raises, and still reads the next valid message.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cao_sidecar import wire
from cao_sidecar.editor.transport import MessageReader

VALID = {"jsonrpc": "2.0", "id": 424242, "method": "cao/listAgents", "params": {}}


class CollectingWriter:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def frames(self) -> list[dict[str, Any]]:
        out, rest = [], bytes(self.data)
        while rest:
            header, sep, rest = rest.partition(b"\r\n\r\n")
            assert sep, f"unframed output: {header!r}"
            assert header.startswith(b"Content-Length: ")
            length = int(header.split(b":")[1])
            body, rest = rest[:length], rest[length:]
            out.append(json.loads(body))
        return out


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)

envelopes = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]) | json_values,
        "id": st.integers() | st.text(max_size=5) | json_values,
        "method": st.sampled_from(sorted(wire.METHODS) + ["initialize", "exit", "shutdown", "x/y"]) | json_values,
        "params": json_values,
    },
)

chunks = st.one_of(
    st.binary(max_size=60),  # raw garbage
    envelopes.map(lambda e: frame(json.dumps(e).encode())),  # framed, odd envelopes
    st.binary(max_size=40).map(frame),  # framed, non-JSON bodies
    st.integers(-5, 10**9).map(lambda n: b"Content-Length: %d\r\n\r\n" % n if n < 0 else b""),
    st.just(b"Content-Length: abc\r\n\r\n"),
    st.just(b"\r\n\r\n\r\n"),
)


def read_all(stream: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        reader = asyncio.StreamReader(limit=32768)
        reader.feed_data(stream)
        reader.feed_eof()
        writer = CollectingWriter()
        messages = []
        vetting = MessageReader(reader, writer)  # type: ignore[arg-type]
        vetting.initialized = True
        while (message := await asyncio.wait_for(vetting.next_message(), 5)) is not None:
            messages.append(message)
        return messages, writer.frames()

    return asyncio.run(run())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(chunks, max_size=6))
def test_any_input_then_a_valid_request_is_still_read(garbage: list[bytes]) -> None:
    # A blank line ends any header block the garbage left open, as a client's next frame would.
    stream = b"".join(garbage) + b"\r\n" + frame(json.dumps(VALID).encode())
    messages, answers = read_all(stream)
    for message in messages:  # everything handed on is a vetted JSON-RPC envelope
        assert message["jsonrpc"] == "2.0"
        assert "method" in message or "id" in message
        assert not isinstance(message.get("id"), (bool, float, list, dict))
    for answer in answers:  # everything answered is a JSON-RPC error response
        assert answer["jsonrpc"] == "2.0" and "id" in answer
        assert isinstance(answer["error"]["code"], int) and answer["error"]["message"]
    # The valid request after the garbage still gets through.
    assert messages[-1] == VALID


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(wire.METHODS)), json_values)
def test_params_either_structure_or_fail_with_a_named_reason(method: str, params: Any) -> None:
    params_cls, _ = wire.METHODS[method]
    try:
        result = wire.structure_params(params, params_cls)
    except wire.ParamsError as exc:
        assert str(exc)
        return
    assert isinstance(result, params_cls)


def test_oversized_body_is_refused_without_reading_it_into_a_message() -> None:
    big = 33 * 1024 * 1024
    stream = b"Content-Length: %d\r\n\r\n" % big + b"x" * big + frame(json.dumps(VALID).encode())
    messages, answers = read_all(stream)
    assert messages == [VALID]
    assert answers and answers[0]["error"]["code"] == -32600 and "exceeds" in answers[0]["error"]["message"]
