"""Chaos: seeded random faults during mixed traffic; every acknowledged request must end once.

A real sidecar process is driven by the Python client with mock agents: editor assigns,
handoffs, spawns, messages, questions answered, and agents' own assigns over MCP. Meanwhile,
at random: the sidecar is SIGKILLed and started again (the client reconnects), agent processes
are killed, the tmux server is killed, and (when a tmpfs can be mounted for the state dir) the
disk is filled for a moment. At the end it checks the invariant: every request the sidecar
acknowledged ended exactly once and its requester learned how (completed, or failed with a
reason), across all restarts; a last restart reports nothing again.

    python bench/chaos.py [--seconds 60] [--seed N] [--no-tmpfs] [--keep]

The seed is printed first (CHAOS_SEED=...); the same seed replays the same choices (timing on a
loaded machine still varies). Exit status 1 if the invariant is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python"))

from cao_client import CaoClient, CaoError  # noqa: E402

CALL_TIMEOUT = 45.0  # a request to a sidecar that died never gets an answer: give up after this
SETTLE_TIMEOUT = 120.0  # after the faults stop, every acknowledged request must have ended by then
MAX_IN_FLIGHT = 5


class Cut(Exception):
    """The sidecar went away before it answered: the request was never acknowledged."""


@dataclass
class Request:
    rid: int
    kind: str  # assign, handoff, spawn, message, question, agent_assign
    token: str
    acked: bool = False
    terminal_id: Optional[str] = None  # the worker (assign), the receiver (message, question)
    ends: list[str] = field(default_factory=list)  # "completed ..." or "failed: reason", once


class Chaos:
    def __init__(
        self, seed: int, seconds: float, base: Path, use_tmpfs: bool, say: Callable[[str], None] = print, keep: bool = False
    ):
        self.keep = keep  # a failed run's tmpfs state is copied out before it is unmounted
        self.log_level = "info" if keep else "warning"  # the orchestrator's log (state dir) tells the story
        self.rng = random.Random(seed)
        self.seed = seed
        self.seconds = seconds
        self.base = base
        self.say = say
        self.socket = f"cao-chaos-{os.getpid()}-{seed}"
        self.state_home = base / "state"
        self.state_home.mkdir(parents=True, exist_ok=True)
        self.tmpfs = use_tmpfs and self._mount_tmpfs()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CAO_", "XDG_"))}
        self.env.update(
            XDG_STATE_HOME=str(self.state_home), XDG_CONFIG_HOME=str(base / "config"), XDG_DATA_HOME=str(base / "data"),
            HOME=str(base / "home"), CAO_TMUX_SOCKET=self.socket, CAO_READY_TIMEOUT="20",
            PYTHONPATH=str(ROOT) + os.pathsep + str(ROOT / "clients" / "python"),
        )  # fmt: skip
        (base / "home").mkdir(exist_ok=True)
        self.workspace = base / "ws"
        self.workspace.mkdir(exist_ok=True)
        self.client: Optional[CaoClient] = None
        self.up = asyncio.Event()
        self.requests: list[Request] = []
        self.reports: list[dict[str, Any]] = []  # every cao/workerCompleted, across restarts
        self.injected: Counter[str] = Counter()
        self.cut = 0  # requests cut off before their answer (not acknowledged)
        self.agents: list[str] = []  # spawned agents that take messages and questions
        self.supervisors: list[str] = []
        self.alive_agents: set[str] = set()  # not exited, as the sidecar lists them at the end

    # ---- the sidecar ----------------------------------------------------------------------------

    def _mount_tmpfs(self) -> bool:
        if os.geteuid() != 0:
            self.say("state dir on the normal disk (no root: no tmpfs, no disk-full faults)")
            return False
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(self.state_home)], capture_output=True, text=True
        )
        if done.returncode != 0:
            self.say(f"state dir on the normal disk (tmpfs mount refused: {done.stderr.strip()})")
            return False
        return True

    def _on_notification(self, method: str, params: Any) -> None:
        if method == "cao/workerCompleted":
            self.reports.append(params)

    async def start_sidecar(self) -> None:
        command = [sys.executable, "-m", "cao_sidecar", "--stdio", "--log-level", self.log_level]
        self.client = await CaoClient.start(
            workspace=self.workspace, env=self.env, on_notification=self._on_notification, command=command
        )
        self.up.set()

    def _orchestrator_pid(self) -> Optional[int]:
        """The project's orchestrator (the client's process is only a forwarder to it)."""
        info = self.state_home / "cao-sidecar" / f"orchestrator-{self.socket}.json"
        try:
            return int(json.loads(info.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _signal_orchestrator(self, sig: int) -> None:
        pid = self._orchestrator_pid()
        if pid is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    async def kill_sidecar(self) -> None:
        client, self.client = self.client, None
        self.up.clear()
        if client is not None:
            self._signal_orchestrator(signal.SIGKILL)  # its forwarder then sees the end and exits
            try:
                await asyncio.wait_for(client._process.wait(), 10)
            except asyncio.TimeoutError:
                client._process.kill()
                await client._process.wait()

    async def call(self, method: Callable[[CaoClient], Awaitable[Any]]) -> Any:
        """One request to the current sidecar; Cut if it dies before answering."""
        await asyncio.wait_for(self.up.wait(), CALL_TIMEOUT)
        client = self.client
        assert client is not None
        try:
            return await asyncio.wait_for(method(client), CALL_TIMEOUT)
        except (ConnectionError, BrokenPipeError, asyncio.TimeoutError) as exc:
            if client is self.client and client._process.returncode is None:
                raise AssertionError(f"the sidecar is up but did not answer: {exc!r}") from None
            raise Cut() from None

    # ---- traffic --------------------------------------------------------------------------------

    def _new(self, kind: str) -> Request:
        request = Request(len(self.requests), kind, f"tok{len(self.requests)}x{self.rng.randrange(10**6)}")
        self.requests.append(request)
        return request

    async def one_request(self) -> None:
        kind = self.rng.choices(["assign", "handoff", "spawn", "message", "question", "agent_assign"], [35, 12, 8, 20, 10, 15])[0]
        if kind in ("message", "question") and not self.agents:
            kind = "spawn"
        if kind == "agent_assign" and not self.supervisors:
            kind = "spawn_supervisor"
        request = self._new(kind)
        try:
            await getattr(self, f"_do_{kind}")(request)
        except Cut:
            if not request.acked:
                self.cut += 1
        except CaoError as exc:
            if exc.code in (-31003, -31006):  # the agent is gone: no more traffic for it
                self.agents = [a for a in self.agents if a != request.terminal_id and a not in exc.message]
            if request.acked:
                return  # a question's answer refused: the question is checked as a message
            # Refused (disk full, agent gone, ...): acknowledged as a failure, with its reason.
            request.acked = True
            request.ends.append(f"failed: {exc.code} {exc.message}")

    async def _do_assign(self, r: Request) -> None:
        seconds = self.rng.choice([0, 0.3, 1, 2])
        ack = await self.call(lambda c: c.assign("mock_developer", f"sleep {seconds} {r.token}", keep=False))
        r.acked, r.terminal_id = True, ack["terminalId"]  # ends with its cao/workerCompleted

    async def _do_handoff(self, r: Request) -> None:
        result = await self.call(lambda c: c.handoff(f"echo {r.token}", profile="mock_reviewer"))
        r.acked = True
        r.ends.append("completed" if result["output"] == r.token else f"wrong answer {result['output']!r}")

    async def _do_spawn(self, r: Request) -> None:
        ack = await self.call(lambda c: c.spawn("mock_developer"))
        r.acked = True
        r.ends.append("completed")
        self.agents.append(ack["terminalId"])

    async def _do_spawn_supervisor(self, r: Request) -> None:
        ack = await self.call(lambda c: c.spawn("mock_supervisor"))
        r.acked = True
        r.ends.append("completed")
        self.supervisors.append(ack["terminalId"])

    async def _do_message(self, r: Request) -> None:
        target = self.rng.choice(self.agents)
        await self.call(lambda c: c.send_message(target, f"echo {r.token}"))
        r.acked, r.terminal_id = True, target  # ends when typed in (transcript), or the agent exits

    async def _do_question(self, r: Request) -> None:
        target = self.rng.choice(self.agents)
        r.terminal_id = target
        await self.call(lambda c: c.send_message(target, f"ask Proceed {r.token}?"))
        r.kind, r.acked = "question (not answered)", True  # the question itself is a message
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            agents = await self.call(lambda c: c.list_agents())
            agent = next((a for a in agents if a["terminalId"] == target), None)
            if agent is None or agent["status"] == "exited":
                break
            prompt = agent.get("prompt") or {}
            if agent["status"] == "waiting_user_answer" and r.token in prompt.get("text", ""):
                await self.call(lambda c: c.answer(target, "Yes", prompt.get("id")))
                r.kind = "answer"  # acknowledged: the answer is what is checked now
                return
            await asyncio.sleep(0.2)

    async def _do_agent_assign(self, r: Request) -> None:
        supervisor = self.rng.choice(self.supervisors)
        await self.call(lambda c: c.send_message(supervisor, f"assign mock_developer sleep 0.5 {r.token}"))
        r.acked, r.terminal_id = True, supervisor  # ends in the supervisor's inbox (transcript)

    # ---- faults ---------------------------------------------------------------------------------

    def _tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True)

    async def one_fault(self) -> None:
        choices = ["sidecar", "agent", "tmux"] + (["disk"] if self.tmpfs else [])
        kind = self.rng.choices(choices, [45, 30, 10, 15][: len(choices)])[0]
        if kind == "sidecar":
            await asyncio.sleep(self.rng.uniform(0, 0.3))  # a random point, not a quiet one
            await self.kill_sidecar()
            await asyncio.sleep(self.rng.uniform(0, 1.0))
            await self.start_sidecar()
        elif kind == "agent":
            pids = [int(p) for p in self._tmux("list-panes", "-a", "-F", "#{pane_pid}").stdout.split() if p.isdigit()]
            if not pids:
                return
            try:
                os.kill(self.rng.choice(sorted(pids)), signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif kind == "tmux":
            self._tmux("kill-server")
        else:
            filler = self.state_home / f"filler-{self.rng.randrange(10**6)}"
            await asyncio.get_running_loop().run_in_executor(None, _fill, filler)
            await asyncio.sleep(self.rng.uniform(0.5, 2.0))
            filler.unlink(missing_ok=True)
        self.injected[kind] += 1

    # ---- the run --------------------------------------------------------------------------------

    async def run(self) -> bool:
        self.say(f"CHAOS_SEED={self.seed} (replay: CHAOS_SEED={self.seed} or --seed {self.seed})")
        await self.start_sidecar()
        in_flight: set[asyncio.Task[None]] = set()
        end = time.monotonic() + self.seconds
        next_fault = time.monotonic() + self.rng.uniform(1.0, 3.0)
        try:
            while time.monotonic() < end:
                if time.monotonic() >= next_fault:
                    await self.one_fault()
                    next_fault = time.monotonic() + self.rng.uniform(1.0, 3.5)
                if len(in_flight) < MAX_IN_FLIGHT:
                    task = asyncio.ensure_future(self.one_request())
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                await asyncio.sleep(self.rng.uniform(0.05, 0.4))
            if in_flight:
                await asyncio.wait(in_flight, timeout=CALL_TIMEOUT + 10)
            for task in in_flight:
                task.cancel()
            for filler in self.state_home.glob("filler-*"):
                filler.unlink()
            for task in in_flight:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            ok = await self.settle_and_check()
        finally:
            await self.close()
        return ok

    async def settle_and_check(self) -> bool:
        """Wait for every acknowledged request to end, then check each ended exactly once."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            agents = await self.call(lambda c: c.list_agents())
            self.alive_agents = {a["terminalId"] for a in agents if a["status"] != "exited"}
            for agent in agents:  # the user answers what is still asked
                if agent["status"] == "waiting_user_answer" and agent.get("prompt"):
                    try:
                        await self.call(lambda c: c.answer(agent["terminalId"], "Yes", agent["prompt"]["id"]))
                    except CaoError:
                        pass
            self._collect_ends()
            if not [r for r in self.requests if r.acked and not r.ends]:
                break
            await asyncio.sleep(0.5)
        # One more restart: nothing may be reported again.
        before = len(self.reports)
        await self.kill_sidecar()
        await self.start_sidecar()
        await self.call(lambda c: c.list_agents())
        await asyncio.sleep(2.0)
        self._collect_ends()
        problems = self.problems(again=len(self.reports) - before)
        acked = [r for r in self.requests if r.acked]
        by_kind = Counter(r.kind for r in acked)
        outcomes = Counter(r.ends[0].split(":")[0].split(" ")[0] for r in acked if r.ends)
        self.say(f"faults injected: {dict(self.injected)}")
        self.say(
            f"requests: {len(self.requests)} made, {len(acked)} acknowledged {dict(by_kind)}, "
            f"{self.cut} cut off before their answer (not acknowledged)"
        )
        self.say(f"ends: {dict(outcomes)}; editor reports (cao/workerCompleted): {len(self.reports)}")
        if problems:
            for problem in problems[:20]:
                self.say(f"PROBLEM: {problem}")
            for r in [r for r in self.requests if r.acked and len(r.ends) != 1][:3]:
                self.say(f"events of {r.terminal_id} (request {r.rid}):")
                for event in self._events(r.terminal_id):
                    self.say(f"  {json.dumps(event)[:300]}")
            return False
        self.say(f"every one of the {len(acked)} acknowledged requests ended exactly once and was reported")
        return True

    def _transcript(self, terminal_id: str) -> list[dict[str, Any]]:
        path = self.state_home / "cao-sidecar" / "agents" / terminal_id / "transcript.jsonl"
        try:
            raw = path.read_bytes()
        except OSError:
            return []
        records = []
        for line in raw[: raw.rfind(b"\n") + 1].decode("utf-8", "replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a full disk
        return records

    def _events(self, terminal_id: Optional[str]) -> list[dict[str, Any]]:
        """The sidecars' event log about one agent (logs/events.jsonl), for a failure's story."""
        path = self.state_home / "cao-sidecar" / "logs" / "events.jsonl"
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        events = []
        for line in lines:
            if terminal_id and terminal_id in line:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events[-40:]

    def _collect_ends(self) -> None:
        reported: dict[str, list[dict[str, Any]]] = {}
        for report in self.reports:
            reported.setdefault(report["terminalId"], []).append(report)
        for r in self.requests:
            if not r.acked or r.terminal_id is None:
                continue
            if r.kind == "assign":
                r.ends = [
                    "completed" if p["status"] == "completed" and p["output"] == r.token
                    else (f"failed: {p['error']}" if p.get("error") else f"wrong report {p}")
                    for p in reported.get(r.terminal_id, [])
                ]  # fmt: skip
                continue
            records = self._transcript(r.terminal_id)
            if r.kind in ("message", "question (not answered)"):
                text = f"echo {r.token}" if r.kind == "message" else f"ask Proceed {r.token}?"
                typed = [x for x in records if x.get("type") == "user" and x.get("text") == text]
                r.ends = ["completed"] * len(typed) or self._gone(r.terminal_id)
            elif r.kind == "answer":
                answered = [x for x in records if x.get("type") == "assistant" and x.get("text") == "answered: y"]
                asked = [x for x in records if x.get("type") == "user" and x.get("text") == f"ask Proceed {r.token}?"]
                r.ends = (["completed"] if answered and asked and answered[-1]["at"] > asked[0]["at"] else []) or self._gone(
                    r.terminal_id
                )
            elif r.kind == "agent_assign":
                r.ends = self._agent_assign_ends(r, records)

    def _agent_assign_ends(self, r: Request, records: list[dict[str, Any]]) -> list[str]:
        """The supervisor typed the assign, its tool call answered (the worker's id, or an error),
        then the worker's report came to its inbox: the ends of an agent's assign."""
        task = f"assign mock_developer sleep 0.5 {r.token}"
        at = next((i for i, x in enumerate(records) if x.get("type") == "user" and x.get("text") == task), None)
        if at is None:
            return self._gone(r.terminal_id)  # the supervisor died before it read it
        answer = next((x for x in records[at + 1 :] if x.get("type") in ("assistant", "error")), None)
        if answer is None:
            return self._gone(r.terminal_id)
        text = answer.get("text", "")
        if answer["type"] == "error" or "(terminal " not in text:
            return [f"failed: the assign tool call answered: {text}"]
        worker = text.split("(terminal ", 1)[1].split(")", 1)[0]
        told = [
            x["text"] for x in records
            if x.get("type") == "user" and x.get("text", "").startswith(f"[message from mock_developer worker {worker}]")
        ]  # fmt: skip
        return ["completed" if r.token in t else f"failed: {t}" for t in told] or self._gone(r.terminal_id)

    def _gone(self, terminal_id: str) -> list[str]:
        """Nothing was typed: fine only if the agent died (its messages failed with it)."""
        if not self._alive(terminal_id):
            return ["failed: the agent exited before it got it"]
        return []

    def _alive(self, terminal_id: str) -> bool:
        return terminal_id in self.alive_agents

    def problems(self, again: int) -> list[str]:
        out = []
        counts = Counter(p["terminalId"] for p in self.reports)
        out += [f"worker {tid} reported {n} times" for tid, n in counts.items() if n > 1]
        if again:
            out.append(f"{again} reports came again after the final restart")
        for r in self.requests:
            if not r.acked:
                continue
            if not r.ends:
                out.append(f"request {r.rid} ({r.kind} {r.token} -> {r.terminal_id}) acknowledged, never ended")
            elif len(r.ends) > 1:
                out.append(f"request {r.rid} ({r.kind} {r.token}) ended {len(r.ends)} times: {r.ends}")
            elif not (r.ends[0] == "completed" or r.ends[0].startswith("failed: ") and len(r.ends[0]) > 9):
                out.append(f"request {r.rid} ({r.kind} {r.token}) ended without a reason: {r.ends[0]}")
        return out

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        self._signal_orchestrator(signal.SIGTERM)  # it would outlive the client while agents run
        self._tmux("kill-server")
        Path(f"/tmp/tmux-{os.getuid()}/{self.socket}").unlink(missing_ok=True)  # tmux leaves it
        if self.tmpfs:
            if self.keep:  # sockets and files removed meanwhile are skipped
                shutil.copytree(
                    self.state_home, self.base / "state-kept", dirs_exist_ok=True,
                    ignore=lambda d, names: [n for n in names if n.endswith((".sock", "-shm", "-wal"))],
                    copy_function=_copy_if_there,
                )  # fmt: skip
            subprocess.run(["umount", "-l", str(self.state_home)], capture_output=True)


def _copy_if_there(src: str, dst: str) -> None:
    try:
        shutil.copy2(src, dst)
    except OSError:
        pass


def _fill(path: Path) -> None:
    """Write zeros to `path` until the disk is full."""
    with open(path, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 20))
                handle.flush()
        except OSError:
            pass


async def run(seed: int, seconds: float, use_tmpfs: bool = True, say: Callable[[str], None] = print, keep: bool = False) -> bool:
    base = Path(tempfile.mkdtemp(prefix="cao-chaos-"))
    ok = False
    try:
        ok = await Chaos(seed, seconds, base, use_tmpfs, say, keep=keep).run()
        return ok
    finally:
        if keep and not ok:
            say(f"kept the run's files (state dir, logs/events.jsonl, sidecar logs) in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long faults and traffic go on")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", random.randrange(10**9))))
    parser.add_argument("--no-tmpfs", action="store_true", help="no tmpfs for the state dir (no disk-full faults)")
    parser.add_argument("--keep", action="store_true", help="keep the run's temp dir (state, event log) when it fails")
    args = parser.parse_args()
    return 0 if asyncio.run(run(args.seed, args.seconds, not args.no_tmpfs, keep=args.keep)) else 1


if __name__ == "__main__":
    sys.exit(main())
