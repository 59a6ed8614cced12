"""Training: data preparation, one epoch, evaluation, early stopping, checkpoints.

``train()`` is the whole job behind ``captcha-ocr train``: it reads a dataset folder,
fits a model and writes a complete model directory (weights, ONNX, metadata,
history, plots).
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .augment import augment_batch
from .charset import Charset
from .config import ARCHS, RECIPES, ImageConfig, ModelConfig, TrainConfig
from .data import DatasetError, LoadedImages, discover, fingerprint, load_images, split_indices
from .decoding import greedy_decode
from .metrics import cer, sequence_accuracy
from .model import CRNN, build_model, count_flops, count_params
from .modeldir import FILES, ModelError, ModelInfo, atomic_write, sha256_file

__all__ = ["EpochStats", "TrainResult", "Split", "load_checkpoint", "prepare", "train"]

def recipe(arch: str, **overrides) -> TrainConfig:
    """The ``TrainConfig`` for ``arch``'s recipe, with explicit ``overrides`` (None: keep)."""
    if arch not in RECIPES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    base = {**RECIPES[arch], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(**base)


@dataclass
class Split:
    """Images in memory, split into training and validation, with encoded labels."""

    data: LoadedImages
    charset: Charset
    train: np.ndarray  # indices into data
    val: np.ndarray

    def labels(self, idx: np.ndarray) -> list[str]:
        return [self.data.samples[i].label for i in idx]


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    val_sequence_accuracy: float
    val_cer: float
    seconds: float


@dataclass
class TrainResult:
    model_dir: Path
    info: ModelInfo
    history: list[EpochStats]
    best_epoch: int
    seconds: float
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def prepare(data_dir: str | Path, image: ImageConfig, val_fraction: float, seed: int,
            charset: Charset | None = None) -> Split:
    """Load a dataset folder into memory and split it.

    Raises:
        DatasetError: no usable images.
    """
    data = load_images(discover(data_dir), image)
    if not data.samples:
        raise DatasetError(f"{data_dir}: none of the {len(data.skipped)} image files could be read")
    labels = [s.label for s in data.samples]
    charset = charset or Charset.from_labels(labels)
    tr, va = split_indices(len(labels), val_fraction, seed)
    return Split(data, charset, tr, va)


def check_label_lengths(split: Split, steps: int, width: int) -> None:
    """CTC needs a time step per character plus one between repeated characters.

    Raises:
        DatasetError: naming the first label too long for ``steps`` time steps.
    """
    for s in split.data.samples:
        need = len(s.label) + sum(a == b for a, b in zip(s.label, s.label[1:]))
        if need > steps:
            raise DatasetError(f"{s.path}: label {s.label!r} needs {need} time steps but a "
                               f"{width}-pixel-wide input gives {steps}; use a larger --width")


def _targets(labels: list[str], charset: Charset) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated class ids and per-label lengths, as ``CTCLoss`` takes them."""
    ids = [charset.encode(t) for t in labels]
    flat = torch.tensor([i for seq in ids for i in seq], dtype=torch.long)
    return flat, torch.tensor([len(seq) for seq in ids], dtype=torch.long)


def _ctc(log_probs: torch.Tensor, labels: list[str], charset: Charset, loss_fn: nn.CTCLoss):
    targets, lengths = _targets(labels, charset)
    b, t, _ = log_probs.shape
    lp = log_probs.transpose(0, 1)  # (B, T, C) -> (T, B, C), as CTCLoss wants
    return loss_fn(lp, targets, torch.full((b,), t, dtype=torch.long), lengths)


def train_one_epoch(model: CRNN, split: Split, cfg: TrainConfig, opt: torch.optim.Optimizer,
                    sched, g: torch.Generator, loss_fn: nn.CTCLoss,
                    on_batch: Callable[[int, int], None] | None = None) -> float:
    """One pass over the training images in a seeded random order; returns the mean loss."""
    model.train()
    images = torch.from_numpy(split.data.images)
    order = split.train[torch.randperm(len(split.train), generator=g).numpy()]
    n_batches = (len(order) + cfg.batch_size - 1) // cfg.batch_size
    total = 0.0
    for k in range(n_batches):
        idx = order[k * cfg.batch_size : (k + 1) * cfg.batch_size]
        x = images[idx]
        if cfg.augment:
            x = augment_batch(x, g)
        x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's fast conv layout
        loss = _ctc(model(x), split.labels(idx), split.charset, loss_fn)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        total += loss.item() * len(idx)
        if on_batch:
            on_batch(k + 1, n_batches)
    return total / len(order)


@torch.no_grad()
def evaluate(model: CRNN, split: Split, idx: np.ndarray, loss_fn: nn.CTCLoss,
             batch_size: int = 256) -> tuple[float, float, float, list[str]]:
    """Loss, sequence accuracy, CER and the predictions on images ``idx``."""
    model.eval()
    if len(idx) == 0:
        return float("nan"), float("nan"), float("nan"), []
    images = torch.from_numpy(split.data.images)
    loss_sum, preds = 0.0, []
    for k in range(0, len(idx), batch_size):
        part = idx[k : k + batch_size]
        lp = model(images[part])
        loss_sum += _ctc(lp, split.labels(part), split.charset, loss_fn).item() * len(part)
        preds += [d.text for d in greedy_decode(lp.numpy(), split.charset)]
    labels = split.labels(idx)
    return loss_sum / len(idx), sequence_accuracy(labels, preds), cer(labels, preds), preds


def _optimizer(model: CRNN, cfg: TrainConfig, steps_per_epoch: int):
    if cfg.weight_decay:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if cfg.schedule == "constant":
        return opt, None
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                        pct_start=0.25)
    if cfg.schedule == "flatcos":
        # Full rate through the CTC plateau (a warm-up only lengthens it), then a cosine
        # decay to zero over the second half to settle.
        def factor(step: int) -> float:
            x = max(0.0, (step / total - 0.5) / 0.5)
            return 0.5 * (1 + math.cos(math.pi * min(x, 1.0)))

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
    raise ValueError(f"unknown schedule {cfg.schedule!r} (constant, onecycle, flatcos)")


def fit(model: CRNN, split: Split, cfg: TrainConfig,
        on_epoch: Callable[[EpochStats], None] | None = None,
        on_batch: Callable[[int, int], None] | None = None) -> tuple[list[EpochStats], int]:
    """Train ``model`` in place; early stopping on validation loss restores the best weights.

    Returns:
        The per-epoch history and the (1-based) epoch whose weights the model now holds.
    """
    g = torch.Generator().manual_seed(cfg.seed)
    loss_fn = nn.CTCLoss(blank=0, zero_infinity=True)
    steps = (len(split.train) + cfg.batch_size - 1) // cfg.batch_size
    opt, sched = _optimizer(model, cfg, steps)
    model.to(memory_format=torch.channels_last)
    history: list[EpochStats] = []
    best_loss, best_epoch, best_state = float("inf"), 0, None
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss = train_one_epoch(model, split, cfg, opt, sched, g, loss_fn, on_batch)
        val_loss, acc, val_cer, _ = evaluate(model, split, split.val, loss_fn)
        stats = EpochStats(epoch, train_loss, val_loss, acc, val_cer, time.perf_counter() - t0)
        history.append(stats)
        if on_epoch:
            on_epoch(stats)
        if len(split.val) and cfg.patience:
            if val_loss < best_loss:
                best_loss, best_epoch = val_loss, epoch
                best_state = copy.deepcopy(model.state_dict())
            elif epoch - best_epoch >= cfg.patience:
                break
    model.to(memory_format=torch.contiguous_format)
    if best_state is not None:
        model.load_state_dict(best_state)
        return history, best_epoch
    return history, len(history)


def save_checkpoint(model: CRNN, info: ModelInfo, model_dir: Path) -> None:
    """Weights (safetensors) and ``model.json``, each written atomically."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(model_dir / FILES.weights, st_save(state))
    info.files[FILES.weights] = sha256_file(model_dir / FILES.weights)
    info.save(model_dir)


def load_checkpoint(model_dir: str | Path) -> tuple[CRNN, ModelInfo]:
    """Rebuild a model from ``model.json`` and load its checked weights (eval mode).

    Raises:
        ModelError: the directory, its metadata or its weights are missing or damaged.
    """
    info = ModelInfo.load(model_dir)
    path = info.verify(model_dir, FILES.weights)
    model = build_model(info.image, info.model)
    try:
        model.load_state_dict(st_load(path.read_bytes()))
    except (RuntimeError, ValueError) as e:
        raise ModelError(f"{path}: weights do not fit the architecture in {FILES.info} ({e})") from None
    return model.eval(), info


def _write_history(history: list[EpochStats], path: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", "train_loss", "val_loss", "val_sequence_accuracy", "val_cer", "seconds"])
    for h in history:
        w.writerow([h.epoch, f"{h.train_loss:.6f}", f"{h.val_loss:.6f}",
                    f"{h.val_sequence_accuracy:.6f}", f"{h.val_cer:.6f}", f"{h.seconds:.3f}"])
    atomic_write(path, buf.getvalue())


def _writable_dir(path: str | Path) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / ".write-test", b"")
        (out / ".write-test").unlink()
    except OSError as e:
        raise ModelError(f"{out}: cannot write the model directory there ({e.strerror})") from None
    return out


def _model_info(model: CRNN, model_cfg: ModelConfig, split: Split, cfg: TrainConfig,
                image: ImageConfig, command: str, data_dir: str | Path,
                history: list[EpochStats], best_epoch: int) -> ModelInfo:
    """What ``model.json`` records: how the model was made and its validation metrics."""
    val_loss, acc, val_cer, _ = evaluate(model, split, split.val, nn.CTCLoss(zero_infinity=True))
    metrics = dict(val_loss=val_loss, val_sequence_accuracy=acc, val_cer=val_cer)
    return ModelInfo(
        alphabet=split.charset.alphabet, image=image, model=model_cfg,
        training=dict(
            command=command, data_dir=str(data_dir),
            data_fingerprint=fingerprint(s.path for s in split.data.samples),
            n_images=len(split.data.samples), n_skipped=len(split.data.skipped),
            n_train=len(split.train), n_val=len(split.val), config=asdict(cfg),
            epochs_run=len(history), best_epoch=best_epoch,
            params=count_params(model), flops_per_image=count_flops(model, image),
        ),
        # no validation split: no numbers (JSON has no NaN)
        metrics={k: (None if math.isnan(v) else v) for k, v in metrics.items()},
    )


def _write_outputs(model: CRNN, info: ModelInfo, split: Split, history: list[EpochStats],
                   best_epoch: int, out: Path, export: bool) -> None:
    """Weights, ONNX, history and the two figures (validation images, else training ones)."""
    from .plots import plot_curves, plot_predictions

    save_checkpoint(model, info, out)
    if export:
        from .export import export_onnx

        export_onnx(model, info, out)
    _write_history(history, out / FILES.history)
    plot_curves(history, best_epoch, out / FILES.curves)
    shown = (split.val if len(split.val) else split.train)[:16]
    preds = evaluate(model, split, shown, nn.CTCLoss(zero_infinity=True))[3]
    plot_predictions(split.data.images[shown], split.labels(shown), preds, out / FILES.grid)


def train(data_dir: str | Path, out_dir: str | Path, *, arch: str = "fast",
          params: dict | None = None, image: ImageConfig | None = None, cfg: TrainConfig | None = None,
          command: str = "", export: bool = True,
          on_epoch: Callable[[EpochStats], None] | None = None,
          on_batch: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train on a dataset folder and write a complete model directory.

    Args:
        data_dir: folder of labeled images.
        out_dir: the model directory to write (created; existing files replaced).
        arch: a key of ``model.ARCHS``.
        params: overrides of the architecture's hyper-parameters.
        image: input size and channels (default: 200x50 grey).
        cfg: training settings (default: ``arch``'s recipe).
        command: the command line, recorded in ``model.json``.
        export: also write ``model.onnx``.
        on_epoch, on_batch: progress callbacks.
    """
    t0 = time.perf_counter()
    image = image or ImageConfig()
    cfg = cfg or recipe(arch)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    out = _writable_dir(out_dir)  # fail now, not after the training time
    split = prepare(data_dir, image, cfg.val_fraction, cfg.seed)
    torch.manual_seed(cfg.seed)
    model_cfg = ModelConfig(arch, split.charset.n_classes, {**ARCHS[arch], **(params or {})})
    model = build_model(image, model_cfg)
    check_label_lengths(split, model.steps, image.width)
    history, best_epoch = fit(model, split, cfg, on_epoch, on_batch)
    info = _model_info(model, model_cfg, split, cfg, image, command, data_dir, history, best_epoch)
    _write_outputs(model, info, split, history, best_epoch, out, export)
    info.training["seconds"] = round(time.perf_counter() - t0, 2)
    info.save(out)
    return TrainResult(out, info, history, best_epoch, info.training["seconds"],
                       split.data.skipped)

