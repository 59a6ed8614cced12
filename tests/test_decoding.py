import itertools

import numpy as np
import pytest

from captcha_ocr.charset import Charset
from captcha_ocr.decoding import DecodeOptions, decode, greedy_decode, sequence_log_probs, temper

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


# ---------------------------------------------------------------- options, search, forward


def _random_log_probs(rng, b, t, c, sharp=3.0):
    x = rng.normal(size=(b, t, c)) * sharp
    return (x - np.logaddexp.reduce(x, axis=2, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("copies", [1, 4])  # 6 images: per image; 24: vectorised
def test_sequence_log_probs_equal_torch_ctc_loss(copies):
    import torch

    rng = np.random.default_rng(0)
    lp = _random_log_probs(rng, 6 * copies, 12, 5, sharp=1.0)
    labels = [[1, 2, 2], [3], [], [4, 4, 4, 1], [1, 2, 3, 4, 1], [2, 1]] * copies
    ours = sequence_log_probs(lp, labels)
    flat = torch.tensor([c for x in labels for c in x], dtype=torch.long)
    loss = torch.nn.functional.ctc_loss(
        torch.from_numpy(lp).transpose(0, 1), flat, torch.full((6 * copies,), 12, dtype=torch.long),
        torch.tensor([len(x) for x in labels]), blank=0, reduction="none", zero_infinity=False)
    assert np.allclose(ours, -loss.numpy(), atol=1e-4)


def _all_labels(c, most):
    out = [()]
    for n in range(1, most + 1):
        out += list(itertools.product(range(1, c), repeat=n))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_beam_search_finds_the_most_probable_reading_of_each_length(seed):
    """Against brute force: every label that fits 7 steps, scored by the forward algorithm."""
    rng = np.random.default_rng(seed)
    lp = _random_log_probs(rng, 1, 7, 4, sharp=2.0)
    charset = Charset("abc")
    labels = _all_labels(4, 7)
    scores = sequence_log_probs(np.repeat(lp, len(labels), 0), [list(x) for x in labels])
    for length in (2, 3):
        idx = [i for i, x in enumerate(labels) if len(x) == length]
        best = max(idx, key=lambda i: scores[i])
        got = decode(lp, charset, DecodeOptions(min_length=length, max_length=length, beam=64))[0]
        assert got.text == charset.decode(list(labels[best]))
        assert got.confidence == pytest.approx(np.exp(scores[best]), rel=1e-4)
    # unconstrained: the best label overall, and alternatives in order with their probabilities
    got = decode(lp, charset, DecodeOptions(beam=64))[0]
    order = np.argsort(-scores)
    assert got.text == charset.decode(list(labels[order[0]]))
    alt = [charset.decode(list(labels[i])) for i in order[:3]]
    assert [a for a, _ in got.alternatives[:3]] == alt


@pytest.mark.parametrize("seed", range(5))
def test_a_searched_reading_has_the_same_confidence_at_any_beam_width(seed):
    """The confidence is the text's forward probability, not the beam's pruned score."""
    rng = np.random.default_rng(seed)
    lp = _random_log_probs(rng, 1, 9, 4, sharp=1.0)
    charset = Charset("abc")
    greedy = decode(lp, charset)[0]
    by_text: dict[str, set[float]] = {}
    for k in (1, 3, 16):
        got = decode(lp, charset, DecodeOptions(beam=k))[0]
        texts = [t for t, _ in got.alternatives]
        exact = np.exp(sequence_log_probs(np.repeat(lp, len(texts), 0), [charset.encode(t) for t in texts]))
        assert got.confidence == pytest.approx(exact[0], rel=1e-5)
        assert got.alternatives[0][1] == got.confidence
        probs = [q for _, q in got.alternatives]
        assert probs == sorted(probs, reverse=True) and all(probs <= exact * (1 + 1e-5))  # lower bounds
        by_text.setdefault(got.text, set()).add(round(got.confidence, 6))
        if got.text == greedy.text:
            assert got.confidence == pytest.approx(greedy.confidence, rel=1e-5)
    assert all(len(c) == 1 for c in by_text.values()), by_text  # one text, one confidence


def test_a_length_alone_gives_no_alternatives():
    lp = log_probs([(1, 0.9), (0, 0.9), (2, 0.9)])
    got = decode(lp, CS, DecodeOptions(min_length=2, max_length=2))[0]
    assert got.text == "ab" and got.alternatives == ()
    assert len(decode(lp, CS, DecodeOptions(min_length=2, max_length=2, beam=2))[0].alternatives) >= 1


def test_allow_masks_other_characters():
    charset = Charset("ab12")
    lp = np.log(np.array([[[0.1, 0.5, 0.1, 0.2, 0.1],     # "a" likely, "1" second
                           [0.9, 0.025, 0.025, 0.025, 0.025],
                           [0.1, 0.1, 0.1, 0.1, 0.6]]], np.float32))  # '2'
    assert decode(lp, charset)[0].text == "a2"
    assert decode(lp, charset, DecodeOptions(allow="12"))[0].text == "12"


def test_allow_keeps_a_masked_glyph_a_glyph_never_a_blank():
    """'a' then '1' where only the digits are allowed: renormalised with the blank, the
    mask read "1" at 0.99 (the blank took the 'a'). A glyph stays a glyph: the 'a' is
    read as one of the allowed characters, and with even odds between them the reading
    is unsure; "1" alone (the 'a' dropped) is improbable."""
    charset = Charset("ab12")
    lp = np.log(np.array([[[0.01, 0.96, 0.01, 0.01, 0.01],  # 'a', surely
                           [0.96, 0.01, 0.01, 0.01, 0.01],
                           [0.01, 0.01, 0.01, 0.96, 0.01]]], np.float32))  # '1'
    plain = decode(lp, charset, DecodeOptions(beam=4))[0]
    assert plain.text == "a1" and plain.confidence > 0.8
    for options in (DecodeOptions(allow="12"), DecodeOptions(allow="12", beam=4)):
        got = decode(lp, charset, options)[0]
        assert got.text in ("11", "21") and 0.3 < got.confidence < 0.6
    dropped = decode(lp, charset, DecodeOptions(allow="12", min_length=1, max_length=1))[0]
    assert dropped.text == "1" and dropped.confidence < 0.05


@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_allow_keeps_the_confidence_of_a_lookalike_it_settles(temperature):
    """'0' 0.55 / 'O' 0.45 on a digits site: --allow reads "07" and is sure of it (the
    network saw a glyph, and of the allowed ones only '0'); greedy and beam agree, at any
    temperature."""
    charset = Charset("07O")
    lp = np.log(np.array([[[0.00, 0.55, 0.00, 0.45],
                           [1.00, 0.00, 0.00, 0.00],
                           [0.00, 0.00, 1.00, 0.00]]], np.float32) * 0.998 + 0.0005)
    plain = decode(lp, charset, temperature=temperature)[0]
    assert plain.text == "07" and plain.confidence < 0.6
    sure = decode(lp, charset, DecodeOptions(allow="07"), temperature)[0]
    assert sure.text == "07" and sure.confidence > 0.9 and sure.confidence > plain.confidence + 0.3
    searched = decode(lp, charset, DecodeOptions(allow="07", beam=3), temperature)[0]
    assert searched.text == "07" and searched.confidence == pytest.approx(sure.confidence, rel=1e-4)


def test_allow_gives_no_reading_where_no_length_fits():
    lp = np.log(np.full((1, 3, 5), 0.2, np.float32))
    got = decode(lp, Charset("abcd"), DecodeOptions(allow="a", min_length=3, max_length=3))[0]
    assert (got.text, got.confidence, got.alternatives) == ("", 0.0, ())


def test_options_checked_against_the_alphabet():
    charset = Charset("ab12")
    with pytest.raises(ValueError, match="'Z' are not in the model's alphabet"):
        DecodeOptions(allow="1Z").check(charset)
    with pytest.raises(ValueError, match="min length 5 is over max length 4"):
        DecodeOptions(min_length=5, max_length=4).check(charset)
    with pytest.raises(ValueError, match="max length \\(or length\\) must be at least 1, not 0"):
        DecodeOptions(min_length=0, max_length=0).check(charset)
    DecodeOptions(min_length=0, max_length=3).check(charset)  # 0: no lower bound, as before


def test_greedy_confidence_is_the_text_probability_and_temperature_flattens_it():
    rng = np.random.default_rng(3)
    lp = _random_log_probs(rng, 4, 10, 5)
    charset = Charset("abcd")
    plain = decode(lp, charset)
    forward = np.exp(sequence_log_probs(lp, [charset.encode(d.text) for d in plain]))
    assert np.allclose([d.confidence for d in plain], forward, rtol=1e-5)
    hot = np.exp(sequence_log_probs(temper(lp, 2.0), [charset.encode(d.text) for d in plain]))
    assert all(h < p.confidence for h, p in zip(hot, plain))
    sharp = temper(lp, 0.05)  # every greedy text over 0.5 there: read as it is
    sure = decode(sharp, charset)
    assert min(d.confidence for d in sure) > 0.5
    assert [d.text for d in sure] == [d.text for d in greedy_decode(sharp, charset)]


def test_search_never_emits_a_masked_character_and_gives_up_cleanly():
    """With one allowed character, a 4-long reading in 5 steps needs a blank between
    repeats: impossible, so an empty text with confidence 0, never other characters."""
    rng = np.random.default_rng(1)
    lp = _random_log_probs(rng, 1, 5, 5)
    got = decode(lp, Charset("abcd"), DecodeOptions(allow="a", min_length=4, max_length=4, beam=8))[0]
    assert got.text == "" and got.confidence == 0.0 and got.alternatives == ()
    got = decode(lp, Charset("abcd"), DecodeOptions(allow="ab", min_length=3, max_length=3, beam=8))[0]
    assert set(got.text) <= set("ab") and all(set(t) <= set("ab") for t, _ in got.alternatives)


def test_default_reads_a_more_probable_text_than_the_best_path_where_there_is_one():
    # Two steps, each blank .40, 'a' .35, 'b' .25: the best path is blank-blank (""), p .16;
    # 'a' has three paths: .35*.40 + .40*.35 + .35*.35 = .4025.
    lp = np.log(np.array([[0.40, 0.35, 0.25]] * 2, np.float32))
    assert greedy_decode(lp, CS)[0].text == ""
    (d,) = decode(lp, CS)
    assert d.text == "a" and d.confidence == pytest.approx(0.4025, rel=1e-5)
    assert d.alternatives == ()  # no beam asked: a reading, not a list


@pytest.mark.parametrize("seed", range(4))
def test_default_is_greedy_where_sure_and_never_less_probable(seed):
    rng = np.random.default_rng(seed)
    for sharp in (0.5, 1.0, 4.0):
        lp = _random_log_probs(rng, 64, 9, 4, sharp=sharp)
        charset = Charset("abc")
        greedy = greedy_decode(lp, charset)
        got = decode(lp, charset)
        p_greedy = np.exp(sequence_log_probs(lp, [charset.encode(g.text) for g in greedy]))
        for g, d, p in zip(greedy, got, p_greedy):
            assert d.confidence >= p - 1e-6  # never a less probable text
            if p > 0.5:  # no other text can be more probable: greedy's stands
                assert d.text == g.text


def test_temperature_changes_the_confidence_never_the_text():
    rng = np.random.default_rng(7)
    lp = _random_log_probs(rng, 64, 9, 4, sharp=1.0)  # many unsure rows: the beam check runs
    charset = Charset("abc")
    cold, hot = decode(lp, charset), decode(lp, charset, temperature=3.0)
    assert [d.text for d in hot] == [d.text for d in cold]
    assert any(d.text != g.text for d, g in zip(cold, greedy_decode(lp, charset)))
    assert all(h.confidence < c.confidence for h, c in zip(hot, cold) if c.confidence > 0.5)


@pytest.mark.parametrize("seed", range(20))
def test_a_searched_readings_character_confidences_follow_its_alignment(seed):
    """Where the search reads the greedy text, the best path is that text's most probable
    alignment: the per-character confidences are the greedy ones, repeated characters
    ("aa", which need a blank between their runs) included."""
    rng = np.random.default_rng(seed)
    lp = _random_log_probs(rng, 1, 12, 3, sharp=3.0)  # blank, a, b: repeats are common
    greedy = greedy_decode(lp, CS)[0]  # the best path itself, never re-read by a search
    searched = decode(lp, CS, DecodeOptions(beam=4))[0]
    if searched.text == greedy.text and greedy.text:
        assert searched.char_confidences == pytest.approx(greedy.char_confidences, rel=1e-5)


def test_a_repeated_character_gets_its_own_runs_confidence():
    # a (.6), blank, a (.9): "aa"; the first a's own step is 0, the second's step 2 (a
    # search from the first a to the end took the second's .9, and gave the second 0)
    lp = log_probs([(1, 0.6), (0, 0.9), (1, 0.9)])
    got = decode(lp, CS, DecodeOptions(min_length=2, max_length=2))[0]
    assert got.text == "aa" and got.char_confidences == pytest.approx((0.6, 0.9), rel=1e-5)
