"""Terminal layer against a real tmux (each test on its own ``-L cao-test-*`` socket).

Run from the checkout: ``python -m pytest tests/test_terminal.py -q``
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import random
import secrets
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from cao_sidecar.terminal import PaneGone, PaneInfo, TmuxError, TmuxServer
from cao_sidecar.terminal.quoting import format_escape, quote, quote_format, unescape_output
from cao_sidecar.terminal.tmux import PLACEHOLDER_WINDOW

ROOT = Path(__file__).resolve().parent.parent
TMUX = shutil.which("tmux") or "/usr/bin/tmux"
pytestmark = pytest.mark.skipif(not os.path.exists(TMUX), reason="tmux not installed")

# ---------------------------------------------------------------- pane programs

# Writes its argv, environment, cwd, pid and terminal size as JSON, then exits.
PROBE = r"""
import json, os, sys
out = os.environ["CAO_PROBE_OUT"]
try:
    size = list(os.get_terminal_size(1))
except OSError:
    size = None
data = {"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd(), "pid": os.getpid(), "size": size}
with open(out + ".tmp", "w") as f:
    json.dump(data, f)
os.rename(out + ".tmp", out)
"""

# Raw-mode reader with bracketed paste on: every byte received goes to OUT.log, and
# each bracketed paste's content to OUT.<n>. Prints READY once the mode is set.
RAW_READER = r"""
import os, sys, tty
out = sys.argv[1]
tty.setraw(0)
os.write(1, b"\x1b[?2004hREADY\r\n")
log = open(out + ".log", "ab", buffering=0)
buf = bytearray(); n = 0; scan = 0
while True:
    d = os.read(0, 1 << 16)
    if not d:
        break
    log.write(d)
    buf += d
    while True:
        s = buf.find(b"\x1b[200~")
        if s < 0:
            break
        e = buf.find(b"\x1b[201~", max(s + 6, scan))
        if e < 0:
            scan = max(len(buf) - 6, s + 6)
            break
        n += 1
        with open("%s.%d.tmp" % (out, n), "wb") as f:
            f.write(buf[s + 6:e])
        os.rename("%s.%d.tmp" % (out, n), "%s.%d" % (out, n))
        del buf[:e + 6]
        scan = 0
"""

# Prints a line each time a line arrives on the FIFO (for output latency).
FIFO_PRINTER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.write(1, b"printer up\r\n")
buf = b""
while True:
    buf += os.read(fd, 4096)
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        os.write(1, b"tick " + line + b"\r\n")
"""


# ---------------------------------------------------------------- helpers


@pytest.fixture
async def tmux_srv():
    srv = TmuxServer(f"cao-test-{secrets.token_hex(4)}", tmux_bin=TMUX)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.kill_server()
        assert not os.path.exists(srv.socket_path)


async def wait_until(pred, timeout: float = 5.0, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {pred}")
        await asyncio.sleep(interval)


async def wait_screen(srv: TmuxServer, pane_id: str, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = await srv.capture(pane_id)
        if text in screen:
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not on screen of {pane_id}:\n{screen}")
        await asyncio.sleep(0.02)


def tmux_cli(srv: TmuxServer, *args: str) -> str:
    """A separate tmux client (a fork), to look at the server from outside."""
    return subprocess.run([TMUX, "-L", srv.socket_name, *args], capture_output=True, text=True, check=True, timeout=10).stdout


async def start_raw_reader(srv: TmuxServer, tmp_path: Path, session: str = "paste") -> tuple[PaneInfo, Path]:
    out = tmp_path / "recv"
    pane = await srv.new_window(session, "reader", [sys.executable, "-c", RAW_READER, str(out)], env={}, cwd=str(tmp_path))
    await wait_screen(srv, pane.pane_id, "READY")
    return pane, out


# ---------------------------------------------------------------- quoting (pure)


def test_quote_is_one_line_and_escapes_specials():
    q = quote("a\"b\\c$d~e\nf\tg\x1bh\x7fi#j;k{l}m'n é😀")
    assert "\n" not in q and "\t" not in q and "\x1b" not in q and "\x7f" not in q
    assert q == '"a\\"b\\\\c\\$d\\176e\\012f\\011g\\033h\\177i#j;k{l}m\'n é😀"'
    assert quote("") == '""'
    assert quote_format("a#b") == '"a##b"' and format_escape("##") == "####"
    assert quote("x\udcff") == '"x\\377"'  # surrogateescape byte -> octal
    with pytest.raises(ValueError):
        quote("nul\x00")
    with pytest.raises(ValueError):
        quote("\ud800")


def test_unescape_output():
    assert unescape_output(b"hello\\015\\012") == b"hello\r\n"
    assert unescape_output(b"back\\134slash") == b"back\\slash"
    assert unescape_output(b"plain") == b"plain"


async def test_quote_round_trips_through_tmux_parser(tmux_srv: TmuxServer, tmp_path: Path):
    """set-option with a quoted value, read back with show-option: byte-identical."""
    await tmux_srv.new_window("q", "w", ["sleep", "60"], env={}, cwd=str(tmp_path))
    client = tmux_srv._pool.live("q")
    assert client is not None
    values = [
        "",
        "plain",
        "~",
        "~/start",
        "mid~dle",
        "$HOME ${HOME} $",
        "\\ \\\\ \\n \\$",
        "\"double\" 'single'",
        "trailing;",
        "; leading",
        "-leading-dash",
        "#{pane_id} ## #",
        "{ braces }",
        "tab\there cr\rhere esc\x1b[31m del\x7f bell\x07",
        "line1\nline2\n",
        "unicode é 中文 😀 \u200b",
        "%output %1 x",
        "%end 1 2 1",
        "x" * 20000,
    ]
    for value in values:
        await client.command(f"set-option -g @cao_q {quote(value)}")
        lines = await client.command("show-option -gv @cao_q")
        assert b"\n".join(lines) == value.encode(), value[:80]
    # octal escapes carry arbitrary (non-UTF-8) bytes too
    raw = b"\xff\x80ok".decode("utf-8", "surrogateescape")
    await client.command(f"set-option -g @cao_q {quote(raw)}")
    assert await client.command("show-option -gv @cao_q") == [b"\xff\x80ok"]


# ---------------------------------------------------------------- new_window


NASTY_ARGS = [
    "plain",
    "",
    "with space",
    "trailing;",
    ";",
    "\\;",
    "-x",
    "--",
    "$(echo pwned)",
    "`id`",
    "$HOME",
    "${PATH}",
    "~",
    "~/x",
    "#{pane_id}",
    "##",
    "{",
    "}",
    "'single' \"double\"",
    "back\\slash",
    "new\nline",
    "tab\tcr\r",
    "esc\x1b[0m",
    "é 中文 😀",
    "Enter",
    "C-c",
    "y" * 50000,
]


async def test_new_window_argv_env_cwd_literal(tmux_srv: TmuxServer, tmp_path: Path):
    weird = tmp_path / "dir #1 with 'q' \"dq\" $HOME ~x ;{} é"
    weird.mkdir()
    out = tmp_path / "probe.json"
    env = {
        "CAO_PROBE_OUT": str(out),
        "CAO_DOLLAR": "$HOME and ${PATH} and $(id)",
        "CAO_SEMI": "a;b;",
        "CAO_QUOTES": "'s' \"d\" `b`",
        "CAO_NL": "line1\nline2\r\ttab",
        "CAO_HASH": "#{pane_id} ##",
        "CAO_TILDE": "~",
        "CAO_BACKSLASH": "\\n \\\\",
        "CAO_UNI": "é😀",
        "CAO_EMPTY": "",
    }
    pane = await tmux_srv.new_window(
        "sess #1 ;{x} é", "win #1 'q' $x ; 😀", [sys.executable, "-c", PROBE, *NASTY_ARGS], env=env, cwd=str(weird)
    )
    assert pane.pane_id.startswith("%") and pane.window_id.startswith("@") and pane.pid > 0
    assert (pane.session, pane.window_name, pane.dead, pane.dead_status) == ("sess #1 ;{x} é", "win #1 'q' $x ; 😀", False, None)
    await wait_until(out.exists)
    data = json.loads(out.read_text())
    assert data["argv"] == NASTY_ARGS
    for key, value in env.items():
        assert data["env"][key] == value, key
    assert data["cwd"] == str(weird)
    assert data["pid"] == pane.pid  # exec'd directly: no shell in between
    assert data["size"] == [220, 50]
    listed = {p.pane_id: p for p in await tmux_srv.list_panes()}
    assert listed[pane.pane_id].session == "sess #1 ;{x} é"
    assert listed[pane.pane_id].window_name == "win #1 'q' $x ; 😀"


async def test_single_element_argv_is_not_run_by_a_shell(tmux_srv: TmuxServer, tmp_path: Path):
    script = tmp_path / "run me; $(x) #1.py"
    script.write_text(f"#!{sys.executable}\n{PROBE}")
    script.chmod(0o755)
    out = tmp_path / "single.json"
    pane = await tmux_srv.new_window("s", "w", [str(script)], env={"CAO_PROBE_OUT": str(out)}, cwd=str(tmp_path))
    await wait_until(out.exists)
    data = json.loads(out.read_text())
    assert data["argv"] == [] and data["pid"] == pane.pid


async def test_new_window_errors(tmux_srv: TmuxServer, tmp_path: Path):
    with pytest.raises(TmuxError):
        await tmux_srv.new_window("s", "w", ["true"], env={}, cwd=str(tmp_path / "missing"))
    for bad_session in ("a:b", "a.b", "", "x\ny"):
        with pytest.raises(ValueError):
            await tmux_srv.new_window(bad_session, "w", ["true"], env={}, cwd=str(tmp_path))
    with pytest.raises(ValueError):
        await tmux_srv.new_window("s", "w", [], env={}, cwd=str(tmp_path))
    with pytest.raises(ValueError):
        await tmux_srv.new_window("s", "w", ["true"], env={"A=B": "x"}, cwd=str(tmp_path))


async def test_concurrent_new_windows_share_one_session(tmux_srv: TmuxServer, tmp_path: Path):
    panes = await asyncio.gather(
        *(tmux_srv.new_window("crowd", f"w{i}", ["sleep", "60"], env={}, cwd=str(tmp_path)) for i in range(6))
    )
    assert len({p.pane_id for p in panes}) == 6
    listed = await tmux_srv.list_panes()
    assert sorted(p.window_name for p in listed) == [f"w{i}" for i in range(6)]
    windows = tmux_cli(tmux_srv, "list-windows", "-a", "-F", "#{window_name}").split()
    assert windows.count(PLACEHOLDER_WINDOW) == 1  # kept, never listed as a pane
    assert tmux_cli(tmux_srv, "list-sessions", "-F", "#{session_name}").split() == ["crowd"]


async def test_killing_every_window_of_a_session_leaves_the_server_up(tmux_srv: TmuxServer, tmp_path: Path):
    """tmux 3.3a-3.6 (issue 5243) crash the whole server when a session is destroyed while a
    control client is attached and a session-window-changed notification is queued: killing the
    current window and then the last one was enough (it took every agent down with it)."""
    other = await tmux_srv.new_window("bystander", "b", ["sleep", "60"], env={}, cwd=str(tmp_path))
    server_pid = tmux_cli(tmux_srv, "display-message", "-p", "#{pid}").strip()
    for _round in range(3):
        panes = [await tmux_srv.new_window("team", f"w{i}", ["sleep", "60"], env={}, cwd=str(tmp_path)) for i in range(3)]
        tmux_cli(tmux_srv, "select-window", "-t", panes[0].pane_id)
        # At once, the current window first: tmux runs them in one go, before queued notifications.
        await asyncio.gather(*(tmux_srv.kill_window(pane.pane_id) for pane in panes))
        assert [p.window_name for p in await tmux_srv.list_panes()] == ["b"]
    assert tmux_cli(tmux_srv, "display-message", "-p", "#{pid}").strip() == server_pid
    assert await tmux_srv.capture(other.pane_id) is not None


# ---------------------------------------------------------------- paste_text / send_keys

PASTES = [
    "say \"hi\" and 'bye'",
    "trailing semicolon;",
    "$(touch /tmp/cao-pwned) `id` $HOME ${PATH}",
    "-x --leading-dash",
    "Enter",
    "C-c",
    "Escape",
    "esc seqs \x1b[A \x1bOP \x1b[31mred\x1b[0m \x1b",
    "unicode é 中文 😀 \u200b",
    "line1\nline2\n\nline4\r\nend",
    "#{pane_id} ## ~ \\ \\n {a;b} %begin",
    "tab\t ctrl-c \x03 ctrl-d \x04 del \x7f",
    " leading and trailing spaces ",
    "\n",
]


async def test_paste_text_byte_exact(tmux_srv: TmuxServer, tmp_path: Path):
    pane, out = await start_raw_reader(tmux_srv, tmp_path)
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz ;$`'\"\\#{}~-\n\té😀中"
    big20k = "".join(rng.choice(alphabet) for _ in range(20 * 1024))
    big1m = "".join(rng.choice(alphabet) for _ in range(1024 * 1024))
    payloads = [*PASTES, big20k, big1m]
    for n, text in enumerate(payloads, 1):
        await tmux_srv.paste_text(pane.pane_id, text)
        target = Path(f"{out}.{n}")
        await wait_until(target.exists, timeout=30)
        got = target.read_bytes()
        assert got == text.encode(), (n, text[:60], got[:60])
    assert not Path(f"{out}.{len(payloads) + 1}").exists()
    # the temporary buffers are gone (paste-buffer -d)
    assert tmux_cli(tmux_srv, "list-buffers") == ""


async def test_paste_unbracketed_and_send_keys(tmux_srv: TmuxServer, tmp_path: Path):
    pane, out = await start_raw_reader(tmux_srv, tmp_path)
    log = Path(f"{out}.log")
    await tmux_srv.paste_text(pane.pane_id, "plain;", bracketed=False)
    await tmux_srv.send_keys(pane.pane_id, "a", "Enter", "C-c", "Escape", "#", "~", ";", "#{pane_id}", "$HOME")
    expected = b"plain;a\r\x03\x1b#~;#{pane_id}$HOME"
    await wait_until(lambda: log.exists() and log.read_bytes() == expected)
    await tmux_srv.send_keys(pane.pane_id)  # no keys: no-op


async def test_dead_pane_refuses_input_and_keeps_its_screen(tmux_srv: TmuxServer, tmp_path: Path):
    exits: list[tuple[str, int | None]] = []
    tmux_srv.add_exit_listener(lambda p, s: exits.append((p, s)))
    other = await tmux_srv.new_window("d", "other", ["sleep", "60"], env={}, cwd=str(tmp_path))
    pane = await tmux_srv.new_window(
        # (the sleep: tmux 3.3a sometimes drops the last output of a process that exits
        # within a few ms of printing it, when it handles SIGCHLD before the pty read)
        "d",
        "dying",
        ["sh", "-c", "printf 'first line\\nlast words\\n'; sleep 0.2; exit 3"],
        env={},
        cwd=str(tmp_path),
    )
    await wait_until(lambda: exits)
    assert exits == [(pane.pane_id, 3)]
    screen = await tmux_srv.capture(pane.pane_id)
    assert screen == "first line\nlast words"  # remain-on-exit, and no "Pane is dead" line
    with pytest.raises(PaneGone):
        await tmux_srv.paste_text(pane.pane_id, "hello")
    with pytest.raises(PaneGone):
        await tmux_srv.send_keys(pane.pane_id, "Enter")
    # Bypass our own record: tmux itself must refuse (paste into a dead pane crashes tmux 3.3a).
    tmux_srv._panes._reported.discard(pane.pane_id)
    with pytest.raises(PaneGone):
        await tmux_srv.paste_text(pane.pane_id, "hello")
    with pytest.raises(PaneGone):
        await tmux_srv.paste_text(pane.pane_id, "")
    # the server survived and the other agent is fine
    listed = {p.pane_id: p for p in await tmux_srv.list_panes()}
    assert listed[other.pane_id].dead is False
    assert listed[pane.pane_id].dead is True and listed[pane.pane_id].dead_status == 3


async def test_missing_pane_raises_pane_gone(tmux_srv: TmuxServer, tmp_path: Path):
    await tmux_srv.new_window("m", "w", ["sleep", "60"], env={}, cwd=str(tmp_path))
    with pytest.raises(PaneGone):
        await tmux_srv.capture("%9999")
    with pytest.raises(PaneGone):
        await tmux_srv.paste_text("%9999", "x")
    with pytest.raises(PaneGone):
        await tmux_srv.send_keys("%9999", "Enter")
    await tmux_srv.kill_window("%9999")  # no error
    with pytest.raises(ValueError):
        await tmux_srv.capture("9999")


# ---------------------------------------------------------------- events


async def test_output_listener_latency(tmux_srv: TmuxServer, tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    seen: dict[str, float] = {}
    event = asyncio.Event()

    def on_output(pane_id: str) -> None:
        seen.setdefault(pane_id, time.monotonic())
        event.set()

    def broken(pane_id: str) -> None:
        raise RuntimeError("a failing listener must not break the reader")

    tmux_srv.add_output_listener(broken)
    tmux_srv.add_output_listener(on_output)
    pane = await tmux_srv.new_window("out", "p", [sys.executable, "-c", FIFO_PRINTER, str(fifo)], env={}, cwd=str(tmp_path))
    await wait_screen(tmux_srv, pane.pane_id, "printer up")
    await asyncio.sleep(0.05)
    wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    latencies = []
    try:
        for i in range(20):
            seen.clear()
            event.clear()
            t0 = time.monotonic()
            os.write(wfd, f"{i}\n".encode())
            await asyncio.wait_for(event.wait(), 5)
            latencies.append(seen[pane.pane_id] - t0)
            await asyncio.sleep(0.01)
    finally:
        os.close(wfd)
    med = statistics.median(latencies)
    print(f"output->callback latency: median {med * 1000:.2f} ms, max {max(latencies) * 1000:.2f} ms")
    assert med < 0.05
    assert "tick 19" in await tmux_srv.capture(pane.pane_id)


async def test_two_sessions_both_deliver_output(tmux_srv: TmuxServer, tmp_path: Path):
    seen: set[str] = set()
    tmux_srv.add_output_listener(seen.add)
    a = await tmux_srv.new_window("alpha", "a", ["sh", "-c", "sleep 0.2; echo alpha; sleep 60"], env={}, cwd=str(tmp_path))
    b = await tmux_srv.new_window("beta", "b", ["sh", "-c", "sleep 0.2; echo beta; sleep 60"], env={}, cwd=str(tmp_path))
    await wait_until(lambda: {a.pane_id, b.pane_id} <= seen)
    assert tmux_srv._pool.clients["alpha"].pid != tmux_srv._pool.clients["beta"].pid


async def test_exit_listener_statuses(tmux_srv: TmuxServer, tmp_path: Path):
    exits: dict[str, int | None] = {}
    times: dict[str, float] = {}

    def on_exit(pane_id: str, status: int | None) -> None:
        exits[pane_id] = status
        times[pane_id] = time.monotonic()

    tmux_srv.add_exit_listener(on_exit)
    ok = await tmux_srv.new_window("x", "ok", ["true", "ignored"], env={}, cwd=str(tmp_path))
    seven = await tmux_srv.new_window("x", "seven", ["sh", "-c", "sleep 0.3; exit 7"], env={}, cwd=str(tmp_path))
    killed = await tmux_srv.new_window("x", "killed", ["sh", "-c", "sleep 0.3; kill -9 $$"], env={}, cwd=str(tmp_path))
    t0 = time.monotonic()
    for pane in (ok, seven, killed):  # an exit before new_window returned is in its answer, not an event
        if pane.dead:
            assert pane.pane_id not in exits
            exits[pane.pane_id] = pane.dead_status
    await wait_until(lambda: len(exits) == 3)
    assert exits == {ok.pane_id: 0, seven.pane_id: 7, killed.pane_id: 128 + 9}
    print(f"exit event latency after a 0.3 s process: {(times[seven.pane_id] - t0 - 0.3) * 1000:.1f} ms")
    await asyncio.sleep(0.1)
    assert len(exits) == 3  # reported once each


async def test_command_not_found_is_a_dead_pane(tmux_srv: TmuxServer, tmp_path: Path):
    exits: list[tuple[str, int | None]] = []
    tmux_srv.add_exit_listener(lambda p, s: exits.append((p, s)))
    pane = await tmux_srv.new_window("nf", "w", ["/nonexistent/agent-cli", "--flag"], env={}, cwd=str(tmp_path))
    if pane.dead:
        assert pane.dead_status not in (None, 0)
    else:  # lost the race against new_window's answer: then it is an event
        await wait_until(lambda: exits)
        assert exits[0][0] == pane.pane_id and exits[0][1] not in (None, 0)
    await asyncio.sleep(0.1)
    assert len(exits) == (0 if pane.dead else 1)
    with pytest.raises(PaneGone):
        await tmux_srv.paste_text(pane.pane_id, "hello")


async def test_exit_while_a_background_child_holds_the_pty(tmux_srv: TmuxServer, tmp_path: Path):
    exits: list[tuple[str, int | None]] = []
    tmux_srv.add_exit_listener(lambda p, s: exits.append((p, s)))
    pane = await tmux_srv.new_window("bg", "w", ["sh", "-c", "sleep 30 & sleep 0.1; exit 6"], env={}, cwd=str(tmp_path))
    await wait_until(lambda: exits, timeout=5)
    assert exits == [(pane.pane_id, 6)]


async def test_exit_without_pidfd_uses_slow_check(tmux_srv: TmuxServer, tmp_path: Path, monkeypatch):
    import cao_sidecar.terminal.exits as exits_mod

    def no_pidfd(pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(exits_mod.os, "pidfd_open", no_pidfd)
    monkeypatch.setattr(exits_mod, "FALLBACK_INTERVAL", 0.1)
    exits: list[tuple[str, int | None]] = []
    tmux_srv.add_exit_listener(lambda p, s: exits.append((p, s)))
    keep = await tmux_srv.new_window("fb", "keep", ["sleep", "60"], env={}, cwd=str(tmp_path))
    pane = await tmux_srv.new_window("fb", "w", ["sh", "-c", "sleep 0.2; exit 9"], env={}, cwd=str(tmp_path))
    await wait_until(lambda: exits, timeout=5)
    assert exits == [(pane.pane_id, 9)]
    assert tmux_srv._exits.watching_slowly(keep.pane_id)  # still watched, still alive


async def test_a_late_exit_of_a_killed_servers_pane_is_not_its_successors(tmux_srv: TmuxServer, tmp_path: Path):
    """A restarted tmux server numbers panes from %0 again. The exit of a pane that went with the
    killed server, confirmed only after a new pane got its id, is not the new pane's exit."""
    exits: list[tuple[str, int | None]] = []
    tmux_srv.add_exit_listener(lambda p, s: exits.append((p, s)))
    old = await tmux_srv.new_window("r", "old", ["sleep", "60"], env={}, cwd=str(tmp_path))
    tmux_cli(tmux_srv, "kill-server")
    await wait_until(lambda: exits, timeout=5)  # its exit, seen at once
    assert exits == [(old.pane_id, None)]
    new = await tmux_srv.new_window("r", "new", ["cat"], env={}, cwd=str(tmp_path))
    assert new.pane_id == old.pane_id and new.pid != old.pid
    # The old pane's exit confirmed again late (as a slow confirmation does on a loaded machine):
    await tmux_srv._exits.confirm(old.pane_id, old.pid)
    await asyncio.sleep(0.1)
    assert exits == [(old.pane_id, None)]  # nothing about the new pane
    await tmux_srv.paste_text(new.pane_id, "still mine", bracketed=False)
    await wait_screen(tmux_srv, new.pane_id, "still mine")
    await tmux_srv.kill_window(new.pane_id, pid=old.pid)  # the old pane's window is gone already
    assert [p.pane_id for p in await tmux_srv.list_panes()] == [new.pane_id]
    os.kill(new.pid, signal.SIGKILL)
    await wait_until(lambda: len(exits) == 2, timeout=5)  # the new pane's own exit is still seen
    assert exits[1][0] == new.pane_id


async def test_kill_window(tmux_srv: TmuxServer, tmp_path: Path):
    exits: list[str] = []
    tmux_srv.add_exit_listener(lambda p, s: exits.append(p))
    keep = await tmux_srv.new_window("k", "keep", ["sleep", "60"], env={}, cwd=str(tmp_path))
    doomed = await tmux_srv.new_window("k", "doomed", ["sleep", "60"], env={}, cwd=str(tmp_path))
    await tmux_srv.kill_window(doomed.pane_id)
    await tmux_srv.kill_window(doomed.pane_id)  # already gone: fine
    assert [p.pane_id for p in await tmux_srv.list_panes()] == [keep.pane_id]
    with pytest.raises(PaneGone):
        await tmux_srv.capture(doomed.pane_id)
    await asyncio.sleep(0.2)
    assert exits == []  # no exit event for a window we killed


async def test_a_new_window_cancelled_before_its_answer_leaves_no_window(tmux_srv: TmuxServer, tmp_path: Path):
    """Cancelled after tmux made the window but before its answer was read: the caller never
    learns the pane, so new_window closes the window itself."""
    await tmux_srv.new_window("c", "keep", ["sleep", "60"], env={}, cwd=str(tmp_path))

    def names() -> list[str]:
        return tmux_cli(tmux_srv, "list-windows", "-a", "-F", "#{window_name}").split()

    opening = asyncio.ensure_future(tmux_srv.new_window("c", "cancelled", ["sleep", "60"], env={}, cwd=str(tmp_path)))
    deadline = time.monotonic() + 10
    while "cancelled" not in names():
        assert time.monotonic() < deadline, "tmux never made the window"
        await asyncio.sleep(0)  # lets the command be written; then a blocking wait keeps its answer unread
        for _ in range(20):
            if "cancelled" in names():
                break
            time.sleep(0.005)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert "cancelled" not in names() and "keep" in names()
    assert [p.window_name for p in await tmux_srv.list_panes()] == ["keep"]


async def test_an_exit_while_the_answer_is_on_its_way_is_part_of_the_answer(tmux_srv: TmuxServer, tmp_path: Path, monkeypatch):
    """The window is made in a task of its own: an exit seen after that task ended but before
    the caller has its pane is still answered (dead), not an event for a pane nobody knows yet."""
    exits: list[str] = []
    tmux_srv.add_exit_listener(lambda p, s: exits.append(p))
    open_window = tmux_srv._open_window

    async def exit_seen_on_the_way(*args):
        pane = await open_window(*args)
        # Runs after this task ends and before new_window's caller resumes.
        asyncio.get_running_loop().call_soon(tmux_srv._panes.report_exit, pane.pane_id, 7, pane.pid)
        return pane

    monkeypatch.setattr(tmux_srv, "_open_window", exit_seen_on_the_way)
    pane = await tmux_srv.new_window("e", "w", ["sleep", "60"], env={}, cwd=str(tmp_path))
    assert (pane.dead, pane.dead_status) == (True, 7)
    await asyncio.sleep(0.1)
    assert exits == []


async def test_window_closed_by_someone_else_is_an_exit(tmux_srv: TmuxServer, tmp_path: Path):
    exits: list[tuple[str, int | None]] = []
    tmux_srv.add_exit_listener(lambda p, s: exits.append((p, s)))
    await tmux_srv.new_window("h", "keep", ["sleep", "60"], env={}, cwd=str(tmp_path))
    pane = await tmux_srv.new_window("h", "victim", ["sleep", "60"], env={}, cwd=str(tmp_path))
    tmux_cli(tmux_srv, "kill-window", "-t", pane.pane_id)
    await wait_until(lambda: exits)
    assert exits == [(pane.pane_id, None)]


async def test_session_recreated_after_someone_kills_it(tmux_srv: TmuxServer, tmp_path: Path):
    await tmux_srv.new_window("again", "w", ["sleep", "60"], env={}, cwd=str(tmp_path))
    client = tmux_srv._pool.clients["again"]
    tmux_cli(tmux_srv, "kill-session", "-t", "=again")  # our client gets %exit
    await asyncio.wait_for(client.wait_closed(), 5)
    assert not client.alive
    assert await tmux_srv.list_panes() == []
    second = await tmux_srv.new_window("again", "w", ["sleep", "60"], env={}, cwd=str(tmp_path))
    assert [p.pane_id for p in await tmux_srv.list_panes()] == [second.pane_id]
    seen: set[str] = set()
    tmux_srv.add_output_listener(seen.add)
    await tmux_srv.send_keys(second.pane_id, "x")  # echoed by the tty: output event
    await wait_until(lambda: second.pane_id in seen)


async def test_capture_history(tmux_srv: TmuxServer, tmp_path: Path):
    pane = await tmux_srv.new_window(
        "hist",
        "w",
        ["sh", "-c", "i=1; while [ $i -le 200 ]; do echo line-$i; i=$((i+1)); done; echo DONE; sleep 60"],
        env={},
        cwd=str(tmp_path),
    )
    screen = await wait_screen(tmux_srv, pane.pane_id, "DONE")
    assert "line-1\n" not in screen and "line-200" in screen
    assert len(screen.splitlines()) <= 50
    full = await tmux_srv.capture(pane.pane_id, history=True)
    lines = full.splitlines()
    assert lines[:2] == ["line-1", "line-2"] and lines[-1] == "DONE"
    long = await tmux_srv.new_window("hist", "long", ["sh", "-c", "printf '%0500d\\n' 0; sleep 60"], env={}, cwd=str(tmp_path))
    screen = await wait_screen(tmux_srv, long.pane_id, "0000")
    assert screen.splitlines()[0] == "0" * 500  # wrapped line joined


async def test_rows_and_cursor(tmux_srv: TmuxServer, tmp_path: Path):
    # A wrapped line stays two rows (the cursor's numbering); the cursor first sits after the text
    # on its row, then, after a newline, on the blank row below every row with text.
    pane = await tmux_srv.new_window(
        "cur",
        "w",
        ["sh", "-c", "printf '%0300d\\n> typed'; sleep 2; printf '\\n'; sleep 60"],
        env={},
        cwd=str(tmp_path),
    )
    await wait_screen(tmux_srv, pane.pane_id, "> typed")
    rows, cursor = await tmux_srv.rows_and_cursor(pane.pane_id)
    w = tmux_srv.default_size[0]
    assert rows == ["0" * w, "0" * (300 - w), "> typed"] and cursor == (7, 2)
    await wait_until(lambda: tmux_cli(tmux_srv, "display", "-p", "-t", pane.pane_id, "#{cursor_y}").strip() == "3")
    assert await tmux_srv.rows_and_cursor(pane.pane_id) == (rows, (0, 3))
    with pytest.raises(PaneGone):
        await tmux_srv.rows_and_cursor("%9999")


# ---------------------------------------------------------------- lifetime


async def test_close_keeps_server_and_windows(tmux_srv: TmuxServer, tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    printer = await tmux_srv.new_window(
        "keep", "printer", [sys.executable, "-c", FIFO_PRINTER, str(fifo)], env={}, cwd=str(tmp_path)
    )
    other = await tmux_srv.new_window(
        "keep2", "sleeper", ["sh", "-c", "echo still here; read x; exit 4"], env={}, cwd=str(tmp_path)
    )
    await wait_screen(tmux_srv, printer.pane_id, "printer up")
    client_pids = [c.pid for c in tmux_srv._pool.clients.values()]
    await tmux_srv.close()
    for pid in client_pids:  # our control clients are gone ...
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    # ... and the server and windows are not
    alive = tmux_cli(tmux_srv, "list-panes", "-a", "-F", "#{pane_id} #{pane_dead}").split("\n")
    assert f"{printer.pane_id} 0" in alive and f"{other.pane_id} 0" in alive

    again = TmuxServer(tmux_srv.socket_name, tmux_bin=TMUX)
    seen: set[str] = set()
    exits: list[tuple[str, int | None]] = []
    again.add_output_listener(seen.add)
    again.add_exit_listener(lambda p, s: exits.append((p, s)))
    try:
        panes = {p.pane_id: p for p in await again.list_panes()}
        assert set(panes) == {printer.pane_id, other.pane_id}
        assert panes[other.pane_id].session == "keep2" and panes[other.pane_id].window_name == "sleeper"
        assert "still here" in await again.capture(other.pane_id)
        # adopted: output events and exit events work for panes we did not create
        wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(wfd, b"adopted\n")
        os.close(wfd)
        await wait_until(lambda: printer.pane_id in seen)
        await again.paste_text(other.pane_id, "bye\n", bracketed=False)
        await wait_until(lambda: exits)
        assert exits == [(other.pane_id, 4)]
    finally:
        await again.close()


SIDECAR = r"""
import asyncio, json, os, sys
sys.path.insert(0, sys.argv[1])
from cao_sidecar.terminal import TmuxServer
async def main():
    srv = TmuxServer(sys.argv[2])
    pane = await srv.new_window("s", "agent", ["sleep", "300"], env={}, cwd="/")
    sys.stdout.write(json.dumps({"pane": pane.pane_id, "clients": [c.pid for c in srv._pool.clients.values()]}) + "\n")
    sys.stdout.flush()
    os.kill(os.getpid(), 9)
asyncio.run(main())
"""


async def test_agents_outlive_a_killed_sidecar(tmux_srv: TmuxServer):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SIDECAR, str(ROOT), tmux_srv.socket_name, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == -signal.SIGKILL
    info = json.loads(out)

    def clients_gone() -> bool:
        for pid in info["clients"]:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().split()[2]
            except FileNotFoundError:
                continue
            if state != "Z":
                return False
        return True

    await wait_until(clients_gone)
    panes = await tmux_srv.list_panes()
    assert [(p.pane_id, p.dead) for p in panes] == [(info["pane"], False)]


async def test_windows_keep_their_size_with_control_and_human_clients(tmux_srv: TmuxServer, tmp_path: Path):
    pane = await tmux_srv.new_window("size", "w", ["sleep", "60"], env={}, cwd=str(tmp_path))

    def size() -> str:
        return tmux_cli(tmux_srv, "display-message", "-p", "-t", pane.pane_id, "#{window_width}x#{window_height}").strip()

    assert size() == "220x50"
    # a human attaches from a 100x30 terminal to watch
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    loop = asyncio.get_running_loop()
    loop.add_reader(master, lambda: os.read(master, 65536))
    human = await asyncio.create_subprocess_exec(
        TMUX,
        "-L",
        tmux_srv.socket_name,
        "attach-session",
        "-t",
        "=size",
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    try:
        await wait_until(
            lambda: (
                "100x30 0" in tmux_cli(tmux_srv, "list-clients", "-F", "#{client_width}x#{client_height} #{client_control_mode}")
            )
        )
        await asyncio.sleep(0.3)
        assert size() == "220x50"
        # a window created while the human watches gets the size too
        late = await tmux_srv.new_window("size", "late", ["sleep", "60"], env={}, cwd=str(tmp_path))
        late_size = tmux_cli(tmux_srv, "display-message", "-p", "-t", late.pane_id, "#{window_width}x#{window_height}").strip()
        assert late_size == "220x50"
    finally:
        loop.remove_reader(master)
        human.kill()
        await human.wait()
        os.close(master)
        os.close(slave)
    assert size() == "220x50"


async def test_nothing_written_to_stdout(tmux_srv: TmuxServer, tmp_path: Path, capfd):
    pane = await tmux_srv.new_window("quiet", "w", ["sh", "-c", "echo noisy; echo err >&2; exit 1"], env={}, cwd=str(tmp_path))
    await tmux_srv.capture(pane.pane_id)
    await tmux_srv.list_panes()
    other = TmuxServer(f"cao-test-missing-{secrets.token_hex(3)}", tmux_bin=TMUX)
    assert await other.list_panes() == []  # no server there: empty, no noise
    await other.close()
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


async def test_start_is_idempotent_and_reports_socket(tmux_srv: TmuxServer):
    await tmux_srv.start()
    await tmux_srv.start()
    assert tmux_srv.socket_path == f"/tmp/tmux-{os.getuid()}/{tmux_srv.socket_name}" or tmux_srv.socket_path.endswith(
        "/" + tmux_srv.socket_name
    )
    assert os.path.exists(tmux_srv.socket_path)

    def option(name: str) -> str:
        return tmux_cli(tmux_srv, "show-options", "-gv", name).strip()

    assert option("remain-on-exit") == "on" and option("history-limit") == "10000"
    assert option("remain-on-exit-format") == "" and option("default-size") == "220x50"
