"""Self-training: unlabeled captchas of the site as extra training data.

A user labels a few images of a site and has many more unlabeled ones. ``self_train``
trains on the labeled images, reads the unlabeled folder with that model, keeps the
readings it is confident of (calibrated confidence >= ``min_confidence``, length within
the labeled lengths) as pseudo-labels, and trains again on labeled + pseudo-labeled
images. Validation, the round kept and calibration use the human labels only.
Seed 1, 50 labels + 2,000 unlabeled images, 500 held out (`python bench/styles_bench.py
--styles S --ns 50 --unlabeled 2000`): rsce_gradient5 0.664 -> 0.840, wavy 0.896 -> 0.934,
line_mesh 0.950 -> 0.988 (README, "Unlabeled captchas", for the other styles).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .charset import Charset
from .data import (
    SKIPPED_FILE,
    DatasetError,
    Sample,
    discover,
    list_images,
    read_set_aside,
    require_folder,
    trained_on,
)
from .modeldir import FILES, ModelInfo
from .runtime import Reader

__all__ = ["DEFAULT_MAX_IMAGES", "DEFAULT_MIN_CONFIDENCE", "first_run_kept", "pseudo_labels", "self_train"]

DEFAULT_MIN_CONFIDENCE = 0.9
# Unlabeled images read at most (the benches' 2,000): each one kept is held in memory for
# the second run (49 KB at 128x32 colour), and reading costs ~1 ms an image: a folder of
# 100,000 would take 5 GB and minutes for a budget of 2,500 steps that sees ~40,000.
DEFAULT_MAX_IMAGES = 2000


def pseudo_labels(model_dir: str | Path, folder: str | Path, labeled: list[Sample],
                  min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                  alphabet: str | None = None,
                  max_images: int = DEFAULT_MAX_IMAGES) -> tuple[list[Sample], dict]:
    """The confident readings of ``folder``'s images by the model in ``model_dir``.

    Images that are among ``labeled`` (same file) are left out, as are those set aside
    while labeling (``labels-skipped.csv``), unreadable ones,
    empty readings, readings longer or shorter than every label and readings with
    characters outside ``alphabet`` (default: the labels' characters). Of more than
    ``max_images`` (0: no limit), that many are read, evenly spaced in file-name order
    (the same ones every time).

    Returns:
        (pseudo-labeled samples, a record for ``model.json``).

    Raises:
        DatasetError: ``folder`` is not a folder.
    """
    paths = _unlabeled_images(folder, labeled)
    available = len(paths)
    if max_images and available > max_images:
        paths = [paths[i] for i in np.linspace(0, available - 1, max_images).round().astype(int)]
    lengths = [len(s.label) for s in labeled]
    shortest, longest = min(lengths, default=1), max(lengths, default=0)
    allowed = set(alphabet if alphabet is not None
                  else Charset.from_labels([s.label for s in labeled]).alphabet)
    readings = Reader.load(model_dir).read_many(paths) if paths else []
    kept = [Sample(p, r.text) for p, r in zip(paths, readings)
            if r.error is None and r.confidence >= min_confidence
            and shortest <= len(r.text) <= longest and set(r.text) <= allowed]
    record = dict(folder=str(folder), images=len(paths), available=available, kept=len(kept),
                  min_confidence=min_confidence)
    return kept, record


def _unlabeled_images(folder: str | Path, labeled: list[Sample]) -> list[Path]:
    """``folder``'s images less the labeled ones and those set aside while labeling
    (``labels-skipped.csv``: skipped or unreadable to a human)."""
    known = {s.path.resolve() for s in labeled}
    aside = read_set_aside(Path(folder) / SKIPPED_FILE)
    return [p for p in list_images(folder) if p.resolve() not in known and p.name not in aside]


def self_train(train: Callable, data_dir: str | Path, out_dir: str | Path, unlabeled: str | Path,
               min_confidence: float = DEFAULT_MIN_CONFIDENCE,
               on_phase: Callable[[str], None] | None = None, resume: bool = False,
               max_images: int = DEFAULT_MAX_IMAGES, **kwargs):
    """Train on ``data_dir``, pseudo-label ``unlabeled`` with that model, train again.

    ``train`` is ``captcha_ocr.train.train`` (passed in: this module is on the training
    path but keeps torch out of its imports); ``kwargs`` go to both runs. Each run is its
    own transaction on ``out_dir``: if the second is interrupted, the first model stays.
    ``resume`` continues whichever run was interrupted: the first, then the second from
    the start; or the second, with the pseudo-labels read again from the first model (the
    resumed run checks they are the same).

    Returns:
        The second run's ``TrainResult`` (the first's when nothing was confident enough).
    """
    require_folder(unlabeled, "--unlabeled")
    labeled = discover(data_dir, stem_labels=kwargs.get("stem_labels", False),
                       names=kwargs.get("names", "auto"))
    if kwargs.get("ignore_case"):
        labeled = [Sample(x.path, x.label.lower()) for x in labeled]
    if not _unlabeled_images(unlabeled, labeled):  # say so before a training run, not after
        raise DatasetError(f"--unlabeled {unlabeled}: no images there besides the labeled ones "
                           "(and any set aside while labeling): point it at a folder of the "
                           "site's unlabeled captchas")
    done = _first_run_done(out_dir, kwargs.get("command", ""), labeled) if resume else None
    if done is not None:  # cut between the runs, or before the second's first checkpoint
        first_dir, first_info, resume = Path(out_dir), done, False
        if on_phase:
            on_phase(f"{out_dir} holds this command's first model: reading the unlabeled "
                     "images with it for the second run")
    elif resume and _second_run_interrupted(out_dir):
        first_dir = Path(out_dir)
        first_info = ModelInfo.load(first_dir)
    else:
        first = train(data_dir, out_dir, resume=resume, **kwargs)
        first_dir, first_info, resume = first.model_dir, first.info, False
    first_accuracy = first_info.metrics.get("val_sequence_accuracy")
    # the first model's alphabet: the labels' characters, or more (``train``'s alphabet)
    extra, record = pseudo_labels(first_dir, unlabeled, labeled, min_confidence, first_info.alphabet,
                                  max_images)
    record["first_val_sequence_accuracy"] = first_accuracy
    if on_phase:
        of = (f" (evenly spaced among {record['available']:,}; --unlabeled-max to change)"
              if record["available"] > record["images"] else "")
        on_phase(f"pseudo-labels: {record['kept']} of {record['images']:,} unlabeled images{of} "
                 f"read with confidence >= {min_confidence}")
    if not extra and not resume:
        return first
    return train(data_dir, out_dir, extra=extra, extra_record=record, resume=resume, **kwargs)


def first_run_kept(out_dir: str | Path, command: str) -> ModelInfo | None:
    """The model in ``out_dir`` where it is the finished first run of a self-training by
    ``command`` (``--resume`` aside) and no interrupted run is there: a model without
    pseudo-labels, by the same command line. Else None."""
    from .staging import StagedModelDir

    if StagedModelDir(out_dir).interrupted() or not (Path(out_dir) / FILES.info).is_file():
        return None
    try:
        info = ModelInfo.load(out_dir)
    except (ValueError, OSError):
        return None

    def sans_resume(c: str) -> list[str]:
        return [w for w in c.split() if w != "--resume"]

    same = sans_resume(info.training.get("command", "")) == sans_resume(command)
    return info if same and "pseudo_labels" not in info.training else None


def _first_run_done(out_dir: str | Path, command: str, labeled: list[Sample]) -> ModelInfo | None:
    """``first_run_kept``, from these labeled images (``data.trained_on``: the files;
    model.json does not record their labels, so a labels.csv edited in between goes
    unnoticed)."""
    info = first_run_kept(out_dir, command)
    return info if info is not None and trained_on(info.training, labeled) else None


def _second_run_interrupted(out_dir: str | Path) -> bool:
    """Whether the interrupted run in ``out_dir``'s staging folder trained on pseudo-labels."""
    from .checkpoint import peek  # torch: only when resuming, where training follows
    from .staging import StagedModelDir

    state = peek(StagedModelDir(out_dir).checkpoint_dir) or {}
    return bool(state.get("key", {}).get("pseudo_labels"))
