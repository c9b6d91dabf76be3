"""A flow's gate: a command that decides, at run time, whether the flow runs.

The gate runs with its argv (no shell, unless the flow file declared `shell:`), in the flow's
working directory, stdin closed, in its own process group (killed whole on timeout). It answers:

- exit 0 and a JSON object on stdout (or nothing): run, unless the object says `"run": false`;
  the object's other keys fill `{{placeholders}}` in the task (and only the task);
- exit non-zero: do not run ("the gate said no"); stderr's tail is the reason;
- bad JSON, a timeout, a program that cannot start, too much output: the gate failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any, Optional

import attrs

from cao_sidecar.flows.flow import Gate

MAX_STDOUT = 1024 * 1024
MAX_STDERR = 64 * 1024
REASON_CHARS = 500


@attrs.define
class GateDecision:
    run: bool
    values: dict[str, str] = attrs.field(factory=dict)
    failed: bool = False  # the gate itself failed (as opposed to saying no)
    reason: Optional[str] = None


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    text = " ".join(text.splitlines()[-5:])
    return text[-REASON_CHARS:]


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


async def _read_limited(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    over = False
    while chunk := await stream.read(65536):
        if size < limit:
            chunks.append(chunk[: limit - size])
        size += len(chunk)
        over = over or size > limit
    return b"".join(chunks), over


async def run_gate(gate: Gate, *, cwd: str, env: dict[str, str]) -> GateDecision:
    try:
        process = await asyncio.create_subprocess_exec(
            *gate.argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return GateDecision(False, failed=True, reason=f"the gate {gate.argv[0]!r} could not start: {detail}")

    async def collect() -> tuple[bytes, bool, bytes, int]:
        assert process.stdout is not None and process.stderr is not None
        (out, out_over), (err, _) = await asyncio.gather(
            _read_limited(process.stdout, MAX_STDOUT), _read_limited(process.stderr, MAX_STDERR)
        )
        return out, out_over, err, await process.wait()

    try:
        stdout, too_much, stderr, code = await asyncio.wait_for(collect(), gate.timeout)
    except asyncio.TimeoutError:
        _kill_group(process)
        return GateDecision(False, failed=True, reason=f"the gate did not finish within {gate.timeout:g} s and was killed")
    except asyncio.CancelledError:
        _kill_group(process)
        raise
    finally:
        if process.returncode is None:
            _kill_group(process)
    if code != 0:
        detail = _tail(stderr) or _tail(stdout)
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return GateDecision(False, reason=f"the gate {how}" + (f": {detail}" if detail else ""))
    if too_much:
        return GateDecision(False, failed=True, reason=f"the gate printed more than {MAX_STDOUT // 1024} KiB")
    text = stdout.decode("utf-8", "replace").strip()
    if not text:
        return GateDecision(True)
    try:
        answer = json.loads(text)
    except ValueError as exc:
        return GateDecision(False, failed=True, reason=f"the gate printed invalid JSON ({exc}): {text[:120]!r}")
    if not isinstance(answer, dict):
        return GateDecision(False, failed=True, reason='the gate must print a JSON object, e.g. {"run": true}')
    run = answer.get("run", True)
    if not isinstance(run, bool):
        return GateDecision(False, failed=True, reason="the gate's 'run' must be true or false")
    reason = answer.get("reason")
    reason = _value(reason)[:REASON_CHARS] if reason is not None else None
    if not run:
        return GateDecision(False, reason=f"the gate said no: {reason}" if reason else "the gate said no")
    values = {str(k): _value(v) for k, v in answer.items() if k not in ("run", "reason")}
    return GateDecision(True, values=values, reason=reason)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            process.kill()
        except ProcessLookupError:
            pass
