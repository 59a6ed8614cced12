"""Labels to check: does ``captcha-ocr check-labels`` find wrong labels, and what else does it list?

For each style, N and seed, the training images of ``bench/styles_bench.py``'s cell (the
same folders) get a seeded fraction ``--noise`` of wrong labels (one character replaced
by another of the labels' alphabet, as a typo would), then ``crosscheck.check_labels``
runs with the default settings. Printed per cell: wrong labels made, how many of them it
listed (recall), how many right labels it listed too, and seconds. The zoo's labels are
right by construction, so there every other listed label is a false alarm; the real
styles may hold wrong labels of their own (henan_digits4 does), so there the others are
printed, to be looked at.

    python bench/label_check_bench.py --styles pastel_digits line_mesh rsce_gradient5 --ns 200 500
    python bench/label_check_bench.py --ns 500 --noise 0.05 --folds 2 3
    python bench/label_check_bench.py --styles pastel_digits --ns 200 --in-sample

``--in-sample`` adds, per cell, every disagreement (at any confidence) of a model trained
on all the cell's labels (one ``captcha-ocr train``) with those labels, read back: the
check that ``check-labels`` replaces.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from captcha_ocr.crosscheck import check_labels  # noqa: E402
from captcha_ocr.data import LABELS_FILE, discover  # noqa: E402
from styles_bench import available_styles, style_sets  # noqa: E402

SWEEP = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)


def corrupt_labels(folder: Path, fraction: float, seed: int) -> dict[str, str]:
    """Make ``fraction`` of the folder's labels wrong, seeded; rewrite its labels.csv.
    Returns {file name: the right label} of those made wrong."""
    samples = discover(folder)
    alphabet = sorted(set("".join(s.label for s in samples)))
    rng = np.random.default_rng([seed, 7])
    chosen = rng.choice(len(samples), size=round(fraction * len(samples)), replace=False)
    labels = {s.path.name: s.label for s in samples}
    for i in chosen:
        label = samples[i].label
        k = int(rng.integers(len(label)))
        other = [c for c in alphabet if c != label[k]]
        labels[samples[i].path.name] = label[:k] + other[int(rng.integers(len(other)))] + label[k + 1:]
    with (folder / LABELS_FILE).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "label"])
        w.writerows(labels.items())
    return {samples[i].path.name: samples[i].label for i in chosen}


def in_sample(folder: Path, seed: int) -> list:
    """The labels to check by the rule, read by a model trained on all of them."""
    from captcha_ocr import Reader
    from captcha_ocr.finetune import default_start
    from captcha_ocr.labelcheck import labels_to_check
    from captcha_ocr.train import recipe, train

    arch, start = default_start("auto")
    samples = discover(folder)
    with tempfile.TemporaryDirectory() as tmp:
        train(folder, Path(tmp) / "m", arch=arch, init=start,
              cfg=recipe(arch, finetune=True, seed=seed))
        readings = Reader.load(Path(tmp) / "m").read_many([s.path for s in samples])
    return labels_to_check([s.path.name for s in samples], [s.label for s in samples],
                           [r.text for r in readings], [r.confidence for r in readings], threshold=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--styles", nargs="+", help="style names (default: all available)")
    ap.add_argument("--ns", type=int, nargs="+", default=[200, 500])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--noise", type=float, default=0.05, help="fraction of labels made wrong")
    ap.add_argument("--folds", type=int, nargs="+", default=[2])
    ap.add_argument("--in-sample", action="store_true",
                    help="also list by a model trained on all the cell's labels (see above)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    a = ap.parse_args()
    styles, _ = available_styles()
    names = a.styles or list(styles)
    print(f"{os.cpu_count()} cores, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; styles "
          f"{names}; N {a.ns}; seeds {a.seeds}; noise {a.noise}; folds {a.folds}", flush=True)
    print(f"{'style':18} {'N':>5} {'seed':>4} {'folds':>5} {'wrong':>5} {'listed':>6} {'caught':>6} "
          f"{'others':>6} {'agree':>13} {'s':>6}  others listed (label -> reading)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            _, train_dir, _ = style_sets(name, styles[name], 500, Path(tmp) / "data")
            for n in a.ns:
                for seed in a.seeds:
                    folder = train_dir(n, seed)
                    if folder is None:
                        print(f"{name:18} {n:5d} skipped: too few images", flush=True)
                        continue
                    wrong = corrupt_labels(folder, a.noise, seed)
                    if a.in_sample:
                        own = in_sample(folder, seed)  # every disagreement, at any confidence
                        caught = sum(x.file in wrong for x in own)
                        print(f"{name:18} {n:5d} {seed:4d}    in {len(wrong):5d} {len(own):6d} "
                              f"{caught:6d} {len(own) - caught:6d}   (trained on them; at any "
                              "confidence)", flush=True)
                        rows.append(dict(style=name, n=n, seed=seed, folds=0, wrong=len(wrong),
                                         listed=len(own), caught=caught, others=len(own) - caught))
                    for folds in a.folds:
                        r = check_labels(folder, folds=folds, seed=seed)
                        listed = {Path(x.file).name: x for x in r.items}
                        caught = [f for f in wrong if f in listed]
                        others = [x for f, x in listed.items() if f not in wrong]
                        agree = "/".join("-" if f.agree is None else f"{f.agree:.3f}" for f in r.folds)
                        print(f"{name:18} {n:5d} {seed:4d} {folds:5d} {len(wrong):5d} {len(listed):6d} "
                              f"{len(caught):6d} {len(others):6d} {agree:>13} {r.seconds:6.0f}  "
                              + " ".join(f"{x.label}->{x.reading}" for x in others[:6]), flush=True)
                        sweep = {}
                        for t in SWEEP:  # the same readings, listed from other confidences
                            at = {Path(x.file).name for x in r.disagreements if x.confidence >= t}
                            sweep[t] = (len(at & set(wrong)), len(at - set(wrong)))
                        print(f"{'':18} caught / others from confidence " + ", ".join(
                            f"{t}: {c}/{o}" for t, (c, o) in sweep.items()), flush=True)
                        rows.append(dict(style=name, n=n, seed=seed, folds=folds, wrong=len(wrong),
                                         listed=len(listed), caught=len(caught), others=len(others),
                                         sweep=sweep, disagreements=[vars(x) for x in r.disagreements],
                                         wrong_files=sorted(wrong),
                                         agree=[f.agree for f in r.folds], seconds=r.seconds))
    print("\nper folds: wrong labels listed (recall), right labels listed (zoo: false alarms)")
    zoo = {s for s, src in styles.items() if src is None}
    for folds in a.folds + ([0] if a.in_sample else []):
        rs = [r for r in rows if r["folds"] == folds]
        wrong, caught = sum(r["wrong"] for r in rs), sum(r["caught"] for r in rs)
        fa = sum(r["others"] for r in rs if r["style"] in zoo)
        if folds:
            for t in SWEEP:
                c = sum(r["sweep"][t][0] for r in rs)
                o_zoo = sum(r["sweep"][t][1] for r in rs if r["style"] in zoo)
                o_real = sum(r["sweep"][t][1] for r in rs if r["style"] not in zoo)
                print(f"  from confidence {t}: {c} of {wrong} wrong labels listed "
                      f"({c / max(wrong, 1):.1%}); right ones listed: zoo {o_zoo}, real {o_real}")
        right_zoo = sum(r["n"] - r["wrong"] for r in rs if r["style"] in zoo)
        how = f"folds {folds}" if folds else "in-sample"
        print(f"{how}: {caught} of {wrong} wrong labels listed ({caught / max(wrong, 1):.1%}); "
              f"zoo: {fa} of {right_zoo} right labels listed ({fa / max(right_zoo, 1):.2%}); real "
              f"styles: {sum(r['others'] for r in rs if r['style'] not in zoo)} others listed")
    print(f"\nload at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
