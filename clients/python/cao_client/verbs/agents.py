"""`cao-sidecar agents`: the team's agents as a table, as JSON, or live (`--watch`).

`--watch` follows the cao/agentStatus notifications (no polling): on a terminal it redraws the
table at each change; into a pipe it prints the table once, then one line per change (with
`--json`: one `{"agents": [...]}` snapshot per line, the first one at start)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import datetime
from typing import Any, TextIO

from cao_client.verbs.session import Team

COLUMNS = ("ID", "NAME", "PROFILE", "PROVIDER", "STATUS", "AGE", "QUESTION")
COLOURS = {
    "idle": "32",
    "completed": "32",
    "processing": "33",
    "stalled": "33;1;7",
    "starting": "36",
    "waiting_user_answer": "35;1",
    "error": "31;1",
    "exited": "2",
}
CLEAR = "\x1b[H\x1b[2J"


def use_colour(out: TextIO) -> bool:
    return out.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def age(created_at: str | None, now: float) -> str:
    try:
        seconds = now - datetime.fromisoformat(str(created_at)).timestamp()
    except ValueError:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def question(agent: dict[str, Any]) -> str:
    prompt = agent.get("prompt") or {}
    text = " ".join(str(prompt.get("text") or "").split())
    choices = prompt.get("choices") or []
    if choices:
        text += f" [{' / '.join(str(c) for c in choices)}]"
    return text[:80]


def table(agents: list[dict[str, Any]], *, colour: bool, now: float | None = None) -> str:
    """The agents as aligned columns (oldest first), or a line that says there are none."""
    if not agents:
        return "no agents (start one: cao-sidecar spawn PROFILE)"
    now = time.time() if now is None else now
    rows = [
        [
            a["terminalId"],
            a.get("name") or "-",
            a.get("profile", ""),
            a.get("provider", ""),
            a.get("status", ""),
            age(a.get("createdAt"), now),
            question(a),
        ]
        for a in agents
    ]
    widths = [max(len(str(row[i])) for row in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate([list(COLUMNS), *rows]):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        if colour and n > 0 and row[4] in COLOURS:
            cells[4] = f"\x1b[{COLOURS[row[4]]}m{cells[4]}\x1b[0m"
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def snapshot(agents: list[dict[str, Any]]) -> str:
    return json.dumps({"agents": agents}, ensure_ascii=False)


async def agents(team: Team) -> int:
    if not team.args.watch:
        listed = await team.agents()
        print(snapshot(listed) if team.args.json else table(listed, colour=use_colour(sys.stdout)))
        return 0
    return await Watch(team).run()


class Watch:
    """The agents kept current from notifications; shown again at each change."""

    def __init__(self, team: Team) -> None:
        self.team = team
        self.out = sys.stdout
        self.redraw = self.out.isatty() and not team.args.json
        self.agents: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        team.on_notification(self._on_notification)

    def _on_notification(self, method: str, params: Any) -> None:
        if method == "cao/agentStatus" and isinstance(params, dict) and "terminalId" in params:
            self.events.append(params)
            self.changed.set()

    async def _refresh(self) -> None:
        self.agents = {a["terminalId"]: a for a in await self.team.agents()}

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        assert self.team.client is not None
        closed = asyncio.ensure_future(self.team.client.wait_closed())
        stopping = asyncio.ensure_future(stop.wait())
        await self._refresh()
        self.show([])
        try:
            while True:
                changed = asyncio.ensure_future(self.changed.wait())
                await asyncio.wait({changed, closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not changed.done():
                    changed.cancel()
                if stopping.done():
                    return 0
                if closed.done() and not self.events:
                    print("cao-sidecar agents: the team closed the connection", file=sys.stderr)
                    return 1
                self.changed.clear()
                events, self.events = self.events, []
                if any(e["terminalId"] not in self.agents for e in events):
                    await self._refresh()  # a new agent: its name, directory, ... come from the list
                for event in events:
                    agent = self.agents.get(event["terminalId"])
                    if agent is not None:
                        agent.update(status=event.get("status"), prompt=event.get("prompt"))
                self.show(events)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            stopping.cancel()
            closed.cancel()

    def show(self, events: list[dict[str, Any]]) -> None:
        listed = list(self.agents.values())
        if self.team.args.json:
            print(snapshot(listed), file=self.out, flush=True)
        elif self.redraw:
            header = f"agents of {self.team.project}, live (Ctrl-C ends)  {time.strftime('%H:%M:%S')}"
            print(CLEAR + header + "\n\n" + table(listed, colour=use_colour(self.out)), file=self.out, flush=True)
        elif not events:
            print(table(listed, colour=False), file=self.out, flush=True)
        else:
            for event in events:
                stamp = time.strftime("%H:%M:%S")
                change = f"{event.get('previousStatus') or 'new'} -> {event.get('status')}"
                asks = question(event)
                if event.get("status") == "stalled":
                    asks = "(working, but no output or events for a while)"
                line = f"{stamp}  {event['terminalId']}  {event.get('profile', '')}  {change}"
                print(f"{line}  {asks}" if asks else line, file=self.out, flush=True)
