import pytest
from hypothesis import given
from hypothesis import strategies as st

from captcha_ocr.charset import BLANK, Charset, UnknownCharacterError, complete_alphabet


def test_from_labels_sorted_unique():
    assert Charset.from_labels(["bca", "ab"]).alphabet == "abc"


def test_blank_is_zero_and_chars_start_at_one():
    cs = Charset("abc")
    assert BLANK == 0
    assert cs.encode("abc") == [1, 2, 3]
    assert cs.n_classes == 4


def test_round_trip_unicode_and_repeats():
    cs = Charset.from_labels(["żółw", "日本語", "aa11"])
    for text in ["żółw", "日本語", "aa11", "1a1a"]:
        assert cs.decode(cs.encode(text)) == text


def test_decode_skips_blank():
    assert Charset("xy").decode([1, 0, 2, 0]) == "xy"


def test_unknown_character_named():
    with pytest.raises(UnknownCharacterError, match="'Q'"):
        Charset("abc").encode("aQb")


def test_rejects_duplicates_and_empty():
    with pytest.raises(ValueError):
        Charset("aa")
    with pytest.raises(ValueError):
        Charset("")


@given(st.lists(st.text(min_size=1, max_size=32), min_size=1, max_size=8))
def test_round_trip_property(labels):
    cs = Charset.from_labels(labels)
    for text in labels:
        assert cs.decode(cs.encode(text)) == text


BASE = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+-x="


def test_complete_alphabet_adds_nothing_when_every_character_shows_twice():
    chars, record = complete_alphabet(["2b3c", "3c2b", "bb33", "cc22"], BASE)
    assert chars == "23bc" and record == dict(labels=4, seen_once=0, added="")


def test_complete_alphabet_fills_the_classes_the_labels_use_from_the_known_ones():
    # 'a' and '7' appear once: the labels are a sample that has not seen every character
    chars, record = complete_alphabet(["ab12", "bb21", "1b72"], BASE)
    assert record["seen_once"] == 2
    assert set(chars) == set("0123456789abcdefghijklmnopqrstuvwxyz")  # no capitals: none in the labels
    assert record["added"] == "".join(sorted(set(chars) - set("ab127")))


def test_complete_alphabet_adds_only_characters_the_start_model_knows():
    chars, record = complete_alphabet(["é1", "ü22"], "0123456789")
    assert chars == "0123456789éü" and "é" not in record["added"]
    chars, _ = complete_alphabet(["+1", "=22"], "0123456789+-=")
    assert chars == "+0123456789="  # signs are never inferred, digits are


@given(st.lists(st.text(alphabet="0123456789abcXYZ+", min_size=1, max_size=6), min_size=1, max_size=20))
def test_complete_alphabet_always_keeps_the_labels_characters(labels):
    chars, record = complete_alphabet(labels, BASE)
    assert set("".join(labels)) <= set(chars) and chars == "".join(sorted(chars))
    assert (chars == "".join(sorted(set("".join(labels))))) == (record["added"] == "")
    assert record["seen_once"] > 0 or record["added"] == ""
