"""Checkpoint -> ONNX, with its checksum recorded in ``model.json``, and a parity check."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch

from .model import CRNN
from .modeldir import FILES, ModelInfo, atomic_write, sha256_file

__all__ = ["export_onnx", "onnx_parity"]

OPSET = 17


def export_onnx(model: CRNN, info: ModelInfo, model_dir: str | Path) -> Path:
    """Write ``model_dir/model.onnx`` atomically and record its SHA-256 in ``model.json``.

    The graph takes ``image`` ``(N, C, H, W)`` float32 in [0, 1] (any N) and returns
    ``log_probs`` ``(N, T, n_classes)``.
    """
    model.eval()
    im = info.image
    x = torch.zeros(1, im.channels, im.height, im.width)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the LSTM export warns about batch_first; it is handled
        torch.onnx.export(
            model, (x,), buf, dynamo=False, opset_version=OPSET,
            input_names=["image"], output_names=["log_probs"],
            dynamic_axes={"image": {0: "batch"}, "log_probs": {0: "batch"}},
        )
    path = Path(model_dir) / FILES.onnx
    atomic_write(path, buf.getvalue())
    info.files[FILES.onnx] = sha256_file(path)
    stale = info.int8.get("onnx") not in (None, info.files[FILES.onnx])
    if stale:  # an int8 network made from another float one no longer matches: drop it
        info.files.pop(FILES.int8, None)
        info.int8 = {}
    info.save(model_dir)
    if stale:
        (Path(model_dir) / FILES.int8).unlink(missing_ok=True)
    return path


def onnx_parity(model: CRNN, onnx_path: str | Path, images: np.ndarray) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime log-probabilities."""
    import onnxruntime as ort

    model.eval()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model(torch.from_numpy(images)).numpy()
    got = sess.run(None, {"image": images})[0]
    return float(np.abs(ref - got).max())
