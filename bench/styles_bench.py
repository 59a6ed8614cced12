"""Styles benchmark: the default training recipe on every captcha style, from few labels.

For each style (every zoo style, plus the real styles in ../shared/data that are
present), each N and each seed: train with ``captcha-ocr train DIR --out M`` (the user's
command with no recipe options, in a subprocess, timed end to end) on N labeled images,
then read other images of that style with the exported ONNX model. Prints a row per
run as it finishes, then a summary per N (and per style when several seeds ran).

Zoo styles train on ``write_style(style, dir, N, seed=1000 + seed)`` and are tested on
the disjoint stream ``seed=999``. Real styles use a fixed permutation (default_rng(0)):
the first images are the test set, the next N train.

    python bench/styles_bench.py                  # all styles, N 50 200 500 (+2000), seed 1
    python bench/styles_bench.py --quick          # a few minutes: 4 styles, N=200, test 300
    python bench/styles_bench.py --styles wavy henan_digits4 --ns 200 --seeds 1 2 3
    python bench/styles_bench.py --styles pastel_digits --ns 50 --test 300 --extra-args "--epochs 1"
    python bench/styles_bench.py --list           # the styles available here
    python bench/styles_bench.py --zero-shot --scratch --ddddocr-python /tmp/ddvenv/bin/python
    python bench/styles_bench.py --zero-shot --base runs/base2 --ns 50   # another base model
    python bench/styles_bench.py --styles wavy --ns 50 --unlabeled 2000   # self-training
    python bench/styles_bench.py --picks --ns 50 200 500 --seeds 1 2   # the base each cell starts from
    python bench/styles_bench.py --data runs/foreign/* --ns 200 500   # labeled folders of your own

``--zero-shot`` adds, per style, the shipped base model's zero-shot accuracy and, with
``--ddddocr-python PY`` (an interpreter where the ``ddddocr`` package is installed: a
general pretrained captcha reader, bench only, never a dependency of captcha-ocr), that
reader's: both compared case-insensitively, as their alphabets differ from the site's.
Each row's ``ci acc`` compares the trained model's readings case-insensitively too, as
the zero-shot columns do (many sites accept either case).
``--scratch`` also trains every cell from random weights (``--init none``), beside the
default (which fine-tunes the base), and prints the two side by side.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from captcha_ocr import Reader
from captcha_ocr.data import LABELS_FILE, Sample, discover, link_labeled
from captcha_ocr.metrics import cer, sequence_accuracy
from captcha_ocr.zoo import STYLES, write_style

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT.parent / "shared" / "data"
REAL_STYLES = ["rsce_gradient5", "henan_digits4", "captcha_images_v2"]
DEFAULT_NS = [50, 200, 500]  # plus BIG_N where the style has enough images
BIG_N = 2000
MIN_TEST = 300  # fewer test images make accuracies too noisy to compare
EMPTY = '""'  # how an empty reading shows in the error examples
QUICK_STYLES = ["gradient_colour", "rotated_tiles", "pastel_digits", "rsce_gradient5"]


def available_styles() -> tuple[dict[str, Path | None], list[str]]:
    """{name: real data folder, or None for a zoo style}, and the real styles missing here."""
    styles: dict[str, Path | None] = {name: None for name in STYLES}
    missing = [name for name in REAL_STYLES if not (REAL_DATA / name).is_dir()]
    styles.update({name: REAL_DATA / name for name in REAL_STYLES if name not in missing})
    return styles, missing


def real_test_size(total: int, n_test: int) -> int:
    """The requested test size, or MIN_TEST where that leaves fewer than 500 to train on
    (captcha_images_v2: 936 images, 300 test, so that N=500 fits)."""
    return n_test if total - n_test >= DEFAULT_NS[-1] else min(n_test, MIN_TEST)


def train(train_dir: Path, out: Path, seed: int, extra: list[str]) -> tuple[float, str | None]:
    """Run the user's train command; (wall seconds, last stderr line on failure or None)."""
    cmd = [sys.executable, "-m", "captcha_ocr.cli", "train", str(train_dir), "--out", str(out),
           "--seed", str(seed), "-q", *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if p.returncode == 0:
        return wall, None
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    return wall, lines[-1].strip() if lines else f"exit status {p.returncode}"


def plateau_escape(history: Path) -> int | None:
    """The first epoch whose validation sequence accuracy reached 0.5, or None."""
    with history.open(newline="") as f:
        for row in csv.DictReader(f):
            if float(row["val_sequence_accuracy"]) >= 0.5:
                return int(row["epoch"])
    return None


def model_facts(out: Path) -> dict:
    """Epochs, optimizer steps, input geometry and plateau escape of a trained model."""
    info = json.loads((out / "model.json").read_text())
    t, im = info["training"], info["image"]
    geometry = f"{im['width']}x{im['height']}x{im['channels']}"
    crop = im.get("crop")
    if crop and [float(v) for v in crop] != [0.0, 0.0, 1.0, 1.0]:
        geometry += " crop=" + ",".join(f"{v:.2f}" for v in crop)
    added = t.get("alphabet", {}).get("added")
    if added:  # train's alphabet completion fired (characters seen once in the labels)
        geometry += f" +{len(added)}ch"
    start = t.get("init", {}).get("model")
    if start not in (None, "base"):  # started from another model (--init auto picked base2)
        geometry += f" from {start}"
    return dict(epochs=t["epochs_run"], best_epoch=t["best_epoch"], steps=t.get("steps"),
                geometry=geometry, escape=plateau_escape(out / "history.csv"))


def ci_accuracy(labels: list[str], preds: list[str]) -> float:
    """Sequence accuracy with case ignored (how the zero-shot columns compare)."""
    return sequence_accuracy([x.lower() for x in labels], [p.lower() for p in preds])


def evaluate(out: Path, test: list[Sample]) -> dict:
    """Read the test images with the exported model: accuracy, CER and the errors."""
    preds = [r.text for r in Reader.load(out).read_many([s.path for s in test])]
    labels = [s.label for s in test]
    wrong = [f"{s.label}->{p or EMPTY}" for s, p in zip(test, preds) if p != s.label]
    return dict(acc=sequence_accuracy(labels, preds), cer=cer(labels, preds), wrong=wrong,
                acc_ci=ci_accuracy(labels, preds))


DDDDOCR_READ = """
import sys, ddddocr
ocr = ddddocr.DdddOcr(show_ad=False)
for path in sys.stdin.read().splitlines():
    with open(path, "rb") as f:
        print(ocr.classification(f.read()).replace("\\n", " "), flush=True)
"""


def zero_shot(test: list[Sample], ddddocr_python: str | None, base_model: str = "base") -> dict:
    """Case-insensitive accuracy of the base model, and of ddddocr where asked."""
    labels = [s.label for s in test]
    base = [r.text for r in Reader.load(base_model).read_many([s.path for s in test])]
    out = dict(base=ci_accuracy(labels, base), ddddocr=None)
    if ddddocr_python:
        p = subprocess.run([ddddocr_python, "-c", DDDDOCR_READ], text=True, capture_output=True,
                           input="\n".join(str(s.path) for s in test))
        if p.returncode != 0:
            out["ddddocr_error"] = (p.stderr.strip().splitlines() or ["?"])[-1]
        else:
            preds = p.stdout.splitlines()
            preds += [""] * (len(labels) - len(preds))
            out["ddddocr"] = ci_accuracy(labels, preds[:len(labels)])
    return out


def run_one(style: str, n: int, seed: int, train_dir: Path, test: list[Sample], out: Path,
            extra: list[str], start: str = "default") -> dict:
    """Train, read, and collect one row; a failure becomes the row's ``error``, never a crash."""
    row = dict(style=style, n=n, seed=seed, start=start, n_test=len(test), error=None)
    row["wall"], row["error"] = train(train_dir, out, seed, extra)
    if row["error"] is None:
        try:
            row.update(model_facts(out))
            row.update(evaluate(out, test))
        except Exception as e:  # a broken model dir is a result too; keep benching
            row["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
    return row


def print_pick(style: str, n: int, seed: int, folder: Path, also: str | None = None) -> None:
    """The base ``train --init auto`` would start this cell from, and why (``train.pick_init``);
    with ``also``, that model a third candidate beside the shipped bases."""
    from captcha_ocr.finetune import load_init, load_inits
    from captcha_ocr.train import pick_init, training_input

    bases, samples = load_inits("auto") + ([load_init(also)] if also else []), discover(folder)
    image = training_input(samples, "deep", bases)[0]
    t0 = time.perf_counter()  # what the pick adds to a training run (decoding included)
    _, r = pick_init(bases, samples, image, "auto")
    took = time.perf_counter() - t0
    losses = "  ".join(f"{k} {v:7.3f}" for k, v in r["loss"].items())
    ts = "  ".join(f"t {k} {v:6.2f}" for k, v in r["t_against_first"].items())
    print(f"{style:18} {n:5d} {seed:4d}  {r['images']:4d} images  loss {losses}  {ts}  -> {r['chosen']}  "
          f"{took:.2f}s",
          flush=True)


HEAD = (f"{'style':18} {'N':>5} {'seed':>4} {'start':>7} {'acc':>6} {'ci acc':>6} {'CER':>6} {'wall s':>7} "
        f"{'epochs':>6} {'steps':>6} {'val>=.5':>7} {'input':16} errors")


def print_row(r: dict) -> None:
    start = f"{r['style']:18} {r['n']:5d} {r['seed']:4d} {r.get('start', 'default'):>7}"
    if "acc" not in r:
        print(f"{start} FAILED after {r['wall']:.1f}s: {r['error']}", flush=True)
        return
    steps = "-" if r["steps"] is None else str(r["steps"])
    escape = "never" if r["escape"] is None else str(r["escape"])
    print(f"{start} {r['acc']:6.4f} {r['acc_ci']:6.4f} {r['cer']:6.4f} {r['wall']:7.1f} {r['epochs']:6d} "
          f"{steps:>6} {escape:>7} {r['geometry']:16} {' '.join(r['wrong'][:3])}", flush=True)


def style_means(rows: list[dict]) -> dict[str, list[float]]:
    """{style: accuracies over seeds}, for the rows that finished."""
    by_style: dict[str, list[float]] = {}
    for r in rows:
        if "acc" in r:
            by_style.setdefault(r["style"], []).append(r["acc"])
    return by_style


def print_summary(rows: list[dict], ns: list[int]) -> None:
    print("\nsummary per N (median and worst over styles, each style's mean over seeds)")
    print(f"{'N':>5} {'runs':>4} {'failed':>6} {'mean acc':>8} {'median':>7} {'worst style':18} "
          f"{'acc':>6} {'never .5':>8} {'max wall s':>10}")
    for n in ns:
        rs = [r for r in rows if r["n"] == n and r.get("start", "default") != "scratch"]
        ok = [r for r in rs if "acc" in r]
        if not ok:
            print(f"{n:5d} {len(rs):4d} {len(rs):6d}")
            continue
        means = {s: float(np.mean(a)) for s, a in style_means(ok).items()}
        worst = min(means, key=means.get)
        never = sum(r["escape"] is None for r in ok)
        print(f"{n:5d} {len(rs):4d} {len(rs) - len(ok):6d} {np.mean([r['acc'] for r in ok]):8.4f} "
              f"{np.median(list(means.values())):7.4f} {worst:18} {means[worst]:6.4f} {never:8d} "
              f"{max(r['wall'] for r in rs):10.1f}")


def print_comparison(rows: list[dict], ns: list[int], zero: dict[str, dict]) -> None:
    """Per style and N: zero-shot readers, from scratch and the default, mean over seeds."""
    print("\nper style: zero-shot (case-insensitive) and trained on N labels (mean over seeds)")
    print(f"{'style':18} {'base 0-shot':>11} {'ddddocr':>8} {'N':>5} {'scratch':>8} {'default':>8}")

    def mean(style: str, n: int, start: str) -> str:
        accs = [r["acc"] for r in rows if (r["style"], r["n"], r.get("start")) == (style, n, start)
                and "acc" in r]
        return f"{np.mean(accs):8.4f}" if accs else f"{'-':>8}"

    for style in dict.fromkeys(r["style"] for r in rows):
        z = zero.get(style, {})
        base = f"{z['base']:11.4f}" if "base" in z else f"{'-':>11}"
        dd = f"{z['ddddocr']:8.4f}" if z.get("ddddocr") is not None else f"{'-':>8}"
        for n in ns:
            print(f"{style:18} {base} {dd} {n:5d} {mean(style, n, 'scratch')} {mean(style, n, 'default')}")


def print_seed_spread(rows: list[dict], ns: list[int]) -> None:
    print("\nper style, mean accuracy over seeds (min-max)")
    for n in ns:
        for style, accs in style_means([r for r in rows if r["n"] == n
                                        and r.get("start", "default") == "default"]).items():
            print(f"{style:18} {n:5d} {np.mean(accs):6.4f} ({min(accs):.4f}-{max(accs):.4f}) "
                  f"{len(accs)} seeds")


def style_sets(name: str, source: Path | None, n_test: int, work: Path):
    """(test samples, a function N, seed -> training folder or None where too few images,
    a function N, seed, U -> a folder of up to U other images, unlabeled)."""
    if source is None:  # zoo: the test set is a seeded stream disjoint from the training ones
        def zoo_dir(n: int, seed: int) -> Path:
            write_style(name, work / name / f"n{n}-s{seed}", n, seed=1000 + seed)
            return work / name / f"n{n}-s{seed}"

        def zoo_unlabeled(n: int, seed: int, u: int) -> Path:  # the same stream after the N
            more = write_style(name, work / name / f"pool-n{n}-s{seed}", n + u, seed=1000 + seed)
            return link_labeled(more[n:], work / name / f"unlabeled-n{n}-s{seed}", False)
        return write_style(name, work / name / "test", n_test, seed=999), zoo_dir, zoo_unlabeled
    samples = discover(source)
    order = np.random.default_rng(0).permutation(len(samples))
    n_test = real_test_size(len(samples), n_test)
    test, pool = [samples[i] for i in order[:n_test]], [samples[i] for i in order[n_test:]]
    labels = (source / LABELS_FILE).is_file()

    def train_dir(n: int, seed: int) -> Path | None:
        dest = work / name / f"n{n}-s{seed}"
        return link_labeled(pool[:n], dest, labels) if n <= len(pool) else None

    def unlabeled_dir(n: int, seed: int, u: int) -> Path:
        return link_labeled(pool[n:n + u], work / name / f"unlabeled-n{n}-s{seed}", False)
    return test, train_dir, unlabeled_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--styles", nargs="+", help="style names (default: all available; see --list)")
    ap.add_argument("--ns", type=int, nargs="+", help=f"training sizes (default: {DEFAULT_NS}, "
                    f"plus {BIG_N} where the style has enough images)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--test", type=int, default=500, help=f"test images per style (at least {MIN_TEST})")
    ap.add_argument("--extra-args", default="", help='appended to the train command, e.g. "--epochs 1"')
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--keep", type=Path, help="keep the model dirs under this folder")
    ap.add_argument("--quick", action="store_true", help="4 styles, N=200, seed 1, test 300")
    ap.add_argument("--list", action="store_true", help="print the styles available and exit")
    ap.add_argument("--zero-shot", action="store_true",
                    help="also read each test set with the shipped base model, untrained")
    ap.add_argument("--base", help="a base model to read zero-shot and fine-tune from (default: "
                    "train's own choice, --init auto, and 'base' for the zero-shot column)")
    ap.add_argument("--ddddocr-python", help="with --zero-shot: a Python with ddddocr installed")
    ap.add_argument("--unlabeled", type=int, metavar="U",
                    help="self-training: each cell trains with a folder of U other images of "
                         "its style, unlabeled (train --unlabeled), instead of its labels alone; "
                         "its row's start column reads '+Uu'")
    ap.add_argument("--picks", action="store_true",
                    help="print which shipped base train's default (--init auto) starts each "
                         "cell from, with both bases' losses and the t-statistic; no training "
                         "(with --base M: M a candidate beside them)")
    ap.add_argument("--scratch", action="store_true",
                    help="also train each cell from random weights (--init none)")
    ap.add_argument("--data", type=Path, nargs="+", default=[], metavar="DIR",
                    help="more real styles: labeled folders (labels.csv or file-name labels), "
                         "each named by its folder, e.g. those bench/foreign_styles.py writes; "
                         "with no --styles only these run")
    a = ap.parse_args()
    styles, missing = available_styles()
    for d in a.data:
        if not d.is_dir():
            ap.error(f"--data {d}: no such folder")
        if d.name in styles:
            ap.error(f"--data {d}: a style named {d.name!r} is here already; rename the folder")
        styles[d.name] = d
    if a.data and a.quick:
        ap.error("--quick runs its own four styles: leave out --data, or --quick")
    if a.data and not a.styles:
        a.styles = [d.name for d in a.data]
    if a.list:
        print("zoo:  " + " ".join(s for s, src in styles.items() if src is None))
        print("real: " + " ".join(s for s, src in styles.items() if src is not None))
        print("missing: " + (" ".join(missing) or "none"))
        return
    if a.quick:
        a.styles, a.ns, a.seeds, a.test = [s for s in QUICK_STYLES if s in styles], [200], [1], MIN_TEST
    names = a.styles or list(styles)
    unknown = [s for s in names if s not in styles]
    if unknown:
        ap.error(f"unknown or missing style(s) {unknown}; see --list")
    if a.test < MIN_TEST:
        ap.error(f"--test must be at least {MIN_TEST}")
    if a.picks and (a.extra_args or a.unlabeled or a.scratch):
        ap.error("--picks shows the default's choice: leave out --extra-args, --unlabeled and "
                 "--scratch")
    ns = a.ns or DEFAULT_NS + [BIG_N]
    extra = shlex.split(a.extra_args)
    if a.base:
        extra = ["--init", a.base, *extra]
    print(f"{os.cpu_count()} cores, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; styles {names}; "
          f"N {ns}; seeds {a.seeds}; test {a.test}; extra args {extra}", flush=True)
    if missing:
        print(f"missing real styles (not in {REAL_DATA}): {' '.join(missing)}", flush=True)
    if not a.picks:
        print(HEAD + "\n" + "-" * len(HEAD), flush=True)
    rows, zero = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        models = a.keep or Path(tmp) / "models"
        for name in names:
            test, train_dir, unlabeled_dir = style_sets(name, styles[name], a.test, Path(tmp) / "data")
            if a.zero_shot:
                zero[name] = zero_shot(test, a.ddddocr_python, a.base or "base")
                dd = zero[name].get("ddddocr_error") or (
                    "-" if zero[name]["ddddocr"] is None else f"{zero[name]['ddddocr']:.4f}")
                print(f"{name:18} zero-shot (case-insensitive): base {zero[name]['base']:.4f}, "
                      f"ddddocr {dd}", flush=True)
            for n in ns:
                for seed in a.seeds:
                    folder = train_dir(n, seed)
                    if folder is None:
                        print(f"{name:18} {n:5d} skipped: too few images left after {len(test)} test",
                              flush=True)
                        break
                    if a.picks:
                        print_pick(name, n, seed, folder, a.base)
                        continue
                    if a.unlabeled:  # self-training instead of the labels alone
                        u = unlabeled_dir(n, seed, a.unlabeled)
                        rows.append(run_one(name, n, seed, folder, test, models / f"{name}-n{n}-s{seed}-u",
                                            [*extra, "--unlabeled", str(u)],
                                            start=f"+{len(list(u.iterdir()))}u"))
                    else:
                        rows.append(run_one(name, n, seed, folder, test, models / f"{name}-n{n}-s{seed}",
                                            extra))
                    print_row(rows[-1])
                    if a.scratch:
                        rows.append(run_one(name, n, seed, folder, test,
                                            models / f"{name}-n{n}-s{seed}-scratch",
                                            [*extra, "--init", "none"], start="scratch"))
                        print_row(rows[-1])
    if a.picks:
        return
    print_summary(rows, ns)
    if a.zero_shot or a.scratch:
        print_comparison(rows, ns, zero)
    if len(a.seeds) > 1:
        print_seed_spread(rows, ns)
    print(f"\nload at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if a.json:
        a.json.write_text(json.dumps(dict(rows=rows, zero_shot=zero), indent=1))


if __name__ == "__main__":
    main()
