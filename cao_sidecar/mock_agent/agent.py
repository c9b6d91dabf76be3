"""The mock agent: a deterministic, line-oriented TUI that behaves like the real agent CLIs.

One thread, one `select` loop over the tty (and a wake-up pipe for sidecar tool calls, which run on
a worker thread). Each loop iteration handles the input that arrived, advances timers (spinner,
end of the busy time, pending Esc), then writes everything it drew in one `write`, so that a
screen reader never sees a half-drawn state (e.g. a finalised input line without its spinner).
The transcript line of a state is written and flushed before the screen shows that state.

Stdlib only, and only cheap modules at startup (see `python -X importtime`).
"""

from __future__ import annotations

import codecs
import os
import select
import signal
import sys
import time

from cao_sidecar.mock_agent import screen
from cao_sidecar.mock_agent.keys import ESC_TIMEOUT, InputParser
from cao_sidecar.mock_agent.tasks import Task, parse_task, write_file

USAGE = (
    "usage: python -m cao_sidecar.mock_agent [--delay-ms MS] [--transcript PATH] [--profile NAME]\n"
    "environment: CAO_MOCK_STARTUP=dialog:TEXT (a question blocks the first prompt) or crash:TEXT (exit 1); "
    "CAO_MOCK_RECEIVED_LOG=PATH (append every input taken, as a transcript line, to PATH too); "
    "CAO_MOCK_DROP_INPUT=N (the first N inputs typed are lost, as a CLI still setting up drops keys)"
)

IDLE = "idle"  # prompt, reading an input
BUSY = "busy"  # a turn runs; inputs submitted now are queued
ASK = "ask"  # a question waits for its answer on the "[y/n] ›" line


class Stopped(Exception):
    """A termination signal arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Turn:
    """The running turn: it ends with `result` once `deadline` has passed and `result` is known
    (a sidecar tool call fills it in from its worker thread)."""

    __slots__ = ("deadline", "result", "frozen")

    def __init__(self, deadline: float, result: tuple[str, str] | None, frozen: bool = False) -> None:
        self.deadline = deadline
        self.result = result
        self.frozen = frozen  # draws no spinner frames (task "hang")


class Terminal:
    """Raw mode and bracketed paste on the controlling tty, undone by `restore`."""

    def __init__(self, in_fd: int, out_fd: int) -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.saved: list | None = None
        self.active = False

    def enter(self) -> None:
        import termios

        try:
            self.saved = termios.tcgetattr(self.in_fd)
        except termios.error:  # not a tty (a pipe in a test): plain streams
            self.saved = None
        if self.saved is not None:
            mode = list(self.saved)
            mode[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
            mode[1] &= ~termios.OPOST
            mode[2] = (mode[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
            mode[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
            mode[6] = list(mode[6])
            mode[6][termios.VMIN] = 1
            mode[6][termios.VTIME] = 0
            termios.tcsetattr(self.in_fd, termios.TCSANOW, mode)  # NOW: keep input typed already
        self.active = True
        _write_all(self.out_fd, b"\x1b[?2004h")

    def restore(self, final_newline: bool = False) -> None:
        if not self.active:
            return
        self.active = False
        try:
            _write_all(self.out_fd, b"\x1b[?2004l" + (b"\r\n" if final_newline else b""))
        except OSError:
            pass  # the pane is gone (SIGHUP)
        if self.saved is not None:
            import termios

            try:
                termios.tcsetattr(self.in_fd, termios.TCSANOW, self.saved)
            except termios.error:
                pass  # the tty is gone


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Agent:
    def __init__(
        self,
        profile: str = "",
        delay: float = 0.05,
        transcript_path: str | None = None,
        in_fd: int = 0,
        out_fd: int = 1,
    ) -> None:
        self.profile = profile
        self.delay = delay
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.state = IDLE
        self.input: list[str] = []  # chunks of the input being typed (prompt or ask line)
        self.queue: list[str] = []  # inputs submitted while busy
        self.turn: Turn | None = None
        self.spin = 0
        self.next_frame = 0.0
        self.dirty = False  # the input line needs a redraw
        self.out: list[str] = []  # screen output of this loop iteration
        self.exit_code: int | None = None
        self.startup_dialog = False  # CAO_MOCK_STARTUP=dialog:TEXT: a question before the prompt
        drop = os.environ.get("CAO_MOCK_DROP_INPUT", "")
        self.inputs_to_drop = int(drop) if drop.isdigit() else 0
        self.dropping = False  # text of an input being dropped arrived since the last Enter
        self.parser = InputParser()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.transcript = None
        if transcript_path:
            directory = os.path.dirname(transcript_path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            self.transcript = open(transcript_path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115 - open for the agent's life

    # ---- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.out.append(screen.banner(self.profile) + "\r\n\r\n")
        startup = os.environ.get("CAO_MOCK_STARTUP", "")
        kind, _, text = startup.partition(":")
        if kind == "crash":  # like a CLI that cannot start (no credentials, bad flag)
            self.out.append(error_line(text or "cannot start") + "\r\n")
            self.flush()
            return 1
        if kind == "dialog":  # like a trust or login dialog that blocks the first prompt
            self.startup_dialog = True
            self.state = ASK
            self.out.append(screen.block(screen.QUESTION_HEAD, text or "Do you trust this folder?"))
            self.out.append(screen.ASK_PROMPT + " ")
        else:
            self.out.append(screen.PROMPT + " ")
        self.flush()
        last_input = 0.0
        fds = [self.in_fd, self.wake_r]
        while self.exit_code is None:
            now = time.monotonic()
            deadlines = []
            if self.parser.waiting_for_more:
                deadlines.append(last_input + ESC_TIMEOUT)
            if self.turn is not None:
                deadlines.append(self.next_frame)
                if self.turn.result is not None:
                    deadlines.append(self.turn.deadline)
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            ready = select.select(fds, [], [], timeout)[0]
            now = time.monotonic()
            if self.in_fd in ready:
                try:
                    data = os.read(self.in_fd, 65536)
                except OSError:  # EIO: the pane's tty is gone
                    data = b""
                if not data:
                    self.exit_code = 0
                    break
                last_input = now
                self.handle_all(self.parser.feed(decoder.decode(data)))
            elif self.parser.waiting_for_more and now - last_input >= ESC_TIMEOUT:
                self.handle_all(self.parser.timeout())
            if self.wake_r in ready:
                try:
                    os.read(self.wake_r, 4096)  # the worker has set turn.result
                except BlockingIOError:
                    pass
            if self.exit_code is None:
                self.tick(now)
            if self.dirty and not self.parser.in_paste and self.exit_code is None:
                self.draw_input_line()
            self.flush()
        self.flush()
        return self.exit_code

    def flush(self) -> None:
        if self.out:
            data = "".join(self.out).encode("utf-8", "replace")
            self.out.clear()
            _write_all(self.out_fd, data)

    def tick(self, now: float) -> None:
        turn = self.turn
        if turn is None:
            return
        if turn.result is not None and now >= turn.deadline:
            self.finish(turn.result)
        elif now >= self.next_frame and not turn.frozen:
            self.spin += 1
            self.next_frame = now + screen.SPINNER_INTERVAL
            self.draw_spinner()

    # ---- input -------------------------------------------------------------------------------

    def handle_all(self, events: list) -> None:
        for event in events:
            if self.exit_code is not None:
                return
            self.handle(event)

    def handle(self, event: tuple) -> None:
        kind = event[0]
        if kind == "text" and self.inputs_to_drop:
            self.dropping = True  # lost: never shown, never taken
        elif kind == "enter" and self.dropping:
            self.dropping = False
            self.inputs_to_drop -= 1
        elif kind == "text":
            self.input.append(event[1])
            self.dirty = True
        elif kind == "enter":
            self.submit()
        elif kind == "backspace":
            text = self.input_text()
            if text:
                self.input = [text[:-1]]
                self.dirty = True
        elif kind in ("esc", "ctrl_c"):
            if self.state != IDLE:
                self.interrupt()
            elif kind == "ctrl_c" and self.input:
                self.input = []  # Ctrl-C clears typed text; at an empty prompt it does nothing
                self.dirty = True
        elif kind == "ctrl_d":
            if self.state == IDLE and not self.input_text():
                self.goodbye()
        # paste_start / paste_end: the text in between arrived as "text" events

    def input_text(self) -> str:
        if len(self.input) > 1:
            self.input = ["".join(self.input)]
        return self.input[0] if self.input else ""

    def submit(self) -> None:
        text = self.input_text()
        self.input = []
        self.dirty = False
        if self.state == BUSY:
            if text.strip():
                self.queue.append(text)  # like Claude Code: run after the current turn
            return
        if not text.strip():  # an empty Enter does nothing (also not on the question line)
            self.dirty = True
            return
        if self.state == ASK and self.startup_dialog:
            self.out.append(f"\r\x1b[K{screen.ASK_PROMPT} {screen.input_summary(text)}\r\n\r\n")
            self.startup_dialog = False
            self.to_prompt()
            return
        if self.state == ASK:
            self.out.append(f"\r\x1b[K{screen.ASK_PROMPT} {screen.input_summary(text)}\r\n")
            self.record("user", text)
            self.begin_turn(Turn(time.monotonic() + self.delay, ("answer", "answered: " + text)))
            return
        self.out.append(f"\r\x1b[K{screen.PROMPT} {screen.input_summary(text)}\r\n")
        self.start_task(text)

    # ---- turns -------------------------------------------------------------------------------

    def start_task(self, text: str) -> None:
        self.record("user", text)
        task = parse_task(text)
        deadline = time.monotonic() + self.delay + task.seconds
        if task.kind == "exit":
            self.goodbye()
            return
        if task.kind in ("answer", "sleep", "hang"):
            turn = Turn(deadline, ("answer", task.text), frozen=task.kind == "hang")
        elif task.kind == "write":
            error = write_file(task.arguments or {})
            turn = Turn(deadline, ("answer", task.text) if error is None else ("error", error))
        elif task.kind == "ask":
            turn = Turn(deadline, ("question", task.text))
        elif task.kind == "fail":
            turn = Turn(deadline, ("error", task.text))
        else:
            turn = Turn(deadline, None)
            self.call_tool(turn, task)
        self.begin_turn(turn)

    def begin_turn(self, turn: Turn) -> None:
        self.turn = turn
        self.state = BUSY
        self.spin = 0
        self.next_frame = time.monotonic() + screen.SPINNER_INTERVAL
        self.draw_spinner()

    def call_tool(self, turn: Turn, task: Task) -> None:
        import threading

        wake_w = self.wake_w

        def work() -> None:
            try:
                from cao_sidecar.mock_agent.sidecar_tools import call_sidecar_tool

                result = call_sidecar_tool(task.tool, dict(task.arguments or {}))
                outcome = ("answer", result if isinstance(result, str) else str(result))
            except Exception as exc:  # noqa: BLE001 - whatever the tool raised is shown as the turn's error
                outcome = ("error", str(exc) or type(exc).__name__)
            turn.result = outcome  # an interrupted turn is no longer looked at
            try:
                os.write(wake_w, b"x")
            except OSError:
                pass

        threading.Thread(target=work, name=f"cao-tool-{task.tool}", daemon=True).start()

    def finish(self, result: tuple[str, str]) -> None:
        kind, text = result
        self.turn = None
        self.out.append("\r\x1b[K")  # erase the spinner
        if kind == "answer":
            self.record("assistant", text)
            self.out.append(screen.block(screen.ANSWER_HEAD, text) + "\r\n")
        elif kind == "error":
            self.record("error", text)
            self.out.append(error_line(text) + "\r\n\r\n")
        else:  # question
            self.record("question", text)
            self.out.append(screen.block(screen.QUESTION_HEAD, text))
            self.state = ASK
            self.out.append(screen.ASK_PROMPT + " ")
            self.dirty = bool(self.input)
            if self.queue:  # typed ahead: the next submitted input answers the question
                self.input = [self.queue.pop(0)]
                self.submit()
            return
        self.to_prompt()

    def to_prompt(self) -> None:
        if self.queue:
            text = self.queue.pop(0)
            self.out.append(f"{screen.PROMPT} {screen.input_summary(text)}\r\n")
            self.start_task(text)
            return
        self.state = IDLE
        self.out.append(screen.PROMPT + " ")
        self.dirty = bool(self.input)  # show what was typed ahead

    def interrupt(self) -> None:
        if self.state == ASK:
            self.out.append(f"\r\x1b[K{screen.ASK_PROMPT}\r\n")
            self.input = []
        else:
            self.out.append("\r\x1b[K")
        self.turn = None
        self.queue.clear()
        self.record("interrupted")
        self.out.append(screen.INTERRUPTED_LINE + "\r\n\r\n")
        self.to_prompt()

    def goodbye(self) -> None:
        self.out.append("\r\x1b[K" + screen.goodbye(self.profile) + "\r\n")
        self.exit_code = 0

    # ---- drawing and transcript ----------------------------------------------------------------

    def draw_spinner(self) -> None:
        frame = screen.SPINNER_FRAMES[self.spin % len(screen.SPINNER_FRAMES)]
        self.out.append(f"\r\x1b[K{frame}{screen.SPINNER_TEXT}")

    def draw_input_line(self) -> None:
        self.dirty = False
        if self.state == BUSY:
            return  # typed-ahead input is not shown while busy
        prefix = screen.ASK_PROMPT if self.state == ASK else screen.PROMPT
        line = f"{prefix} {screen.input_summary(self.input_text())}"
        try:
            columns = os.get_terminal_size(self.out_fd).columns
        except OSError:
            columns = 80
        # The live line is redrawn with CR + erase-line, so it must not wrap.
        self.out.append("\r\x1b[K" + screen.clip_cells(line, max(columns - 1, 10)))

    def record(self, kind: str, text: str | None = None) -> None:
        if self.transcript is None:
            return
        import json  # first use only: keeps startup lean

        record: dict[str, object] = {"type": kind} if text is None else {"type": kind, "text": text}
        record["at"] = time.time()
        line = json.dumps(record, ensure_ascii=False)
        # Line separators that str.splitlines() would split on, escaped (valid JSON either way).
        line = line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")
        self.transcript.write(line + "\n")
        self.transcript.flush()
        shared = os.environ.get("CAO_MOCK_RECEIVED_LOG")  # tests: every mock agent's inputs, kept after teardown
        if shared and kind == "user":
            fd = os.open(shared, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, (line + "\n").encode("utf-8"))  # one write: O_APPEND keeps lines whole
            finally:
                os.close(fd)

    def close(self) -> None:
        if self.transcript is not None:
            self.transcript.close()
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


def error_line(text: str) -> str:
    """The error state's line: one logical line (line breaks shown as ⏎), so a reader finds the
    `✗ Error:` head right above the prompt."""
    return f"{screen.ERROR_HEAD} {screen.sanitize(text.replace(chr(10), ' ⏎ '))}"


def parse_args(argv: list[str]) -> dict[str, object]:
    options: dict[str, object] = {"delay_ms": 50.0, "transcript": None, "profile": ""}
    names = {"--delay-ms": "delay_ms", "--transcript": "transcript", "--profile": "profile"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        name, eq, value = arg.partition("=")
        if name not in names:
            raise SystemExit(f"{USAGE}\nunknown argument: {arg}")
        if not eq:
            i += 1
            if i >= len(argv):
                raise SystemExit(f"{USAGE}\n{name} needs a value")
            value = argv[i]
        options[names[name]] = value
        i += 1
    try:
        delay_ms = float(options["delay_ms"])  # type: ignore[arg-type]
    except ValueError:
        delay_ms = -1.0
    if not 0.0 <= delay_ms < 1e9:
        raise SystemExit(f"{USAGE}\n--delay-ms must be a number of milliseconds >= 0")
    options["delay_ms"] = delay_ms
    return options


def _stop(signum: int, frame: object) -> None:
    raise Stopped(signum)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)
    in_fd, out_fd = sys.stdin.fileno(), sys.stdout.fileno()
    agent = Agent(
        profile=str(options["profile"]),
        delay=float(options["delay_ms"]) / 1000.0,  # type: ignore[arg-type]
        transcript_path=options["transcript"],  # type: ignore[arg-type]
        in_fd=in_fd,
        out_fd=out_fd,
    )
    terminal = Terminal(in_fd, out_fd)
    clean = False
    try:
        terminal.enter()
        code = agent.run()
        clean = True
        return code
    except Stopped as stopped:
        return 128 + stopped.signum
    except KeyboardInterrupt:
        return 130
    finally:
        # Block the signals while restoring, so a second SIGTERM cannot cut the restore short.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})
        terminal.restore(final_newline=not clean)
        agent.close()
