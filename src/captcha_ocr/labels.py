"""The labels of a folder being labeled: ``labels.csv`` and the images set aside.

``DIR/labels.csv`` (``file,label``, the format training reads) holds every accepted
label; ``DIR/labels-skipped.csv`` (``file,status``) the images skipped or marked
unreadable, so they are not shown again. Every change rewrites the file whole,
atomically (temporary file, fsync, rename): a crash at any instant leaves the previous
or the new version, never a torn one. One process owns a folder at a time (a lock
file), and within it one lock orders the writes of every browser tab.

No torch and no HTTP here: ``labeling`` serves it, tests drive it directly.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from .data import (
    LABELS_FILE,
    SET_ASIDE_STATUSES,
    SKIPPED_FILE,
    DatasetError,
    invisible,
    list_images,
    name_labels,
    read_labels_csv,
    read_set_aside,
    subfolders_hint,
)
from .modeldir import atomic_write

__all__ = ["SKIPPED_FILE", "STATUSES", "LabelStore"]

STATUSES = SET_ASIDE_STATUSES
LOCK_FILE = ".labels.lock"


@dataclass(frozen=True)
class Entry:
    """What is known of one image: its label, or that it was set aside."""

    label: str | None = None
    status: str | None = None  # "skipped" or "unreadable"


class LabelStore:
    """The labeling state of ``folder``; ``trust_stems``: file stems count as labels too,
    read as ``names`` says (``data.name_labels``' schemes; ``auto``: as training reads them).

    Raises (on creation):
        DatasetError: no such folder, no images, a malformed ``labels.csv``, a folder
            that cannot be written, or one another ``captcha-ocr label`` holds.
    """

    def __init__(self, folder: str | Path, trust_stems: bool = False, names: str = "auto") -> None:
        self.folder = Path(folder)
        self.images = list_images(self.folder)
        if not self.images:
            raise DatasetError(f"{self.folder}: no images to label (expected png, jpg, gif, bmp "
                               f"or webp files){subfolders_hint(self.folder)}")
        self._names = {p.name for p in self.images}
        self._lock = threading.Lock()
        self._hold_folder()
        labels_path = self.folder / LABELS_FILE
        self.labels: dict[str, str] = read_labels_csv(labels_path) if labels_path.is_file() else {}
        self.set_aside: dict[str, str] = self._read_skipped()
        if trust_stems:
            # The file names' labels as training reads them (``data.survey``: LABEL_ID
            # names give their label part); names that are a numbering are no labels.
            by_name = [p for p in self.images if p.name not in self.labels and p.name not in self.set_aside]
            rule = name_labels([p.stem for p in by_name], self.folder, strict=False, scheme=names)
            for p in by_name if rule else ():
                self.labels[p.name] = rule(p.stem)

    def _hold_folder(self) -> None:
        try:
            fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DatasetError(f"{self.folder}: cannot write there ({e.strerror}); labels are "
                               "saved in the folder: choose a writable one") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatasetError(f"{self.folder}: another captcha-ocr label is open on this folder; "
                               "use its page (several tabs of it are fine)") from None
        self._lock_fd = fd

    def close(self) -> None:
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _read_skipped(self) -> dict[str, str]:
        return {n: st for n, st in read_set_aside(self.folder / SKIPPED_FILE).items()
                if n in self._names}

    # ------------------------------------------------------------ queries

    def entry(self, name: str) -> Entry:
        return Entry(self.labels.get(name), self.set_aside.get(name))

    def done(self, name: str) -> bool:
        return name in self.labels or name in self.set_aside

    def present_labels(self) -> dict[str, str]:
        """The labels of images that are in the folder (rows for removed files are kept in
        ``labels.csv`` but neither counted nor trained on)."""
        return {n: lab for n, lab in self.labels.items() if n in self._names}

    def counts(self) -> dict[str, int]:
        statuses = list(self.set_aside.values())
        return dict(total=len(self.images), labeled=len(self.present_labels()),
                    skipped=statuses.count("skipped"), unreadable=statuses.count("unreadable"),
                    remaining=sum(not self.done(p.name) for p in self.images))

    def path(self, name: str) -> Path:
        """The image file ``name`` of the folder (nothing outside it).

        Raises:
            KeyError: not an image of this folder.
        """
        if name not in self._names:
            raise KeyError(name)
        return self.folder / name

    # ------------------------------------------------------------ changes (atomic)

    def set_label(self, name: str, label: str) -> None:
        """Accept ``label`` for image ``name`` (written at once); it leaves the set-aside list."""
        self.path(name)
        label = label.strip()
        if not label:
            raise ValueError("an empty label: type the text, or skip the image")
        if len(f"a{label}b".splitlines()) > 1:  # \n, \r, and form feeds, U+2028...
            raise ValueError("a label is one line")
        hidden = next((c for c in label if invisible(c)), None)
        if hidden is not None:
            raise ValueError(f"the label holds an invisible character (U+{ord(hidden):04X}): "
                             "type only what the image shows")
        def change() -> None:
            self.labels[name] = label
            self.set_aside.pop(name, None)

        self._apply(change, labels_file=True)

    def set_aside_as(self, name: str, status: str) -> None:
        """Mark ``name`` skipped or unreadable (written at once); a label it had is removed."""
        self.path(name)
        if status not in STATUSES:
            raise ValueError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
        def change() -> None:
            self.set_aside[name] = status
            self.labels.pop(name, None)

        self._apply(change, labels_file=False)

    def _apply(self, change, labels_file: bool) -> None:
        """Make ``change`` in memory and write its file (``labels.csv`` or the set-aside
        list), and the other one where it changed too; a failed write undoes it all (not
        saved: not done either)."""
        with self._lock:
            before = (dict(self.labels), dict(self.set_aside))
            try:
                change()
                if labels_file or self.labels != before[0]:
                    self._write_labels()
                if not labels_file or self.set_aside != before[1]:
                    self._write_skipped()
            except OSError:
                self.labels, self.set_aside = before
                raise

    def _write_csv(self, name: str, header: list[str], rows: dict[str, str]) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(sorted(rows.items()))
        atomic_write(self.folder / name, buf.getvalue())

    def _write_labels(self) -> None:
        self._write_csv(LABELS_FILE, ["file", "label"], self.labels)

    def _write_skipped(self) -> None:
        self._write_csv(SKIPPED_FILE, ["file", "status"], self.set_aside)
