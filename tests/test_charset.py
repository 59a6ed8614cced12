import pytest
from hypothesis import given
from hypothesis import strategies as st

from captcha_ocr.charset import BLANK, Charset, UnknownCharacterError


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
