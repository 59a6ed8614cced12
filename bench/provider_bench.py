"""Reading on each ONNX Runtime execution provider: the same readings, and how fast.

For each model and provider (``cpu``; ``cuda`` where ``onnxruntime-gpu`` is installed),
reads every labeled image of ``--data`` (PNG bytes held in memory, so the disk is not
timed) and prints one table: sequence accuracy, agreement with the first provider's
readings and the largest difference of their network outputs, batch-1 latency, Reader
throughput (decode + preprocess + network + CTC) at batch 64 and 256, and the network
alone at batch 64, 256 and 1024. A provider this machine cannot run gives one line
(the Reader's own error) instead of a row.

    python bench/provider_bench.py [--data DIR] [--models captcha_images_v2 base2 DIR]
                                   [--providers cpu cuda] [--calls 300]

Imports the reading path only (numpy, Pillow, onnxruntime): it runs where torch is absent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "captcha_images_v2"


def timed(fn, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls (seconds), after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def numbers(reader, blobs: list[bytes], labels: list[str], calls: int) -> dict:
    texts = [r.text for r in reader.read_many(blobs, batch_size=64)]
    acc = sum(t == y for t, y in zip(texts, labels, strict=True)) / len(labels)
    b1 = []
    for i in range(calls + 20):
        t = time.perf_counter()
        reader.read(blobs[i % len(blobs)])
        if i >= 20:
            b1.append((time.perf_counter() - t) * 1e3)
    out = dict(texts=texts, acc=acc, p50=statistics.median(b1), p99=float(np.percentile(b1, 99)))
    for bs in (64, 256):
        out[f"read{bs}"] = len(blobs) / timed(lambda bs=bs: reader.read_many(blobs, batch_size=bs))
    arrays = np.stack([reader.preprocess(b) for b in blobs[:1024]])
    while len(arrays) < 1024:  # fewer images than the largest batch: repeat them
        arrays = np.concatenate([arrays, arrays])[:1024]
    out["logits"] = reader.run(arrays[:64])
    for bs in (64, 256, 1024):
        batches = [np.ascontiguousarray(arrays[i:i + bs]) for i in range(0, 1024, bs)]
        out[f"net{bs}"] = 1024 / timed(lambda batches=batches: [reader.run(b) for b in batches])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--models", nargs="*", default=["captcha_images_v2"],
                    help="model directories or shipped model names")
    ap.add_argument("--providers", nargs="*", default=["cpu", "cuda"])
    ap.add_argument("--calls", type=int, default=300, help="batch-1 calls after 20 warm-up")
    a = ap.parse_args()
    import onnxruntime as ort

    from captcha_ocr import ModelError, Reader
    from captcha_ocr.data import discover

    samples = discover(a.data, stem_labels=True)
    if not samples:
        sys.exit(f"no labeled images in {a.data}")
    blobs = [s.path.read_bytes() for s in samples]
    labels = [s.label for s in samples]
    print(f"{len(blobs)} images of {a.data}; onnxruntime {ort.__version__}, providers "
          f"available: {', '.join(ort.get_available_providers())}")
    print(f"{'model':18} {'provider':8} {'acc':>6} {'same':>6} {'max|dlogp|':>10} | {'b1 p50 ms':>9} "
          f"{'b1 p99 ms':>9} | {'read b64':>9} {'read b256':>9} | {'net b64':>9} {'net b256':>9} "
          f"{'net b1024':>9}  (images/s)")
    for m in a.models:
        first = None
        for p in a.providers:
            try:
                reader = Reader.load(m, provider=p)
            except ModelError as e:
                print(f"{Path(m).name[:18]:18} {p:8} not run: {e}")
                continue
            o = numbers(reader, blobs, labels, a.calls)
            first = first or o
            same = sum(x == y for x, y in zip(o["texts"], first["texts"], strict=True)) / len(blobs)
            diff = float(np.abs(o["logits"] - first["logits"]).max())
            print(f"{Path(m).name[:18]:18} {p:8} {o['acc']:6.4f} {same:6.4f} {diff:10.2e} | "
                  f"{o['p50']:9.3f} {o['p99']:9.3f} | {o['read64']:9.0f} {o['read256']:9.0f} | "
                  f"{o['net64']:9.0f} {o['net256']:9.0f} {o['net1024']:9.0f}")


if __name__ == "__main__":
    main()
