"""Pretraining throughput: images/s of `captcha-ocr pretrain` at 1 and 2 processes.

Runs the same short pretraining (N steps of B images per process, every zoo style) as
one plain process and under `torchrun --standalone --nproc-per-node P` (DDP, gloo on
CPU), and prints the images per second each reached (training seconds from its
model.json, so start-up and the final held-out evaluation are left out) and the
speed-up. On this 2-core machine two processes share the same two cores.

    python bench/pretrain_bench.py                   # 1 and 2 processes, 150 steps
    python bench/pretrain_bench.py --procs 1 2 4 --steps 300 --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(procs: int, out: Path, a: argparse.Namespace) -> dict:
    args = ["pretrain", "--out", str(out), "--steps", str(a.steps), "--batch-size", str(a.batch_size),
            "--workers", str(a.workers), "--eval-images", "2", "--checkpoint-minutes", "1000"]
    if procs == 1:
        cmd = [sys.executable, "-m", "captcha_ocr.cli", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               str(procs), "-m", "captcha_ocr.cli", *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    t = json.loads((out / "model.json").read_text())["training"]
    return dict(procs=procs, images=t["images"], seconds=t["seconds"], wall=wall,
                rate=t["images"] / t["seconds"], same=len(set(t["rank_weight_digests"])) == 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers per process")
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores; {a.steps} steps of {a.batch_size} images per process, "
          f"{a.workers} loader workers per process")
    print(f"{'processes':>9} {'images':>7} {'train s':>8} {'wall s':>7} {'img/s':>7} {'speed-up':>8} "
          f"{'ranks agree':>11}")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for p in a.procs:
            r = run(p, Path(tmp) / f"p{p}", a)
            base = base or r["rate"]
            print(f"{p:9d} {r['images']:7d} {r['seconds']:8.1f} {r['wall']:7.1f} {r['rate']:7.0f} "
                  f"{r['rate'] / base:8.2f} {str(r['same']):>11}", flush=True)


if __name__ == "__main__":
    main()
