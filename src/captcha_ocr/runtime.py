"""Read captchas with ONNX Runtime: load a model directory once, read images in batches.

Imports numpy, Pillow and onnxruntime only (never torch), so a reading install is small
and starts fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .decoding import greedy_decode
from .modeldir import FILES, ModelError, ModelInfo
from .preprocess import DEFAULT_MAX_PIXELS, ImageError, ImageSource, preprocess

__all__ = ["BUNDLED_MODEL", "ImageError", "ModelError", "Reader", "Reading", "bundled_model_dir"]

BUNDLED_MODEL = "captcha_images_v2"


def _default_split() -> tuple[int, int]:
    """(inference threads, decoding threads): half the cores each. On 2 cores, one ONNX
    Runtime thread beside one decoding thread read 2,735 images/s at batch 64 against
    1,827 with two inference threads competing with decoding, and batch-1 latency fell
    from 0.79 to 0.66 ms (bench/read_bench.py, before and after)."""
    cores = os.cpu_count() or 1
    infer = max(1, cores // 2)
    return infer, max(1, cores - infer)


def bundled_model_dir(name: str = BUNDLED_MODEL) -> Path:
    """Where the pretrained model shipped with the package lives."""
    return Path(__file__).parent / "models" / name


@dataclass(frozen=True)
class Reading:
    """The text read from one image.

    Attributes:
        text: the decoded text ("" when ``error`` is set).
        confidence: in [0, 1]: the product of ``char_confidences``.
        char_confidences: one probability per character of ``text``.
        error: why this item could not be read (``read_many`` only), else None.
    """

    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _failed(error: str) -> Reading:
    return Reading("", 0.0, (), error)


def _check_graph(session: ort.InferenceSession, info: ModelInfo, onnx_path: Path) -> None:
    """``model.json`` must describe the network it sits beside (it can be edited by hand,
    and its checksum covers the ONNX file, not itself)."""
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    im = info.image
    want_in = {1: im.channels, 2: im.height, 3: im.width}
    for axis, want in want_in.items():
        got = inp.shape[axis] if len(inp.shape) == 4 else None
        if got != want:
            what = ("channels", "height", "width")[axis - 1]
            raise ModelError(f"{onnx_path.parent / FILES.info}: input {what} {want} does not fit "
                             f"the network in {FILES.onnx} ({got}); re-train or restore model.json")
    classes = out.shape[-1] if len(out.shape) == 3 else None
    if classes != info.charset.n_classes:
        raise ModelError(f"{onnx_path.parent / FILES.info}: an alphabet of "
                         f"{len(info.alphabet)} characters needs {info.charset.n_classes} output "
                         f"classes, the network in {FILES.onnx} has {classes}; re-train or "
                         "restore model.json")


class Reader:
    """A loaded model that turns images into text.

    Use ``Reader.load(model_dir)``; one Reader is safe to share between threads.
    """

    def __init__(self, session: ort.InferenceSession, info: ModelInfo, model_dir: Path,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, workers: int | None = None) -> None:
        self.session = session
        self.info = info
        self.model_dir = model_dir
        self.charset = info.charset
        self.max_pixels = max_pixels
        self._input = session.get_inputs()[0].name
        self._workers = workers or _default_split()[1]
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="captcha-ocr-decode")

    @classmethod
    def load(cls, model_dir: str | Path | None = None, *, threads: int = 0,
             max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Reader:
        """Load a model directory (default: the bundled pretrained model).

        Args:
            model_dir: a directory written by ``captcha-ocr train``, or the name of a
                model shipped in the package ("base", "captcha_images_v2").
            threads: ONNX Runtime intra-op threads (0: half the cores; the other half
                decode images for ``read_many``, a two-stage pipeline).
            max_pixels: images with more pixels are refused before decoding.

        Raises:
            ModelError: the directory is not a model, or ``model.onnx`` does not match
                the checksum in ``model.json``.
        """
        if model_dir is None:
            model_dir = bundled_model_dir()
            if not (model_dir / FILES.info).is_file():
                raise ModelError("no bundled model in this install; pass a model directory "
                                 "(--model DIR) written by 'captcha-ocr train'")
        elif not Path(model_dir).is_dir() and (bundled_model_dir(str(model_dir)) / FILES.info).is_file():
            model_dir = bundled_model_dir(str(model_dir))  # a shipped model by name: "base"
        model_dir = Path(model_dir)
        info = ModelInfo.load(model_dir)
        onnx_path = info.verify(model_dir, FILES.onnx)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or _default_split()[0]
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{onnx_path}: ONNX Runtime cannot load it ({str(e).splitlines()[0]})") from None
        _check_graph(session, info, onnx_path)
        return cls(session, info, model_dir, max_pixels)

    @property
    def name(self) -> str:
        """A short model name: directory name and the ONNX checksum's first 8 hex digits."""
        return f"{self.model_dir.name}@{self.info.files.get(FILES.onnx, '')[:8]}"

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw network: ``(N, C, H, W)`` float32 in [0, 1] -> log-probs ``(N, T, n_classes)``."""
        return self.session.run(None, {self._input: batch})[0]

    def preprocess(self, source: ImageSource) -> np.ndarray:
        """One image -> ``(C, H, W)`` model input. Raises ``ImageError``."""
        return preprocess(source, self.info.image, self.max_pixels)

    def read_arrays(self, batch: np.ndarray) -> list[Reading]:
        """Read a preprocessed batch ``(N, C, H, W)``."""
        return [Reading(d.text, d.confidence, d.char_confidences)
                for d in greedy_decode(self.run(batch), self.charset)]

    def read(self, source: ImageSource) -> Reading:
        """Read one image (path, encoded bytes, PIL image or uint8 array).

        Raises:
            ImageError: the image cannot be read; the message names it.
        """
        return self.read_arrays(self.preprocess(source)[None])[0]

    def _submit(self, sources: list) -> Callable[[], tuple[np.ndarray, list[str | None]]]:
        """Start preprocessing ``sources`` into one batch array, in a few chunks on the
        thread pool (PIL decodes with the GIL released); returns a function that waits."""
        im = self.info.image
        batch = np.empty((len(sources), im.channels, im.height, im.width), np.float32)
        errors: list[str | None] = [None] * len(sources)

        def work(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                try:
                    batch[i] = self.preprocess(sources[i])
                except ImageError as e:
                    errors[i] = str(e)

        step = max(1, -(-len(sources) // self._workers))
        futures = [self._pool.submit(work, lo, min(lo + step, len(sources)))
                   for lo in range(0, len(sources), step)]

        def wait() -> tuple[np.ndarray, list[str | None]]:
            for f in futures:
                f.result()
            return batch, errors

        return wait

    def _read_prepared(self, batch: np.ndarray, errors: list[str | None]) -> list[Reading]:
        good = [i for i, e in enumerate(errors) if e is None]
        if len(good) == len(errors):
            return self.read_arrays(batch)
        read = iter(self.read_arrays(batch[good]) if good else [])
        return [_failed(e) if e is not None else next(read) for e in errors]

    def iter_read(self, sources: Iterable[ImageSource], batch_size: int = 64) -> Iterator[Reading]:
        """Read images lazily in batches, yielding results in input order.

        Decoding of the next batch (in threads) overlaps inference on the current one.
        A source that cannot be read yields a ``Reading`` with ``error`` set.
        """
        it = iter(sources)
        pending = self._submit(list(islice(it, batch_size)))
        while True:
            batch, errors = pending()
            if not errors:
                return
            pending = self._submit(list(islice(it, batch_size)))
            yield from self._read_prepared(batch, errors)

    def read_many(self, sources: Iterable[ImageSource], batch_size: int = 64) -> list[Reading]:
        """Read many images in batches; same order as ``sources``; bad items carry ``error``."""
        return list(self.iter_read(sources, batch_size))
