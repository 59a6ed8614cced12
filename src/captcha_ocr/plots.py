"""Training figures: loss curves and a grid of predictions, as the tutorial draws them."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .modeldir import atomic_write  # noqa: E402

__all__ = ["plot_calibration", "plot_curves", "plot_predictions"]


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def plot_curves(history: Sequence, best_epoch: int, path: Path) -> None:
    """Train/validation loss per epoch (left) and validation accuracy and CER (right)."""
    epochs = [h.epoch for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(epochs, [h.train_loss for h in history], label="train loss")
    a.plot(epochs, [h.val_loss for h in history], label="validation loss")
    a.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"kept: epoch {best_epoch}")
    a.set(xlabel="epoch", ylabel="CTC loss", title="Loss", yscale="log")
    a.legend()
    b.plot(epochs, [h.val_sequence_accuracy for h in history], label="sequence accuracy")
    b.plot(epochs, [h.val_cer for h in history], label="CER")
    b.set(xlabel="epoch", ylim=(-0.02, 1.02), title="Validation")
    b.legend()
    _save(fig, path)


def plot_predictions(images: np.ndarray, labels: Sequence[str], preds: Sequence[str],
                     path: Path, cols: int = 4) -> None:
    """A grid of ``(N, C, H, W)`` images titled 'prediction (label)'; errors in red."""
    n = min(len(images), 16)
    rows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.2, rows * 1.25), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = images[k].transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ok = preds[k] == labels[k]
        ax.set_title(f"{preds[k]}" + ("" if ok else f" (label {labels[k]})"),
                     color="black" if ok else "red", fontsize=10)
    fig.suptitle(f"{sum(p == t for p, t in zip(preds[:n], labels[:n]))}/{n} correct "
                 "(red: wrong, with the label)", fontsize=10)
    _save(fig, path)


def plot_calibration(curves: dict[str, Sequence[tuple[float, float, int]]], title: str, path: Path) -> None:
    """Reliability diagram: accuracy against mean confidence per bin, one line per
    ``curves`` entry (``calibration.reliability`` output); the diagonal is perfect."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect")
    for name, bins in curves.items():
        pts = [(m, a, c) for m, a, c in bins if c]
        ax.plot([m for m, _, _ in pts], [a for _, a, _ in pts], marker="o", label=name)
    ax.set(xlabel="confidence (mean per bin)", ylabel="share of readings right", xlim=(0, 1),
           ylim=(0, 1.02), title=title)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)
