"""Relays a CLI's event to the sidecar: the program behind Codex `notify`, Gemini CLI, Qwen Code
and Kiro CLI hooks.

Run by path (`python /…/hook_relay.py --url URL --token-file FILE [--stdin] [--quiet]`), so it
imports nothing of the package: standard library only, about 30 ms. The payload is the last
argument (Codex passes its notification JSON as one argv) or standard input (`--stdin`, hooks).
It POSTs the payload to the sidecar's hook endpoint with the agent's own bearer token (read from
the agent's 0600 credential file, never from the command line) and always exits 0 quickly: a
hook must never break or stall the CLI. With `--stdin` it prints `{}` (an empty hook reply)
unless `--quiet`: Kiro CLI adds a hook's standard output to the model's context.

Gemini CLI's AfterAgent `prompt_response` is not the answer when the model streamed it in pieces
(0.61 joins its stream chunks with spaces and repeats all but the first: "a b c b  c"); its
transcript (`transcript_path`, a JSONL file of the session) has the answer as one message. The
relay adds that as `cao_answer` (the model's messages after the user's `prompt`), read here
with the CLI's own rights, so the sidecar never opens a path an agent names.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

TIMEOUT = 5.0
MAX_PAYLOAD = 4 * 1024 * 1024
TRANSCRIPT_TAIL = 2 * 1024 * 1024


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def transcript_answer(transcript: str, prompt: str) -> str | None:
    """The model's text after the last user message that is `prompt`, from a Gemini CLI session
    transcript (JSONL: one message a line, `type` user | gemini, `content` text or parts)."""
    with open(transcript, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - TRANSCRIPT_TAIL))
        lines = handle.read().decode("utf-8", "replace").splitlines()
    answer: list[str] | None = None
    for line in lines:
        try:
            message = json.loads(line)
        except ValueError:
            continue  # the first line of the tail may be cut; records that are not messages
        if not isinstance(message, dict):
            continue
        if message.get("type") == "user":
            text = _text_of(message.get("content"))
            if text == prompt:
                answer = []
            elif text:  # another input (a part without text, such as a tool's result, is none)
                answer = None
        elif message.get("type") == "gemini" and answer is not None:
            text = _text_of(message.get("content"))
            if text:
                answer.append(text)
    return "\n".join(answer) if answer else None


def with_answer(payload: bytes) -> bytes:
    """A Gemini CLI AfterAgent payload with `cao_answer` from its transcript (unchanged otherwise)."""
    try:
        data = json.loads(payload)
        if not (isinstance(data, dict) and data.get("hook_event_name") == "AfterAgent"):
            return payload
        transcript, prompt = data.get("transcript_path"), data.get("prompt")
        if not (isinstance(transcript, str) and isinstance(prompt, str)):
            return payload
        answer = transcript_answer(transcript, prompt)
    except (OSError, ValueError):
        return payload
    if answer is None:
        return payload
    data["cao_answer"] = answer
    return json.dumps(data).encode()


def main(argv: list[str]) -> int:
    url = token_file = None
    use_stdin = quiet = False
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--url":
            url = next(it, None)
        elif arg == "--token-file":
            token_file = next(it, None)
        elif arg == "--stdin":
            use_stdin = True
        elif arg == "--quiet":
            quiet = True
        else:
            rest.append(arg)
    try:
        if use_stdin:
            payload = with_answer(sys.stdin.buffer.read(MAX_PAYLOAD))
        else:
            payload = rest[-1].encode("utf-8", "surrogateescape") if rest else b""
        if url and token_file and payload:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
            request = urllib.request.Request(
                url,
                data=payload,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # loopback URL we generated
                response.read()
    except (OSError, urllib.error.URLError, ValueError):
        pass
    if use_stdin and not quiet:
        sys.stdout.write("{}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
