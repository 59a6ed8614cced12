"""The arithmetic solver: a small parser, checked against Python's own arithmetic."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from captcha_ocr.solve import solve


@pytest.mark.parametrize(("text", "answer"), [
    ("14+27", 41), ("3x4=?", 12), ("9-12=", -3), ("2+3*4", 14), ("2×3", 6), ("8÷2", 4),
    ("12 - 4 / 2", 10), ("-5+7", 2), ("7X3", 21), ("6−1", 5), ("0*9", 0),
    ("2+3 = ?", 5), (" 2+3 =", 5), ("2+3 =?", 5),
])
def test_answers(text, answer):
    assert solve(text).answer == answer and solve(text).error is None


@pytest.mark.parametrize(("text", "why"), [
    ("", "no expression"), ("=?", "no expression"), ("3+", "ends with an operator"),
    ("3++4", "is not an arithmetic expression: '+' where a number should be"),
    ("x2", "is not an arithmetic expression: 'x' where a number should be"),
    ("7/2", "'7/2' has no whole-number answer: 7/2 is not a whole number"),
    ("5/0", "'5/0' has no whole-number answer: division by zero"),
    ("7/2+", "is not an arithmetic expression: it ends with an operator"),  # form before answer
    ("1/0 3", "is not an arithmetic expression: unexpected 3"),
    ("3+a", "'a' is not a number or an operator"),
    ("1" * 13, "a number of 13 digits"), ("3 4", "unexpected 4"), ("-" * 500 + "1", "at most 64"),
    ("25", "no operation of two numbers"), ("-3=?", "no operation of two numbers"),  # a lost sign
])
def test_refusals_say_why(text, why):
    got = solve(text)
    assert got.answer is None and why in got.error and text[:20] in got.error


numbers = st.integers(0, 999).map(str)
ops = st.sampled_from(["+", "-", "*"])


@given(numbers, st.lists(st.tuples(ops, numbers), min_size=1, max_size=5), st.sampled_from(["", "=", "=?"]))
def test_agrees_with_python_arithmetic(first, rest, tail):
    text = first + "".join(op + n for op, n in rest)
    assert solve(text + tail).answer == eval(text)  # noqa: S307 - digits and + - * only
