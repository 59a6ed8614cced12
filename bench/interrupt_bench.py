"""Interrupt: stop `captcha-ocr train` at random moments and count how it ends.

A service manager's stop (SIGTERM) or a Ctrl-C (SIGINT) may come at any instant of a
run, including the first seconds, when torch imports modules lazily (at the first
optimizer step). Every run should end with one line ("captcha-ocr train: interrupted")
and exit status 130, never a traceback or death by a signal.

Each run trains from scratch on a small zoo folder in a fresh process; once its
``M.partial`` folder exists, the signal comes after a uniform random delay in
[0, --max-delay] seconds. Prints one row per run that did not end as it should, then the
count of each exit status.

    python bench/interrupt_bench.py                       # 40 runs, SIGTERM, 0-2.5 s
    python bench/interrupt_bench.py --runs 60 --signal INT --seed 3
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from captcha_ocr.zoo import write_style


def one_run(data: Path, work: Path, delay: float, sig: int) -> tuple[int, str]:
    """Start a training, signal it ``delay`` s after its staging folder appears; its
    exit status and standard error."""
    out = work / "m"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work / "m.partial", ignore_errors=True)
    args = ["train", str(data), "--out", str(out), "--init", "none", "--steps", "4000",
            "--batch-size", "8", "--threads", "1", "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "captcha_ocr.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (work / "m.partial").is_dir() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--max-delay", type=float, default=2.5, help="seconds (default: 2.5)")
    ap.add_argument("--signal", choices=("TERM", "INT"), default="TERM")
    ap.add_argument("--seed", type=int, default=1, help="of the delays")
    a = ap.parse_args()
    sig = getattr(signal, f"SIG{a.signal}")
    rng = random.Random(a.seed)
    statuses: collections.Counter[int] = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_style("pastel_digits", data, 48, seed=3)
        for i in range(a.runs):
            delay = rng.uniform(0, a.max_delay)
            rc, err = one_run(data, Path(tmp), delay, sig)
            statuses[rc] += 1
            ok = rc == 130 and "Traceback" not in err and err.rstrip().endswith("interrupted")
            if not ok:
                print(f"run {i}: SIG{a.signal} at +{delay:.2f} s -> exit {rc}: "
                      f"{err.strip().splitlines()[-1] if err.strip() else '(no output)'}", flush=True)
    print(f"{a.runs} runs, SIG{a.signal} 0-{a.max_delay:g} s after the run started: "
          + ", ".join(f"exit {rc}: {n}" for rc, n in sorted(statuses.items())))


if __name__ == "__main__":
    main()
