"""Calibrated confidence: one temperature, fitted on held-out images, and its measures.

A reading's confidence is the probability of its text under the network (the CTC
forward algorithm, ``decoding``). Networks trained to low loss are over-confident;
dividing the logits by a temperature T > 1 fixes most of that (Guo et al., "On
Calibration of Modern Neural Networks", ICML 2017). T is chosen on the inner validation
split at training time, to minimise the log-loss of "the reading is right" given
its confidence (of the default reading: greedy, or where that is unsure, the more
probable text a small beam search finds; chosen on the network's own probabilities, so
T changes the confidence, never the text). Numpy only: the reading path uses the
measures too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .charset import Charset
from .decoding import decode, sequence_log_probs, temper

__all__ = ["Calibration", "expected_calibration_error", "fit_temperature", "reliability"]

# Only softening (T >= 1): the validation split also chose the kept round, so it is
# optimistic, and a sharpening fitted on it overshoots. Measured (bench/reading_bench.py,
# N=500, seed 1, ECE on 500 test images with the temperature fitted on 0.25-8 / at 1 /
# the test images' own best): captcha_images_v2 fitted 0.595: 0.014 / 0.028 / 0.014 at
# 0.79; rsce_gradient5 0.667: 0.110 / 0.058 / 0.039 at 1.26; pastel_digits 0.25: 0.018 /
# 0.010 / 0.010 at 1.0; wavy 0.707: 0.073 / 0.032 / 0.032 at 1.0.
TEMPERATURES = np.geomspace(1.0, 8.0, 37)
# The temperature is one fitted parameter: it replaces T = 1 only where it raises the
# validation log-likelihood of correctness by more than this many nats in all (Akaike's
# criterion). From a few dozen validation images with one or two errors, a fitted T
# follows those errors and calibrates the test images worse than T = 1 (README).
MIN_GAIN_NATS = 1.0
BINS = 10


@dataclass(frozen=True)
class Calibration:
    temperature: float
    n: int                 # validation images it was fitted on
    accuracy: float        # of the default readings on them
    ece_before: float      # at T = 1
    ece_after: float       # at the fitted T (on the same images: optimistic)

    def record(self) -> dict:
        return dict(temperature=self.temperature, n=self.n, accuracy=self.accuracy,
                    ece_before=self.ece_before, ece_after=self.ece_after)


def confidences(log_probs: np.ndarray, charset: Charset, temperature: float) -> tuple[list[str], np.ndarray]:
    """The texts a reader reads by default (``decoding.decode``) and their probabilities
    at ``temperature``."""
    found = decode(log_probs, charset, temperature=temperature)
    return [d.text for d in found], np.array([d.confidence for d in found], np.float64)


def reliability(conf: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[tuple[float, float, int]]:
    """Per confidence bin (equal width on [0, 1]): (mean confidence, accuracy, count)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        out.append((float(conf[m].mean()) if m.any() else float((edges[b] + edges[b + 1]) / 2),
                    float(correct[m].mean()) if m.any() else float("nan"), int(m.sum())))
    return out


def expected_calibration_error(conf: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of images."""
    n = len(conf)
    if n == 0:
        return float("nan")
    return float(sum(c / n * abs(acc - mean) for mean, acc, c in reliability(conf, correct, bins) if c))


def fit_temperature(log_probs: np.ndarray, labels: list[str], charset: Charset) -> Calibration:
    """The temperature (from ``TEMPERATURES``) that minimises the log-loss of correctness,
    where it beats T = 1 by more than ``MIN_GAIN_NATS``.

    ``log_probs`` ``(N, T, C)`` of held-out images, ``labels`` their texts. With no
    images, or all of them right, the loss has no interior minimum: T = 1 is kept.
    """
    if len(labels) == 0:
        return Calibration(1.0, 0, float("nan"), float("nan"), float("nan"))
    texts, _ = confidences(log_probs, charset, 1.0)  # the texts do not change with T
    correct = np.array([t == y for t, y in zip(texts, labels)], np.float64)
    ids = [charset.encode(t) for t in texts]
    lp32 = log_probs.astype(np.float32)

    def conf_at(temp: float) -> np.ndarray:
        return np.exp(sequence_log_probs(temper(lp32, temp), ids))

    def nll(temp: float) -> float:  # summed over the images, in nats
        p = np.clip(conf_at(temp), 1e-6, 1 - 1e-6)
        return -float(np.sum(correct * np.log(p) + (1 - correct) * np.log(1 - p)))

    best, best_loss = 1.0, np.inf
    for temp in TEMPERATURES:
        loss = nll(float(temp))
        if loss < best_loss - 1e-9:
            best, best_loss = float(temp), loss
    if nll(1.0) - best_loss <= MIN_GAIN_NATS:
        best = 1.0
    return Calibration(round(best, 4), len(labels), float(correct.mean()),
                       expected_calibration_error(conf_at(1.0), correct),
                       expected_calibration_error(conf_at(best), correct))
