"""Labels to check: labeled images that a model which never trained on them confidently
reads otherwise.

Labels are typed by people, and real sets hold mistakes (a digit slipped, a placeholder
left in). A model reads a mislabeled image as it looks, so where a reading differs from
its label at a calibrated confidence of at least ``CONFIDENT``, the label is often what is
wrong; listing those, most confident first, turns "check 500 labels" into "check these
few". The model must not have trained on the image: one that did has learned most wrong
labels by heart (trained on 200 pastel_digits images, 10 of them given a wrong digit, it
read all 10 as labelled, at 0.97-1.00). So ``eval`` marks its confident errors (on images
kept out of training), and ``captcha-ocr check-labels`` (``crosscheck``) reads every
labeled image with a model trained on the others.

Numpy only: ``eval`` uses it on the reading path.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .modeldir import atomic_write

__all__ = ["CONFIDENT", "LabelToCheck", "labels_to_check", "write_csv"]

CONFIDENT = 0.9
COLUMNS = ("file", "label", "reading", "confidence")


@dataclass(frozen=True)
class LabelToCheck:
    file: str
    label: str
    reading: str
    confidence: float


def labels_to_check(files: Sequence[str | Path], labels: Sequence[str], readings: Sequence[str],
                    confidences: Sequence[float], threshold: float = CONFIDENT) -> list[LabelToCheck]:
    """The images read as something other than their label at ``threshold`` or more,
    the most confident first (then by file name)."""
    found = [LabelToCheck(str(f), y, t, round(float(c), 6))
             for f, y, t, c in zip(files, labels, readings, confidences, strict=True)
             if t != y and c >= threshold]
    return sorted(found, key=lambda x: (-x.confidence, x.file))


def write_csv(path: str | Path, items: Sequence[LabelToCheck]) -> None:
    """``file,label,reading,confidence`` rows (a header alone where there are none), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows((x.file, x.label, x.reading, f"{x.confidence:.6f}") for x in items)
    atomic_write(path, buf.getvalue())
