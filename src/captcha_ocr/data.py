"""Labeled datasets on disk: find the images, their labels, a split, a fingerprint.

A dataset is a folder of images (png, jpg, gif, bmp, webp). Without a ``labels.csv``,
an image's label is its file stem. With one (header ``file,label``; what ``captcha-ocr
label`` writes, with ``labels-skipped.csv``), the labels are its rows: images it does not
name are unlabeled, not labeled by their file names (``stem_labels`` asks for that),
since file names like ``0001.png`` would read as labels. Images that
``labels-skipped.csv`` sets aside (skipped or unreadable while labeling) are neither.
No torch here: evaluation uses this module too.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import stat
import unicodedata
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ImageConfig
from .preprocess import IMAGE_SUFFIXES, MAX_FILE_BYTES, ImageError, preprocess

__all__ = [
    "DatasetError",
    "Labeling",
    "LoadedImages",
    "NameLabels",
    "Sample",
    "discover",
    "subfolders_hint",
    "copy_groups",
    "counted",
    "file_digest",
    "fingerprint",
    "list_images",
    "load_images",
    "NAME_SCHEMES",
    "name_labels",
    "read_labels_csv",
    "read_set_aside",
    "require_folder",
    "split_indices",
    "survey",
]

LABELS_FILE = "labels.csv"
SKIPPED_FILE = "labels-skipped.csv"
SET_ASIDE_STATUSES = ("skipped", "unreadable")


class DatasetError(ValueError):
    """A dataset folder cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Sample:
    """One labeled image file."""

    path: Path
    label: str


# Where labels come from file names: the parts of a name that are not a label. Captcha
# collections are often named LABEL_ID (the convention of dddd_trainer and captcha_trainer:
# "2b6c_1700000962.png", so two captchas with one text do not collide), sometimes ID_LABEL;
# or PREFIX_LABEL ("captcha_2b6c.png": one word before every label); a second copy of a
# file gets " (1)" or " - Copy"; names that are all ids are no labels.
_UUID = r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
_ID = re.compile(rf"[0-9]+|[0-9a-fA-F]{{8,}}|{_UUID}")
# Never a captcha's text: timestamps and other 10+ digit numbers, hashes, UUIDs.
_LONG = rf"[0-9]{{10,}}|[0-9a-fA-F]{{16,}}|{_UUID}"
_LONG_ID = re.compile(_LONG)
# LABEL-ID with a "-": only before an id no label is (arithmetic labels hold "-": "12-5").
_DASH_ID = re.compile(rf"(.+?)-(?:{_LONG})")  # the shortest label: a UUID's groups stay the id's
_COPY = re.compile(r"(.+?)(?: \(\d+\)| - Copy(?: \(\d+\))?)")
NAME_SCHEMES = ("auto", "whole", "label_id", "id_label", "prefix_label", "label-id")


@dataclass(frozen=True)
class NameLabels:
    """How file names carry labels: ``whole`` (the stem), ``label_id`` (the part before
    the last "_"), ``id_label`` or ``prefix_label`` (the part after the first "_": after
    an id, or after a word every name starts with) or ``label-id`` (the part before a "-"
    and a long id); a name without that separator is whole either way, and
    the " (1)" or " - Copy" of a second copy is never part of a label. ``word+SCHEME``
    (``word+label_id``: "img_2b6c_17.png") also drops the word and "_" before the label."""

    scheme: str = "whole"

    def __call__(self, stem: str) -> str:
        stem = _uncopied(stem)
        word, scheme = self.scheme.startswith("word+"), self.scheme.removeprefix("word+")
        if scheme == "label_id":
            stem = stem.rsplit("_", 1)[0]
        elif scheme in ("id_label", "prefix_label") and "_" in stem:
            stem = stem.split("_", 1)[1]
        elif scheme == "label-id":
            m = _DASH_ID.fullmatch(stem)
            stem = m.group(1) if m else stem
        if word and "_" in stem:
            stem = stem.split("_", 1)[1]
        return stem

    def describe(self) -> str:
        if self.scheme.startswith("word+"):
            return (NameLabels(self.scheme.removeprefix("word+")).describe()
                    + ", less the word and '_' they all start with")
        return {"label_id": "the part of each file name before its last '_' (LABEL_ID names)",
                "id_label": "the part of each file name after its first '_' (ID_LABEL names)",
                "prefix_label": "the part of each file name after the word and '_' they all "
                                "start with (PREFIX_LABEL names)",
                "label-id": "the part of each file name before a '-' and a timestamp, hash or "
                            "UUID (LABEL-ID names)",
                }.get(self.scheme, "the file names less a copy's ' (1)' or ' - Copy'")


def _counts_up(names: list[str]) -> bool:
    """Five or more numbers that count up (0001, 0002, ...: nearly every step 1)."""
    if len(names) < 5 or not all(x.isdigit() for x in names):
        return False
    n = sorted({int(x) for x in names})
    return sum(b - a == 1 for a, b in zip(n, n[1:])) >= 0.98 * (len(n) - 1)


def _zero_padded(names: list[str]) -> bool:
    """Five or more numbers of one length, 3 digits or more, each with a leading zero: like
    a sample of a zero-padded numbering (00008, 00018, ..., 02497), which need not count
    up. A site's digit text begins with 0 in about one label of ten, not in every one
    (but the first files of a sorted listing may all: a note, never a refusal)."""
    return (len(names) >= 5 and len({len(x) for x in names}) == 1 and len(names[0]) >= 3
            and all(x.isdigit() and x[0] == "0" for x in names))


def _ids(names: list[str]) -> bool:
    """Names that are certainly ids: a numbering, or timestamps, hashes, UUIDs."""
    return _counts_up(names) or all(_LONG_ID.fullmatch(x) for x in names)


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def name_labels(stems: list[str], where: str | Path = "", strict: bool = True,
                scheme: str = "auto") -> NameLabels | None:
    """How the file names ``stems`` (of one folder) carry their labels.

    ``auto``, judged on the names that have a "_" (those without are whole labels):
    ``label_id`` where each ends in "_" and an id (digits, 8+ hex digits, a UUID),
    ``id_label`` where each starts with an id and "_"; where both fit ("0423_1700000962"),
    the id is the side that is certainly one (a numbering, a timestamp, a hash), else the
    side whose values never repeat while the other's do (two captchas may show one text;
    ids are unique). Failing those, ``label-id`` where at least half the names end in "-"
    and a 10+ digit number, 16+ hex digits or a UUID; then ``prefix_label`` where each
    starts with one and the same word and "_" (``captcha_2b6c``), at least three, and the
    rest varies, has no "_" and is not all digits (``captcha_0417`` is a word and a
    number: refused, as a numbering could be). ``whole`` otherwise.

    Raises:
        DatasetError (``strict``; else None is returned): the names are no labels (a
            numbering, ids, 20+ names of 8+ hex digits of one length (short hashes; a site
            that draws hex text says ``--name-labels whole``), or a word and a number:
            "img_0001"), or LABEL_ID and ID_LABEL both fit and nothing tells them apart; an
            unknown ``scheme``.
    """
    stems = [NameLabels()(s) for s in stems]
    n = len(stems)
    if scheme != "auto":
        if scheme not in NAME_SCHEMES:
            raise DatasetError(f"name labels {scheme!r}: use one of {', '.join(NAME_SCHEMES)}")
        return NameLabels(scheme)
    # The rule is decided on the names with a "_" and applies to them; names without one
    # are whole labels (a folder of plain and LABEL_ID names, as collections get merged).
    if not stems:
        return NameLabels()
    parted = [s for s in stems if "_" in s]
    m = len(parted)
    # A few names with "_" among plain ones: labels that hold a "_", unless each ends in
    # "_" and an id no label is (a timestamp, a hash, a UUID).
    if 2 * m < n and not all(_LONG_ID.fullmatch(s.rsplit("_", 1)[1]) for s in parted):
        parted, m = [], 0
    fits: dict[str, tuple[list[str], list[str]]] = {}  # scheme: (labels, ids)
    if parted:
        tails = [s.rsplit("_", 1) for s in parted]
        heads = [s.split("_", 1) for s in parted]
        if all(_ID.fullmatch(i) and lab for lab, i in tails):
            fits["label_id"] = ([t[0] for t in tails], [t[1] for t in tails])
        if all(_ID.fullmatch(i) and lab for i, lab in heads):
            fits["id_label"] = ([h[1] for h in heads], [h[0] for h in heads])
    if len(fits) == 2:
        for rule in (lambda lab, ids: _ids(ids) and not _ids(lab),
                     lambda lab, ids: len(set(ids)) == m and len(set(lab)) < m):
            told = [k for k, (lab, ids) in fits.items() if rule(lab, ids)]
            if len(told) == 1:
                fits = {told[0]: fits[told[0]]}
                break
        else:
            return _not_labels(parted, where, "either part could be the label: LABEL_ID or "
                               "ID_LABEL", strict, "--name-labels label_id or id_label")
    dashed = [_DASH_ID.fullmatch(s) for s in stems]
    if not fits and 2 * sum(d is not None for d in dashed) >= n:
        labels = [d.group(1) for d in dashed if d]
        fits["label-id"] = (labels, [])
        m = len(labels)
    if not fits and _one_word_before(parted):  # "captcha_2b6c"; not "img_0001_2b6c"
        rest = [s.split("_", 1)[1] for s in parted]
        if not all(r.isdigit() for r in rest) and not _ids(rest):
            return NameLabels("prefix_label")
    if fits:
        (found, (labels, ids)), = fits.items()
        if m > 1 and len(set(labels)) <= max(1, m // 20):  # "img_1", "train_1"/"test_1"
            say = "--name-labels whole if they are"
            if found == "label_id" and len(set(labels)) == 1 and "_" not in labels[0] \
                    and all(i.isdigit() for i in ids):  # "captcha_0417": a word, then digits
                say = "--name-labels prefix_label if the numbers are the labels"
            return _not_labels(stems, where, "a word and a number", strict, say)
        if _one_word_before(labels):  # "img_2b6c_17", "captcha_2b6c-1700000962"
            return NameLabels(f"word+{found}")
        return NameLabels(found)
    if _ids(stems) or _hex_names(stems):
        what = "numbers counting up" if _counts_up(stems) else "timestamps, hashes or UUIDs"
        return _not_labels(stems, where, what, strict)
    if _word_then_number(stems):  # "img100", "captcha-7", "z101"
        return _not_labels(stems, where, "a word and a number", strict)
    return NameLabels()


def _word_then_number(names: list[str]) -> bool:
    """Five or more names that are one and the same start holding a letter, then a number
    that differs from name to name ("img100", "captcha-7", "z101": their common start
    may take the number's first digits). No site's captchas all begin alike."""
    if len(names) < 5:
        return False
    start = os.path.commonprefix(names)
    start = start.rstrip("0123456789")  # "z101" ... "z130" share "z1": the number is "101"
    return (any(c.isalpha() for c in start)
            and all(len(x) > len(start) and x[len(start):].isdigit() for x in names))


_HEX = re.compile(r"[0-9a-f]{8,}|[0-9A-F]{8,}")


def _hex_names(names: list[str]) -> bool:
    """Twenty or more names of one length, 8 or more hex digits each, most of them mixing
    digits and letters: random ids (a short hash, a token), not a captcha's text, which
    draws from more letters than a-f."""
    return (len(names) >= 20 and len({len(x) for x in names}) == 1
            and all(_HEX.fullmatch(x) for x in names)
            and 2 * sum(any(c.isdigit() for c in x) and any(c.isalpha() for c in x)
                        for x in names) > len(names))


def _one_word_before(labels: list[str]) -> bool:
    """Three or more names or labels that all start with one word and "_", the rest
    varying and holding no "_" (a rest with one, "img_0001_2b6c", may hold an id)."""
    parts = [x.split("_", 1) for x in labels]
    return (len(labels) >= 3 and all(len(q) == 2 and q[1] and "_" not in q[1] for q in parts)
            and len({q[0] for q in parts}) == 1 and len({q[1] for q in parts}) > 1)


def _not_labels(stems: list[str], where: str | Path, what: str, strict: bool,
                say: str = "--name-labels whole if they are") -> None:
    if not strict:
        return None
    order = sorted(stems, key=_natural)
    raise DatasetError(f"{where}: the file names ({order[0]} ... {order[-1]}: {what}) are not "
                       f"labels as they are; label the images (captcha-ocr label {where}, or "
                       f"{LABELS_FILE}: file,label), or {say}")


def require_folder(folder: str | Path, name: str = "") -> Path:
    """``folder`` as a Path, where it is a directory.

    Raises:
        DatasetError: it does not exist, is a file, or is something else; ``name`` (an
            option, say) goes before the path in the message.
    """
    folder = Path(folder)
    if folder.is_dir():
        return folder
    said = f"{name} {folder}" if name else str(folder)
    if not os.path.lexists(folder):
        raise DatasetError(f"{said}: no such folder")
    if folder.is_file():
        raise DatasetError(f"{said}: a file, not a folder: give the folder that holds the images")
    raise DatasetError(f"{said}: not a folder")


def list_images(folder: str | Path, *, odd: bool = False) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; with ``odd``, also what is
    named like one but is no file (a dangling link, a FIFO), for its own error.

    Raises:
        DatasetError: ``folder`` is not a directory.
    """
    folder = require_folder(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                  and (p.is_file() or (odd and not p.is_dir())))


def link_labeled(samples: Iterable[Sample], dest: str | Path, with_labels: bool = True) -> Path:
    """A new folder ``dest`` of links to the samples' files (by file name) and, unless
    ``with_labels`` is False, their ``labels.csv``: a dataset folder of just these images."""
    dest = Path(dest)
    dest.mkdir(parents=True)
    rows = []
    for s in samples:
        (dest / s.path.name).symlink_to(s.path.resolve())
        rows.append((s.path.name, s.label))
    if not with_labels:
        return dest
    with (dest / LABELS_FILE).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "label"])
        w.writerows(rows)
    return dest


# The header names a labels.csv may use: what captcha-ocr writes first, then those of
# other tools' CSV files (Hugging Face's metadata.csv: file_name,text; EasyOCR's trainer:
# filename,words; Kaggle sets: filename/image and text/solution).
FILE_COLUMNS = ("file", "filename", "file_name", "image", "name")
LABEL_COLUMNS = ("label", "text", "words", "solution", "answer", "captcha", "code")


_SEPARATORS = {",": "commas", "\t": "tabs", ";": "semicolons"}


def _trim_empty_end(row: list[str]) -> list[str]:
    """``row`` less the empty cells after its second."""
    while len(row) > 2 and not row[-1].strip():
        row = row[:-1]
    return row


def read_labels_csv(path: Path) -> dict[str, str]:
    """``{file: label}`` from a ``labels.csv``: header ``file,label`` (or a name of
    ``FILE_COLUMNS`` and one of ``LABEL_COLUMNS``), comma-, tab- or semicolon-separated
    (as the header is, or as Excel's first line ``sep=;`` says); a BOM and empty cells
    after the second of a line are fine.

    Raises:
        DatasetError: not UTF-8, no header, a malformed row, or one file labeled twice
            with different labels.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # a BOM (Excel's UTF-8) is fine
            lines = f.read().splitlines(keepends=True)
        skip = next((i for i, line in enumerate(lines) if line.strip()), len(lines))  # blank lines first
        lines = lines[skip:]
        excel = re.fullmatch(r"sep=([,;\t])\1*", lines[0].rstrip("\r\n").strip(" ")) if lines else None
        if excel:  # Excel's "sep=;" line names the separator
            skip, lines = skip + 1, lines[1:]
        sep = excel.group(1) if excel else next((d for d in ",\t;" if lines and d in lines[0]), ",")
        # cells left empty at the end of a line (a spreadsheet's touched columns) are none
        rows = [_trim_empty_end(row) for row in csv.reader(lines, delimiter=sep)]
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); "
                           "save it as UTF-8") from None
    header = [c.strip().lower() for c in rows[0][:3]] if rows else []
    if len(header) != 2 or header[0] not in FILE_COLUMNS or header[1] not in LABEL_COLUMNS:
        got = sep.join(rows[0])[:80] if rows else ""
        raise DatasetError(f"{path}: the first line must be the header 'file,label' (two columns: "
                           f"{'/'.join(FILE_COLUMNS)}, then {'/'.join(LABEL_COLUMNS)}), "
                           f"not {got!r}")
    labels: dict[str, str] = {}
    first: dict[str, int] = {}
    for n, row in enumerate(rows[1:], start=2 + skip):
        raw = row[0] if row else ""
        row = [c.strip() for c in row]  # spaces around a field are a hand edit's, not the label's
        if row and raw != row[0] and (path.parent / raw).is_file() \
                and not (path.parent / row[0]).is_file():
            row[0] = raw  # ... unless the file's own name begins or ends with them (" a.png")
        if not any(row):
            continue  # a blank line (a trailing one, say)
        if len(row) == 2 and row[0].startswith("./"):
            row[0] = row[0][2:]
        if len(row) != 2 or not row[0]:
            other = [d for d in ",\t;" if d != sep and len(row) == 1 and d in row[0]]
            mixed = (f" (the header is separated by {_SEPARATORS[sep]} and this line by "
                     f"{_SEPARATORS[other[0]]}: use one separator throughout)" if other else "")
            raise DatasetError(f"{path}:{n}: expected two columns (file{sep}label), got {row!r}{mixed}")
        name, label = row
        if not label:
            raise DatasetError(f"{path}:{n}: {name} has an empty label; write its text, or delete "
                               "the line to leave the image unlabeled")
        if name in labels and labels[name] != label:
            raise DatasetError(f"{path}:{n}: {name} is labeled {label!r} here and "
                               f"{labels[name]!r} on line {first[name]}; keep one of the two")
        first.setdefault(name, n)
        labels[name] = label
    return labels


def read_set_aside(path: Path) -> dict[str, str]:
    """``{file: status}`` from a ``labels-skipped.csv`` (``file,status``), rows of other
    statuses ignored; ``{}`` where there is no such file.

    Raises:
        DatasetError: the file is not readable text.
    """
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: cannot be read ({e}); fix or delete it (it only lists "
                           "images set aside)") from None
    return {r[0]: r[1] for r in rows[1:] if len(r) == 2 and r[1] in SET_ASIDE_STATUSES}


@dataclass(frozen=True)
class Labeling:
    """What a dataset folder holds: its labeled images and the rest."""

    folder: Path
    samples: list[Sample]  # labeled, sorted by file name
    unlabeled: list[Path]  # images labels.csv does not name (and stem labels were not asked)
    set_aside: set[str]  # names labels-skipped.csv sets aside: neither labeled nor unlabeled
    absent: int = 0  # rows of labels.csv naming files that are not in the folder (ignored)
    names: str = ""  # how those file names carry labels (``NameLabels.scheme``), "" for none
    name_example: str = ""  # "2b6c_1700000962.png -> 2b6c": one of them
    names_cut: int = 0  # file names of which only a part is the label (the rest an id)
    copy_example: str = ""  # "2b6c (1).png -> 2b6c": a second copy's name
    copies_cut: int = 0  # names of second copies, less their " (1)" or " - Copy"
    absent_example: str = ""  # "0007.PNG, sub/0008.png": the first rows naming absent files
    subfolders: tuple[str, ...] = ()  # subfolders holding images, which are not read
    named: frozenset[str] = frozenset()  # the samples' file names that are their labels

    @property
    def by_file_name(self) -> int:
        """Samples labeled by their file names (no labels.csv row, or --stem-labels)."""
        return len(self.named)

    def record(self) -> dict:
        """Where the labels came from, as ``model.json`` records it."""
        out = {LABELS_FILE: len(self.samples) - self.by_file_name, "file names": self.by_file_name}
        if self.names not in ("", "whole"):
            out["names"] = self.names  # LABEL_ID, PREFIX_LABEL...: the part that was read
        return out

    def _whole_names(self) -> list[Sample]:
        """The samples whose labels are their whole file names."""
        if self.names not in ("", "whole"):
            return []
        return [s for s in self.samples if s.path.name in self.named]

    def numbered_note(self) -> str:
        """A line where the labels read from whole file names look like a numbering (the
        names may number the images rather than spell their text), else ""."""
        return _numbered_note(self._whole_names())

    def _fix(self, samples: list[Sample]) -> str:
        """Where these samples' labels are mended: labels.csv, their file names, or both."""
        named = sum(s.path.name in self.named for s in samples)
        return (f"fix {LABELS_FILE}" if not named else "rename the files" if named == len(samples)
                else f"fix {LABELS_FILE} or the file names")

    def note(self, unlabeled_hint: str = "") -> str:
        """One line on how file names became labels (where not whole) and what was left
        out of the labeled set, "" when neither applies.

        ``unlabeled_hint``: what the command can do with the unlabeled images (train:
        "--unlabeled DIR self-trains on them"), said beside "--stem-labels"."""
        out = []
        if self.names_cut:
            out.append(f"{counted(self.names_cut, 'label')} read from file names as "
                       f"{NameLabels(self.names).describe()}: {self.name_example} (--name-labels "
                       "whole: the whole names)")
        underscored = [s for s in self._whole_names() if "_" in s.label]
        if underscored and 2 * len(underscored) < len(self.samples):  # a minority (--name-labels
            # whole, or most names with one that auto read whole: the user's or the rule's word)
            ex = underscored[0]
            out.append(f"{counted(len(underscored), 'label')} with a '_' read as whole file names "
                       f"({ex.path.name} -> {ex.label}), beside names without one: the model "
                       "learns to read '_'; if the part before the last '_' is their label, "
                       f"give those files' labels in {LABELS_FILE} or rename them")
        numbered = self.numbered_note()
        if numbered:
            out.append(numbered)
        if self.copies_cut:
            out.append(f"{counted(self.copies_cut, 'label')} read from the names of second copies, "
                       f"less their ' (1)' or ' - Copy': {self.copy_example}")
        if self.unlabeled:
            # --stem-labels only where their names would be taken as labels (not ids)
            stems = name_labels([q.stem for q in self.unlabeled], strict=False) is not None
            hint = "; ".join(filter(None, [unlabeled_hint,
                                           "--stem-labels: file names as labels" if stems else ""]))
            out.append(f"{counted(len(self.unlabeled), 'image')} not in {LABELS_FILE} unlabeled"
                       + (f" ({hint})" if hint else ""))
        if self.set_aside:
            out.append(f"{counted(len(self.set_aside), 'image')} set aside in {SKIPPED_FILE}")
        if self.absent:
            out.append(f"{counted(self.absent, 'row')} of {LABELS_FILE} for files not here, "
                       f"ignored ({self.absent_example})")
        spaced = [s for s in self.samples if any(c.isspace() for c in s.label)]
        if spaced:
            kinds = {"space" if c == " " else "tab" if c == "\t" else "line break" if
                     len(f"a{c}b".splitlines()) > 1 else "blank" for s in spaced for c in s.label
                     if c.isspace()}
            what = " or ".join(k for k in ("space", "tab", "line break", "blank") if k in kinds)
            out.append(f"a {what} in {counted(len(spaced), 'label')} ({spaced[0].label!r}): it is a "
                       f"character to read, as any other; {self._fix(spaced)} if the site draws none")
        hidden = [s for s in self.samples if any(invisible(c) for c in s.label)]
        if hidden:
            c = next(c for c in hidden[0].label if invisible(c))
            out.append(f"an invisible character (U+{ord(c):04X}) in {counted(len(hidden), 'label')} "
                       f"({hidden[0].path.name}: {hidden[0].label!r}): the model learns to read "
                       f"it; {self._fix(hidden)}")
        long = long_labels([s.label for s in self.samples])
        if long:
            ex = next(s for s in self.samples if len(s.label) == max(long))
            typical = int(np.median([len(s.label) for s in self.samples]))
            out.append(f"{counted(len(long), 'label')} far longer than the others (mostly "
                       f"{typical} characters): {ex.path.name}: {ex.label[:24]!r}"
                       f"{'...' if len(ex.label) > 24 else ''} ({len(ex.label)}); the model's input "
                       "widens for the longest label (16 pixels a character): fix it if a typo")
        if self.subfolders:
            shown = ", ".join(self.subfolders[:3]) + (", ..." if len(self.subfolders) > 3 else "")
            out.append(f"the images in subfolder{'s' if len(self.subfolders) > 1 else ''} {shown} "
                       "are not read (a dataset is one folder)")
        if not out:
            return ""
        return f"{self.folder}: {counted(len(self.samples), 'labeled image')}; " + "; ".join(out)


def invisible(c: str) -> bool:
    """A character that draws nothing and is no blank: control, format (zero-width spaces,
    direction marks), private or unassigned (tabs and line breaks are said apart). The
    zero-width (non-)joiners U+200C and U+200D are kept: Persian and Indic text needs them."""
    if c in "\u200c\u200d":
        return False
    return unicodedata.category(c) in ("Cf", "Co", "Cn") or \
        (unicodedata.category(c) == "Cc" and not c.isspace())


def long_labels(labels: list[str]) -> list[int]:
    """The lengths of labels far longer than the rest: over twice the median length and
    over it by more than 4 (a slip of the keyboard, a pasted line), where they are a few
    (at most 3, or 2%): many such labels are a site's long captchas."""
    if len(labels) < 5:
        return []
    typical = float(np.median([len(x) for x in labels]))
    long = [len(x) for x in labels if len(x) > max(2 * typical, typical + 4)]
    return long if len(long) <= max(3, len(labels) // 50) else []  # many: the site's own


def _numbered_note(by_name: list[Sample]) -> str:
    """Whole file names as labels that look like a numbering, which the consecutive-number
    check misses in a sample of a numbered set; "" otherwise: only digits, of several
    lengths, none with a leading zero (7.png, 164.png, 1001.png: digit captchas of several
    lengths draw a leading 0 in about one label of ten), or of one length, every one with
    a leading zero (00008.png, 00018.png, 02497.png: ``_zero_padded``)."""
    labels = [s.label for s in by_name]
    lengths = sorted({len(x) for x in labels})
    if _zero_padded(labels):
        what = f"zero-padded numbers of {lengths[0]} digits"
    elif len(labels) >= 2 and len(lengths) >= 2 and all(x.isdigit() and x[0] != "0" for x in labels):
        what = f"numbers of {lengths[0]} to {lengths[-1]} digits"
    else:
        return ""
    ex = by_name[0]
    return (f"{counted(len(by_name), 'label')} are whole file names, {what} ({ex.path.name} -> "
            f"{ex.label}): if the names number the images instead of spelling their text, label "
            "them (captcha-ocr label DIR)")


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless one: '1 image', '2,000 images'."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def survey(folder: str | Path, *, stem_labels: bool = False, names: str = "auto") -> Labeling:
    """The labeled images of a dataset folder, and what is left out (see the module doc).

    A folder being labeled (it has a ``labels.csv`` or a ``labels-skipped.csv``) is
    labeled by ``labels.csv`` alone, unless ``stem_labels``; rows naming files that are
    not in the folder are ignored (the labeling page keeps them for removed files).

    Args:
        folder: the dataset folder.
        stem_labels: in a folder being labeled, label the images ``labels.csv`` does not
            name by their file stems too (``labels.csv`` then corrects some file names).
        names: how file names carry labels (``name_labels``: auto, whole, label_id, id_label).

    Raises:
        DatasetError: no such folder, no images in it, a malformed ``labels.csv``, an
            empty label, or no labeled image.
    """
    folder = Path(folder)
    paths = list_images(folder)
    if not paths:
        raise DatasetError(f"{folder}: no images found (expected {', '.join(IMAGE_SUFFIXES)})"
                           f"{subfolders_hint(folder)}")
    csv_path = folder / LABELS_FILE
    rows = read_labels_csv(csv_path) if csv_path.is_file() else {}
    aside = set(read_set_aside(folder / SKIPPED_FILE))
    being_labeled = csv_path.is_file() or (folder / SKIPPED_FILE).is_file()
    present = {p.name for p in paths}
    by_name = [p for p in paths if p.name not in rows and p.name not in aside
               and (stem_labels or not being_labeled)]
    try:
        scheme = name_labels([p.stem for p in by_name], folder, scheme=names) if by_name else NameLabels()
    except DatasetError as e:
        raise DatasetError(f"{e}{_other_label_files(folder)}") from None
    samples, unlabeled, set_aside = [], [], set()
    for p in paths:
        if p.name in rows:
            samples.append(Sample(p, rows[p.name]))
        elif p.name in aside:
            set_aside.add(p.name)
        elif being_labeled and not stem_labels:
            unlabeled.append(p)
        else:
            samples.append(Sample(p, scheme(p.stem)))
    empty = [s.path.name for s in samples if not s.label]
    if empty:
        raise DatasetError(f"{folder}: {empty[0]} has an empty label")
    if not samples:
        if unlabeled:
            why = (f"{csv_path} labels none of them" if csv_path.is_file()
                   else f"there is no {LABELS_FILE} yet")
            row = _with_folder(rows)
            if row:
                why += f": its rows name files with a folder, as {row}, where {_BY_NAME}"
            also = f", {len(set_aside):,} set aside" if set_aside else ""
            raise DatasetError(f"{folder}: no labeled images among its {len(paths):,} ({why}{also}); "
                               f"label some (captcha-ocr label {folder}), or --stem-labels if "
                               "the file names are the labels")
        raise DatasetError(f"{folder}: all {len(paths):,} images are set aside in "
                           f"{SKIPPED_FILE}; label some (captcha-ocr label {folder})")
    absent = [name for name in rows if name not in present]
    named = frozenset(s.path.name for s in samples if s.path.name not in rows)
    copies = [p for p in by_name if _uncopied(p.stem) != p.stem]  # "2b6c (1).png"
    cut = [p for p in by_name if scheme(p.stem) != _uncopied(p.stem)]  # a part that is an id
    return Labeling(folder, samples, unlabeled, set_aside, absent=len(absent),
                    names=scheme.scheme if named else "", name_example=_cut_example(cut, scheme),
                    names_cut=len(cut), copy_example=_cut_example(copies, scheme),
                    copies_cut=len(copies), absent_example=_absent_example(absent, present),
                    subfolders=tuple(_image_subfolders(folder)), named=named)


def _uncopied(stem: str) -> str:
    """A file stem less a second copy's " (1)" or " - Copy"."""
    m = _COPY.fullmatch(stem)
    return m.group(1) if m else stem


def _cut_example(paths: list[Path], scheme: NameLabels) -> str:
    return f"{paths[0].name} -> {scheme(paths[0].stem)}" if paths else ""


def _absent_example(absent: list[str], present: set[str]) -> str:
    """The first few rows naming files that are not here, each with the file it may mean
    (the same name in other case: names are case-sensitive)."""
    lower = {name.lower(): name for name in present}
    shown = [f"{name}: the file is {lower[name.lower()]}" if name.lower() in lower else name
             for name in absent[:3]]
    return ", ".join(shown) + (", ..." if len(absent) > 3 else "")


def _with_folder(names: Iterable[str], under: str = "") -> str:
    """One of a labels.csv's ``names`` given with a folder (``images/0001.png``; one in
    ``under``/ where given), "" where none is."""
    return next((n for n in names if ("/" in n or "\\" in n)
                 and (not under or n.replace("\\", "/").startswith(f"{under}/"))), "")


def _csv_names(csv_path: Path) -> Iterable[str]:
    """The file names a labels.csv labels; none where it is absent or unreadable (for
    messages about it)."""
    try:
        return read_labels_csv(csv_path) if csv_path.is_file() else ()
    except DatasetError:
        return ()


_BY_NAME = f"{LABELS_FILE} names each image by its file name alone, beside it in the folder given"


def _image_subfolders(folder: Path) -> list[str]:
    """The subfolders of ``folder`` that hold images, by name (not hidden ones such as the
    labeling page's .label-model, whose plots are images)."""
    return sorted(d.name for d in folder.iterdir()
                  if d.is_dir() and not d.name.startswith(".") and list_images(d))


def subfolders_hint(folder: Path) -> str:
    """"; its subfolders a, b hold images: ..." where images sit one level down (only the
    folder itself is read: a dataset is one folder)."""
    subs = _image_subfolders(folder)
    if not subs:
        return ""
    shown = ", ".join(subs[:3]) + (", ..." if len(subs) > 3 else "")
    row = _with_folder(_csv_names(folder / LABELS_FILE))
    rows = f" ({LABELS_FILE} here names them with their folder, as {row}: {_BY_NAME})" if row else ""
    return (f"; its subfolder{'s' if len(subs) > 1 else ''} {shown} hold{'' if len(subs) > 1 else 's'} "
            "images, and only the folder itself is read: give one of them, or move their images "
            f"into one folder{rows}")


def _other_label_files(folder: Path) -> str:
    """" (labels.txt is here: ...)" where the folder holds what may be labels in another
    form (a gt.txt, a metadata.csv): the one form read is labels.csv."""
    row = _with_folder(_csv_names(folder.resolve().parent / LABELS_FILE), folder.resolve().name)
    if row:
        return (f" (../{LABELS_FILE} names these images with their folder, as {row}, and is "
                f"not read: {_BY_NAME})")
    other = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in
                   (".txt", ".csv", ".tsv", ".json", ".jsonl") and p.name not in (LABELS_FILE, SKIPPED_FILE))
    if not other:
        return ""
    return (f" ({', '.join(other[:3])}{', ...' if len(other) > 3 else ''} "
            f"{'is' if len(other) == 1 else 'are'} not read: labels are read from {LABELS_FILE}, "
            "header file,label)")


def discover(folder: str | Path, *, stem_labels: bool = False, names: str = "auto") -> list[Sample]:
    """All labeled images of a dataset folder, sorted by file name (``survey``).

    Raises:
        DatasetError: as ``survey``.
    """
    return survey(folder, stem_labels=stem_labels, names=names).samples


@dataclass
class LoadedImages:
    """Decoded images kept in memory, and the files that could not be read."""

    images: np.ndarray  # (N, C, H, W) float32 in [0, 1]
    samples: list[Sample]
    skipped: list[tuple[Path, str]]  # (file, one-line reason)


def load_images(samples: list[Sample], cfg: ImageConfig, workers: int = 4) -> LoadedImages:
    """Decode and preprocess every sample; unreadable files are skipped, not fatal.

    Args:
        samples: from ``discover``.
        cfg: the model's input size.
        workers: decoding threads (PIL releases the GIL while decoding).
    """

    def one(sample: Sample) -> np.ndarray | str:
        try:
            return preprocess(sample.path, cfg)
        except ImageError as e:
            return str(e)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, samples))
    kept = [(s, r) for s, r in zip(samples, results) if not isinstance(r, str)]
    skipped = [(s.path, r) for s, r in zip(samples, results) if isinstance(r, str)]
    images = (np.stack([r for _, r in kept]) if kept
              else np.zeros((0, cfg.channels, cfg.height, cfg.width), np.float32))
    return LoadedImages(images, [s for s, _ in kept], skipped)


def split_indices(n: int, val_fraction: float, seed: int,
                  groups: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into (train, validation) index arrays.

    ``val_fraction`` 0 gives an empty validation set; otherwise it holds at least one item.
    ``groups``: items with equal values (copies of one file) go to the same side: whole
    groups, in a seeded order, each taken where it still fits in the validation share
    (the smallest one where none does), so validation holds at most that share; where
    every value differs the split is the one without groups.

    Raises:
        DatasetError: too few items, or too few distinct ones, to hold some out.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    n_val = 0 if val_fraction == 0 else max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise DatasetError(f"{n} images are too few to hold out {val_fraction:.0%} for validation")
    rng = np.random.default_rng(seed)
    if groups is None or len(set(groups)) == n:
        order = rng.permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    group = copy_groups(groups)
    sizes = np.bincount(group)
    if n_val and len(sizes) < 2:
        raise DatasetError(f"the {n} images are all copies of one: nothing to hold out for "
                           "validation")
    val = np.zeros(n, bool)
    taken = 0
    for g in rng.permutation(len(sizes)):
        if taken + sizes[g] <= n_val:
            val[group == g] = True
            taken += sizes[g]
    if n_val and not taken:
        val[group == int(np.argmin(sizes))] = True
    return np.flatnonzero(~val), np.flatnonzero(val)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (hex); a file over the image size limit, one that cannot
    be read or is not a regular file (a FIFO would block), gets its own path instead (the
    image gate refuses it by name)."""
    try:
        st = path.stat()
        if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_FILE_BYTES:
            return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        pass
    return f"unread:{path.name}"  # the same wherever the folder is named from


def copy_groups(values: list) -> np.ndarray:
    """Per item, the index of its group of equal values (copies of one file share one),
    groups numbered in order of first appearance (all different: ``0 .. n-1``)."""
    index: dict[str, int] = {}
    return np.array([index.setdefault(str(v), len(index)) for v in values], np.int64)


def trained_on(training: dict, samples: list[Sample]) -> bool:
    """Whether ``samples`` are the very images a model was trained on, by its
    ``model.json``'s ``training`` record: image count and data fingerprint; where training
    skipped unreadable files, the fingerprint of every file it listed."""
    if training.get("n_images") == len(samples):
        return training.get("data_fingerprint") == fingerprint(s.path for s in samples)
    if training.get("n_skipped") and training.get("n_images", 0) + training["n_skipped"] == len(samples):
        return training.get("data_fingerprint_listed") == fingerprint(s.path for s in samples)
    return False


def fingerprint(paths: Iterable[Path], digests: Iterable[str] | None = None) -> str:
    """SHA-256 over the files' contents and names, independent of how they are packed.

    Equal to ``sha256sum *.png | LC_ALL=C sort -k2 | sha256sum`` run in the folder.
    ``digests``: the files' ``file_digest``s where already known (not read again).
    """
    paths = list(paths)
    digests = list(digests) if digests is not None else [file_digest(p) for p in paths]
    lines = sorted((p.name.encode(), f"{d}  {p.name}\n".encode()) for p, d in zip(paths, digests))
    return hashlib.sha256(b"".join(line for _, line in lines)).hexdigest()
