"""The answer of an arithmetic captcha: "14+27" -> 41, "3x4=?" -> 12.

A small recursive-descent parser (no ``eval``): integers, ``+ - x X * /`` and the
Unicode signs ``× ÷ −``, the usual precedence (``x * /`` before ``+ -``), an optional
leading minus, and an optional trailing ``=`` or ``=?`` (spaces around them allowed).
Division must come out exact: captcha answers are whole numbers, so "7/2" has no
answer rather than a rounded one. A number alone ("25", "-3") is no expression either:
an arithmetic captcha always shows an operation, so such a reading has lost its sign
("2-5" read as "25") and its "answer" would be wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Solved", "solve"]

_TOKEN = re.compile(r"\s*(?:(\d+)|(.))")
_OPS = {"+": "+", "-": "-", "−": "-", "x": "*", "X": "*", "*": "*", "×": "*", "/": "/", "÷": "/"}
MAX_DIGITS = 12  # a captcha's numbers are small; this also bounds the work


@dataclass(frozen=True)
class Solved:
    """``answer`` when ``text`` parses and computes, else None and ``error`` says why."""

    answer: int | None
    error: str | None = None


class _Fail(Exception):
    """The text is no expression."""


_TAIL = re.compile(r"\s*=\s*\??\s*$")  # "=", "=?", " = ?"


def _tokens(text: str) -> list[str | int]:
    """Numbers and operators, each operator as it is written ("x", "÷")."""
    body = _TAIL.sub("", text.strip(), count=1)
    out: list[str | int] = []
    for number, other in _TOKEN.findall(body):
        if number:
            if len(number) > MAX_DIGITS:
                raise _Fail(f"a number of {len(number)} digits")
            out.append(int(number))
        elif other.strip():
            if other not in _OPS:
                raise _Fail(f"{other!r} is not a number or an operator")
            out.append(other)
    if not out:
        raise _Fail("no expression")
    if len(out) > 64:
        raise _Fail(f"{len(out)} numbers and operators (at most 64)")
    return out


def solve(text: str) -> Solved:
    """Parse and compute ``text``; never raises."""
    try:
        tokens = _tokens(text)
        no_answer: list[str] = []  # why, where a division has no whole answer (7/2, 1/0)
        value, end = _sum(tokens, 0, no_answer)
        if end != len(tokens):
            raise _Fail(f"unexpected {tokens[end]!r}")
        if sum(isinstance(t, int) for t in tokens) < 2:
            raise _Fail("no operation of two numbers (was its sign misread?)")
    except _Fail as e:  # parsed to the end first: "7/2+" is no expression, not 3.5 and more
        return Solved(None, f"{text!r} is not an arithmetic expression: {e}")
    if no_answer:
        return Solved(None, f"{text!r} has no whole-number answer: {no_answer[0]}")
    return Solved(value)


def _op(tok: str | int) -> str | None:
    return None if isinstance(tok, int) else _OPS[tok]


def _sum(tokens: list[str | int], i: int, no_answer: list[str]) -> tuple[int, int]:
    value, i = _product(tokens, i, no_answer)
    while i < len(tokens) and _op(tokens[i]) in ("+", "-"):
        op = _op(tokens[i])
        right, i = _product(tokens, i + 1, no_answer)
        value = value + right if op == "+" else value - right
    return value, i


def _product(tokens: list[str | int], i: int, no_answer: list[str]) -> tuple[int, int]:
    value, i = _operand(tokens, i)
    while i < len(tokens) and _op(tokens[i]) in ("*", "/"):
        op = _op(tokens[i])
        right, i = _operand(tokens, i + 1)
        if op == "*":
            value *= right
        elif right == 0 or value % right:
            no_answer.append("division by zero" if right == 0 else f"{value}/{right} is not a whole number")
            value = 0  # parsing goes on: an error of form further on is what the text is
        else:
            value //= right
    return value, i


def _operand(tokens: list[str | int], i: int) -> tuple[int, int]:
    if i >= len(tokens):
        raise _Fail("it ends with an operator")
    tok = tokens[i]
    if _op(tok) == "-":  # a leading minus
        value, i = _operand(tokens, i + 1)
        return -value, i
    if not isinstance(tok, int):
        raise _Fail(f"{tok!r} where a number should be")
    return tok, i + 1
