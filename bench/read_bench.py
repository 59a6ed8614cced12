"""Reading benchmark: latency, throughput, cold start, memory, and where the time goes.

Reads the shared captcha_images_v2 PNG files from disk with each model, through the
ONNX Runtime Reader and through the PyTorch model in eager mode, and prints one table
(plus a per-stage breakdown). Models: the bundled one, any ``--models DIR``, and by
default the tutorial's ``seed`` architecture with fresh random weights (speed does
not depend on the weights).

    python bench/read_bench.py [--models DIR ...] [--calls 500] [--int8] [--decoders]

``--int8`` also times an int8 copy of every model (``captcha-ocr export --int8`` with
``--data`` as its images: quantization calibrated on some, checked on the others) and
prints how its readings compare with the float network's. ``--decoders`` times PNG
decoders on the files' bytes (Pillow, and pyspng / OpenCV where installed beside the
project: bench only) against zlib's floor, and checks they give Pillow's pixels.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "captcha_images_v2"


def random_model(arch: str, dest: Path) -> Path:
    """A model directory for ``arch`` with random weights, for timing only."""
    import torch

    from captcha_ocr.config import ARCHS, ImageConfig, ModelConfig
    from captcha_ocr.export import export_onnx
    from captcha_ocr.model import build_model, count_flops, count_params
    from captcha_ocr.modeldir import ModelInfo
    from captcha_ocr.train import save_checkpoint

    torch.manual_seed(0)
    image, alphabet = ImageConfig(), "2345678bcdefgmnpwxy"
    model = build_model(image, ModelConfig(arch, len(alphabet) + 1, ARCHS[arch])).eval()
    info = ModelInfo(alphabet, image, ModelConfig(arch, len(alphabet) + 1, ARCHS[arch]),
                     training=dict(params=count_params(model), flops_per_image=count_flops(model, image),
                                   note="random weights, for timing"))
    dest.mkdir(parents=True)
    save_checkpoint(model, info, dest)
    export_onnx(model, info, dest)
    return dest


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def gemm_peak() -> float:
    """Practical FP32 peak of this machine (GFLOP/s): a large torch (oneDNN/MKL) matmul
    on all cores, best of five."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    a = torch.rand(2048, 2048)
    a @ a
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048**3 / (time.perf_counter() - t) / 1e9)
    return best


def latency_ms(fn, items, calls: int, warmup: int = 50) -> tuple[float, float]:
    for i in range(warmup):
        fn(items[i % len(items)])
    times = []
    for i in range(calls):
        t = time.perf_counter()
        fn(items[i % len(items)])
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), percentile(times, 99)


def best_rate(fn, n: int, repeats: int = 3) -> float:
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - t))
    return best


def onnx_numbers(model_dir: Path, paths: list[Path], calls: int) -> dict:
    from captcha_ocr import Reader

    reader = Reader.load(model_dir)
    p50, p99 = latency_ms(lambda p: reader.read(p).text, paths, calls)
    rate = best_rate(lambda: reader.read_many(paths, batch_size=64), len(paths))
    # Where the time goes, per image, at batch 64 (decode and preprocess on one thread).
    from captcha_ocr.decoding import greedy_decode
    from captcha_ocr.preprocess import open_image, to_array

    sample = paths[:640]
    t = time.perf_counter()
    imgs = [open_image(p) for p in sample]
    t_decode = (time.perf_counter() - t) / len(sample)
    t = time.perf_counter()
    arrays = [to_array(im, reader.info.image) for im in imgs]
    t_pre = (time.perf_counter() - t) / len(sample)
    batches = [np.stack(arrays[i:i + 64]) for i in range(0, len(arrays), 64)]
    reader.run(batches[0])
    t = time.perf_counter()
    outs = [reader.run(b) for b in batches]
    t_model = (time.perf_counter() - t) / len(sample)
    t = time.perf_counter()
    for o in outs:
        greedy_decode(o, reader.charset)
    t_ctc = (time.perf_counter() - t) / len(sample)
    return dict(p50=p50, p99=p99, rate=rate, decode=t_decode, pre=t_pre, model=t_model, ctc=t_ctc,
                model_rate=1 / t_model, flops=reader.info.training.get("flops_per_image", 0),
                params=reader.info.training.get("params", 0), arch=reader.info.model.arch)


def torch_numbers(model_dir: Path, paths: list[Path], calls: int) -> dict:
    import torch

    from captcha_ocr.decoding import greedy_decode
    from captcha_ocr.preprocess import preprocess
    from captcha_ocr.train import load_checkpoint

    torch.set_num_threads(os.cpu_count() or 1)
    model, info = load_checkpoint(model_dir)
    cs = info.charset

    @torch.no_grad()
    def read(batch_paths):
        x = torch.from_numpy(np.stack([preprocess(p, info.image) for p in batch_paths]))
        return greedy_decode(model(x).numpy(), cs)

    p50, p99 = latency_ms(lambda p: read([p]), paths, max(100, calls // 5), warmup=10)
    rate = best_rate(lambda: [read(paths[i:i + 64]) for i in range(0, len(paths), 64)],
                     len(paths), repeats=1)
    return dict(p50=p50, p99=p99, rate=rate)


def process_numbers(model_dir: Path, paths: list[Path]) -> dict:
    """Cold start of `captcha-ocr predict one.png`, and peak RSS of a process reading all."""
    exe = Path(sys.executable).with_name("captcha-ocr")
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([str(exe), "predict", str(paths[0]), "--model", str(model_dir)],
                       check=True, stdout=subprocess.DEVNULL)
        runs.append(time.perf_counter() - t)
    # Peak RSS as the reading process itself sees it (VmHWM of its own address space):
    # the parent's rusage would count the pre-exec copy of this torch-laden process.
    code = ("import sys, pathlib; from captcha_ocr import Reader; r = Reader.load(sys.argv[1]); "
            "ps = sorted(pathlib.Path(sys.argv[2]).glob('*.png')); "
            "[r.read_many(ps, batch_size=64) for _ in range(2)]; "
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    out = subprocess.run([sys.executable, "-c", code, str(model_dir), str(paths[0].parent)],
                         check=True, capture_output=True, text=True).stdout
    rss_kb = int(out.split()[-1])
    return dict(cold=statistics.median(runs), rss_mb=rss_kb / 1024)


def int8_copy(model_dir: Path, data: Path, dest: Path) -> dict | str:
    """An int8 copy of ``model_dir`` in ``dest``: its check, or why it was not kept."""
    import shutil

    from captcha_ocr.modeldir import ModelError
    from captcha_ocr.quantize import quantize_model

    shutil.copytree(model_dir, dest)
    try:
        return quantize_model(dest, data)
    except ModelError as e:
        return str(e)


def _idat(data: bytes) -> bytes:
    """The zlib stream of a PNG file (its IDAT chunks, joined)."""
    out, i = [], 8
    while i + 8 <= len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        if data[i + 4:i + 8] == b"IDAT":
            out.append(data[i + 8:i + 8 + n])
        i += 12 + n
    return b"".join(out)


def decoder_numbers(paths: list[Path]) -> list[tuple[str, float, str]]:
    """PNG decoders on the files' bytes (in memory), microseconds an image, and whether
    each gives Pillow's pixels: Pillow through the Reader's gate (``open_image``), Pillow
    alone, and the faster decoders where installed (bench-only, never a dependency:
    pyspng, OpenCV); the floor is zlib inflating the pixel data alone, no PNG filters."""
    import io
    import zlib

    from PIL import Image

    from captcha_ocr.preprocess import open_image

    blobs = [p.read_bytes() for p in paths]
    ref = [np.asarray(Image.open(io.BytesIO(b))) for b in blobs]
    idats = [_idat(b) for b in blobs]

    def pil(b):
        im = Image.open(io.BytesIO(b))
        im.load()
        return np.asarray(im)

    cands = [("Pillow via open_image (today)", lambda b: np.asarray(open_image(b)))]
    cands.append(("Pillow alone", pil))
    try:
        import pyspng

        cands.append(("pyspng " + getattr(pyspng, "__version__", ""), pyspng.load))
    except ImportError:
        cands.append(("pyspng (not installed)", None))
    try:
        import cv2

        cv2.setNumThreads(1)

        def ocv(b):
            a = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)
            return a[..., [2, 1, 0, 3][:a.shape[2]]] if a.ndim == 3 else a  # BGR(A) -> RGB(A)

        cands.append((f"OpenCV {cv2.__version__}", ocv))
    except ImportError:
        cands.append(("OpenCV (not installed)", None))
    out = []
    for name, fn in cands:
        if fn is None:
            out.append((name, float("nan"), "-"))
            continue
        same = all(np.array_equal(fn(b), r) for b, r in zip(blobs, ref))
        rate = best_rate(lambda fn=fn: [fn(b) for b in blobs], len(blobs))
        out.append((name, 1e6 / rate, "yes" if same else "NO"))
    rate = best_rate(lambda: [zlib.decompress(d) for d in idats], len(idats))
    out.append(("floor: zlib inflate of the pixel data", 1e6 / rate, "-"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--models", type=Path, nargs="*", default=[])
    ap.add_argument("--calls", type=int, default=500, help="batch-1 calls after warm-up")
    ap.add_argument("--no-seed", action="store_true", help="skip the random-weight seed model")
    ap.add_argument("--int8", action="store_true", help="also time an int8 copy of each model")
    ap.add_argument("--decoders", action="store_true",
                    help="also time PNG decoders (Pillow, and pyspng / OpenCV where installed)")
    a = ap.parse_args()
    from captcha_ocr.runtime import bundled_model_dir

    paths = sorted(a.data.glob("*.png"))
    if not paths:
        sys.exit(f"no PNG files in {a.data}")
    peak = gemm_peak()
    with tempfile.TemporaryDirectory() as tmp:
        models = list(a.models)
        if (bundled_model_dir() / "model.json").is_file():
            models.insert(0, bundled_model_dir())
        if not a.no_seed:
            models.append(random_model("seed", Path(tmp) / "seed-random"))
        rows, checks = [], []
        for m in models:
            o, t, p = onnx_numbers(m, paths, a.calls), torch_numbers(m, paths, a.calls), \
                process_numbers(m, paths)
            rows.append((m, o, t, p))
            if a.int8:
                q = int8_copy(m, a.data, Path(tmp) / f"{m.name}+int8")
                if isinstance(q, str):
                    checks.append(f"{m.name}: {q}")
                    continue
                checks.append(f"{m.name}: {q['checked_images']} images (after {q['calibration_images']} "
                              f"to calibrate): float32 reads {q['fp32_accuracy']:.4f}, int8 "
                              f"{q['int8_accuracy']:.4f}, the same reading {q['agreement']:.4f}")
                q_dir = Path(tmp) / f"{m.name}+int8"
                rows.append((q_dir, onnx_numbers(q_dir, paths, a.calls), t, process_numbers(q_dir, paths)))
    print(f"\n{len(paths)} PNG files from {a.data}; {os.cpu_count()} cores; "
          f"torch FP32 GEMM peak {peak:.0f} GFLOP/s")
    print(f"{'model':22} {'arch':5} {'params':>7} {'MFLOP':>6} | {'b1 p50 ms':>9} {'b1 p99 ms':>9} "
          f"{'b64 img/s':>9} | {'torch b1 ms':>11} {'torch img/s':>11} {'ratio':>5} | "
          f"{'cold s':>6} {'RSS MB':>6} | {'net img/s':>9} {'GFLOP/s':>7} {'% peak':>6}")
    for m, o, t, p in rows:
        gf = o["flops"] * o["model_rate"] / 1e9
        print(f"{m.name[:22]:22} {o['arch']:5} {o['params']:7d} {o['flops'] / 1e6:6.1f} | "
              f"{o['p50']:9.3f} {o['p99']:9.3f} {o['rate']:9.0f} | {t['p50']:11.3f} "
              f"{t['rate']:11.0f} {o['rate'] / t['rate']:5.1f} | {p['cold']:6.2f} {p['rss_mb']:6.0f} | "
              f"{o['model_rate']:9.0f} {gf:7.1f} {100 * gf / peak:6.1f}")
    if checks:
        print("\nint8 against float32 (the labels of --data):\n  " + "\n  ".join(checks))
    print("\nper image at batch 64, microseconds (decode and preprocess on one thread; "
          "model on the Reader's inference threads)")
    print(f"{'model':22} {'PNG decode':>10} {'preprocess':>10} {'model':>8} {'CTC decode':>10}")
    for m, o, _, _ in rows:
        print(f"{m.name[:22]:22} {o['decode'] * 1e6:10.1f} {o['pre'] * 1e6:10.1f} "
              f"{o['model'] * 1e6:8.1f} {o['ctc'] * 1e6:10.1f}")
    if a.decoders:
        print(f"\nPNG decoders, the {len(paths)} files' bytes in memory, one thread")
        print(f"{'decoder':38} {'us/image':>8} {'Pillow pixels':>13}")
        for name, us, same in decoder_numbers(paths):
            print(f"{name:38} {us:8.1f} {same:>13}")


if __name__ == "__main__":
    main()
