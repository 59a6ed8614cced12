"""Pretraining a general base model on the synthetic style zoo (``captcha-ocr pretrain``).

Images are drawn on the fly in DataLoader workers from the seeded zoo streams and never
stored: stream position ``k`` is style ``k mod S``'s image ``k div S``. Step ``b`` takes
positions ``[b * B * P, (b + 1) * B * P)`` for ``P`` processes (torchrun ranks) of ``B``
images each, so the run sees the same images whatever the number of processes and
drawing workers, and a resumed run goes on where it stopped: with the same images, and
in one process exactly as if never stopped (rank 0's augmentation state is in the
checkpoint; under torchrun the other ranks draw theirs afresh from a seed of their own).

Runs unchanged as one process or under ``torchrun --nproc-per-node N`` (PyTorch
DistributedDataParallel: gloo on CPU, NCCL on CUDA). Rank 0 writes a checkpoint every
few minutes (weights, optimizer state and position: safetensors + JSON, atomic) into
``OUT.partial/checkpoint`` and builds the finished model directory (``model.json``,
weights, ONNX) there; it is swapped in as ``OUT`` only when complete, as ``train`` does
(``staging.StagedModelDir``), so an interrupted run never leaves a half-written model
and ``--resume`` goes on from the last checkpoint. Fine-tune the result with
``captcha-ocr train DIR --init MODEL``.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
import string
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from . import checkpoint
from .augment import augment_batch
from .charset import Charset
from .config import ARCHS, DEFAULT_ARCH, ImageConfig, ModelConfig
from .cpus import usable_cores
from .decoding import greedy_decode
from .metrics import cer, sequence_accuracy
from .model import CRNN, build_model, count_flops, count_params
from .modeldir import ModelInfo
from .preprocess import to_array
from .staging import CHECKPOINT, StagedModelDir, fault
from .train import FlatCos, ace_loss, ctc_loss, save_checkpoint
from .zoo import STYLES, ZOO_VERSION, render, seeded_rng
from .zoo.draw import widen

__all__ = ["ALPHABET", "PretrainConfig", "default_threads", "pretrain"]

# Digits, both cases and the arithmetic signs, plus whatever a zoo style draws.
ALPHABET = "".join(sorted(set(string.digits + string.ascii_letters + "+-x=?")
                          | {c for s in STYLES.values() for c in s.alphabet}))
# Wide enough for 8 characters at 16 pixels each; every style is resized to it.
IMAGE = ImageConfig(height=32, width=128, channels=3)


@dataclasses.dataclass
class PretrainConfig:
    """One pretraining run.

    Attributes:
        steps: optimizer steps in all.
        batch_size: images per step and process.
        lr: peak learning rate (flat, then cosine to zero over the second half).
        seed: the zoo streams' seed and the initialisation.
        styles: zoo styles to draw from (empty: all).
        workers: DataLoader worker processes per training process (0: draw in-process).
        checkpoint_minutes: how often rank 0 writes a resumable checkpoint.
        eval_images: held-out images per style read at the end (another seed's stream).
        device: "auto" (CUDA where there is one), "cpu" or "cuda".
        threads: torch intra-op threads per process (0: ``default_threads``).
        widen: share of images placed in a wider strip (``zoo.draw.widen``: 1.3-2.5x, at
            the left, the right or anywhere), for sites that draw short text in a long box.
        fonts: the zoo's font pool (``zoo.render``): "zoo", each style's own fonts, or
            "wide", those and the font packages' faces of the same looks.
    """

    steps: int = 20000
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    styles: tuple[str, ...] = ()
    workers: int = 1
    checkpoint_minutes: float = 5.0
    eval_images: int = 100
    device: str = "auto"
    threads: int = 0
    widen: float = 0.2
    fonts: str = "zoo"


class ZooStream(IterableDataset):
    """Endless batches of ``batch_size`` zoo images for one rank, from stream position
    ``start`` on: ``(B, C, H, W)`` float32 tensors and their labels.

    Batch ``b`` (counted from ``start``) holds positions ``start + (b * world + rank) *
    batch_size + i``. A DataLoader with ``w`` workers gives worker ``j`` the batches ``b``
    with ``b mod w == j`` and yields them in order, so the batches (and a resumed run's)
    do not depend on the number of workers.
    """

    def __init__(self, styles: list[str], seed: int, start: int, rank: int, world: int,
                 widen: float = 0.0, batch_size: int = 1, fonts: str = "zoo") -> None:
        self.styles, self.seed, self.start, self.rank, self.world = styles, seed, start, rank, world
        self.widen, self.batch_size, self.fonts = widen, batch_size, fonts

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[str]]]:
        info = get_worker_info()
        b, every = (info.id, info.num_workers) if info else (0, 1)
        while True:
            first = self.start + (b * self.world + self.rank) * self.batch_size
            images = [self._image(k) for k in range(first, first + self.batch_size)]
            yield torch.from_numpy(np.stack([x for x, _ in images])), [y for _, y in images]
            b += every

    def _image(self, k: int) -> tuple[np.ndarray, str]:
        n = len(self.styles)
        img, label = render(self.styles[k % n], self.seed, k // n, self.fonts)
        if self.widen:
            img = self._layout(img, k)
        return to_array(img, IMAGE), label

    def _layout(self, img: Image.Image, k: int) -> Image.Image:
        """Position ``k``'s image, placed in a wider strip for a share ``widen`` of them."""
        rng = seeded_rng(f"layout:{self.seed}:{k}")
        if rng.random() >= self.widen:
            return img
        where = rng.choice([0.0, 1.0, rng.random()])
        return widen(img, rng, rng.uniform(1.3, 2.5), where)


def choose_device(name: str, gpus: int, local_processes: int) -> tuple[str, str]:
    """The device of each training process, and a note to print ("" when none).

    NCCL takes one GPU per process: "auto" is CUDA where this machine has a GPU for every
    process torchrun started on it, else the CPU (gloo), saying why when there are GPUs;
    "cuda" without enough GPUs is an error.

    Raises:
        ValueError: "cuda" was asked and there are fewer GPUs than processes here.
    """
    if name == "auto":
        if gpus and gpus >= local_processes:
            return "cuda", ""
        if gpus:
            return "cpu", (f"{local_processes} processes on this machine but {gpus} GPU(s): "
                           f"training on the CPU; torchrun --nproc-per-node {gpus} trains on "
                           "the GPU(s), one process each")
        return "cpu", ""
    if name == "cuda" and not gpus:
        raise ValueError("--device cuda: no CUDA device is available here; use --device cpu")
    if name == "cuda" and gpus < local_processes:
        raise ValueError(f"--device cuda: {local_processes} processes on this machine but "
                         f"{gpus} GPU(s), and each process needs its own; run torchrun "
                         f"--nproc-per-node {gpus}, or use --device cpu")
    return name, ""


def _weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _save_state(path: Path, model: CRNN, opt: torch.optim.Optimizer, rng: torch.Generator,
                meta: dict) -> None:
    """A resumable checkpoint: weights, optimizer state, the random states of the
    augmentation and of torch (dropout) and the position (``checkpoint``)."""
    checkpoint.save(path, dict(model=model.state_dict(), optimizer=opt.state_dict(),
                               rng=rng.get_state(), torch_rng=torch.get_rng_state(), meta=meta))


STREAM_KEYS = ("seed", "styles", "batch_size", "widen", "fonts")  # what the images drawn depend on
SCHEDULE_KEYS = ("steps", "lr")  # the learning rate at each step (``FlatCos`` over ``steps``)


def _check_same_run(saved: dict, cfg: PretrainConfig) -> None:
    """Raises ``ValueError`` where a resumed run would draw other images than the run it
    goes on from (another seed, styles, batch size, --widen or --fonts), or follow another
    learning-rate schedule (--steps, --lr): it would not end as the unbroken run."""
    def plain(v):
        return list(v) if isinstance(v, (list, tuple)) else v

    now = dataclasses.asdict(cfg)

    def changed(keys):
        return ", ".join(f"--{k.replace('_', '-')} {plain(saved[k])}" for k in keys
                         if k in saved and plain(saved[k]) != plain(now[k]))

    was = changed(STREAM_KEYS)
    if was:
        raise ValueError(f"--resume: the interrupted run drew its images with {was}; resume "
                         "with the same options, or start afresh without --resume")
    was = changed(SCHEDULE_KEYS)
    if was:
        raise ValueError(f"--resume: the interrupted run's learning-rate schedule was that of "
                         f"{was}; resume with the same, or start afresh without --resume")


def _load_state(path: Path, model: CRNN, opt: torch.optim.Optimizer, rng: torch.Generator,
                rank: int) -> dict:
    """Weights and optimizer state into ``model`` and ``opt``, rank 0's augmentation state
    into ``rng`` (another rank is seeded by rank and step instead, so that the ranks'
    draws stay apart). Returns the position (``meta``), with torch's own random state
    (dropout) as ``meta["torch_rng"]`` where saved, to set once the DataLoader has drawn
    its seed from it."""
    state = checkpoint.load(path)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])  # moves the moments to the parameters' device
    meta = state["meta"]
    if rank == 0 and "rng" in state:  # checkpoints of earlier versions lack them
        rng.set_state(state["rng"])
        meta["torch_rng"] = state["torch_rng"]
    elif rank:
        rng.manual_seed(rng.initial_seed() + 7919 * meta["step"])
    return meta


@torch.no_grad()
def evaluate_styles(model: CRNN, charset: Charset, styles: list[str], seed: int, n: int,
                    device) -> dict[str, dict[str, float]]:
    """Sequence accuracy and CER per style on ``n`` images of another seed's stream
    (none for ``n`` 0)."""
    if n <= 0:
        return {}
    model.eval()
    out = {}
    for style in styles:
        pairs = [render(style, seed, i) for i in range(n)]
        x = torch.from_numpy(np.stack([to_array(img, IMAGE) for img, _ in pairs])).to(device)
        preds = [d.text for d in greedy_decode(model(x).cpu().numpy(), charset)]
        labels = [label for _, label in pairs]
        out[style] = dict(accuracy=round(sequence_accuracy(labels, preds), 4),
                          cer=round(cer(labels, preds), 4))
    model.train()
    return out


def pretrain(out_dir: str | Path, cfg: PretrainConfig, *, resume: bool = False,
             command: str = "", on_log: Callable[[str], None] = print) -> Path | None:
    """Pretrain a base model and write it to ``out_dir`` (rank 0); see the module doc.

    Returns:
        The model directory on rank 0, None on the other ranks.

    Raises:
        ModelError: ``out_dir`` is written by another process or is not a model directory;
            an interrupted run is there and ``resume`` was not asked, or the reverse.
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    name, note = choose_device(cfg.device, gpus, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    device = torch.device(name)
    if note and int(os.environ.get("RANK", "0")) == 0:
        on_log(note)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    else:
        rank, world = 0, 1
    if rank != 0:  # rank 0 alone writes; the others read a resumed state from the same place
        _pretrain_into(StagedModelDir(out_dir).partial, cfg, resume, command, on_log, device,
                       distributed, rank, world)
        return None
    with StagedModelDir(out_dir) as staged:  # locked, built beside, swapped in when complete
        work = staged.begin(resume)
        _pretrain_into(work, cfg, resume, command, on_log, device, distributed, rank, world)
        return staged.commit()


def default_threads(cores: int, processes: int, workers: int, device: str) -> int:
    """Torch threads for one training process when ``--threads`` is not given.

    On CUDA, 1: the GPU computes and the cores are the drawing workers' (an H100 machine
    with 16 cores drew 435 images/s with 16 threads in the training process, 1,078 with 1,
    15 workers). On the CPU, each process's share of the cores less its workers, at least 1.
    """
    if device == "cuda":
        return 1
    return max(1, cores // processes - workers)


def _pretrain_into(out: Path, cfg: PretrainConfig, resume: bool, command: str,
                   on_log: Callable[[str], None], device: torch.device, distributed: bool,
                   rank: int, world: int) -> None:
    """The training loop; rank 0 writes the model files into ``out`` (the staging folder)."""
    cores = usable_cores()
    torch.set_num_threads(cfg.threads or default_threads(cores, world, cfg.workers, device.type))
    styles = list(cfg.styles or STYLES)
    charset = Charset(ALPHABET)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model_cfg = ModelConfig(DEFAULT_ARCH, charset.n_classes, dict(ARCHS[DEFAULT_ARCH]))
    model = build_model(IMAGE, model_cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + rank)  # the augmentation's draws
    step, seen, seconds, meta = 0, 0, 0.0, {}
    if resume and checkpoint.exists(out / CHECKPOINT):
        meta = _load_state(out / CHECKPOINT, model, opt, g, rank)
        _check_same_run(meta.get("config", {}), cfg)
        step, seen, seconds = meta["step"], meta["images"], meta["seconds"]
        if rank == 0:
            on_log(f"resumed at step {step} ({seen} images)")
    elif rank == 0:  # the first progress line comes 200 steps in: say what runs until then
        on_log(f"pretraining on {len(styles)} zoo styles (version {ZOO_VERSION}): {cfg.steps} steps "
               f"of {cfg.batch_size} images x {world} process{'es' if world > 1 else ''} on "
               f"{device.type}, a line every 200 steps, a checkpoint every "
               f"{cfg.checkpoint_minutes:g} min")
    rate = FlatCos(cfg.steps)  # flat, then cosine to zero over the second half
    net = nn.parallel.DistributedDataParallel(model) if distributed else model
    stream = ZooStream(styles, cfg.seed, seen, rank, world, cfg.widen, cfg.batch_size, cfg.fonts)
    loader = DataLoader(stream, batch_size=None, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0)
    loss_fn = nn.CTCLoss(blank=0, zero_infinity=True)
    t0, last_ckpt, run_loss, first = time.perf_counter(), time.perf_counter(), 0.0, True
    net.train()
    batches = iter(loader)  # its seed drawn from torch's random state, as in an unbroken run
    if "torch_rng" in meta:
        torch.set_rng_state(meta["torch_rng"])
    elif resume and rank:
        torch.manual_seed(g.initial_seed() + 7919 * step + 1)
    for x, labels in batches:
        if step >= cfg.steps:
            break
        # Augmentation rises over the first tenth: clean images while leaving the plateau.
        x = augment_batch(x, g, min(1.0, step / max(1, cfg.steps // 10)))
        for group in opt.param_groups:
            group["lr"] = cfg.lr * rate(step)
        lp = net(x.to(device).contiguous(memory_format=torch.channels_last))
        loss = ctc_loss(lp.cpu(), labels, charset, loss_fn) + ace_loss(lp.cpu(), labels, charset)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seen += cfg.batch_size * world
        run_loss = loss.item() if first else 0.98 * run_loss + 0.02 * loss.item()  # a resumed run too
        first = False
        elapsed = seconds + time.perf_counter() - t0
        if rank == 0 and (step % 200 == 0 or step == cfg.steps):
            on_log(f"step {step}/{cfg.steps}  loss {run_loss:.3f}  {seen} images  "
                   f"{seen / max(elapsed, 1e-9):.0f} img/s  lr {cfg.lr * rate(step):.2e}")
        if rank == 0 and time.perf_counter() - last_ckpt > 60 * cfg.checkpoint_minutes:
            _save_state(out / CHECKPOINT, model, opt, g,
                        dict(step=step, images=seen, seconds=elapsed, config=dataclasses.asdict(cfg)))
            last_ckpt = time.perf_counter()
            fault("round-end")
    seconds += time.perf_counter() - t0
    if distributed:
        # DDP averages the gradients, so the parameters agree; the batch-norm running
        # statistics are each rank's own since the last forward: take rank 0's.
        for buf in model.buffers():
            dist.broadcast(buf, 0)
    digests = [_weights_digest(model)]
    if distributed:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, digests[0])
        digests = gathered
        # Release DDP's reducer (its gloo work objects hold tensors) and the loader before
        # the group goes: left to interpreter exit, that teardown aborted a rank now and
        # then ("terminate called without an active exception", about 1 run in 10).
        del net, loader
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    if rank != 0:
        return
    model = model.cpu()
    eval_seed = cfg.seed + 1_000_003
    metrics = evaluate_styles(model, charset, styles, eval_seed, cfg.eval_images, "cpu")
    accs = [m["accuracy"] for m in metrics.values()]
    info = ModelInfo(
        alphabet=ALPHABET, image=IMAGE, model=model_cfg,
        training=dict(
            command=command, kind="pretrain", zoo_version=ZOO_VERSION, styles=styles,
            seed=cfg.seed, steps=step, images=seen, processes=world, device=device.type,
            seconds=round(seconds, 1), config=dataclasses.asdict(cfg),
            rank_weight_digests=digests,
            params=count_params(model), flops_per_image=count_flops(model, IMAGE),
        ),
        metrics=dict(zoo_eval_seed=eval_seed, zoo=metrics,
                     zoo_median_accuracy=float(np.median(accs)) if accs else None),
    )
    save_checkpoint(model, info, out)
    from .export import export_onnx

    export_onnx(model, info, out)
    info.save(out)
