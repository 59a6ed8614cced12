"""Read captchas with ONNX Runtime: load a model directory once, read images in batches.

Imports numpy, Pillow and onnxruntime only (never torch), so a reading install is small
and starts fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
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
        self._pool = ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1))

    @classmethod
    def load(cls, model_dir: str | Path | None = None, *, threads: int = 0,
             max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Reader:
        """Load a model directory (default: the bundled pretrained model).

        Args:
            model_dir: a directory written by ``captcha-ocr train``.
            threads: ONNX Runtime intra-op threads (0: one per core).
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
        model_dir = Path(model_dir)
        info = ModelInfo.load(model_dir)
        onnx_path = info.verify(model_dir, FILES.onnx)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{onnx_path}: ONNX Runtime cannot load it ({str(e).splitlines()[0]})") from None
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

    def _try_preprocess(self, source: ImageSource) -> np.ndarray | str:
        try:
            return self.preprocess(source)
        except ImageError as e:
            return str(e)

    def _read_chunk(self, inputs: list[np.ndarray | str]) -> list[Reading]:
        good = [x for x in inputs if not isinstance(x, str)]
        read = iter(self.read_arrays(np.stack(good)) if good else [])
        return [_failed(x) if isinstance(x, str) else next(read) for x in inputs]

    def iter_read(self, sources: Iterable[ImageSource], batch_size: int = 64) -> Iterator[Reading]:
        """Read images lazily in batches, yielding results in input order.

        Decoding of the next batch (in threads) overlaps inference on the current one.
        A source that cannot be read yields a ``Reading`` with ``error`` set.
        """
        it = iter(sources)
        pending = self._pool.map(self._try_preprocess, list(islice(it, batch_size)))
        while True:
            inputs = list(pending)
            if not inputs:
                return
            nxt = list(islice(it, batch_size))
            pending = self._pool.map(self._try_preprocess, nxt)
            yield from self._read_chunk(inputs)

    def read_many(self, sources: Iterable[ImageSource], batch_size: int = 64) -> list[Reading]:
        """Read many images in batches; same order as ``sources``; bad items carry ``error``."""
        return list(self.iter_read(sources, batch_size))
