"""Serving benchmark: `captcha-ocr serve` under load, on loopback.

Starts the server in a subprocess, then drives it from a second process: an asyncio
client holding one keep-alive HTTP/1.1 connection per simulated client, each sending
single-image ``POST /v1/read`` requests (the PNG bytes of labeled images, raw body)
back to back for a bounded time per concurrency level. At the highest level every
``--bad-every``-th request of each client is malformed (empty, wrong content type,
not an image, truncated, over the body limit), cycling through the kinds.

The client is hand-written on asyncio streams (not httpx) so that on a small machine
most of the CPU goes to the server being measured; it still shares the machine.

First measures the in-process Reader reading the same PNGs one call each (the service's
yardstick), then prints one table: clients, requests/s and their ratio to that Reader
("x Reader"), p50/p99 latency of good requests, answers to
malformed requests by status, 5xx, connection errors, and whether every good answer
equals the in-process Reader's reading (and how many differ from the file's label: the
model's own misreadings).

Where ``wrk`` is installed (Debian's package; a bench peer, never a dependency), the
same levels are then driven by it as well (``--wrk-script``: raw PNG bodies, keep-alive,
one wrk thread): a C load generator that takes less of the shared CPU than this client,
so its rows show more of what the server does. wrk checks statuses only (non-2xx
counted), not the answers; the own client's rows check those.

    python bench/serve_bench.py                               # bundled model, 10 s per level
    python bench/serve_bench.py --model DIR --seconds 5 --levels 1,16,64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "captcha_images_v2"
MiB = 1024 * 1024

# Malformed requests: (kind, content type, body, expected status).
def _bad_requests(sample: bytes, max_body: int) -> list[tuple[str, str, bytes, int]]:
    return [
        ("empty", "image/png", b"", 400),
        ("wrong type", "text/plain", sample, 415),
        ("not image", "image/png", b"this is not a png" * 20, 422),
        ("truncated", "image/png", sample[: len(sample) // 2], 422),
        ("too big", "image/png", b"\0" * (max_body + 1), 413),
    ]


@dataclass
class Level:
    """What the client saw at one concurrency level."""

    clients: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # good requests only
    good: int = 0
    wrong: int = 0                                             # text != the file's label
    differs: int = 0                                           # text != in-process Reader's
    bad_status: Counter = field(default_factory=Counter)      # malformed: status -> count
    bad_unexpected: int = 0                                    # malformed, wrong status
    good_failed: Counter = field(default_factory=Counter)     # good requests not answered 200
    server_errors: int = 0                                     # any 5xx
    conn_errors: int = 0
    cpu: dict = field(default_factory=dict)                   # cores used: server, client, other

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + sum(self.good_failed.values()) + sum(self.bad_status.values())


# ---------------------------------------------------------------- the client (its own process)


class Conn:
    """One keep-alive HTTP/1.1 connection; reconnects after the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, content_type: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        ctype = f"Content-Type: {content_type}\r\n" if content_type else ""
        head = (f"POST /v1/read HTTP/1.1\r\nHost: 127.0.0.1\r\n{ctype}"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line, *headers = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        length, close = 0, False
        for h in headers:
            name, _, value = h.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        payload = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _client(port: int, images: list[tuple[bytes, str, str]], bad: list, bad_every: int,
                  offset: int, until: float, stats: Level | None) -> None:
    conn, i = Conn(port), offset
    while time.perf_counter() < until:
        i += 1
        malformed = bad_every and i % bad_every == 0
        if malformed:
            kind, ctype, body, expected = bad[(i // bad_every) % len(bad)]
        else:
            body, label, expected = images[i % len(images)]
            ctype = "image/png"
        t0 = time.perf_counter()
        try:
            status, payload = await conn.request(ctype, body)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            conn.close()
            if stats is not None:
                stats.conn_errors += 1
            continue
        if stats is None:
            continue
        ms = (time.perf_counter() - t0) * 1000
        stats.server_errors += status >= 500
        if malformed:
            stats.bad_status[status] += 1
            stats.bad_unexpected += status != expected
        elif status != 200:
            stats.good_failed[status] += 1
        else:
            stats.latencies_ms.append(ms)
            stats.good += 1
            text = json.loads(payload)["text"]
            stats.wrong += text != label
            stats.differs += text != expected
    conn.close()


def _workers(pid: int) -> list[int]:
    """The server's worker processes (``--workers``): its children but multiprocessing's
    resource tracker."""
    try:
        kids = [int(k) for t in Path(f"/proc/{pid}/task").iterdir()
                for k in (t / "children").read_text().split()]
        return [k for k in kids if b"resource_tracker" not in Path(f"/proc/{k}/cmdline").read_bytes()]
    except OSError:
        return []


def _cpu_seconds(server_pid: int) -> dict[str, float] | None:
    """CPU seconds so far: the whole machine (busy), the server (its workers included), and
    this client process."""
    try:
        # cpu  user nice system idle iowait irq softirq steal (guest time is inside user)
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = sum(ticks) - ticks[3] - ticks[4]
        server = 0
        for pid in [server_pid, *_workers(server_pid)]:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            server += int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, ValueError, IndexError):
        return None  # not Linux: no CPU columns
    hz = os.sysconf("SC_CLK_TCK")
    t = os.times()
    return {"busy": busy / hz, "server": server / hz, "client": t.user + t.system}


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _server_memory(pid: int) -> str:
    """Resident memory of the server process and of its worker processes (``--workers``)."""
    kids = _workers(pid)
    own = _rss_mb(pid)
    if own is None:
        return "not measured (no /proc)"
    workers = [m for m in (_rss_mb(k) for k in kids) if m is not None]
    if not workers:
        return f"{own:.0f} MB (one process)"
    return (f"supervisor {own:.0f} MB, workers " + ", ".join(f"{m:.0f}" for m in workers)
            + " MB (target <= 150 each)")


def _cores(before: dict | None, after: dict | None, seconds: float) -> dict[str, float]:
    if not before or not after:
        return {}
    d = {k: (after[k] - before[k]) / seconds for k in before}
    other = max(0.0, d["busy"] - d["server"] - d["client"])
    return {"server": d["server"], "client": d["client"], "other": other}


async def _drive(port: int, server_pid: int, images, bad, clients: int, seconds: float, warmup: float,
                 bad_every: int) -> Level:
    stats = Level(clients)
    step = len(images) // clients  # clients start spread over the images, so all get read
    if warmup > 0:
        until = time.perf_counter() + warmup
        await asyncio.gather(*(_client(port, images, bad, 0, k * step, until, None) for k in range(clients)))
    cpu0, t0 = _cpu_seconds(server_pid), time.perf_counter()
    until = t0 + seconds
    await asyncio.gather(*(_client(port, images, bad, bad_every, k * step, until, stats)
                           for k in range(clients)))
    stats.seconds = time.perf_counter() - t0
    stats.cpu = _cores(cpu0, _cpu_seconds(server_pid), stats.seconds)
    return stats


def _client_process(conn, port: int, server_pid: int, images: list[tuple[bytes, str, str]],
                    levels: list[int], seconds: float, warmup: float, bad_every: int, max_body: int) -> None:
    try:
        from uvloop import run
    except ImportError:
        from asyncio import run
    bad = _bad_requests(images[0][0], max_body)
    for clients in levels:
        every = bad_every if clients == max(levels) else 0
        conn.send(run(_drive(port, server_pid, images, bad, clients, seconds, warmup, every)))
    conn.close()


# ---------------------------------------------------------------- wrk (where installed)

WRK_LUA = r"""
-- POST /v1/read with the PNG files listed in the first script argument, in turn.
local bodies, i = {}, 0
function init(args)
  for path in io.lines(args[1]) do
    local f = assert(io.open(path, "rb"))
    bodies[#bodies + 1] = f:read("*a")
    f:close()
  end
  i = math.random(#bodies)
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "image/png"}, bodies[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %.6f %.3f %.3f %d %d\n", summary.requests,
    summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def _wrk_level(wrk: str, port: int, files: list[Path], clients: int, seconds: float,
               warmup: float, server_pid: int, work: Path) -> dict | None:
    """One level driven by wrk: requests/s, p50/p99 ms, non-2xx, socket errors, CPU cores."""
    script, listing = work / "post.lua", work / "files.txt"
    script.write_text(WRK_LUA)
    listing.write_text("".join(f"{f}\n" for f in files))
    url = f"http://127.0.0.1:{port}/v1/read"
    base = [wrk, "-t1", f"-c{clients}", "--latency", "-s", str(script), url, "--", str(listing)]
    if warmup > 0:
        subprocess.run(base[:1] + [f"-d{max(1, round(warmup))}s"] + base[1:], capture_output=True)
    cpu0 = _cpu_seconds(server_pid)
    out = subprocess.run(base[:1] + [f"-d{max(1, round(seconds))}s", "--timeout", "10s"] + base[1:],
                         capture_output=True, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK ")), None)
    if line is None:
        print(f"wrk failed ({out.returncode}): {(out.stderr or out.stdout).strip()[:300]}")
        return None
    n, secs, p50, p99, non2xx, errors = line.split()[1:]
    cpu = _cores(cpu0, _cpu_seconds(server_pid), float(secs))
    return dict(clients=clients, rate=int(n) / float(secs), p50=float(p50), p99=float(p99),
                non2xx=int(non2xx), errors=int(errors), cpu=cpu)


# ---------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(args, port: int, log_path: Path) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "captcha_ocr.cli", "serve", "--port", str(port),
           "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
           "--threads", str(args.threads), "--workers", str(args.workers)] + \
        (["--model", args.model] if args.model else []) + ["--precision", args.precision,
                                                           "--provider", args.provider]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    sys.exit(f"server did not start:\n{log_path.read_text()}")


def _server_model(port: int) -> str:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/v1/model").json()["name"]


def _load_images(folder: Path, model: str | None, precision: str,
                 provider: str = "cpu") -> list[tuple[bytes, str, str]]:
    """(PNG bytes, label, the in-process Reader's text) for every image of ``folder``."""
    from captcha_ocr import Reader

    files = sorted(folder.glob("*.png"))
    if not files:
        sys.exit(f"no PNG images in {folder}")
    data = [f.read_bytes() for f in files]
    readings = Reader.load(model, precision=precision, provider=provider).read_many(data)
    return [(d, f.stem, r.text) for d, f, r in zip(data, files, readings)]


def _reader_rate(model: str | None, precision: str, images: list[tuple[bytes, str, str]],
                 seconds: float, provider: str = "cpu") -> float:
    """Images/s of the in-process Reader reading one PNG at a time (``Reader.read``, its
    default threads): the figure the service is held against."""
    from captcha_ocr import Reader

    reader = Reader.load(model, precision=precision, provider=provider)
    for data, _, _ in images[:50]:  # warm-up
        reader.read(data)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        reader.read(images[n % len(images)][0])
        n += 1
    return n / (time.perf_counter() - t0)


# ---------------------------------------------------------------- report


def _row(s: Level, reader_rate: float) -> str:
    lat = np.array(s.latencies_ms) if s.latencies_ms else np.array([np.nan])
    bad = " ".join(f"{k}:{v}" for k, v in sorted(s.bad_status.items())) or "-"
    if s.bad_unexpected:
        bad += f" ({s.bad_unexpected} unexpected)"
    failed = " ".join(f"{k}:{v}" for k, v in sorted(s.good_failed.items()))
    # the service's answers against the in-process Reader's (the model's own misreadings,
    # "!= label", are not the service's fault)
    correct = "yes" if s.differs == 0 and not s.good_failed and s.good else "NO"
    detail = f"{s.wrong} != label, {s.differs} != Reader" + (f", good refused {failed}" if failed else "")
    cpu = "/".join(f"{s.cpu[k]:.2f}" for k in ("server", "client", "other")) if s.cpu else "-"
    return (f"{s.clients:>7} {s.requests / s.seconds:>8.0f} {s.requests / s.seconds / reader_rate:>8.2f} "
            f"{np.percentile(lat, 50):>8.1f} "
            f"{np.percentile(lat, 99):>8.1f} {s.good:>7} {bad:<28} {s.server_errors:>4} "
            f"{s.conn_errors:>6}  {cpu:<14}  {correct} ({detail})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: the bundled model)")
    p.add_argument("--data", default=str(DATA), help="labeled PNGs (label = file stem)")
    p.add_argument("--levels", default="1,16,64", help="concurrent clients per level")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per level")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each level")
    p.add_argument("--bad-every", type=int, default=10,
                   help="at the highest level, every Nth request of a client is malformed")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1, help="server's ONNX Runtime threads")
    p.add_argument("--wrk", default=shutil.which("wrk"),
                   help="the wrk program (default: wrk on PATH; 'none' to skip its rows)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"],
                   help="network the server and the in-process Reader run (serve --precision)")
    p.add_argument("--provider", default="cpu", choices=["cpu", "cuda"],
                   help="execution provider of the server and the in-process Reader (serve --provider)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes (serve --workers; default 1, where serve's own is one a "
                        "core; the CPU columns then count the supervisor only)")
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    images = _load_images(Path(args.data), args.model, args.precision, args.provider)
    reader_rate = _reader_rate(args.model, args.precision, images, args.seconds, args.provider)
    port = _free_port()
    log_path = Path(tempfile.mkdtemp(prefix="serve_bench_")) / "server.log"
    server = _start_server(args, port, log_path)
    try:
        model = _server_model(port)
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        client = ctx.Process(target=_client_process, args=(
            child, port, server.pid, images, levels, args.seconds, args.warmup, args.bad_every, 2 * MiB))
        client.start()
        child.close()
        print(f"model {model}; {os.cpu_count()} CPUs; {args.seconds:g} s per level after "
              f"{args.warmup:g} s warm-up; at {max(levels)} clients 1 request in {args.bad_every} "
              f"is malformed; server log: {log_path}")
        print(f"in-process Reader, one image a call: {reader_rate:.0f} images/s (x Reader: the "
              "service's req/s over it; target >= 0.8 at 64 clients)\n")
        print(f"{'clients':>7} {'req/s':>8} {'x Reader':>8} {'p50 ms':>8} {'p99 ms':>8} {'good':>7} "
              f"{'malformed: status:count':<28} {'5xx':>4} {'conn':>6}  {'CPU srv/cli/oth':<14}  "
              "good answers = Reader")
        busy = []
        for _ in levels:
            level = parent.recv()
            print(_row(level, reader_rate), flush=True)
            if level.cpu.get("other", 0) > 0.1:
                busy.append(f"{level.clients} clients: {level.cpu['other']:.2f}")
        client.join()
        if args.wrk and args.wrk != "none":
            print(f"\ndriven by wrk ({args.wrk}, one thread, raw PNG bodies, keep-alive; "
                  "statuses only):")
            print(f"{'clients':>7} {'req/s':>8} {'x Reader':>8} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'non-2xx':>8} {'errors':>7}  {'CPU srv/wrk+oth':<14}")
            files = sorted(Path(args.data).glob("*.png"))
            for clients in levels:
                w = _wrk_level(args.wrk, port, files, clients, args.seconds, args.warmup,
                               server.pid, log_path.parent)
                if w is None:
                    break
                cpu = f"{w['cpu']['server']:.2f}/{w['cpu']['other']:.2f}" if w["cpu"] else "-"
                print(f"{clients:>7} {w['rate']:>8.0f} {w['rate'] / reader_rate:>8.2f} {w['p50']:>8.1f} "
                      f"{w['p99']:>8.1f} {w['non2xx']:>8} {w['errors']:>7}  {cpu:<14}", flush=True)
        memory = _server_memory(server.pid)
        if busy:
            print(f"\nwarning: other processes used CPU cores during the run ({'; '.join(busy)}): "
                  "these levels understate the server")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    log = log_path.read_text()
    batches = [line.split(" INFO ", 1)[-1] for line in log.splitlines() if "inference:" in line]
    print(f"\nserver memory after the levels (VmRSS): {memory}")
    print(f"server stopped with status {server.returncode}; tracebacks in its log: "
          f"{log.count('Traceback')}; {batches[-1] if batches else 'no batch summary'}")
    print(f"in-process Reader vs labels: {sum(t != lab for _, lab, t in images)} of {len(images)} "
          "images read wrong by the model itself")


if __name__ == "__main__":
    main()
