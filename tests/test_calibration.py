"""The temperature fit: it softens an over-confident network, and never sharpens."""

import numpy as np
import pytest

from captcha_ocr.calibration import expected_calibration_error, fit_temperature, reliability
from captcha_ocr.charset import Charset

CS = Charset("0123456789")


def _confident(labels: list[str], margin: float, t: int = 20) -> np.ndarray:
    """Log-probs that read each label with the given logit margin per character."""
    lp = np.zeros((len(labels), t, CS.n_classes), np.float32)
    lp[:, :, 0] = margin
    for i, lab in enumerate(labels):
        for k, ch in enumerate(lab):
            lp[i, 2 + 4 * k] = 0
            lp[i, 2 + 4 * k, CS.encode(ch)[0]] = margin
    return lp - np.logaddexp.reduce(lp, axis=2, keepdims=True)


def test_over_confident_readings_are_softened():
    rng = np.random.default_rng(0)
    read = ["".join(map(str, rng.integers(0, 10, 4))) for _ in range(200)]
    truth = [r if k % 2 else r[::-1] for k, r in enumerate(read)]  # half of them wrong
    cal = fit_temperature(_confident(read, 10.0), truth, CS)
    assert cal.temperature > 1.2 and cal.accuracy == 0.5
    assert cal.ece_after < cal.ece_before / 2


def test_all_right_keeps_the_network_as_it_is():
    read = ["1234", "5678", "9012"]
    cal = fit_temperature(_confident(read, 6.0), read, CS)
    assert cal.temperature == 1.0 and cal.accuracy == 1.0


def test_one_confident_error_in_fifty_is_not_enough_to_soften():
    rng = np.random.default_rng(1)
    read = ["".join(map(str, rng.integers(0, 10, 4))) for _ in range(50)]
    truth = [r[::-1] if k == 0 and r != r[::-1] else r for k, r in enumerate(read)]
    assert sum(a != b for a, b in zip(read, truth)) == 1
    cal = fit_temperature(_confident(read, 10.0), truth, CS)
    assert cal.temperature == 1.0 and cal.accuracy == 0.98


def test_reliability_bins_and_ece():
    conf = np.array([0.05, 0.15, 0.95, 0.95])
    right = np.array([0.0, 0.0, 1.0, 0.0])
    bins = reliability(conf, right, bins=10)
    assert [c for _, _, c in bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert expected_calibration_error(conf, right, bins=10) == pytest.approx((0.05 + 0.15 + 2 * 0.45) / 4)
