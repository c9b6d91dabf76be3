"""Relays a CLI's event to the sidecar: the program behind Codex `notify` and Gemini CLI hooks.

Run by path (`python /…/hook_relay.py --url URL --token-file FILE [--stdin]`), so it imports
nothing of the package: standard library only, about 30 ms. The payload is the last argument
(Codex passes its notification JSON as one argv) or standard input (`--stdin`, Gemini hooks).
It POSTs the payload to the sidecar's hook endpoint with the agent's own bearer token (read from
the agent's 0600 credential file, never from the command line) and always exits 0 quickly: a
hook must never break or stall the CLI. On standard output it prints `{}` (an empty hook reply).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT = 5.0
MAX_PAYLOAD = 4 * 1024 * 1024


def main(argv: list[str]) -> int:
    url = token_file = None
    use_stdin = False
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--url":
            url = next(it, None)
        elif arg == "--token-file":
            token_file = next(it, None)
        elif arg == "--stdin":
            use_stdin = True
        else:
            rest.append(arg)
    try:
        if use_stdin:
            payload = sys.stdin.buffer.read(MAX_PAYLOAD)
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
    if use_stdin:
        sys.stdout.write("{}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
