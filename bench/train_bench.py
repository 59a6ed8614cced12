"""Training benchmark: k-fold cross-validation of the training recipes.

Every fold trains from scratch with ``captcha-ocr train`` (the user's command, in a
subprocess, timed end to end) on the other folds; its early stopping and metrics use
an inner validation split of that training data only. The held-out fold is then read
with the exported ONNX model. Prints one table, a row per run, and a summary per
recipe and seed.

    python bench/train_bench.py                  # 5 folds x 3 seeds, seed and fast recipes
    python bench/train_bench.py --quick          # a few minutes: 2 folds, 1 seed, fast only
    python bench/train_bench.py --archs default --seeds 1   # the plain `captcha-ocr train`
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

import numpy as np

from captcha_ocr import Reader
from captcha_ocr.data import Sample, discover, link_labeled
from captcha_ocr.metrics import cer, sequence_accuracy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "captcha_images_v2"


def folds_of(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """k disjoint index sets covering range(n), fixed across recipes and seeds."""
    return np.array_split(np.random.default_rng(seed).permutation(n), k)


def link_folder(files: list[Path], dest: Path) -> Path:
    """A folder of links to ``files``, labeled by their file names."""
    return link_labeled([Sample(f, f.stem) for f in files], dest, with_labels=False)


def run_fold(arch: str, seed: int, train_dir: Path, test_files, out: Path, extra: list[str]):
    recipe = [] if arch == "default" else ["--arch", arch]  # default: the plain user command
    cmd = [sys.executable, "-m", "captcha_ocr.cli", "train", str(train_dir), "--out", str(out),
           *recipe, "--seed", str(seed), "-q", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    info = json.loads((out / "model.json").read_text())
    reader = Reader.load(out)
    preds = [r.text for r in reader.read_many([s.path for s in test_files])]
    labels = [s.label for s in test_files]
    wrong = [f"{s.path.stem}->{p}" for s, p in zip(test_files, preds) if p != s.label]
    return dict(arch=arch, params=info["training"]["params"],
                mflops=info["training"]["flops_per_image"] / 1e6,
                epochs=info["training"]["epochs_run"], wall=wall,
                acc=sequence_accuracy(labels, preds), cer=cer(labels, preds), wrong=wrong,
                n=len(labels))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--archs", nargs="+", default=["seed", "fast"],
                    help="recipes; 'default' runs `captcha-ocr train` with no --arch (what a "
                         "user gets: fine-tuning the base model or the crnn recipe)")
    ap.add_argument("--extra-args", default="", help="more options for captcha-ocr train")
    ap.add_argument("--only-folds", type=int, nargs="+", help="run only these folds (0-based)")
    ap.add_argument("--quick", action="store_true", help="2 of 5 folds, seed 1, fast recipe only")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    a = ap.parse_args()
    if a.quick:
        a.seeds, a.archs, a.only_folds = [1], ["fast"], [0, 1]
    samples = discover(a.data)
    folds = folds_of(len(samples), a.folds)
    rows = []
    print(f"{len(samples)} images, {a.folds} folds, seeds {a.seeds}, archs {a.archs}, "
          f"{os.cpu_count()} cores", flush=True)
    head = (f"{'arch':6} {'params':>7} {'MFLOP':>6} {'fold':>4} {'seed':>4} {'epochs':>6} "
            f"{'wall s':>7} {'acc':>6} {'CER':>7} wrong")
    print(head + "\n" + "-" * len(head), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in a.archs:
            for seed in a.seeds:
                for k, test_idx in enumerate(folds):
                    if a.only_folds is not None and k not in a.only_folds:
                        continue
                    held = set(test_idx.tolist())
                    train_files = [s.path for i, s in enumerate(samples) if i not in held]
                    test = [samples[i] for i in sorted(held)]
                    base = Path(tmp) / f"{arch}-{seed}-{k}"
                    r = run_fold(arch, seed, link_folder(train_files, base / "data"), test,
                                 base / "model", a.extra_args.split())
                    r.update(fold=k, seed=seed)
                    rows.append(r)
                    print(f"{arch:6} {r['params']:7d} {r['mflops']:6.1f} {k:4d} {seed:4d} "
                          f"{r['epochs']:6d} {r['wall']:7.1f} {r['acc']:6.4f} {r['cer']:7.4f} "
                          f"{len(r['wrong'])} {' '.join(r['wrong'])}", flush=True)
    print("\nsummary (all folds run)")
    print(f"{'arch':6} {'seed':>4} {'images':>6} {'wrong':>5} {'acc':>7} {'mean wall s':>11} "
          f"{'max wall s':>10}")
    for arch in a.archs:
        for seed in a.seeds:
            rs = [r for r in rows if r["arch"] == arch and r["seed"] == seed]
            n, wrong = sum(r["n"] for r in rs), sum(len(r["wrong"]) for r in rs)
            walls = [r["wall"] for r in rs]
            print(f"{arch:6} {seed:4d} {n:6d} {wrong:5d} {1 - wrong / n:7.4f} "
                  f"{np.mean(walls):11.1f} {max(walls):10.1f}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
