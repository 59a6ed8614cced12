"""Labels to check: labeled images that a trained model confidently reads otherwise.

Labels are typed by people, and real sets hold mistakes (a digit slipped, a placeholder
left in). A model trained with augmentation and averaged weights does not learn a few
wrong labels by heart: it reads the image as it looks, and with high confidence. So a
labeled image whose reading differs from its label at a calibrated confidence of at least
``CONFIDENT`` is far more often a wrong label than a wrong reading; listing those, most
confident first, turns "check 500 labels" into "check these few". Measured (README,
"Labels to check"): henan_digits4's 500 training labels, 8 flagged, all 8 wrong labels by
eye; the zoo styles, whose labels are right by construction, few or none flagged.

Numpy only: ``eval`` uses it on the reading path, ``train`` on its own labeled images.
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
