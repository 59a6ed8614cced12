"""Reading quality: sequence accuracy and character error rate."""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

__all__ = ["cer", "sequence_accuracy"]


def sequence_accuracy(labels: Sequence[str], predictions: Sequence[str]) -> float:
    """Share of predictions equal to their label (0.0 for no items)."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    return sum(a == b for a, b in zip(labels, predictions)) / len(labels) if labels else 0.0


def cer(labels: Sequence[str], predictions: Sequence[str]) -> float:
    """Character error rate: total edit distance / total label length (0.0 for no items)."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    chars = sum(len(a) for a in labels)
    edits = sum(Levenshtein.distance(a, b) for a, b in zip(labels, predictions))
    return edits / chars if chars else 0.0
