"""Check a folder's labels: read every labeled image with a model that did not train on it.

The labeled images are dealt into ``folds`` parts (seeded); for each part, the default
recipe (``captcha-ocr train`` with no options) trains on the other parts and reads this
one. Every image is then read once by a model that never saw its label, and the readings
that differ from their labels with calibrated confidence (``labelcheck``) are the labels
to check. This is cross-validation used for the labels rather than for the model, as
"confident learning" does (Northcutt et al., JAIR 2021): a model trained on the image
itself would have learned its wrong label by heart.

Cost: ``folds`` training runs on ``(folds - 1) / folds`` of the labels each.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import DatasetError, copy_groups, counted, file_digest, link_labeled, survey
from .labelcheck import CONFIDENT, LabelToCheck, labels_to_check, suspect
from .runtime import Reader

__all__ = ["DEFAULT_FOLDS", "MIN_PER_FOLD", "FoldResult", "LabelCheck", "check_labels"]

DEFAULT_FOLDS = 2
MIN_PER_FOLD = 10  # fewer labels than this in a part: too few to train on the others


@dataclass(frozen=True)
class FoldResult:
    fold: int
    trained_on: int
    read: int
    agree: float | None  # share of the part's readings equal to their labels (None: none read)
    seconds: float


@dataclass
class LabelCheck:
    items: list[LabelToCheck]  # the labels to check, most confident first
    n: int                     # labeled images read (the unreadable ones not counted)
    threshold: float
    folds: list[FoldResult] = field(default_factory=list)
    seconds: float = 0.0
    disagreements: list[LabelToCheck] = field(default_factory=list)  # at any confidence
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, why): not checked
    copies: int = 0  # images whose file is a copy of another's (dealt to the same part)

    @property
    def agreement(self) -> float | None:
        """The share of the images read as labeled, over every part (None: none read)."""
        read = [(f.agree, f.read) for f in self.folds if f.agree is not None]
        total = sum(n for _, n in read)
        return sum(a * n for a, n in read) / total if total else None

    @property
    def weakest(self) -> FoldResult | None:
        """The part whose model read the fewest of its labels as labeled (None: none read):
        a list is only as good as the weaker of the models that made it."""
        read = [f for f in self.folds if f.agree is not None]
        return min(read, key=lambda f: f.agree) if read else None

    def as_dict(self) -> dict:
        return dict(n=self.n, threshold=self.threshold, seconds=round(self.seconds, 2),
                    agreement=None if self.agreement is None else round(self.agreement, 4),
                    copies=self.copies,
                    folds=[vars(f) for f in self.folds],
                    labels_to_check=[vars(x) for x in self.items],
                    unreadable=[dict(file=f, error=e) for f, e in self.unreadable])


def deal(n: int, folds: int, seed: int, groups: list | None = None) -> np.ndarray:
    """The part (0 .. folds-1) of each of ``n`` images: in a seeded order, each goes to
    the part that holds fewest so far (round-robin, for single images).

    ``groups``: images with equal values (copies of one file) go to one part together,
    so that no part's model trains on a copy of an image it is to check."""
    group = copy_groups(groups) if groups is not None else np.arange(n)
    sizes = np.bincount(group, minlength=1)
    part_of_group = np.empty(len(sizes), np.int64)
    held = np.zeros(folds, np.int64)
    for g in np.random.default_rng(seed).permutation(len(sizes)):
        k = int(np.argmin(held))
        part_of_group[g] = k
        held[k] += sizes[g]
    return part_of_group[group]


def check_labels(data_dir: str | Path, *, folds: int = DEFAULT_FOLDS, seed: int = 0,
                 threshold: float = CONFIDENT, stem_labels: bool = False, names: str = "auto",
                 init: str | None = "auto",
                 on_start: Callable[[int], None] | None = None,
                 on_fold: Callable[[FoldResult], None] | None = None,
                 on_round: Callable[[int, int, int], None] | None = None,
                 recipe_overrides: dict | None = None) -> LabelCheck:
    """Cross-read a folder's labeled images and list the labels to check.

    Args:
        data_dir: a dataset folder, as for ``captcha-ocr train``.
        folds: parts to deal the labels into (each is read by a model trained on the others).
        seed: the deal, and (plus the part's number) each run's training seed.
        threshold: the calibrated confidence from which a differing reading is listed.
        stem_labels: images that ``labels.csv`` does not name are labeled by file stem.
        names: how file names carry labels (``data.name_labels``).
        init: the model each run starts from, as ``train --init`` (default: the shipped
            base that fits the labels, as ``captcha-ocr train`` does; None: from scratch).
        on_start: called with the number of labeled images once the folder and the
            starting model are checked, before the first run.
        on_fold: called after each part is read.
        on_round: called as each part's training goes: (part, rounds done, rounds in all).
        recipe_overrides: settings of the training recipe (``train.recipe``) to change.

    Raises:
        DatasetError: the folder is unusable, or has too few labels for ``folds`` parts.
        ModelError: ``init`` is not a model.
        ValueError: fewer than 2 parts.
    """
    from .finetune import default_start
    from .train import recipe, train

    t0 = time.perf_counter()
    if folds < 2:
        raise ValueError(f"{folds} part(s): at least 2 (each part is read by a model trained "
                         "on the others)")
    samples = survey(data_dir, stem_labels=stem_labels, names=names).samples
    if len(samples) < folds * MIN_PER_FOLD:
        raise DatasetError(f"{data_dir}: {counted(len(samples), 'labeled image')}: at least "
                           f"{folds * MIN_PER_FOLD} are needed for {folds} parts of "
                           f"{MIN_PER_FOLD} or more")
    digests = [file_digest(s.path) for s in samples]
    part = deal(len(samples), folds, seed, groups=digests)
    small = np.bincount(part, minlength=folds).min()
    if small < MIN_PER_FOLD:
        raise DatasetError(f"{data_dir}: its {len(samples)} labeled images hold too few different "
                           f"ones (copies of one file go to one part) for {folds} parts of "
                           f"{MIN_PER_FOLD} or more")
    arch, start = default_start(init)
    if on_start:
        on_start(len(samples))
    # Every part's model can read every character of the labels, also one that only the
    # other part's labels hold (else its image would be a confident false alarm).
    alphabet = "".join(sorted(set("".join(s.label for s in samples))))
    texts: list[str] = [""] * len(samples)
    conf = np.zeros(len(samples))
    readable = np.ones(len(samples), bool)
    result = LabelCheck([], len(samples), threshold, copies=len(digests) - len(set(digests)))
    with tempfile.TemporaryDirectory(prefix="captcha-ocr-check-") as tmp:
        for k in range(folds):
            t = time.perf_counter()
            held = np.flatnonzero(part == k)
            folder = link_labeled([s for s, p in zip(samples, part) if p != k], Path(tmp) / f"train-{k}")
            out = Path(tmp) / f"model-{k}"
            cfg = recipe(arch, finetune=start is not None, seed=seed + k, **(recipe_overrides or {}))
            rounds = [cfg.epochs]  # the budget's rounds, known once training has looked at the data

            def started(run_cfg, *_, rounds=rounds) -> None:
                rounds[0] = run_cfg.epochs

            def went(stats, part=k + 1, rounds=rounds) -> None:
                if on_round:
                    on_round(part, stats.epoch, rounds[0])

            train(folder, out, arch=arch, cfg=cfg, init=start, alphabet=alphabet,
                  command=f"captcha-ocr check-labels (part {k + 1} of {folds})",
                  on_start=started, on_epoch=went)
            readings = Reader.load(out).read_many([samples[i].path for i in held])
            for i, r in zip(held, readings):
                texts[i], conf[i], readable[i] = r.text, r.confidence, r.ok
                if not r.ok:  # each image is read once: each unreadable one is named once
                    result.unreadable.append((str(samples[i].path), r.error))
            read = held[readable[held]]
            same = [texts[i] == samples[i].label for i in read]
            agree = round(float(np.mean(same)), 4) if same else None
            fr = FoldResult(k + 1, len(samples) - len(held), len(read), agree,
                            round(time.perf_counter() - t, 2))
            result.folds.append(fr)
            if on_fold:
                on_fold(fr)
    ok = np.flatnonzero(readable)
    result.n = len(ok)
    result.disagreements = labels_to_check([samples[i].path for i in ok], [samples[i].label for i in ok],
                                           [texts[i] for i in ok], conf[ok], threshold=0.0)
    lengths = {len(s.label) for s in samples}
    result.items = [x for x in result.disagreements
                    if suspect(x.reading, x.confidence, threshold, lengths=lengths)]
    result.seconds = time.perf_counter() - t0
    return result
