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
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ImageConfig
from .preprocess import IMAGE_SUFFIXES, ImageError, preprocess

__all__ = [
    "DatasetError",
    "Labeling",
    "LoadedImages",
    "NameLabels",
    "Sample",
    "discover",
    "fingerprint",
    "list_images",
    "load_images",
    "name_labels",
    "read_labels_csv",
    "read_set_aside",
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
# "2b6c_1700000962.png", so two captchas with one text do not collide), sometimes ID_LABEL,
# and a second download of a file gets " (1)"; names that are all ids are no labels at all.
_ID = re.compile(r"[0-9]+|[0-9a-fA-F]{8,}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_LONG_ID = re.compile(r"[0-9a-fA-F]{16,}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_COPY = re.compile(r"(.+?) \(\d+\)")
_FEW = 10  # below this many names, none is called a numbering: too little to tell


@dataclass(frozen=True)
class NameLabels:
    """How file names carry labels: ``whole`` (the stem), ``label_id`` (the part before
    the last "_") or ``id_label`` (the part after the first "_"); a trailing " (N)" of a
    second copy is never part of a label."""

    scheme: str = "whole"

    def __call__(self, stem: str) -> str:
        m = _COPY.fullmatch(stem)
        stem = m.group(1) if m else stem
        if self.scheme == "label_id":
            return stem.rsplit("_", 1)[0]
        if self.scheme == "id_label":
            return stem.split("_", 1)[1]
        return stem

    def describe(self) -> str:
        return {"label_id": "the part of each file name before its last '_' (LABEL_ID names)",
                "id_label": "the part of each file name after its first '_' (ID_LABEL names)",
                }.get(self.scheme, "the file names")


def _numbering(ids: list[str]) -> bool:
    """Names that count up (0001, 0002, ...: nearly every step 1) or random ids."""
    if all(_LONG_ID.fullmatch(x) for x in ids):
        return True
    if not all(x.isdigit() for x in ids):
        return False
    n = sorted({int(x) for x in ids})
    return len(n) > 1 and sum(b - a == 1 for a, b in zip(n, n[1:])) >= 0.98 * (len(n) - 1)


def name_labels(stems: list[str], where: str | Path = "", strict: bool = True) -> NameLabels | None:
    """How the file names ``stems`` (of one folder) carry their labels.

    ``label_id`` where every name has a "_" followed by an id (digits, or 8+ hex digits)
    and the parts before it vary; ``id_label`` likewise with the id first; where both
    fit, the side whose parts repeat is the label (ids are unique), else ``label_id``.

    Raises:
        DatasetError (``strict``; else None is returned): the names are a numbering or
            random ids, or one word and a number ("img_0001"): no labels in them.
    """
    stems = [NameLabels()(s) for s in stems]
    n = len(stems)

    def varied(labels: list[str]) -> bool:
        return all(labels) and (n < _FEW or len(set(labels)) > n // 2)

    fits = []
    if n and all("_" in s for s in stems):
        tails = [s.rsplit("_", 1) for s in stems]
        heads = [s.split("_", 1) for s in stems]
        if all(_ID.fullmatch(t[1]) for t in tails):
            fits.append(("label_id", [t[0] for t in tails], [t[1] for t in tails]))
        if all(_ID.fullmatch(h[0]) for h in heads):
            fits.append(("id_label", [h[1] for h in heads], [h[0] for h in heads]))
        numbered = bool(fits) and n >= _FEW and not any(varied(f[1]) for f in fits)
        fits = [f for f in fits if varied(f[1])]
        if len(fits) == 2:  # both parts ids ("1234_17"): the label is the part that repeats
            repeats = [len(set(f[2])) == n and len(set(f[1])) < n for f in fits]
            fits = [fits[1]] if repeats == [False, True] else [fits[0]]
        if fits:
            return NameLabels(fits[0][0])
        if numbered:
            return _not_labels(stems, where, "one word and a number", strict)
    if n >= _FEW and _numbering(stems):
        return _not_labels(stems, where, "numbers counting up" if stems[0].isdigit() else "random ids",
                           strict)
    return NameLabels()


def _not_labels(stems: list[str], where: str | Path, what: str, strict: bool) -> None:
    if not strict:
        return None
    first, last = sorted(stems)[0], sorted(stems)[-1]
    raise DatasetError(f"{where}: the file names ({first} ... {last}: {what}) are not labels; "
                       f"label the images (captcha-ocr label {where}) or give a {LABELS_FILE} "
                       "(header file,label)")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name.

    Raises:
        DatasetError: ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


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


def read_labels_csv(path: Path) -> dict[str, str]:
    """``{file: label}`` from a ``labels.csv`` (header ``file,label``; a BOM is fine).

    Raises:
        DatasetError: not UTF-8, no header, a malformed row, or one file labeled twice
            with different labels.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # a BOM (Excel's UTF-8) is fine
            rows = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); "
                           "save it as UTF-8") from None
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["file", "label"]:
        raise DatasetError(f"{path}: the first line must be the header 'file,label'")
    labels: dict[str, str] = {}
    first: dict[str, int] = {}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[0]:
            raise DatasetError(f"{path}:{n}: expected two columns 'file,label', got {row!r}")
        name, label = row
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
    by_file_name: int = 0  # samples labeled by their file stems (no labels.csv, or stem_labels)
    names: str = ""  # how those file names carry labels (``NameLabels.scheme``), "" for none

    def record(self) -> dict:
        """Where the labels came from, as ``model.json`` records it."""
        out = {LABELS_FILE: len(self.samples) - self.by_file_name, "file names": self.by_file_name}
        if self.names not in ("", "whole"):
            out["names"] = self.names  # LABEL_ID or ID_LABEL names: the part that was read
        return out

    def note(self, unlabeled_hint: str = "") -> str:
        """One line on how file names became labels (where not whole) and what was left
        out of the labeled set, "" when neither applies.

        ``unlabeled_hint``: what the command can do with the unlabeled images (train:
        "--unlabeled DIR self-trains on them"), said beside "--stem-labels"."""
        out = []
        if self.names not in ("", "whole"):
            ex = next(s for s in self.samples if s.label != s.path.stem)
            out.append(f"labels are {NameLabels(self.names).describe()}: {ex.path.name} -> "
                       f"{ex.label} (to use whole names, list them in {LABELS_FILE})")
        if self.unlabeled:
            hint = "; ".join(filter(None, [unlabeled_hint, "--stem-labels: file names as labels"]))
            out.append(f"{_count(len(self.unlabeled), 'image')} not in {LABELS_FILE} unlabeled "
                       f"({hint})")
        if self.set_aside:
            out.append(f"{_count(len(self.set_aside), 'image')} set aside in {SKIPPED_FILE}")
        if self.absent:
            out.append(f"{_count(self.absent, 'row')} of {LABELS_FILE} for files not here, "
                       "ignored")
        if not out:
            return ""
        return f"{self.folder}: {_count(len(self.samples), 'labeled image')}; " + "; ".join(out)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def survey(folder: str | Path, *, stem_labels: bool = False) -> Labeling:
    """The labeled images of a dataset folder, and what is left out (see the module doc).

    A folder being labeled (it has a ``labels.csv`` or a ``labels-skipped.csv``) is
    labeled by ``labels.csv`` alone, unless ``stem_labels``; rows naming files that are
    not in the folder are ignored (the labeling page keeps them for removed files).

    Args:
        folder: the dataset folder.
        stem_labels: in a folder being labeled, label the images ``labels.csv`` does not
            name by their file stems too (``labels.csv`` then corrects some file names).

    Raises:
        DatasetError: no such folder, no images in it, a malformed ``labels.csv``, an
            empty label, or no labeled image.
    """
    folder = Path(folder)
    paths = list_images(folder)
    if not paths:
        raise DatasetError(f"{folder}: no images found (expected {', '.join(IMAGE_SUFFIXES)})")
    csv_path = folder / LABELS_FILE
    rows = read_labels_csv(csv_path) if csv_path.is_file() else {}
    aside = set(read_set_aside(folder / SKIPPED_FILE))
    being_labeled = csv_path.is_file() or (folder / SKIPPED_FILE).is_file()
    names = {p.name for p in paths}
    by_name = [p for p in paths if p.name not in rows and p.name not in aside
               and (stem_labels or not being_labeled)]
    scheme = name_labels([p.stem for p in by_name], folder) if by_name else NameLabels()
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
            also = f", {len(set_aside):,} set aside" if set_aside else ""
            raise DatasetError(f"{folder}: no labeled images among its {len(paths):,} ({why}{also}); "
                               f"label some (captcha-ocr label {folder}), or --stem-labels if "
                               "the file names are the labels")
        raise DatasetError(f"{folder}: all {len(paths):,} images are set aside in "
                           f"{SKIPPED_FILE}; label some (captcha-ocr label {folder})")
    absent = sum(name not in names for name in rows)
    by_file_name = sum(s.path.name not in rows for s in samples)
    return Labeling(folder, samples, unlabeled, set_aside, absent, by_file_name,
                    scheme.scheme if by_file_name else "")


def discover(folder: str | Path, *, stem_labels: bool = False) -> list[Sample]:
    """All labeled images of a dataset folder, sorted by file name (``survey``).

    Raises:
        DatasetError: as ``survey``.
    """
    return survey(folder, stem_labels=stem_labels).samples


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


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into (train, validation) index arrays.

    ``val_fraction`` 0 gives an empty validation set; otherwise it holds at least one item.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = 0 if val_fraction == 0 else max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise DatasetError(f"{n} images are too few to hold out {val_fraction:.0%} for validation")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def fingerprint(paths: Iterable[Path]) -> str:
    """SHA-256 over the files' contents and names, independent of how they are packed.

    Equal to ``sha256sum *.png | LC_ALL=C sort -k2 | sha256sum`` run in the folder.
    """
    lines = sorted(
        (p.name.encode(), f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n".encode())
        for p in paths
    )
    return hashlib.sha256(b"".join(line for _, line in lines)).hexdigest()
