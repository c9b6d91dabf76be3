"""Starting an agent's CLI: its environment and command line, and waiting until it takes input
(answering the start-up dialogs its provider knows, waiting for its MCP connection)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable, Iterable

from cao_sidecar.core.agent import Agent
from cao_sidecar.core.errors import AgentExited, AgentNotReady, InvalidRequest
from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers import LaunchContext, cli_facts, own_python
from cao_sidecar.providers.base import LaunchSpec, flag_like_value, profile_options
from cao_sidecar.terminal.tmux import TmuxError, TmuxServer

log = logging.getLogger(__name__)

STARTUP_DIALOG_POLL = 0.25  # while a startup dialog shows, look at the screen this often
STARTUP_DIALOG_REPEAT = 3.0  # answer the same dialog again if it is still there after this
STARTUP_FAIL_AFTER = 2.0  # a dialog only the user can answer (login) fails the launch after this
# Environment passed through to agents so they find the same tools as the sidecar.
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "PYTHONPATH", "CAO_MOCK_DELAY_MS")

EnvHook = Callable[[Agent], dict[str, str]]


def launch_command(agent: Agent, env_hooks: Iterable[EnvHook]) -> tuple[LaunchSpec, dict[str, str]]:
    """The provider's command line for `agent` and the whole environment it starts with. Refuses
    profile values that could act as flags and a command that is not installed."""
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    env.update(own_python.safe_pythonpath(env))  # no entry that means "the agent's cwd"
    env.update(CAO_TERMINAL_ID=agent.terminal_id, CAO_SESSION=agent.session, CAO_PROFILE=agent.profile.name)
    env.update(agent.profile.env)
    for hook in env_hooks:
        env.update(hook(agent))
    ctx = LaunchContext(
        terminal_id=agent.terminal_id,
        session=agent.session,
        working_directory=agent.working_directory,
        agent_dir=agent.agent_dir,
        model=agent.profile.model,
        system_prompt=agent.profile.system_prompt,
        env=env,
        options=profile_options(agent.profile),
    )
    flag_like = flag_like_value(ctx)
    if flag_like is not None:
        raise InvalidRequest(
            f"profile '{agent.profile.name}': {flag_like} begins with '-' and could be taken as a "
            "command-line flag; the agent is not started",
            field="profile",
        )
    try:
        spec = agent.provider.launch(ctx)
    except ValueError as exc:  # a value the provider cannot put on its command line
        raise InvalidRequest(f"profile '{agent.profile.name}': {exc}", field="profile") from exc
    env.update(spec.env)
    return spec, env


def check_installed(agent: Agent, spec: LaunchSpec, env: dict[str, str]) -> None:
    missing = cli_facts.missing_command(agent.provider, spec.argv, env)
    if missing is not None:  # say so now, not "exited before it was ready" later
        raise AgentNotReady(f"agent '{agent.profile.name}' cannot start: {missing}", terminalId=agent.terminal_id)


class ReadyWaiter:
    """Waits until a starting agent takes input, answering its start-up dialogs on the way."""

    def __init__(self, tmux: TmuxServer, refresh: Callable[[Agent], None]) -> None:
        self._tmux = tmux
        self._refresh = refresh  # look at the agent's screen again soon (after keys were sent)

    async def wait_ready(self, agent: Agent, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        answered: dict[str, float] = {}  # startup dialog rule → when we last answered it
        # Some CLIs draw their prompt for a moment before a startup dialog replaces it: ready
        # means ready for this long.
        settle = agent.provider.ready_settle_seconds
        while True:
            if agent.status.accepts_input:
                logged_out = cli_facts.logged_out(agent.provider, agent.screen)
                if logged_out is not None:
                    raise AgentNotReady(
                        f"agent '{agent.profile.name}' cannot start: {logged_out}",
                        terminalId=agent.terminal_id,
                        screenTail=agent.screen_tail(),
                    )
                if settle <= 0:
                    return
                await asyncio.sleep(min(settle, max(0.0, deadline - loop.time())))
                settle = 0.0
                continue
            if agent.status is AgentStatus.EXITED:
                raise AgentExited(
                    f"agent '{agent.profile.name}' exited before it was ready",
                    terminalId=agent.terminal_id,
                    screenTail=agent.screen_tail(),
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AgentNotReady(
                    f"agent '{agent.profile.name}' was not ready for input after {timeout:g}s (status {agent.status.value})",
                    terminalId=agent.terminal_id,
                    screenTail=agent.screen_tail(),
                )
            if agent.status is AgentStatus.WAITING_USER_ANSWER:
                await self._answer_startup_dialog(agent, answered)
                # A dialog can follow another without a status change: look again soon.
                remaining = min(remaining, STARTUP_DIALOG_POLL)
            await agent.wait_change(remaining)

    async def _answer_startup_dialog(self, agent: Agent, answered: dict[str, float]) -> None:
        """Answer a startup dialog (trust, consent, update) with the keys the provider names, or
        fail at once on one only the user can answer (login). Each dialog is answered again only
        if it is still there a while later."""
        if agent.pane_id is None:
            return
        action = agent.provider.startup_action(agent.screen, profile_options(agent.profile))
        # A fail dialog's sighting lasts only while it stays on screen: two brief frames seconds
        # apart (Gemini CLI draws its auth dialogs before their "Existing API key" line) are not one.
        seen_fail = "fail:" + action.rule if action is not None and action.fail else None
        for rule in [r for r in answered if r.startswith("fail:") and r != seen_fail]:
            del answered[rule]
        if action is None:
            return
        now = asyncio.get_running_loop().time()
        if action.fail:
            # Only a dialog that stays is final (a frame can be caught before its last lines).
            first_seen = answered.setdefault("fail:" + action.rule, now)
            if now - first_seen < STARTUP_FAIL_AFTER:
                return
            raise AgentNotReady(
                f"agent '{agent.profile.name}' is stopped at a startup dialog ({action.rule}): {action.fail}",
                terminalId=agent.terminal_id,
                screenTail=agent.screen_tail(),
            )
        if not action.keys or now - answered.get(action.rule, -1e9) < STARTUP_DIALOG_REPEAT:
            return
        if sum(1 for rule in answered if not rule.startswith("fail:")) >= 8 and action.rule not in answered:
            return
        answered[action.rule] = now
        log.info("agent %s: answering startup dialog '%s' with %s", agent.terminal_id, action.rule, action.keys)
        try:
            await self._tmux.send_keys(agent.pane_id, *action.keys)
        except TmuxError:
            pass
        self._refresh(agent)


async def wait_mcp_connection(agent: Agent, timeout: float, started: float) -> None:
    """Wait until the CLI connected to our MCP server (within `timeout` since `started`, loop time)."""
    remaining = timeout - (asyncio.get_running_loop().time() - started)
    if await agent.wait_mcp_connection(max(0.0, remaining)):
        return
    if not agent.alive:
        raise AgentExited(
            f"agent '{agent.profile.name}' exited before it was ready",
            terminalId=agent.terminal_id,
            screenTail=agent.screen_tail(),
        )
    raise AgentNotReady(
        f"agent '{agent.profile.name}' was not ready after {timeout:g}s: the CLI did not connect to the sidecar's MCP server",
        terminalId=agent.terminal_id,
        screenTail=agent.screen_tail(),
    )
