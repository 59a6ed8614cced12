"""Training: data preparation, one epoch, evaluation, early stopping, checkpoints.

``train()`` is the whole job behind ``captcha-ocr train``: it reads a dataset folder,
fits a model and writes a complete model directory (weights, ONNX, metadata,
history, plots).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import checkpoint
from .augment import aug_noise, augment_batch
from .charset import Charset, complete_alphabet, one_case
from .config import (
    ARCHS,
    DEFAULT_ARCH,
    FINETUNE,
    FIXED_INPUT,
    FT_FEW,
    RECIPES,
    ImageConfig,
    ModelConfig,
    TrainConfig,
    steps_budget,
)
from .cpus import usable_cores
from .data import (
    DatasetError,
    LoadedImages,
    Sample,
    discover,
    file_digest,
    fingerprint,
    load_images,
    split_indices,
    survey,
)
from .decoding import greedy_decode
from .finetune import InitModel, input_overrides, transfer
from .geometry import choose_image, image_stats
from .metrics import cer, sequence_accuracy
from .model import CRNN, arch_params, build_model, count_flops, count_params, feature_size
from .modeldir import FILES, ModelError, ModelInfo, atomic_write, sha256_file
from .preprocess import ImageError
from .staging import StagedModelDir, fault

__all__ = ["EpochStats", "TrainResult", "Split", "load_checkpoint", "prepare", "train"]

def recipe(arch: str, finetune: bool = False, **overrides) -> TrainConfig:
    """The ``TrainConfig`` for ``arch``'s recipe (fine-tuning: with ``FINETUNE``'s
    changes), with explicit ``overrides`` (None: keep)."""
    if arch not in RECIPES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    base = {**RECIPES[arch], **(dict(FINETUNE, finetune=True) if finetune else {}),
            **{k: v for k, v in overrides.items() if v is not None}}
    if overrides.get("lr") is not None:
        base["lr_few"] = None  # the rate asked for, whatever the data size
    return TrainConfig(**base)


@dataclass
class Split:
    """Images in memory, split into training and validation, with encoded labels."""

    data: LoadedImages
    charset: Charset
    train: np.ndarray  # indices into data
    val: np.ndarray
    copies: int = 0  # labeled images whose file copies another's (kept on its side of the split)
    digests: list[str] = field(default_factory=list)  # each image's data.file_digest

    def fingerprint(self, n: int | None = None) -> str:
        """``data.fingerprint`` of the images (the first ``n``: the labeled ones, before
        pseudo-labeled images were added), from the digests already taken."""
        return fingerprint((s.path for s in self.data.samples[:n]), self.digests[:n] or None)

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


def load_readable(data_dir: str | Path, image: ImageConfig,
                  samples: list[Sample] | None = None) -> LoadedImages:
    """A dataset folder's images (or its already discovered ``samples``') in memory;
    unreadable ones skipped.

    Raises:
        DatasetError: no usable images.
    """
    data = load_images(samples if samples is not None else discover(data_dir), image)
    if not data.samples:
        raise DatasetError(f"{data_dir}: none of the {len(data.skipped)} image files could be read")
    return data


def prepare(data_dir: str | Path, image: ImageConfig, val_fraction: float, seed: int,
            charset: Charset | None = None, samples: list[Sample] | None = None,
            data: LoadedImages | None = None) -> Split:
    """Load a dataset folder (or its already discovered ``samples``, or take its ``data``
    already loaded) into memory and split it.

    Raises:
        DatasetError: no usable images.
    """
    data = data if data is not None else load_readable(data_dir, image, samples)
    labels = [s.label for s in data.samples]
    charset = charset or Charset.from_labels(labels)
    # Copies of one captcha (a collection fetched twice, "x (1).png") stay on one side:
    # a copy in validation of an image trained on would flatter every validation number.
    files = [file_digest(s.path) for s in data.samples]
    tr, va = split_indices(len(labels), val_fraction, seed, groups=files)
    return Split(data, charset, tr, va, copies=len(files) - len(set(files)), digests=files)


def _with_extra(split: Split, extra: list[Sample], image: ImageConfig) -> Split:
    """``split`` with ``extra`` images added to its training part (unreadable ones, those
    with characters outside the alphabet and copies of a validation image are left out)."""
    known = set(split.charset.alphabet)
    held_out = {split.digests[i] for i in split.val}
    digest = {s.path: file_digest(s.path) for s in extra}
    more = load_images([s for s in extra if set(s.label) <= known and digest[s.path] not in held_out],
                       image)
    n = len(split.data.samples)
    data = LoadedImages(np.concatenate([split.data.images, more.images]),
                        split.data.samples + more.samples, split.data.skipped)
    return Split(data, split.charset, np.concatenate([split.train, n + np.arange(len(more.samples))]),
                 split.val, split.copies, split.digests + [digest[s.path] for s in more.samples])


def check_label_lengths(samples: list[Sample], steps: int, width: int) -> None:
    """CTC needs a time step per character plus one between repeated characters.

    Raises:
        DatasetError: naming the first label too long for ``steps`` time steps.
    """
    for s in samples:
        need = len(s.label) + sum(a == b for a, b in zip(s.label, s.label[1:]))
        if need > steps:
            raise DatasetError(f"{s.path}: label {s.label!r} needs {need} time steps but a "
                               f"{width}-pixel-wide input gives {steps}; use a larger --width")


def _targets(labels: list[str], charset: Charset) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated class ids and per-label lengths, as ``CTCLoss`` takes them."""
    ids = [charset.encode(t) for t in labels]
    flat = torch.tensor([i for seq in ids for i in seq], dtype=torch.long)
    return flat, torch.tensor([len(seq) for seq in ids], dtype=torch.long)


def ctc_loss(log_probs: torch.Tensor, labels: list[str], charset: Charset, loss_fn: nn.CTCLoss):
    targets, lengths = _targets(labels, charset)
    b, t, _ = log_probs.shape
    lp = log_probs.transpose(0, 1)  # (B, T, C) -> (T, B, C), as CTCLoss wants
    return loss_fn(lp, targets, torch.full((b,), t, dtype=torch.long), lengths)


def _round_batches(split: Split, cfg: TrainConfig, g: torch.Generator) -> list[np.ndarray]:
    """Index batches of one round: passes over the training images until the round holds
    at least ``cfg.min_round`` batches (one pass for most datasets; several for a few dozen
    images, so that evaluation is not every 3 steps). Each pass is in a fresh seeded order,
    or with ``cfg.shuffle`` off in one order drawn from ``cfg.seed``, the same every round."""
    fixed = np.random.default_rng(cfg.seed).permutation(split.train) if not cfg.shuffle else None
    batches: list[np.ndarray] = []
    while True:
        order = fixed if fixed is not None else \
            split.train[torch.randperm(len(split.train), generator=g).numpy()]
        batches += [order[k : k + cfg.batch_size] for k in range(0, len(order), cfg.batch_size)]
        if len(batches) >= cfg.min_round:
            return batches


def steps_per_round(n_train: int, cfg: TrainConfig) -> int:
    """Optimizer steps in one round (what ``_round_batches`` gives)."""
    per_pass = -(-n_train // cfg.batch_size)
    return per_pass * -(-max(1, cfg.min_round) // per_pass)


def ace_loss(log_probs: torch.Tensor, labels: list[str], charset: Charset) -> torch.Tensor:
    """Aggregation cross-entropy (Xie et al., CVPR 2019): how often each class appears in
    the image, with no alignment. Per image, the output's class probabilities summed
    over time should match the label's character counts (the blank takes the remaining
    steps). CTC learns nothing until it finds where characters are; this loss tells the
    network which characters are there from the first step, so it leaves the plateau.

    log_probs: (B, T, C). Returns the mean over images.
    """
    b, t, c = log_probs.shape
    counts = torch.zeros(b, c)
    for i, text in enumerate(labels):
        for k in charset.encode(text):
            counts[i, k] += 1
    counts[:, 0] = t - counts[:, 1:].sum(1)  # the blank, index 0
    mean_p = log_probs.exp().mean(1).clamp_min(1e-10)  # (B, C): share of steps per class
    return -(counts / t * mean_p.log()).sum(1).mean()


def train_one_epoch(model: CRNN, split: Split, cfg: TrainConfig, opt: torch.optim.Optimizer,
                    sched, g: torch.Generator, loss_fn: nn.CTCLoss,
                    on_batch: Callable[[int, int], None] | None = None,
                    aug_strength: float = 1.0, average: AveragedModel | None = None) -> float:
    """One round of training (see ``_round_batches``); returns the mean loss per image.
    ``average``: a moving average of the weights, updated after every step."""
    model.train()
    images = torch.from_numpy(split.data.images)
    batches = _round_batches(split, cfg, g)
    total, seen = 0.0, 0
    for k, idx in enumerate(batches):
        x = images[idx]
        if cfg.augment:
            x = augment_batch(x, g, aug_strength, cfg.aug_noise)
        x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's fast conv layout
        lp = model(x)
        loss = ctc_loss(lp, split.labels(idx), split.charset, loss_fn)
        if cfg.ace:
            loss = loss + cfg.ace * ace_loss(lp, split.labels(idx), split.charset)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if average is not None:
            average.update_parameters(model)
        total += loss.item() if cfg.ctc_sum else loss.item() * len(idx)
        seen += len(idx)
        if on_batch:
            on_batch(k + 1, len(batches))
    return total / seen


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
        loss_sum += ctc_loss(lp, split.labels(part), split.charset, loss_fn).item() * len(part)
        preds += [d.text for d in greedy_decode(lp.numpy(), split.charset)]
    labels = split.labels(idx)
    return loss_sum / len(idx), sequence_accuracy(labels, preds), cer(labels, preds), preds


class FlatCos:
    """Learning-rate factor: flat, then a cosine decay to zero over the last ``decay``
    steps. ``hold(step)`` moves the decay's start later (the run gets longer)."""

    def __init__(self, total: int) -> None:
        self.decay = total - total // 2
        self.start = total // 2

    @property
    def total(self) -> int:
        return self.start + self.decay

    def hold(self, until: int) -> None:
        self.start = max(self.start, until)

    def __call__(self, step: int) -> float:
        x = min(1.0, max(0.0, (step - self.start) / self.decay))
        return 0.5 * (1 + math.cos(math.pi * x))


def _optimizer(model: CRNN, cfg: TrainConfig, steps_per_epoch: int):
    groups: list = list(model.parameters())
    if cfg.features_lr != 1.0:  # the conv stack at its own rate (one group otherwise, as ever)
        features = list(model.features.parameters())
        ids = {id(p) for p in features}
        groups = [dict(params=features, lr=cfg.lr * cfg.features_lr),
                  dict(params=[p for p in model.parameters() if id(p) not in ids], lr=cfg.lr)]
    if cfg.weight_decay:
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.adam_eps)
    else:
        opt = torch.optim.Adam(groups, lr=cfg.lr, eps=cfg.adam_eps)
    if cfg.schedule == "constant":
        return opt, None
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                        pct_start=0.25)
    if cfg.schedule == "flatcos":
        # Full rate through the CTC plateau (a warm-up only lengthens it), then a cosine
        # decay to zero over the second half to settle.
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, FlatCos(total))
    raise ValueError(f"unknown schedule {cfg.schedule!r} (constant, onecycle, flatcos)")


# A round "reads" once the validation CER falls below this: the network has left the
# CTC plateau (it emits the right characters in the right places half of the time).
READING_CER = 0.5


def _extend_after_plateau(sched, cfg: TrainConfig, epoch: int, per_round: int) -> int:
    """Rounds to train in all, given that the plateau was left at round ``epoch``.

    The network learns to read only after the plateau; where that takes long (it varies
    with the seed), the flat phase is held for a quarter of the budget after it, so the
    decay never starts on a network that has just begun to read. At most ``cfg.extend``
    of the budget is added.
    """
    budget = cfg.epochs * per_round
    lam = sched.lr_lambdas[0]
    lam.hold(min(epoch * per_round + budget // 4, budget // 2 + int(cfg.extend * budget)))
    return -(-lam.total // per_round)


def fit(model: CRNN, split: Split, cfg: TrainConfig,
        on_epoch: Callable[[EpochStats], None] | None = None,
        on_batch: Callable[[int, int], None] | None = None,
        save_state: Callable[[dict], None] | None = None,
        state: dict | None = None) -> tuple[list[EpochStats], int]:
    """Train ``model`` in place for ``cfg.epochs`` rounds. With early stopping or
    ``keep_best``, the weights of the round with the lowest validation loss are restored.

    Args:
        save_state: called after every round with everything needed to go on
            (weights, optimizer, schedule, random generators, history, best round).
        state: such a dict: continue from it; the result is the same as without the
            interruption (same seed, same thread count).

    Returns:
        The per-epoch history and the (1-based) epoch whose weights the model now holds.
    """
    g = torch.Generator().manual_seed(cfg.seed)
    loss_fn = nn.CTCLoss(blank=0, zero_infinity=True)
    train_fn = nn.CTCLoss(blank=0, zero_infinity=True, reduction="sum") if cfg.ctc_sum else loss_fn
    per_round = steps_per_round(len(split.train), cfg)
    opt, sched = _optimizer(model, cfg, per_round)
    model.to(memory_format=torch.channels_last)
    model.bf16_features = uses_bf16(cfg)
    # The averaged weights (cfg.ema) are what validation sees and what the run returns.
    average = AveragedModel(
        model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay(cfg, cfg.epochs * per_round)),
        use_buffers=True) if cfg.ema else None
    judged = average.module if average is not None else model
    history: list[EpochStats] = []
    best_loss, best_epoch, best_state = float("inf"), 0, None
    rounds, read_once = cfg.epochs, False  # read_once: the plateau was left (val CER < 0.5)
    epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["schedule"])
        if average is not None:
            average.load_state_dict(state["average"])
        g.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history = [EpochStats(**h) for h in state["history"]]
        best_loss, best_epoch, best_state = state["best_loss"], state["best_epoch"], state["best_state"]
        rounds, epoch = state["rounds"], state["epoch"]
        read_once = state.get("read_once", state.get("reading", False))
    try:
        while epoch < rounds:
            epoch += 1
            t0 = time.perf_counter()
            # Augmentation rises from none to full over the first ``aug_ramp`` of the rounds:
            # clean images while the network leaves the CTC plateau, varied ones after.
            ramp = cfg.aug_ramp * cfg.epochs
            strength = min(1.0, (epoch - 1) / ramp) if ramp else 1.0
            train_loss = train_one_epoch(model, split, cfg, opt, sched, g, train_fn, on_batch, strength,
                                         average)
            val_loss, acc, val_cer, _ = evaluate(judged, split, split.val, loss_fn)
            stats = EpochStats(epoch, train_loss, val_loss, acc, val_cer, time.perf_counter() - t0)
            history.append(stats)
            if not read_once and val_cer < READING_CER:
                read_once = True
                if cfg.extend and cfg.schedule == "flatcos":
                    rounds = _extend_after_plateau(sched, cfg, epoch, per_round)
            stop = False
            if len(split.val) and (cfg.patience or cfg.keep_best):
                if val_loss < best_loss:
                    best_loss, best_epoch = val_loss, epoch
                    best_state = copy.deepcopy(judged.state_dict())
                elif cfg.patience and epoch - best_epoch >= cfg.patience and \
                        (read_once or not cfg.patience_after_plateau):
                    stop = True
            if save_state is not None:
                save_state(dict(
                    model=model.state_dict(), optimizer=opt.state_dict(),
                    schedule=sched.state_dict() if sched is not None else None,
                    average=average.state_dict() if average is not None else None,
                    generator=g.get_state(), torch_rng=torch.get_rng_state(),
                    history=[asdict(h) for h in history], best_loss=best_loss,
                    best_epoch=best_epoch, best_state=best_state, rounds=epoch if stop else rounds,
                    epoch=epoch, read_once=read_once,
                ))
            if on_epoch:
                on_epoch(stats)
            if stop:
                break
    finally:  # float32 and the default memory layout again, whatever happened
        model.to(memory_format=torch.contiguous_format)
        model.bf16_features = False
    if best_state is not None:
        model.load_state_dict(best_state)
        return history, best_epoch
    if average is not None:
        model.load_state_dict(average.module.state_dict())
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


def _model_info(model: CRNN, model_cfg: ModelConfig, split: Split, cfg: TrainConfig,
                image: ImageConfig, command: str, data_dir: str | Path,
                history: list[EpochStats], best_epoch: int, n_labeled: int) -> ModelInfo:
    """What ``model.json`` records: how the model was made and its validation metrics.
    ``data_fingerprint`` and ``n_images`` are those of the ``n_labeled`` labeled images of
    ``data_dir`` (pseudo-labeled ones: ``training.pseudo_labels``), so that ``eval`` knows
    that folder for the one the model was trained on."""
    val_loss, acc, val_cer, preds = evaluate(model, split, split.val, nn.CTCLoss(zero_infinity=True))
    metrics = dict(val_loss=val_loss, val_sequence_accuracy=acc, val_cer=val_cer)
    alphabet = set(split.charset.alphabet)
    if preds and any(c != c.swapcase() and c.swapcase() in alphabet for c in alphabet):
        # Both cases of a letter: how much of what is misread is case only (a font that
        # draws c and C alike), for ``--ignore-case`` (``cli`` says so where it is most).
        metrics["val_sequence_accuracy_ignoring_case"] = sequence_accuracy(
            [x.lower() for x in split.labels(split.val)], [x.lower() for x in preds])
    return ModelInfo(
        alphabet=split.charset.alphabet, image=image, model=model_cfg,
        training=dict(
            command=command, data_dir=str(Path(data_dir).absolute()),
            data_fingerprint=split.fingerprint(n_labeled),
            n_images=n_labeled, n_skipped=len(split.data.skipped),
            **({"data_fingerprint_listed": fingerprint(  # unreadable files too, as eval lists them
                [s.path for s in split.data.samples[:n_labeled]] + [p for p, _ in split.data.skipped],
                split.digests[:n_labeled] + [file_digest(p) for p, _ in split.data.skipped])}
               if split.data.skipped else {}),
            n_train=len(split.train), n_val=len(split.val), copies=split.copies, config=asdict(cfg),
            epochs_run=len(history), best_epoch=best_epoch,
            params=count_params(model), flops_per_image=count_flops(model, image),
        ),
        # no validation split: no numbers (JSON has no NaN)
        metrics={k: (None if math.isnan(v) else v) for k, v in metrics.items()},
    )


@torch.no_grad()
def _log_probs(model: CRNN, split: Split, idx: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    images = torch.from_numpy(split.data.images)
    parts = [model(images[idx[k : k + batch_size]]).numpy() for k in range(0, len(idx), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, model.steps, split.charset.n_classes))


def _calibrate(model: CRNN, info: ModelInfo, split: Split, out: Path) -> None:
    """Fit the confidence temperature on the validation split; draw its reliability diagram."""
    from .calibration import confidences, fit_temperature, reliability
    from .plots import plot_calibration

    if not len(split.val):
        return
    lp = _log_probs(model, split, split.val)
    labels = split.labels(split.val)
    cal = fit_temperature(lp, labels, split.charset)
    info.calibration = cal.record()
    curves = {}
    for name, temp in (("T = 1", 1.0), (f"T = {cal.temperature:g} (fitted)", cal.temperature)):
        texts, conf = confidences(lp, split.charset, temp)
        curves[name] = reliability(conf, np.array([t == y for t, y in zip(texts, labels)], float))
    plot_calibration(curves, f"validation, {cal.n} images: ECE {cal.ece_before:.3f} -> "
                             f"{cal.ece_after:.3f}", out / FILES.calibration)


def _write_outputs(model: CRNN, info: ModelInfo, split: Split, history: list[EpochStats],
                   best_epoch: int, out: Path, export: bool) -> None:
    """Weights, ONNX, history and the two figures (validation images, else training ones)."""
    from .plots import plot_curves, plot_predictions

    _calibrate(model, info, split, out)
    save_checkpoint(model, info, out)
    if export:
        from .export import export_onnx

        export_onnx(model, info, out)
    _write_history(history, out / FILES.history)
    plot_curves(history, best_epoch, out / FILES.curves)
    shown = (split.val if len(split.val) else split.train)[:16]
    preds = evaluate(model, split, shown, nn.CTCLoss(zero_infinity=True))[3]
    plot_predictions(split.data.images[shown], split.labels(shown), preds, out / FILES.grid)


def choose_input(samples: list[Sample], overrides: dict | None = None,
                 min_width: int = 0) -> tuple[ImageConfig, dict]:
    """The model input decided from the images (``geometry``), with explicit ``overrides``
    (``min_width``: a fine-tuned model's starting width; see ``geometry``).

    Returns:
        The ``ImageConfig`` and what was measured, for ``model.json``.

    Raises:
        DatasetError: none of the images can be read.
    """
    try:
        stats = image_stats(samples)
    except ImageError as e:
        raise DatasetError(f"{samples[0].path.parent}: {e}") from None
    auto = choose_image(stats, max(len(s.label) for s in samples), min_width)
    image = dataclasses.replace(auto, **(overrides or {}))
    return image, dict(measured=asdict(stats), chosen=asdict(auto), overrides=overrides or {})


# A default fine-tuning starts from the first candidate (``finetune.BASES``) unless
# another gives the labels a clearly lower CTC loss before any training: its per-image
# losses lower on average by more than PICK_T standard errors (a paired t-statistic), on
# up to PICK_IMAGES labeled images. A clear margin, not the lowest mean: where the bases
# fit alike, which one starts makes no difference worth the churn. Measured in README
# ("Two base models").
PICK_T, PICK_IMAGES = 2.0, 500


def pick_init(candidates: list[InitModel], samples: list[Sample], image: ImageConfig,
              alphabet: str, batch_size: int = 256,
              loaded: LoadedImages | None = None) -> tuple[InitModel, dict]:
    """The starting model for ``samples`` among ``candidates`` (see ``PICK_T``), read at
    ``image`` (the input training will use; the candidates share one architecture and
    input), and the record of the choice for ``model.json`` (mean loss an image per
    candidate, the t-statistics, the images scored). With no readable image scored, the
    first candidate. ``loaded``: ``samples`` already in memory at ``image`` (training's),
    not decoded again.

    Raises:
        ModelError: the candidates differ in architecture or input.
        DatasetError: an explicit alphabet lacks characters the labels use.
    """
    first = candidates[0]
    for c in candidates[1:]:
        if (c.info.model.arch, c.info.model.params, c.info.image) != \
                (first.info.model.arch, first.info.model.params, first.info.image):
            raise ModelError(f"{c.source} and {first.source}: starting models to choose among "
                             "must share one architecture and input")
    every = -(-len(samples) // PICK_IMAGES)
    data = (LoadedImages(np.ascontiguousarray(loaded.images[::every]), loaded.samples[::every], [])
            if loaded is not None else load_images(samples[::every], image))
    if not data.samples:
        return first, dict(chosen=first.source, images=0)
    labels = [s.label for s in data.samples]
    losses = {}
    for c in candidates:
        charset, _ = choose_alphabet(labels, alphabet, c)
        with torch.random.fork_rng():
            torch.manual_seed(0)  # rows for characters the candidate lacks: the same every run
            model = transfer(c, image, charset).eval()
        loss_fn = nn.CTCLoss(reduction="none", zero_infinity=True)
        parts = []
        with torch.no_grad():
            for k in range(0, len(labels), batch_size):
                lp = model(torch.from_numpy(data.images[k : k + batch_size]))
                parts.append(ctc_loss(lp, labels[k : k + batch_size], charset, loss_fn).numpy())
        losses[c.source] = np.concatenate(parts)
    chosen, best_t, ts = first, PICK_T, {}
    for c in candidates[1:]:
        d = losses[first.source] - losses[c.source]
        spread = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else 0.0
        ts[c.source] = round(float(d.mean() / spread), 2) if spread > 0 else 0.0
        if ts[c.source] > best_t:
            chosen, best_t = c, ts[c.source]
    record = dict(chosen=chosen.source, images=len(labels),
                  loss={k: round(float(v.mean()), 4) for k, v in losses.items()},
                  t_against_first=ts)
    return chosen, record


def training_input(samples: list[Sample], arch: str, init: InitModel | list[InitModel] | None,
                   overrides: dict | None = None) -> tuple[ImageConfig, dict]:
    """The input a run trains at (``choose_input``): a starting model's height and channels
    and at least its width (several candidates share theirs), or ``arch``'s fixed input,
    then ``overrides``."""
    first = init[0] if isinstance(init, list) else init
    fixed = input_overrides(first) if first is not None else FIXED_INPUT.get(arch, {})
    return choose_input(samples, {**fixed, **(overrides or {})},
                        min_width=first.info.image.width if first is not None else 0)


def choose_alphabet(labels: list[str], mode: str, init: InitModel | None) -> tuple[Charset, dict]:
    """The model's alphabet for ``labels`` (see ``train``'s ``alphabet``) and its record.

    Raises:
        DatasetError: an explicit alphabet lacks characters the labels use.
    """
    if mode == "auto" and init is not None:
        chars, record = complete_alphabet(labels, init.info.alphabet)
    elif mode in ("auto", "labels"):
        chars, record = Charset.from_labels(labels).alphabet, {}
    else:
        given = Charset.from_labels([mode])
        missing = given.unknown("".join(labels))
        if missing:
            raise DatasetError(f"--alphabet {mode!r} lacks characters the labels use: {missing!r}; "
                               "add them (or leave --alphabet out to take the labels' own)")
        chars, record = given.alphabet, {}
    return Charset(chars), dict(mode=mode if mode in ("auto", "labels") else "given", **record)


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX): there, conv
    layers in bfloat16 train about 1.7x faster; elsewhere (AVX-512 without BF16 included)
    oneDNN emulates bfloat16, slower than float32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and (
            torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()))
    except (AttributeError, RuntimeError):  # a torch build without the checks
        return False


def uses_bf16(cfg: TrainConfig) -> bool:
    """``cfg.bf16``, or where it is left open (None), whether this CPU has it natively."""
    return native_bf16() if cfg.bf16 is None else cfg.bf16


def ema_decay(cfg: TrainConfig, total_steps: int) -> float:
    """The moving average's decay a step: ``cfg.ema``, but averaging over at most a third
    of the run (a decay of 0.998 spans about 500 steps; a 60-step run averages over 20)."""
    return min(cfg.ema, 1 - 3 / max(total_steps, 4))


def resolve_budget(cfg: TrainConfig, n_train: int) -> TrainConfig:
    """Turn a step budget into rounds: ``cfg.steps`` if set, else ``steps_budget`` when the
    recipe gives no epochs; a recipe in epochs is kept as it is. With fewer than
    ``FT_FEW`` training images, ``cfg.lr_few`` (where set) replaces the rate."""
    if cfg.lr_few is not None and n_train < FT_FEW:
        cfg = dataclasses.replace(cfg, lr=cfg.lr_few)
    steps = cfg.steps or (0 if cfg.epochs else steps_budget(n_train, cfg.batch_size, cfg.finetune))
    if not steps:
        return cfg
    per_round = steps_per_round(n_train, cfg)
    return dataclasses.replace(cfg, steps=steps, epochs=-(-steps // per_round))


# A resumable state after a round at most this often: saving one (weights, Adam's
# moments, the best round's weights: 3 MB, two fsyncs) takes about 30 ms here, 4% of a
# 0.8 s round; an interruption loses at most this much training.
CHECKPOINT_SECONDS = 20.0


def _resume_key(cfg: TrainConfig, image: ImageConfig, model_cfg: ModelConfig, split: Split,
                n_labeled_train: int, init: InitModel | None) -> dict:
    """What must not change between an interrupted run and its ``--resume``: the settings,
    the files and their labels (pseudo-labels too: ``self_train`` tells its two runs apart
    by ``pseudo_labels``, None for a run on human labels alone)."""
    labels = hashlib.sha256("\n".join(s.label for s in split.data.samples).encode()).hexdigest()
    n_extra = len(split.train) - n_labeled_train
    return dict(config=asdict(cfg), image=asdict(image), model=asdict(model_cfg),
                alphabet=split.charset.alphabet,
                data_fingerprint=split.fingerprint(),
                labels=labels, pseudo_labels=n_extra or None,
                validation=hashlib.sha256(np.asarray(split.val, np.int64).tobytes()).hexdigest(),
                init=init.record() if init is not None else None)


# Settings of speed alone: a resumed run may change them (the result is the same).
NOT_IN_RESUME_KEY = ("threads",)


def _check_resume(state: dict, key: dict, where: Path, picked: dict | None = None) -> None:
    def compared(k: dict) -> dict:  # less the speed settings
        if not isinstance(k.get("config"), dict):
            return k
        return {**k, "config": {n: v for n, v in k["config"].items() if n not in NOT_IN_RESUME_KEY}}

    then_key, key = compared(state["key"]), compared(key)
    # Other images first: they change the settings that follow from them (epochs, the rate
    # for few images), and the settings' message blamed the options for another folder.
    for name, value in sorted(key.items(), key=lambda kv: kv[0] not in ("data_fingerprint", "labels")):
        if name in then_key and _jsonish(then_key[name]) != _jsonish(value):
            before = (then_key[name] or {}).get("model") if name == "init" else None
            if picked is not None and before:  # e.g. interrupted before --init auto existed
                raise ModelError(f"{where}: cannot resume: the interrupted run started from "
                                 f"{before}, and --init auto picked {picked['chosen']} this "
                                 f"time; resume with --init {before}")
            then, now = _jsonish(then_key[name]), _jsonish(value)
            fields = ""
            if isinstance(then, dict) and isinstance(now, dict):  # which settings: lr 0.003 -> 0.01
                diff = [f"{k} {str(then.get(k))[:20]} -> {str(now.get(k))[:20]}"
                        for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k)]
                fields = f" ({', '.join(diff[:3])}{', ...' if len(diff) > 3 else ''})" if diff else ""
            raise ModelError(f"{where}: cannot resume: the {name.replace('_', ' ')} differs from "
                             f"the interrupted run's{fields} (resume with the same data and options, "
                             "--stem-labels and --unlabeled-max included, or delete that folder "
                             "to start again)")


def _jsonish(x):
    """Tuples as lists, as they come back from JSON."""
    if isinstance(x, dict):
        return {k: _jsonish(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonish(v) for v in x]
    return x


def train(data_dir: str | Path, out_dir: str | Path, *, arch: str = DEFAULT_ARCH,
          params: dict | None = None, image: ImageConfig | dict | None = None,
          cfg: TrainConfig | None = None, init: InitModel | list[InitModel] | None = None,
          command: str = "", export: bool = True, resume: bool = False,
          ignore_case: bool = False, checkpoint_seconds: float = CHECKPOINT_SECONDS,
          extra: list[Sample] | None = None, extra_record: dict | None = None,
          alphabet: str = "auto", stem_labels: bool = False, names: str = "auto",
          on_start: Callable[[TrainConfig, ImageConfig, InitModel | None, dict | None,
                              list[tuple[Path, str]]], None]
          | None = None,
          on_epoch: Callable[[EpochStats], None] | None = None,
          on_batch: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train on a dataset folder and write a complete model directory.

    The directory is written as one transaction (``staging.StagedModelDir``): under a
    lock, into ``OUT.partial`` beside it, with a resumable checkpoint every round, then
    swapped in whole; an existing model stays loadable until the swap.

    Args:
        data_dir: folder of labeled images.
        out_dir: the model directory to write (absent, empty, or a model directory,
            which is replaced whole).
        arch: a key of ``model.ARCHS``.
        params: overrides of the architecture's hyper-parameters.
        image: the input size, channels and crop; a dict overrides only those keys of
            what the images decide (``choose_input``); None: all decided from the images.
        cfg: training settings (default: ``arch``'s recipe); a step budget is resolved
            from the number of training images (``resolve_budget``).
        init: start from this model (``finetune.load_init``): its architecture, input
            height and channels, its weights (``finetune.transfer``); ``arch`` and
            ``params`` are then ignored. A list (``finetune.load_inits("auto")``): the
            one of them that fits the labels (``pick_init``), recorded in ``model.json``.
        command: the command line, recorded in ``model.json``.
        export: also write ``model.onnx``.
        resume: continue the interrupted run in ``OUT.partial`` (same data and options).
        ignore_case: fold labels to lower case (for sites that accept either case); the
            model then reads lower case, and ``model.json`` records it.
        checkpoint_seconds: the resumable state is saved after a round when this long
            has passed since the last save (0: every round).
        extra: more training images (pseudo-labeled ones, ``selftrain``): added to the
            training split only, never to validation; ``extra_record`` describes them in
            ``model.json`` (``training.pseudo_labels``).
        alphabet: the characters the model can read. "auto": the labels' characters,
            and, fine-tuning, the starting model's characters of the classes the labels
            use where characters seen once suggest the labels missed some
            (``charset.complete_alphabet``); "labels": the labels' characters only; any
            other string: exactly those characters (every label's must be among them).
        stem_labels: where ``labels.csv`` does not name an image, its file stem is its
            label (``data.survey``); else such images are left out.
        names: how file names carry labels (``data.name_labels``: auto, whole, label_id,
            id_label).
        on_start: called once the input, the budget and the starting model (and how it
            was picked) are known, with the images that could not be read (path, why).
        on_epoch, on_batch: progress callbacks.

    Raises:
        DatasetError: the data folder is unusable.
        ModelError: ``out_dir`` cannot be written, is locked by another run, is not a
            model directory, or ``resume`` does not fit what is there.
    """
    t0 = time.perf_counter()
    if init is not None:
        first = init[0] if isinstance(init, list) else init
        arch, params = first.info.model.arch, first.info.model.params
    cfg = cfg or recipe(arch, finetune=init is not None)
    torch.set_num_threads(cfg.threads or usable_cores())
    data_path = Path(data_dir).resolve()
    out_path = Path(out_dir).resolve()
    if out_path == data_path or data_path in out_path.parents:
        raise ModelError(f"{out_dir}: the model directory would be inside the data folder "
                         f"{data_dir} (its files would be read as data next time); choose "
                         "an --out outside it")
    with StagedModelDir(out_dir) as staged:  # fail now, not after the training time
        work = staged.begin(resume)
        try:
            return _train_into(staged, work, data_dir, arch, params, image, cfg, init, command,
                               export, resume, ignore_case, checkpoint_seconds, on_start,
                               on_epoch, on_batch, t0, extra or [], extra_record, alphabet,
                               stem_labels, names)
        except OSError as e:  # a full disk, a read-only or vanished folder
            staged.drop_unstarted()
            where = e.filename or staged.partial
            again = "with --resume" if staged.interrupted() else "(no checkpoint yet to resume)"
            raise ModelError(f"{where}: {e.strerror or e} during training; the previous model "
                             f"in {out_dir} is untouched; fix that and run again "
                             f"{again}") from None
        except BaseException:
            staged.drop_unstarted()
            raise


def _train_into(staged: StagedModelDir, work: Path, data_dir, arch, params, image, cfg, init,
                command, export, resume, ignore_case, checkpoint_seconds, on_start, on_epoch,
                on_batch, t0, extra, extra_record, alphabet, stem_labels, names) -> TrainResult:
    labeling = survey(data_dir, stem_labels=stem_labels, names=names)
    samples = labeling.samples
    if ignore_case:
        samples = [dataclasses.replace(s, label=s.label.lower()) for s in samples]
        if alphabet not in ("auto", "labels"):  # the site's characters, as the model reads them
            alphabet = one_case(alphabet)
    geometry = None
    if not isinstance(image, ImageConfig):
        image, geometry = training_input(samples, arch, init, image)
    # The readable images only, from here on: an unreadable file's label adds no character
    # to the alphabet (a corrupt "BOMB.png" gave the model a B and an O), and no label is
    # checked against the input's time steps after minutes of work.
    data = load_readable(data_dir, image, samples)
    # a starting model's, where there is one (the candidates of --init auto share theirs)
    layers = arch_params(arch, params)
    check_label_lengths(data.samples, feature_size(image, layers["convs"])[1], image.width)
    picked = None
    if isinstance(init, list):
        init, picked = pick_init(init, data.samples, image, alphabet, loaded=data)
        arch, params = init.info.model.arch, init.info.model.params
    charset, alphabet_record = choose_alphabet([s.label for s in data.samples], alphabet, init)
    split = prepare(data_dir, image, cfg.val_fraction, cfg.seed, charset=charset, data=data)
    n_labeled_train, n_labeled = len(split.train), len(split.data.samples)
    if extra:
        split = _with_extra(split, extra, image)
    cfg = resolve_budget(cfg, len(split.train))
    cfg = dataclasses.replace(cfg, bf16=uses_bf16(cfg))  # model.json records the decision
    if cfg.augment:
        cfg = dataclasses.replace(cfg, aug_noise=aug_noise(split.data.images[split.train]))
    if on_start:
        on_start(cfg, image, init, picked, split.data.skipped)
    torch.manual_seed(cfg.seed)
    model_cfg = ModelConfig(arch, split.charset.n_classes, layers)
    model = transfer(init, image, split.charset) if init is not None else build_model(image, model_cfg)
    key = _resume_key(cfg, image, model_cfg, split, n_labeled_train, init)
    state = None
    if resume:
        state = checkpoint.load(staged.checkpoint_dir)
        _check_resume(state, key, staged.partial, picked)

    last_save = time.perf_counter()

    def save_state(s: dict) -> None:
        nonlocal last_save
        if time.perf_counter() - last_save >= checkpoint_seconds:
            checkpoint.save(staged.checkpoint_dir, {**s, "key": key})
            last_save = time.perf_counter()
        fault("round-end")

    history, best_epoch = fit(model, split, cfg, on_epoch, on_batch, save_state, state)
    info = _model_info(model, model_cfg, split, cfg, image, command, data_dir, history, best_epoch,
                       n_labeled)
    info.training["steps"] = len(history) * steps_per_round(len(split.train), cfg)
    if geometry:
        info.training["input"] = geometry
    if init is not None:
        info.training["init"] = init.record() if picked is None else {**init.record(), "picked": picked}
    if resume:
        info.training["resumed"] = True
    if ignore_case:
        info.training["ignore_case"] = True
    info.training["alphabet"] = alphabet_record
    info.training["labels"] = labeling.record()
    if extra:
        info.training["pseudo_labels"] = {**(extra_record or {}),
                                          "trained_on": len(split.train) - n_labeled_train}
    _write_outputs(model, info, split, history, best_epoch, work, export)
    info.training["seconds"] = round(time.perf_counter() - t0, 2)
    info.save(work)
    out = staged.commit()
    return TrainResult(out, info, history, best_epoch, info.training["seconds"],
                       split.data.skipped)
