"""Reading options benchmark: calibrated confidence and beam search against greedy.

For each style: train with the default recipe on N labeled images (``captcha-ocr train``,
as in styles_bench: same splits, same seeds), then read held-out test images and print:

- sequence accuracy of the default reading (greedy, with a small beam search where the
  greedy text's probability is 0.5 or less) and of beam search (K);
- expected calibration error of ``confidence`` at T = 1 and at the temperature that
  training fitted on its inner validation split (the test images never saw the fit);
- the threshold that accepts 95% of the test images, and how many of the accepted
  readings are right (target: >= 99.9%);
- the coverage at which accepted readings are 99.9% right;
- (diagnostic) the temperature that would have been best on the test images, and its ECE;
- ``--allow`` and ``--length`` set to the style's true alphabet and lengths (those of
  its training labels) against no constraint, for the trained model and for the shipped
  base model zero-shot (whose alphabet is far wider than any site's);
- beam search at K = 1, 4, 16: accuracy, and batch-1 latency (PNG bytes -> reading);
- where labels are arithmetic expressions: answer accuracy (``solve``) beside sequence
  accuracy (the parser must lose nothing).

    python bench/reading_bench.py                                   # 3 real styles, N=500
    python bench/reading_bench.py --styles captcha_images_v2 wavy --n 200 --seeds 1 2
    python bench/reading_bench.py --quick                           # 2 styles, N=200, test 300
    python bench/reading_bench.py --styles arithmetic --seeds 1     # answer accuracy
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from captcha_ocr import Reader  # noqa: E402
from captcha_ocr.calibration import TEMPERATURES, confidences, expected_calibration_error  # noqa: E402
from captcha_ocr.data import discover  # noqa: E402
from captcha_ocr.solve import solve  # noqa: E402
from styles_bench import available_styles, style_sets, train  # noqa: E402

DEFAULT_STYLES = ["captcha_images_v2", "henan_digits4", "rsce_gradient5"]


def coverage_at(conf: np.ndarray, right: np.ndarray, target: float) -> tuple[float, float]:
    """Threshold accepting the ``target`` share of images (highest confidences), and the
    accuracy of those accepted."""
    order = np.argsort(-conf)
    k = max(1, int(round(target * len(conf))))
    return float(conf[order[k - 1]]), float(right[order[:k]].mean())


def precise_coverage(conf: np.ndarray, right: np.ndarray, precision: float = 0.999) -> float:
    """The largest share of images (most confident first) whose readings are at least
    ``precision`` right."""
    order = np.argsort(-conf)
    ok = np.cumsum(right[order]) / np.arange(1, len(conf) + 1)
    good = np.flatnonzero(ok >= precision)
    return float((good.max() + 1) / len(conf)) if len(good) else 0.0


def measure(model: Path, test, beam: int) -> dict:
    reader = Reader.load(model)
    paths, labels = [s.path for s in test], [s.label for s in test]
    greedy = reader.read_many(paths)
    searched = reader.read_many(paths, beam=beam)
    right = np.array([r.text == y for r, y in zip(greedy, labels)], float)
    conf = np.array([r.confidence for r in greedy])
    lp = np.concatenate([reader.run(np.stack([reader.preprocess(x) for x in paths[k : k + 64]]))
                         for k in range(0, len(paths), 64)])
    _, raw = confidences(lp, reader.charset, 1.0)  # before calibration
    # Diagnostic: the temperature that would have been best on the test images themselves.
    ece_at = {float(t): expected_calibration_error(confidences(lp, reader.charset, float(t))[1], right)
              for t in TEMPERATURES[::4]}
    best_t = min(ece_at, key=ece_at.get)
    threshold, accepted_acc = coverage_at(conf, right, 0.95)
    return dict(acc=right.mean(), beam_acc=np.mean([r.text == y for r, y in zip(searched, labels)]),
                temp=reader.info.temperature, ece_raw=expected_calibration_error(raw, right),
                ece=expected_calibration_error(conf, right), threshold=threshold,
                accepted_acc=accepted_acc, cover999=precise_coverage(conf, right),
                best_t=best_t, best_ece=ece_at[best_t])


def accuracy(reader: Reader, paths, labels, **options) -> float:
    return float(np.mean([r.text == y for r, y in zip(reader.read_many(paths, **options), labels)]))


def constraints(reader: Reader, train_labels: list[str]) -> dict:
    """The style's alphabet (within the model's) and lengths, as reading options."""
    allow = "".join(sorted(set("".join(train_labels)) & set(reader.charset.alphabet)))
    lo, hi = min(map(len, train_labels)), max(map(len, train_labels))
    return dict(allow=allow, length=lo) if lo == hi else dict(allow=allow, min_length=lo, max_length=hi)


def measure_options(model: Path, test, train_labels: list[str], calls: int) -> dict:
    """Constrained against free reading (trained model and base zero-shot), beam K = 1, 4,
    16 (accuracy, batch-1 p50/p99 ms on PNG bytes), and answer accuracy for arithmetic."""
    paths, labels = [s.path for s in test], [s.label for s in test]
    out: dict = {}
    reader = Reader.load(model)
    for name, r in (("model", reader), ("base", Reader.load("base"))):
        out[name] = (accuracy(r, paths, labels), accuracy(r, paths, labels, **constraints(r, train_labels)))
    blobs = [p.read_bytes() for p in paths[:calls]]
    for k in (1, 4, 16):
        times = []
        for b in blobs:
            t0 = time.perf_counter()
            reader.read(b, beam=k)
            times.append(time.perf_counter() - t0)
        out[f"beam{k}"] = (accuracy(reader, paths, labels, beam=k),
                           1e3 * float(np.percentile(times, 50)), 1e3 * float(np.percentile(times, 99)))
    truth = [solve(y).answer for y in labels]
    if all(t is not None for t in truth) and any(set(y) & set("+-x*/") for y in labels):
        read = reader.read_many(paths, solve=True)
        out["answer"] = (float(np.mean([r.answer == t for r, t in zip(read, truth)])),
                         float(np.mean([r.text == y for r, y in zip(read, labels)])))
    return out


def print_options(name: str, seed: int, o: dict) -> None:
    beams = "  ".join(f"K={k} {o[f'beam{k}'][0]:.4f} {o[f'beam{k}'][1]:.2f}/{o[f'beam{k}'][2]:.2f}ms"
                      for k in (1, 4, 16))
    answer = f"  answer {o['answer'][0]:.4f} (sequence {o['answer'][1]:.4f})" if "answer" in o else ""
    print(f"{name:18} {seed:4d} model {o['model'][0]:.4f} -> {o['model'][1]:.4f}  base zero-shot "
          f"{o['base'][0]:.4f} -> {o['base'][1]:.4f}  {beams}{answer}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--styles", nargs="+", default=DEFAULT_STYLES)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--beam", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="2 styles, N=200, test 300")
    ap.add_argument("--extra-args", default="", help="more options for captcha-ocr train")
    ap.add_argument("--calls", type=int, default=200, help="batch-1 reads timed per beam width")
    a = ap.parse_args()
    if a.quick:
        a.styles, a.n, a.test = ["captcha_images_v2", "pastel_digits"], 200, 300
    styles, missing = available_styles()
    if missing:
        print(f"real styles not here (skipped): {', '.join(missing)}")
    print(f"N {a.n}, test {a.test}, beam {a.beam}, seeds {a.seeds}")
    print(f"{'style':18} {'seed':>4} {'default':>7} {'beam':>7} {'T':>6} {'ECE T=1':>8} {'ECE':>7} "
          f"{'thr@95%':>8} {'acc@95%':>8} {'cov@99.9%':>9} {'test-best T, ECE':>16}")
    options: list[tuple[str, int, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in a.styles:
            if name not in styles:
                continue
            test, train_dir, _ = style_sets(name, styles[name], a.test, work)
            for seed in a.seeds:
                data = train_dir(a.n, seed)
                if data is None:
                    continue
                out = work / f"{name}-{seed}-model"
                _, error = train(data, out, seed, a.extra_args.split())
                if error:
                    print(f"{name:18} {seed:4d} FAILED: {error}", flush=True)
                    continue
                m = measure(out, test, a.beam)
                print(f"{name:18} {seed:4d} {m['acc']:7.4f} {m['beam_acc']:7.4f} {m['temp']:6.3f} "
                      f"{m['ece_raw']:8.4f} {m['ece']:7.4f} {m['threshold']:8.4f} "
                      f"{m['accepted_acc']:8.4f} {m['cover999']:9.3f} "
                      f"{m['best_t']:8.3f} {m['best_ece']:7.4f}", flush=True)
                train_labels = [s.label for s in discover(data)]
                options.append((name, seed, measure_options(out, test, train_labels, a.calls)))
    print("\nreading options: greedy -> with --allow/--length set to the style's alphabet and "
          "lengths; beam K: accuracy, batch-1 p50/p99")
    for name, seed, o in options:
        print_options(name, seed, o)


if __name__ == "__main__":
    main()
