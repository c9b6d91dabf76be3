"""User-defined providers: a YAML (or JSON) file per CLI, so a new CLI needs no code.

Looked up in `<workspace>/.cao/providers/` first, then the user's config directory
(`~/.config/cao-sidecar/providers/`). The file name (without extension) is the provider name
unless the file says `name:`. Every field but `command` (or `extends`) is optional:

    # ~/.config/cao-sidecar/providers/mycli.yaml
    command: ["mycli", "--chat"]          # argv (or one string, split like a shell would)
    env: {MYCLI_NO_UPDATE: "1"}           # added to the agent's environment
    exit_command: /quit                   # typed (then Enter) to end the CLI
    interrupt_key: C-c                    # tmux key that interrupts a turn
    model_args: ["--model", "{model}"]    # added when the profile names a model
    system_prompt_args: ["--system", "{system_prompt}"]
    bracketed_paste: true                 # the CLI takes bracketed paste (default false: a
                                          # message is then typed as one line, see core/typed_text.py)
    status:                               # in order; the first rule that matches decides
      - waiting_user_answer: '\\(y/n\\)\\s*$'
        window: 2                         # bottom non-blank lines looked at (default 4)
      - processing: 'Thinking|esc to cancel'
      - error: '^Error:'
        scope: after_input                # bottom (default) | last_line | after_input
      - idle: '^mycli> $'
        scope: last_line
    default: processing                   # when nothing matched
    input: '^mycli> \\S'                   # a submitted input line (answers come after it)
    answer:
      start: '^= '                        # the answer starts at the last such line ...
      end: '^mycli> '                     # ... and ends before this one (or the live prompt)
      strip: '^= |^  '                    # removed from the start of each answer line
    startup:                              # dialogs the core answers while the CLI starts
      - rule: trust
        pattern: 'Trust this folder\\?'
        keys: ["y", "Enter"]              # tmux key names; or `fail: message` to give up

`extends: claude_code` (any built-in) keeps that CLI's launch, reading and events and puts
your `status` rules (and `answer`, `startup`, `exit_command`, `env`) in front: the way to fix a
screen a CLI update broke without waiting for a release. Name the file like the built-in to
replace it for every profile, or give it another name and use that in the profiles you choose.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path
from typing import Any, Optional

import yaml

from cao_sidecar.core.status import AgentStatus
from cao_sidecar.providers.base import Classification, HookEvent, LaunchContext, LaunchSpec, Provider, StartupAction
from cao_sidecar.providers.patterns import AnswerRule, PatternProvider, StatusRule
from cao_sidecar.providers.screen import Dialog, Screen, exited_to_shell

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SUFFIXES = (".yaml", ".yml", ".json")
STATUSES = {s.value: s for s in AgentStatus if s is not AgentStatus.EXITED} | {"exited": AgentStatus.EXITED}
SCOPES = ("bottom", "last_line", "after_input")
KNOWN = {
    "name",
    "description",
    "command",
    "env",
    "exit_command",
    "interrupt_key",
    "model_args",
    "system_prompt_args",
    "status",
    "default",
    "input",
    "prompt",
    "answer",
    "startup",
    "extends",
    "bracketed_paste",
}


class ProviderConfigError(ValueError):
    pass


def _regex(value: Any, where: str) -> re.Pattern[str]:
    if not isinstance(value, str) or not value:
        raise ProviderConfigError(f"{where}: expected a regular expression (a non-empty string)")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ProviderConfigError(f"{where}: bad regular expression {value!r}: {exc}") from None


def _strings(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise ProviderConfigError(f"{where}: expected a list of strings (or one string)")


def _status_rules(value: Any) -> list[StatusRule]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProviderConfigError("status: expected a list of rules")
    rules = []
    for n, item in enumerate(value, 1):
        where = f"status rule {n}"
        if not isinstance(item, dict):
            raise ProviderConfigError(f"{where}: expected a mapping like {{idle: '^> $'}}")
        item = dict(item)
        if "status" in item:
            status_name, pattern = item.pop("status"), item.pop("pattern", None)
        else:
            keys = [k for k in item if k in STATUSES]
            if len(keys) != 1:
                raise ProviderConfigError(f"{where}: name exactly one status ({', '.join(STATUSES)})")
            status_name = keys[0]
            pattern = item.pop(status_name)
        if status_name not in STATUSES:
            raise ProviderConfigError(f"{where}: unknown status {status_name!r}")
        window = item.pop("window", 4)
        scope = item.pop("scope", "bottom")
        name = item.pop("name", "")
        if not isinstance(window, int) or window < 1:
            raise ProviderConfigError(f"{where}: 'window' must be a positive number of lines")
        if scope not in SCOPES:
            raise ProviderConfigError(f"{where}: 'scope' must be one of {', '.join(SCOPES)}")
        if item:
            raise ProviderConfigError(f"{where}: unknown fields {', '.join(sorted(map(str, item)))}")
        rule = StatusRule(STATUSES[status_name], _regex(pattern, where), str(name), window, scope)
        if not rule.name:
            rule = StatusRule(rule.status, rule.pattern, f"rule {n}: {rule.label}", window, scope)
        rules.append(rule)
    return rules


def _dialogs(value: Any) -> list[Dialog]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProviderConfigError("startup: expected a list of dialogs")
    out = []
    for n, item in enumerate(value, 1):
        where = f"startup dialog {n}"
        if not isinstance(item, dict) or "pattern" not in item:
            raise ProviderConfigError(f"{where}: expected a mapping with 'pattern' and 'keys' (or 'fail')")
        _regex(item["pattern"], where)
        keys = _strings(item.get("keys", []), f"{where} keys")
        fail = item.get("fail")
        if fail is not None and not isinstance(fail, str):
            raise ProviderConfigError(f"{where}: 'fail' must be a message")
        out.append(
            Dialog(
                str(item.get("rule") or f"startup dialog {n}"),
                item["pattern"],
                keys=keys,
                fail=fail,
                window=int(item.get("window", 20)),
            )
        )
    return out


def _answer(value: Any) -> Optional[AnswerRule]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProviderConfigError("answer: expected a mapping with 'start' (and 'end', 'strip')")
    unknown = set(value) - {"start", "end", "strip"}
    if unknown:
        raise ProviderConfigError(f"answer: unknown fields {', '.join(sorted(map(str, unknown)))}")
    return AnswerRule(
        start=_regex(value["start"], "answer.start") if "start" in value else None,
        end=_regex(value["end"], "answer.end") if "end" in value else None,
        strip=_regex(value["strip"], "answer.strip") if "strip" in value else None,
    )


def load_config(path: Path, builtins: dict[str, Any]) -> Any:
    """Parse one provider file; raises ProviderConfigError with a readable message."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProviderConfigError(f"cannot read: {exc}") from None
    return parse_config(text, path, builtins)


def parse_config(text: str, path: Path, builtins: dict[str, Any]) -> Any:
    """A provider file's text (`path`: its name, which names the provider unless it says
    `name:`, and its format by the suffix); raises ProviderConfigError."""
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ProviderConfigError(f"not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ProviderConfigError("expected a mapping of fields")
    unknown = set(data) - KNOWN
    if unknown:
        raise ProviderConfigError(f"unknown fields: {', '.join(sorted(map(str, unknown)))} (known: {', '.join(sorted(KNOWN))})")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not NAME.match(name):
        raise ProviderConfigError("'name' must be 1-64 letters, digits, '_' or '-'")
    base = None
    if "extends" in data:
        base = builtins.get(data["extends"])
        if base is None:
            raise ProviderConfigError(
                f"extends: unknown built-in provider {data['extends']!r} (known: {', '.join(sorted(builtins))})"
            )
    elif "command" not in data:
        raise ProviderConfigError("give 'command' (the CLI to run) or 'extends' (a built-in provider)")
    env = data.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and k and "=" not in k for k in env):
        raise ProviderConfigError("'env' must map variable names to values")
    default = data.get("default", "processing")
    if default not in STATUSES:
        raise ProviderConfigError(f"'default' must be a status ({', '.join(STATUSES)})")
    attrs: dict[str, Any] = {
        "name": name,
        "source": str(path),
        "rules": tuple(_status_rules(data.get("status"))),
        "dialogs": tuple(_dialogs(data.get("startup"))),
        "env": {k: str(v) for k, v in env.items()},
        "default_status": STATUSES[default],
    }
    if "command" in data:
        attrs["command"] = tuple(_strings(data["command"], "command"))
        if not attrs["command"]:
            raise ProviderConfigError("'command' must not be empty")
    for key in ("exit_command", "interrupt_key"):
        if key in data:
            if not isinstance(data[key], str):
                raise ProviderConfigError(f"'{key}' must be a string")
            attrs[key] = data[key]
    if "bracketed_paste" in data:
        if not isinstance(data["bracketed_paste"], bool):
            raise ProviderConfigError("'bracketed_paste' must be true or false")
        attrs["bracketed_paste"] = data["bracketed_paste"]
    for key in ("model_args", "system_prompt_args"):
        if key in data:
            attrs[key] = tuple(_strings(data[key], key))
    if "input" in data:
        attrs["input_pattern"] = _regex(data["input"], "input")
    if "prompt" in data:
        attrs["prompt_pattern"] = _regex(data["prompt"], "prompt")
    answer = _answer(data.get("answer"))
    if answer is not None:
        attrs["answer"] = answer
    if base is not None:
        return ExtendedProvider(base, attrs)
    provider = UserProvider()
    for key, value in attrs.items():
        setattr(provider, key, value)
    return provider


class UserProvider(PatternProvider):
    """A provider defined entirely by a configuration file."""

    source = ""
    exit_command = "exit"
    interrupt_key = "C-c"
    # Unless the file says the CLI takes bracketed paste, a message is typed as one line.
    bracketed_paste = False


class ExtendedProvider(Provider):
    """A built-in provider with user rules in front (see `extends` in the module doc)."""

    def __init__(self, base: Provider, attrs: dict[str, Any]) -> None:
        self._base = base
        self.name: str = attrs["name"]
        self.source: str = attrs["source"]
        self.exit_command: str = attrs.get("exit_command", base.exit_command)
        self.interrupt_key: str = attrs.get("interrupt_key", base.interrupt_key)
        self.bracketed_paste: bool = attrs.get("bracketed_paste", base.bracketed_paste)
        self.event_statuses = base.event_statuses
        self.cli = getattr(base, "cli", None)  # the base's CLI: what must be installed (cli_facts)
        self._rules: tuple[StatusRule, ...] = attrs["rules"]
        self._dialogs: tuple[Dialog, ...] = attrs["dialogs"]
        self._env: dict[str, str] = attrs["env"]
        # The user's answer rule, if any, read with the pattern engine.
        self._patterns: Optional[PatternProvider] = None
        if "answer" in attrs or self._rules:
            patterns = PatternProvider()
            patterns.rules = self._rules
            patterns.answer = attrs.get("answer", AnswerRule())
            patterns.input_pattern = attrs.get("input_pattern")
            patterns.prompt_pattern = attrs.get("prompt_pattern")
            self._patterns = patterns
        self._has_answer = "answer" in attrs

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        spec: LaunchSpec = self._base.launch(ctx)
        spec.env.update(self._env)
        return spec

    def classify(self, screen: str) -> AgentStatus:
        return self.classify_rule(screen).status

    def classify_rule(self, screen: str) -> Classification:
        if self._patterns is not None and self._rules:
            s = Screen(screen)
            if s.lines and exited_to_shell(s) is None:
                result = self._patterns.match_rules(s)
                if not result.rule.startswith("no rule matched"):
                    return Classification(result.status, f"{self.name} (user rule): {result.rule}")
        base = self._base.classify_rule(screen)
        return Classification(base.status, f"{self._base.name}: {base.rule}")

    def extract_answer(self, screen: str) -> Optional[str]:
        if self._patterns is not None and self._has_answer:
            return self._patterns.extract_answer(screen)
        return self._base.extract_answer(screen)

    def read_answer(self, agent_dir: Path) -> Optional[str]:
        return self._base.read_answer(agent_dir)

    def startup_action(self, screen: str, options: dict[str, Any]) -> Optional[StartupAction]:
        s = Screen(screen)
        for dialog in self._dialogs:
            if any(dialog.pattern.search(line) for line in s.tail(dialog.window)):
                return StartupAction(rule=dialog.rule, keys=dialog.keys, fail=dialog.fail)
        return self._base.startup_action(screen, options)

    def hook_event(self, source: str, payload: Any, turn_text: Optional[str]) -> Optional[HookEvent]:
        return self._base.hook_event(source, payload, turn_text)


def provider_files(directories: list[Path]) -> list[Path]:
    """Provider files, highest priority first (the first file for a name wins)."""
    files: list[Path] = []
    for directory in directories:
        if directory.is_dir():
            files += sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file())
    return files
