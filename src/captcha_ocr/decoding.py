"""Greedy CTC decoding in numpy: log-probabilities -> text and confidences.

Greedy (best-path) decoding, as the tutorial: take the most likely class at each
time step, collapse repeats, drop blanks (class 0).

Confidence: each emitted character's confidence is the highest probability of
its class over the run of time steps that emitted it; the text's confidence is
the product of its characters' confidences (an empty reading gets the lowest
per-step probability of the blank path). It is the greedy path's probability
restricted to the steps that carry characters, so it falls when any character is
doubtful; it is not a calibrated P(text | image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .charset import BLANK, Charset

__all__ = ["Decoded", "greedy_decode"]


@dataclass(frozen=True)
class Decoded:
    """One decoded reading."""

    text: str
    confidence: float
    char_confidences: tuple[float, ...]


def greedy_decode(log_probs: np.ndarray, charset: Charset) -> list[Decoded]:
    """Decode a batch of per-step log-probabilities.

    Args:
        log_probs: ``(B, T, C)`` log-softmax outputs (``(T, C)`` is taken as B = 1),
            class 0 the blank.
        charset: maps classes 1..C-1 to characters.

    Returns:
        One ``Decoded`` per batch item, in order.
    """
    if log_probs.ndim == 2:
        log_probs = log_probs[None]
    b, t, _ = log_probs.shape
    best = log_probs.argmax(axis=2)  # (B, T)
    peak = np.exp(np.take_along_axis(log_probs, best[..., None], axis=2)[..., 0])  # (B, T)
    # A run starts where the class changes or a new row begins; flatten rows end to end.
    starts = np.ones((b, t), dtype=bool)
    starts[:, 1:] = best[:, 1:] != best[:, :-1]
    flat_starts = np.flatnonzero(starts)
    run_class = best.ravel()[flat_starts]
    run_peak = np.maximum.reduceat(peak.ravel(), flat_starts)
    run_row = flat_starts // t
    keep = run_class != BLANK
    kept_class, kept_peak = run_class[keep], run_peak[keep]
    bounds = np.searchsorted(run_row[keep], np.arange(b + 1))  # kept runs of row r: [r, r+1)
    out = []
    for row in range(b):
        ids = kept_class[bounds[row] : bounds[row + 1]]
        conf = kept_peak[bounds[row] : bounds[row + 1]]
        total = float(np.prod(conf)) if len(conf) else float(peak[row].min())
        out.append(Decoded(charset.decode(ids.tolist()), total, tuple(conf.tolist())))
    return out
