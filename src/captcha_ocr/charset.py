"""The alphabet: text <-> class ids, and where the CTC blank sits.

Convention: class 0 is the CTC blank (PyTorch ``CTCLoss`` default); character
``alphabet[i]`` is class ``i + 1``. (The Keras tutorial puts the blank last.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["BLANK", "Charset", "UnknownCharacterError"]

BLANK = 0


class UnknownCharacterError(ValueError):
    """A label holds a character the alphabet does not know."""


class Charset:
    """An ordered alphabet of single characters (any Unicode code points).

    Args:
        alphabet: the characters, in class order; no duplicates, no empty string.
    """

    def __init__(self, alphabet: str) -> None:
        if not alphabet:
            raise ValueError("the alphabet is empty")
        if len(set(alphabet)) != len(alphabet):
            raise ValueError(f"the alphabet repeats characters: {alphabet!r}")
        self.alphabet = alphabet
        self._index = {ch: i + 1 for i, ch in enumerate(alphabet)}

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> Charset:
        """The sorted set of characters used by ``labels``."""
        return cls("".join(sorted(set("".join(labels)))))

    @property
    def n_classes(self) -> int:
        """Alphabet size plus the blank."""
        return len(self.alphabet) + 1

    def unknown(self, text: str) -> str:
        """The characters of ``text`` not in the alphabet, in order of appearance."""
        return "".join(dict.fromkeys(ch for ch in text if ch not in self._index))

    def encode(self, text: str) -> list[int]:
        """Text to class ids (1..len(alphabet)).

        Raises:
            UnknownCharacterError: ``text`` holds a character outside the alphabet.
        """
        bad = self.unknown(text)
        if bad:
            raise UnknownCharacterError(
                f"label {text!r} has characters {bad!r} that are not in the alphabet"
            )
        return [self._index[ch] for ch in text]

    def decode(self, ids: Sequence[int]) -> str:
        """Class ids to text; the blank (0) is skipped. No CTC collapsing here."""
        return "".join(self.alphabet[i - 1] for i in ids if i != BLANK)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Charset) and other.alphabet == self.alphabet

    def __repr__(self) -> str:
        return f"Charset({self.alphabet!r})"
