"""What clients get while `captcha-ocr serve` stops or restarts its workers under load.

Starts `captcha-ocr serve` (the bundled model, loopback, a free port), has CLIENTS
threads post one real image at a time on new connections, then sends the server SIGTERM
(or SIGHUP, uvicorn's rolling restart of the workers) and counts what every request got
until the server is gone (or, after SIGHUP, 8 s more): 200s, and connections refused or
reset. A stop should refuse new connections, never take them and then reset them; a
rolling restart should answer every request.

    python bench/stop_bench.py                        # --workers 2, SIGTERM, 3 runs
    python bench/stop_bench.py --workers 1 --runs 5
    python bench/stop_bench.py --drain 2              # serve --drain 2
    python bench/stop_bench.py --signal HUP --runs 1  # rolling restart
    python bench/stop_bench.py --group                # the signal to every process (systemd's way)

Needs the `serve` extra and ../shared/data/captcha_images_v2 (one image is posted).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "data" / "captcha_images_v2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(image: bytes, workers: int, sig: signal.Signals, clients: int, extra: list[str],
            group: bool) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        server = subprocess.Popen([sys.executable, "-m", "captcha_ocr.cli", "serve", "--port", str(port),
                                   "--workers", str(workers), *extra], stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                break
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        else:
            server.kill()
            sys.exit(f"the server did not start: {Path(log.name).read_text()[-500:]}")
        got: collections.Counter = collections.Counter()
        done = threading.Event()

        def client() -> None:
            while not done.is_set():
                request = urllib.request.Request(url + "/v1/read", data=image,
                                                 headers={"content-type": "image/png"})
                try:
                    got[urllib.request.urlopen(request, timeout=20).status] += 1
                except urllib.error.HTTPError as e:
                    got[e.code] += 1
                except urllib.error.URLError as e:
                    got[type(e.reason).__name__] += 1
                except OSError as e:
                    got[type(e).__name__] += 1

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        (os.killpg(server.pid, sig) if group else server.send_signal(sig))
        before = None
        if sig == signal.SIGHUP:
            time.sleep(8)
            before = collections.Counter(got)  # the restart's, apart from the stop's
            server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        time.sleep(0.3)
        done.set()
        for t in threads:
            t.join()
        text = Path(log.name).read_text()
    return {"got": before or got, "rc": server.returncode, "tracebacks": text.count("Traceback")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--signal", choices=["TERM", "INT", "HUP"], default="TERM")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--drain", type=float, default=0.0, help="serve --drain S")
    ap.add_argument("--group", action="store_true",
                    help="signal the whole process group (systemd's default), not the supervisor alone")
    a = ap.parse_args()
    if not IMAGES.is_dir():
        sys.exit(f"needs {IMAGES}")
    image = sorted(IMAGES.glob("*.png"))[0].read_bytes()
    sig = getattr(signal, "SIG" + a.signal)
    extra = ["--drain", str(a.drain)] if a.drain else []
    print(f"serve --workers {a.workers} {' '.join(extra)}; SIG{a.signal} to "
          f"{'the process group' if a.group else 'the server'} after 1.5 s of {a.clients} clients "
          f"on new connections{' (counts: the 8 s after it, before the stop)' if a.signal == 'HUP' else ''}",
          flush=True)
    for i in range(a.runs):
        r = one_run(image, a.workers, sig, a.clients, extra, a.group)
        got = r["got"]
        print(f"run {i + 1}: 200 {got.pop(200, 0)}, refused {got.pop('ConnectionRefusedError', 0)}, "
              f"reset {got.pop('ConnectionResetError', 0)}, other {dict(got) or 0}; exit {r['rc']}, "
              f"tracebacks in the log {r['tracebacks']}", flush=True)


if __name__ == "__main__":
    main()
