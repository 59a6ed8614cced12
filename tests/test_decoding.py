import numpy as np
import pytest

from captcha_ocr.charset import Charset
from captcha_ocr.decoding import greedy_decode

CS = Charset("ab")


def log_probs(steps: list[tuple[int, float]], n_classes: int = 3) -> np.ndarray:
    """(T, C) log-probs where step t puts probability p on class c, the rest spread evenly."""
    out = np.empty((len(steps), n_classes), np.float32)
    for t, (c, p) in enumerate(steps):
        out[t] = (1 - p) / (n_classes - 1)
        out[t, c] = p
    return np.log(out)


def test_collapses_repeats_and_drops_blanks():
    lp = log_probs([(1, .9), (1, .8), (0, .9), (1, .7), (2, .6), (2, .95), (0, .9)])
    (d,) = greedy_decode(lp, CS)
    assert d.text == "aab"
    assert d.char_confidences == pytest.approx((.9, .7, .95))  # best step of each run
    assert d.confidence == pytest.approx(.9 * .7 * .95)


def test_all_blank_is_empty_with_blank_confidence():
    (d,) = greedy_decode(log_probs([(0, .9), (0, .6)]), CS)
    assert d.text == "" and d.char_confidences == ()
    assert d.confidence == pytest.approx(.6)


def test_batch_rows_do_not_merge():
    a = log_probs([(1, .9), (1, .9)])
    b = log_probs([(1, .9), (2, .9)])
    texts = [d.text for d in greedy_decode(np.stack([a, b, a]), CS)]
    assert texts == ["a", "ab", "a"]  # row b's first 'a' is not merged into row a's run


def test_confidences_in_unit_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 12, 3)).astype(np.float32)
    lp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    for d in greedy_decode(lp, CS):
        assert 0 <= d.confidence <= 1
        assert len(d.char_confidences) == len(d.text)
