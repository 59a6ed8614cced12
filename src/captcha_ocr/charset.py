"""The alphabet: text <-> class ids, and where the CTC blank sits.

Convention: class 0 is the CTC blank (PyTorch ``CTCLoss`` default); character
``alphabet[i]`` is class ``i + 1``. (The Keras tutorial puts the blank last.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["BLANK", "CLASSES", "Charset", "UnknownCharacterError", "complete_alphabet", "one_case"]

BLANK = 0

# Character classes a site draws from as a whole (a site that shows some digits can show
# any digit it does not exclude); other characters (signs, letters of other scripts) are
# never inferred.
CLASSES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


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


def one_case(chars: str) -> str:
    """A set of characters (an alphabet, allowed characters) as a model trained with
    ``ignore_case`` reads them: lower case, each once, in their order."""
    return "".join(dict.fromkeys(chars.lower()))


def complete_alphabet(labels: Sequence[str], known: str) -> tuple[str, dict]:
    """The labels' characters, plus those of ``known`` (a starting model's alphabet) in
    the classes the labels use, where the labels look like a sample that missed some.

    Fifty labels of a site with 40-60 symbols often leave a few out (one seed of the
    zoo's line_mesh style: 3 of its 46, in 23% of the test images), and a model whose
    alphabet lacks a character can never read it. Whether that is likely is read off the
    labels the way Good and Turing estimated unseen species: characters seen exactly
    once mean the sample has not saturated (the share of unseen characters is about
    f1 / L for f1 such characters in L). Where none is seen once, every character has
    shown up at least twice and nothing is added: the labels of small alphabets
    (digits, captcha_images_v2's 19 symbols) never trigger it.

    Returns:
        (sorted alphabet, a record for ``model.json``: seen-once count, characters added).
    """
    counts = Counter("".join(labels))
    seen = "".join(sorted(counts))
    once = sum(n == 1 for n in counts.values())
    record = dict(labels=len(seen), seen_once=once, added="")
    if once == 0:
        return seen, record
    add = {ch for cls in CLASSES if any(c in counts for c in cls)
           for ch in cls if ch in known and ch not in counts}
    record["added"] = "".join(sorted(add))
    return "".join(sorted(set(seen) | add)), record
