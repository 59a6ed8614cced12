"""Soak: `captcha-ocr serve` under mixed good, malformed, slow and huge requests.

Starts the service on a free loopback port (bundled model unless --model), measures the
good requests' latency alone (idle), then for --seconds runs, side by side:

- good clients: keep-alive POST /v1/read of real captcha PNGs (latency recorded);
- bad clients: random bytes, truncated PNGs, wrong content types, hostile JSON batches
  (deep nesting, huge numbers), text where a file should be;
- huge clients: bodies over the limit, pixel-heavy batches, 200 KB headers;
- slow clients: connections that trickle a partial header or body and stall.

The good clients run in a process of their own, the others in another: in one process
the attackers' Python work (encoding multi-megabyte JSON bodies, say) held the GIL and
showed up in the good requests' measured latency, which is not the server's doing.

Prints requests served per kind, statuses, the good requests' p50/p99 against the idle
run, the server's memory (VmRSS) at start and end, and the count of 5xx (target 0;
good p99 within 2x of idle).

    python bench/soak_bench.py                 # 300 s
    python bench/soak_bench.py --seconds 60
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (the server's worker processes)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int(_stat(int(d.name))[1])
            except (OSError, ValueError, IndexError):  # gone meanwhile
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, pp in parent.items() if pp == p]
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its descendants have used (``/proc/PID/stat``)."""
    total = 0.0
    for p in family(pid):
        try:
            fields = _stat(p)
        except OSError:  # gone meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of a process and its descendants, MB: summed, so pages
    they share (libraries, the model) count once per process."""
    total = 0.0
    for p in family(pid):
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:  # gone meanwhile
            continue
        for line in lines:
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def captcha_pngs(n: int) -> list[bytes]:
    from captcha.image import ImageCaptcha

    random.seed(0)
    gen = ImageCaptcha(width=200, height=50)
    out = []
    for i in range(n):
        buf = io.BytesIO()
        gen.generate_image(f"{i:05d}"[-5:]).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: dict[str, Counter] = {}
        self.latency: list[float] = []
        self.cpu: dict[str, float] = {}  # CPU seconds each side's process used

    def add(self, kind: str, status: int | str, seconds: float | None = None) -> None:
        with self.lock:
            self.status.setdefault(kind, Counter())[status] += 1
            if seconds is not None:
                self.latency.append(seconds)


def good_client(url: str, pngs: list[bytes], stop: threading.Event, stats: Stats) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        k = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                r = c.post("/v1/read", content=pngs[k % len(pngs)], headers={"content-type": "image/png"})
                stats.add("good", r.status_code, time.perf_counter() - t0)
            except httpx.HTTPError as e:
                stats.add("good", type(e).__name__)
            k += 1


def bad_client(url: str, pngs: list[bytes], stop: threading.Event, stats: Stats, seed: int) -> None:
    rng = random.Random(seed)
    cases = [
        lambda: ("/v1/read", rng.randbytes(rng.randint(1, 4000)), "image/png"),
        lambda: ("/v1/read", pngs[0][: rng.randint(10, 600)], "image/png"),
        lambda: ("/v1/read", pngs[0], "text/plain"),
        lambda: ("/v1/read-batch", b'{"images": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "application/json"),
        lambda: ("/v1/read-batch", b'{"images": [' + b"7" * 5000 + b"]}", "application/json"),
        lambda: ("/v1/read-batch", b'{"images": "x"}', "application/json"),
        lambda: ("/v1/read?allow=%C3%A9", pngs[1], "image/png"),
    ]
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            path, body, media = rng.choice(cases)()
            try:
                stats.add("bad", c.post(path, content=body, headers={"content-type": media}).status_code)
            except httpx.HTTPError as e:
                stats.add("bad", type(e).__name__)


def huge_client(url: str, port: int, stop: threading.Event, stats: Stats, seed: int) -> None:
    rng = random.Random(seed)
    big = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (1000, 1900), np.uint8))
    buf = io.BytesIO()
    big.save(buf, "PNG", compress_level=1)
    import base64

    heavy = json.dumps({"images": [base64.b64encode(buf.getvalue()).decode()] * 9}).encode()
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            kind = rng.randrange(3)
            try:
                if kind == 0:
                    r = c.post(
                        "/v1/read", content=b"\0" * (3 * 1024 * 1024), headers={"content-type": "image/png"}
                    )
                    stats.add("huge", r.status_code)
                elif kind == 1:
                    r = c.post("/v1/read-batch", content=heavy, headers={"content-type": "application/json"})
                    stats.add("huge", r.status_code)
                else:
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                        s.sendall(
                            b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 200_000 + b"\r\n\r\n"
                        )
                        head = s.recv(64)
                    stats.add("huge", int(head.split()[1]) if head.startswith(b"HTTP/") else "closed")
            except (httpx.HTTPError, OSError) as e:
                stats.add("huge", type(e).__name__)


def slow_client(port: int, stop: threading.Event, stats: Stats) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                s.sendall(b"POST /v1/read HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\n")
                head = s.recv(64)  # the server's 408, after its header timeout
            stats.add("slow", int(head.split()[1]) if head.startswith(b"HTTP/") else "closed")
        except OSError as e:
            stats.add("slow", type(e).__name__)


def run_clients(side: str, url: str, port: int, pngs: list[bytes], seconds: float, good: int,
                conn, nice: int = 0) -> None:
    """One process's clients for ``seconds``: the good ones, or every other kind (at
    ``nice``: their own Python work yields the shared cores to the server's)."""
    if nice:
        os.nice(nice)
    stats, stop = Stats(), threading.Event()
    if side == "good":
        threads = [threading.Thread(target=good_client, args=(url, pngs, stop, stats)) for _ in range(good)]
    else:
        threads = [threading.Thread(target=bad_client, args=(url, pngs, stop, stats, k)) for k in range(2)]
        threads += [threading.Thread(target=huge_client, args=(url, port, stop, stats, 7))]
        threads += [threading.Thread(target=slow_client, args=(port, stop, stats)) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    conn.send((stats.status, stats.latency, time.process_time()))


def run_sides(sides: list[str], url: str, port: int, pngs: list[bytes], seconds: float,
              good: int, attack_nice: int = 0) -> tuple[Stats, float]:
    """Run each side's clients in its own process at once; their merged stats and the wall time."""
    ctx = mp.get_context("fork")
    procs = []
    for side in sides:
        mine, theirs = ctx.Pipe(duplex=False)
        p = ctx.Process(target=run_clients, args=(side, url, port, pngs, seconds, good, theirs,
                                                       attack_nice if side == "attack" else 0))
        p.start()
        theirs.close()  # the child's end: a child that dies ends our recv() with EOFError
        procs.append((p, mine))
    t0 = time.perf_counter()
    stats = Stats()
    for side, (p, mine) in zip(sides, procs):
        status, latency, cpu = mine.recv()
        p.join()
        for kind, c in status.items():
            stats.status.setdefault(kind, Counter()).update(c)
        stats.latency += latency
        stats.cpu[side] = cpu
    return stats, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--idle-seconds", type=float, default=20, help="the good clients alone, first")
    ap.add_argument("--model", default=None)
    ap.add_argument("--good", type=int, default=4, help="good clients")
    ap.add_argument("--workers", type=int, default=1,
                    help="server processes (serve --workers; default 1, where serve's own is one a core)")
    ap.add_argument("--attack-nice", type=int, default=0, choices=range(20), metavar="N",
                    help="lower the attacking clients' process priority by N (0-19, added to "
                         "this process's niceness): on this machine they share the server's "
                         "cores, where real attackers bring their own")
    a = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "captcha_ocr.cli", "serve", "--port", str(port), "--header-timeout", "5"]
    if a.model:
        cmd += ["--model", a.model]
    cmd += ["--workers", str(a.workers)]  # serve's own default is one per core
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # its log: not kept
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        pngs = captcha_pngs(64)
        idle, _ = run_sides(["good"], url, port, pngs, a.idle_seconds, a.good)
        start_mb, start_cpu = rss_mb(server.pid), cpu_seconds(server.pid)
        stats, wall = run_sides(["good", "attack"], url, port, pngs, a.seconds, a.good, a.attack_nice)
        end_mb, server_cpu = rss_mb(server.pid), cpu_seconds(server.pid) - start_cpu
    finally:
        server.terminate()
        server.wait(30)
    print(
        f"soak: {wall:.0f} s; {a.good} good clients (one process), 2 bad, 1 huge, 16 slow (another); "
        f"{os.cpu_count()} cores shared by the server and the clients"
        + (f"; serve --workers {a.workers}" if a.workers > 1 else "")
        + (f"; attackers at nice {a.attack_nice}" if a.attack_nice else "")
    )
    print(f"{'kind':6} {'requests':>9}  statuses")
    five = 0
    for kind, c in stats.status.items():
        five += sum(v for k, v in c.items() if isinstance(k, int) and k >= 500)
        print(
            f"{kind:6} {sum(c.values()):9d}  " + ", ".join(f"{k}: {v}" for k, v in sorted(c.items(), key=str))
        )
    lat, base = np.array(stats.latency) * 1000, np.array(idle.latency) * 1000
    print(
        f"good p50/p99 ms: idle {np.percentile(base, 50):.1f}/{np.percentile(base, 99):.1f} "
        f"({len(base)} requests, good clients alone), "
        f"soak {np.percentile(lat, 50):.1f}/{np.percentile(lat, 99):.1f}"
        f" -> p99 ratio {np.percentile(lat, 99) / np.percentile(base, 99):.2f} (target <= 2)"
    )
    print(f"server memory (VmRSS, summed over its processes): {start_mb:.0f} MB at start, "
          f"{end_mb:.0f} MB at end")
    print(f"CPU cores used on average: server {server_cpu / wall:.2f}, good clients "
          f"{stats.cpu['good'] / wall:.2f}, attackers {stats.cpu['attack'] / wall:.2f} "
          f"(of {os.cpu_count()})")
    print(f"5xx: {five} (target 0)")


if __name__ == "__main__":
    main()
