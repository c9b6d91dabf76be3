"""Figures for the terminal layer (median of N). Not a test.

python bench/bench_terminal.py [N]    (from the checkout)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cao_sidecar.terminal import TmuxServer

# raw mode, bracketed paste on, swallow input; prints READY
SINK = r"""
import os, tty
tty.setraw(0)
os.write(1, b"\x1b[?2004hREADY\r\n")
while os.read(0, 1 << 16):
    pass
"""

FIFO_PRINTER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.write(1, b"printer up\r\n")
while True:
    data = os.read(fd, 4096)
    os.write(1, b"tick " + data.replace(b"\n", b"\r\n"))
"""


def ms(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    return f"median {statistics.median(values) * 1000:8.3f} ms   p90 {p90 * 1000:8.3f} ms   (n={len(values)})"


async def wait_screen(srv: TmuxServer, pane_id: str, text: str) -> None:
    for _ in range(500):
        if text in await srv.capture(pane_id):
            return
        await asyncio.sleep(0.01)
    raise RuntimeError(f"{text!r} never showed in {pane_id}")


async def main(n: int) -> None:
    srv = TmuxServer(f"cao-bench-{secrets.token_hex(4)}")
    tmp = Path(tempfile.mkdtemp(prefix="cao-bench-"))
    try:
        t = time.perf_counter()
        await srv.start()
        print(f"start (fork, server + options)        {(time.perf_counter() - t) * 1000:8.3f} ms")
        t = time.perf_counter()
        await srv.new_window("bench", "first", ["sleep", "600"], env={}, cwd=str(tmp))
        print(f"first new_window (creates session)    {(time.perf_counter() - t) * 1000:8.3f} ms")

        times = []
        panes = []
        for i in range(n):
            t = time.perf_counter()
            pane = await srv.new_window("bench", f"w{i}", ["sleep", "600"], env={"I": str(i)}, cwd=str(tmp))
            times.append(time.perf_counter() - t)
            panes.append(pane)
        print(f"new_window -> pid                     {ms(times)}")

        sink = await srv.new_window("bench", "sink", [sys.executable, "-c", SINK], env={}, cwd=str(tmp))
        await wait_screen(srv, sink.pane_id, "READY")

        times = []
        for _ in range(n * 5):
            t = time.perf_counter()
            await srv.capture(sink.pane_id)
            times.append(time.perf_counter() - t)
        print(f"capture (control-mode round trip)     {ms(times)}")

        times = []
        for _ in range(n):
            t = time.perf_counter()
            subprocess.run(["tmux", "-L", srv.socket_name, "capture-pane", "-p", "-t", sink.pane_id], capture_output=True)
            times.append(time.perf_counter() - t)
        print(f"  for comparison: capture by fork     {ms(times)}")

        for size in (1024, 20 * 1024):
            text = ("x" * 79 + "\n") * (size // 80) + "y" * (size % 80)
            times = []
            for _ in range(n):
                t = time.perf_counter()
                await srv.paste_text(sink.pane_id, text)
                times.append(time.perf_counter() - t)
            print(f"paste_text {size // 1024:2d} KB                       {ms(times)}")

        times = []
        for _ in range(n * 5):
            t = time.perf_counter()
            await srv.send_keys(sink.pane_id, "Enter")
            times.append(time.perf_counter() - t)
        print(f"send_keys Enter                       {ms(times)}")

        # output -> callback
        fifo = tmp / "fifo"
        os.mkfifo(fifo)
        printer = await srv.new_window("bench", "printer", [sys.executable, "-c", FIFO_PRINTER, str(fifo)], env={}, cwd=str(tmp))
        await wait_screen(srv, printer.pane_id, "printer up")
        got = asyncio.Event()
        arrival: list[float] = []

        def on_output(pane_id: str) -> None:
            if pane_id == printer.pane_id and not got.is_set():
                arrival.append(time.perf_counter())
                got.set()

        srv.add_output_listener(on_output)
        wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        times = []
        for i in range(n * 2):
            await asyncio.sleep(0.01)
            got.clear()
            arrival.clear()
            t = time.perf_counter()
            os.write(wfd, f"{i}\n".encode())
            await asyncio.wait_for(got.wait(), 5)
            times.append(arrival[0] - t)
        os.close(wfd)
        print(f"output -> callback (pane prints)      {ms(times)}")

        # process exit -> exit callback
        exited: dict[str, float] = {}
        srv.add_exit_listener(lambda pane_id, status: exited.setdefault(pane_id, time.perf_counter()))
        times = []
        for i in range(min(n, 20)):
            pane = await srv.new_window("bench", f"exit{i}", ["sh", "-c", "echo waiting; read x; exit 3"], env={}, cwd=str(tmp))
            await wait_screen(srv, pane.pane_id, "waiting")
            await asyncio.sleep(0.02)
            t = time.perf_counter()
            await srv.send_keys(pane.pane_id, "Enter")  # sh reads a line and exits
            for _ in range(2000):
                if pane.pane_id in exited:
                    break
                await asyncio.sleep(0.0005)
            times.append(exited[pane.pane_id] - t)
            await srv.kill_window(pane.pane_id)
        print(f"Enter -> sh exits -> exit callback    {ms(times)}")

        t = time.perf_counter()
        listed = await srv.list_panes()
        print(f"list_panes ({len(listed)} panes)                 {(time.perf_counter() - t) * 1000:8.3f} ms")
        rss = subprocess.run(["ps", "-o", "rss=", "-p", str(srv._server_pid)], capture_output=True, text=True).stdout.strip()
        print(f"tmux server RSS with {len(listed)} panes          {rss} KB")
    finally:
        await srv.kill_server()
        subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 30))
