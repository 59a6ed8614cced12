"""Labels to check: labeled images that a model which never trained on them confidently
reads otherwise.

Labels are typed by people, and real sets hold mistakes (a digit slipped, a placeholder
left in). A model reads a mislabeled image as it looks, so where a reading differs from
its label at a calibrated confidence of at least ``CONFIDENT`` (0.7), the label is often
what is wrong; listing those, most confident first, turns "check 500 labels" into "check these
few". The model must not have trained on the image: one that did has learned most wrong
labels by heart (README, "Labels to check"). So ``eval`` marks its confident errors (to be
run on images kept out of training), and ``captcha-ocr check-labels`` (``crosscheck``)
reads every labeled image with a model trained on the others.

No torch: ``eval`` uses it on the reading path.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CONFIDENT", "LabelToCheck", "labels_to_check", "suspect"]

# Listed from this calibrated confidence. Chosen by measurement (bench/label_check_bench.py,
# 8 styles, N = 200 and 500, 5% of the labels made wrong, two parts): of the thresholds
# 0.5 / 0.7 / 0.8 / 0.9 it listed 88% / 78% / 66% / 54% of the wrong labels beside 217 /
# 97 / 59 / 40 right ones (F1 0.66 / 0.73 / 0.71 / 0.64). Lower than one might guess: the
# parts' models fit their temperature on validation labels that are wrong too, which
# softens every confidence.
CONFIDENT = 0.7


@dataclass(frozen=True)
class LabelToCheck:
    file: str
    label: str
    reading: str
    confidence: float


def suspect(reading: str, confidence: float, threshold: float = CONFIDENT,
            alphabet: str | None = None, lengths: Collection[int] | None = None) -> bool:
    """Whether a reading that differs from its label points at the label: read with
    ``threshold`` confidence or more, and (where ``alphabet``, the characters the labels
    use, and ``lengths``, their lengths, are given) only in those characters and of one
    of those lengths — a reading no label could be is the model's mistake, not the label's."""
    return (confidence >= threshold and (alphabet is None or set(reading) <= set(alphabet))
            and (lengths is None or len(reading) in lengths))


def labels_to_check(files: Sequence[str | Path], labels: Sequence[str], readings: Sequence[str],
                    confidences: Sequence[float], threshold: float = CONFIDENT) -> list[LabelToCheck]:
    """The images read as something other than their label at ``threshold`` or more,
    the most confident first (then by file name)."""
    found = [LabelToCheck(str(f), y, t, round(float(c), 6))
             for f, y, t, c in zip(files, labels, readings, confidences, strict=True)
             if t != y and suspect(t, c, threshold)]
    return sorted(found, key=lambda x: (-x.confidence, x.file))
