"""The mock agent's task grammar: the first word of a submitted input decides what the turn does.

    echo TEXT             answer TEXT (everything after "echo" and one separator, byte-exact)
    sleep SECONDS TEXT    busy for SECONDS, then answer TEXT
    hang SECONDS TEXT     like sleep, but the screen freezes (no spinner frames): a stalled CLI
    ask QUESTION          ask a yes/no question; the next input answers it: "answered: <input>"
    fail TEXT             end the turn with an error
    exit                  say goodbye and exit 0
    handoff PROFILE TASK  call the sidecar's MCP tool handoff, answer its text result
    assign PROFILE TASK   call the sidecar's MCP tool assign, answer its text result
    send TARGET MESSAGE   call the sidecar's MCP tool send_message, answer its text result
                          (handoff/assign PROFILE@HOST TASK: with the tool's `host`, e.g. box1 or main)
    merge_work WORKER     call the sidecar's MCP tool merge_work, answer its text result
    team                  call the sidecar's MCP tool list_sessions, answer its text result
    workflow NAME [K=V ...]
                          call the sidecar's MCP tool run_workflow, answer its text result
    edit PATH TEXT        write TEXT (and a newline) to PATH, relative to its working directory,
                          then answer "wrote PATH" (like a coding agent editing a file)
    edit-then-sleep SECONDS PATH TEXT
                          edit as above, then stay busy for SECONDS before answering
    anything else         answer "done: <task>"

A separator is one space, tab or newline; nothing else of the input is trimmed.
"""

from __future__ import annotations

_SEPARATORS = (" ", "\n", "\t")


class Task:
    """What a submitted input asks for. (A plain class: `typing` would cost startup time.)"""

    __slots__ = ("kind", "text", "seconds", "tool", "arguments")

    def __init__(
        self,
        kind: str,  # "answer", "sleep", "hang", "ask", "fail", "exit", "tool", "write"
        text: str = "",  # answer / question / error text
        seconds: float = 0.0,  # busy time on top of --delay-ms (sleep)
        tool: str = "",  # MCP tool name (kind "tool")
        arguments: dict[str, object] | None = None,  # MCP tool arguments (kind "tool"); path, content ("write")
    ) -> None:
        self.kind = kind
        self.text = text
        self.seconds = seconds
        self.tool = tool
        self.arguments = arguments

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Task({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Task):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # compared by value and mutable: not a dict key


def split_word(text: str) -> tuple[str, str | None]:
    """(first word, the rest after exactly one separator), rest None when there is no separator."""
    cut = -1
    for sep in _SEPARATORS:
        i = text.find(sep, 0, cut if cut >= 0 else len(text))
        if i >= 0:
            cut = i
    if cut < 0:
        return text, None
    return text[:cut], text[cut + 1 :]


def parse_task(text: str) -> Task:
    word, rest = split_word(text)
    if word == "echo":
        return Task("answer", rest or "")
    if word in ("sleep", "hang"):
        seconds_text, answer = split_word(rest or "")
        try:
            seconds = float(seconds_text)
        except ValueError:
            seconds = -1.0
        if not 0.0 <= seconds < 1e6:  # also rejects nan and inf
            return Task("fail", f"{word}: SECONDS must be a number of seconds, got {seconds_text!r}")
        return Task(word, answer or "", seconds=seconds)
    if word == "ask":
        return Task("ask", rest or "Proceed?")
    if word == "fail":
        return Task("fail", rest or "failed")
    if word in ("exit", "/exit"):
        return Task("exit")
    if word in ("handoff", "assign"):
        profile, message = split_word(rest or "")
        if not profile or message is None:
            return Task("fail", f"usage: {word} PROFILE TASK")
        target, at, host = profile.partition("@")  # PROFILE@HOST: on that host (issue 19)
        arguments: dict[str, object] = {"target": target, "task": message}
        if at:
            arguments["host"] = host
        return Task("tool", tool=word, arguments=arguments)
    if word == "send":
        target, message = split_word(rest or "")
        if not target or message is None:
            return Task("fail", "usage: send TARGET MESSAGE")
        return Task("tool", tool="send_message", arguments={"target": target, "message": message})
    if word == "workflow":
        name, rest = split_word(rest or "")
        if not name:
            return Task("fail", "usage: workflow NAME [INPUT=VALUE ...]")
        inputs = dict(pair.partition("=")[::2] for pair in (rest or "").split())
        return Task("tool", tool="run_workflow", arguments={"name": name, "inputs": inputs})
    if word == "team":
        return Task("tool", tool="list_sessions", arguments={})
    if word == "merge_work":
        if not rest:
            return Task("fail", "usage: merge_work WORKER")
        return Task("tool", tool="merge_work", arguments={"worker": rest.strip()})
    if word in ("edit", "edit-then-sleep"):
        seconds = 0.0
        rest = rest or ""
        if word == "edit-then-sleep":
            seconds_text, rest = split_word(rest)
            try:
                seconds = float(seconds_text)
            except ValueError:
                seconds = -1.0
            if not 0.0 <= seconds < 1e6:
                return Task("fail", f"edit-then-sleep: SECONDS must be a number of seconds, got {seconds_text!r}")
        path, content = split_word(rest or "")
        if not path or content is None:
            return Task("fail", f"usage: {word} {'SECONDS ' if seconds else ''}PATH TEXT")
        return Task("write", "wrote " + path, seconds=seconds, arguments={"path": path, "content": content})
    return Task("answer", "done: " + text)


def write_file(arguments: dict[str, object]) -> str | None:
    """Do an edit task's write; the error text, or None when it worked."""
    import os

    path = str(arguments["path"])
    try:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            out.write(str(arguments["content"]) + "\n")
    except OSError as exc:
        return f"write {path}: {exc.strerror or exc}"
    return None
