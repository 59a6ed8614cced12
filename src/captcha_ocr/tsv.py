"""Tab-separated output that a file name cannot break.

``predict``, ``eval`` and ``check-labels`` print one image a line, its fields split by
tabs, and ``label --review`` reads ``check-labels``' lines back. A file name (or a label
read from one) may hold a tab or a newline: such a field, one that starts with a double
quote and one with a space at either end (a reader strips those) is written as a JSON
string (quoted, escaped), as ``--json`` writes it; every other field as it is.
"""

from __future__ import annotations

import json

__all__ = ["field", "parse_field"]

_UNSAFE = ("\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def field(value: object) -> str:
    """``value`` as one tab-separated field."""
    text = str(value)
    if text.startswith('"') or text != text.strip() or any(c in text for c in _UNSAFE):
        # JSON escapes the control characters; these three line ends it leaves as they are
        return json.dumps(text, ensure_ascii=False).replace("\x85", "\\u0085") \
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text


def parse_field(text: str) -> str:
    """A field as ``field`` wrote it, back to its value (a plain field as it is)."""
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return text
        if isinstance(value, str):
            return value
    return text
