"""An int8 copy of a model's network, kept only where it reads as well as the float one.

``captcha-ocr export MODEL --int8 --data DIR`` runs ONNX Runtime's static quantization
(QDQ format: int8 weights per output channel, uint8 activations with ranges calibrated
on images of the site) on ``model.onnx``, then reads other labeled images of ``DIR``
with both networks. The int8 network is written as ``model.int8.onnx`` (and recorded
in ``model.json``) only when it reads at least as many of them right; the Reader then
uses it by default (``precision="auto"``). No torch here: ONNX and ONNX Runtime only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .data import Sample, discover
from .metrics import sequence_accuracy
from .modeldir import FILES, ModelError, ModelInfo, atomic_write, sha256_file
from .preprocess import ImageError

__all__ = ["CALIBRATION_IMAGES", "CHECK_IMAGES", "MIN_IMAGES", "check_enough", "quantize_model"]

CALIBRATION_IMAGES = 200  # images whose activations set the int8 ranges
CHECK_IMAGES = 1000  # other images read by both networks (at most)


def _arrays(reader, samples: list[Sample]) -> tuple[np.ndarray, list[str]]:
    xs, labels = [], []
    for s in samples:
        try:
            xs.append(reader.preprocess(s.path))
        except ImageError:
            continue  # as training does: an unreadable image is skipped
        labels.append(s.label)
    if not xs:
        return np.zeros((0,), np.float32), []
    return np.stack(xs).astype(np.float32), labels


MIN_IMAGES = 20  # half to calibrate, half to check
FINE_CHECK = 200  # checked images under which export says how coarse its check is


def check_labels_fit(model_dir: str | Path, data_dir: str | Path, labels: list[str],
                     info: ModelInfo) -> None:
    """Refuse images of another site: most ``labels`` hold characters the model cannot
    read (as it reads them: lower case where it was trained with ``--ignore-case``).
    Export calls it before it writes anything."""
    if info.training.get("ignore_case"):
        labels = [y.lower() for y in labels]
    alphabet = info.alphabet
    unknown = sorted({c for label in labels for c in label} - set(alphabet))
    foreign = sum(any(c not in alphabet for c in label) for label in labels)
    if foreign * 2 >= len(labels):
        raise ModelError(f"{data_dir}: {foreign} of {len(labels)} labels hold characters "
                         f"{model_dir} cannot read ({''.join(unknown)[:20]}): give --data labeled "
                         "images of the site this model reads")


def _check_site(model_dir: Path, data_dir: str | Path, labels: list[str], fp32: list[str],
                info: ModelInfo) -> None:
    """Refuse a check that cannot tell int8 from float32: images of another site
    (``check_labels_fit``) or ones float32 reads none of."""
    check_labels_fit(model_dir, data_dir, labels, info)
    if not any(a == b for a, b in zip(labels, fp32)):
        raise ModelError(f"{data_dir}: float32 reads none of {len(labels)} images right, so "
                         "the check cannot tell whether int8 reads as well: give --data labeled "
                         "images of the site this model reads (if they are, the model reads "
                         "nothing yet: train it on more labels first)")


def check_enough(samples: list[Sample], data_dir: str | Path) -> None:
    """Raises ``ModelError`` where ``samples`` are too few to calibrate and check int8."""
    if len(samples) < MIN_IMAGES:
        raise ModelError(f"{data_dir}: {len(samples)} labeled images; int8 needs at least "
                         f"{MIN_IMAGES} (half to calibrate, half to check it reads as well)")


def quantize_model(model_dir: str | Path, data_dir: str | Path, *, seed: int = 0,
                   stem_labels: bool = False, names: str = "auto",
                   samples: list[Sample] | None = None,
                   on_log: Callable[[str], None] = lambda line: None) -> dict:
    """Write ``model_dir/model.int8.onnx`` where it reads ``data_dir`` as well as float32.

    ``data_dir``'s labeled images as ``data.survey`` finds them (``stem_labels``: file
    names label what ``labels.csv`` does not name; ``names``: how, ``data.name_labels``),
    or ``samples`` where the caller has already listed them.

    Returns:
        What was measured: images used, both accuracies, how often the readings agree.

    Raises:
        ModelError: too few readable labeled images, or int8 reads fewer of them right
            (nothing is written then).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .runtime import Reader

    model_dir = Path(model_dir)
    reader = Reader.load(model_dir, precision="fp32", threads=1)
    if samples is None:
        samples = discover(data_dir, stem_labels=stem_labels, names=names)
    check_enough(samples, data_dir)
    order = np.random.default_rng(seed).permutation(len(samples))
    n_cal = min(CALIBRATION_IMAGES, len(samples) // 2)
    calib, _ = _arrays(reader, [samples[i] for i in order[:n_cal]])
    check, labels = _arrays(reader, [samples[i] for i in order[n_cal:n_cal + CHECK_IMAGES]])
    if len(calib) == 0 or len(check) == 0:
        raise ModelError(f"{data_dir}: no readable images to calibrate or check int8 with")
    # A model trained with --ignore-case reads one case: compare that way, as eval does.
    norm = str.lower if reader.info.training.get("ignore_case") else str
    labels = [norm(y) for y in labels]
    fp32 = [norm(r.text) for r in reader.readings(reader.run(check))]
    _check_site(model_dir, data_dir, labels, fp32, reader.info)

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"image": calib[i:i + 32]} for i in range(0, len(calib), 32)])

        def get_next(self) -> dict | None:
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(model_dir / FILES.onnx), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Batches(), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8)
        data = out.read_bytes()
        import onnxruntime as ort

        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        int8 = [norm(r.text) for r in reader.readings(sess.run(None, {"image": check})[0])]
    result = dict(calibration_images=len(calib), checked_images=len(check),
                  fp32_accuracy=round(sequence_accuracy(labels, fp32), 4),
                  int8_accuracy=round(sequence_accuracy(labels, int8), 4),
                  agreement=round(float(np.mean([a == b for a, b in zip(fp32, int8)])), 4))
    coarse = (f" (a check on {len(check)} images sees a difference of one image in "
              f"{len(check)} at best: more labeled images in --data check finer)"
              if len(check) < FINE_CHECK else "")
    on_log(f"{len(calib)} images calibrated the int8 ranges; {len(check)} others: float32 reads "
           f"{result['fp32_accuracy']:.4f}, int8 {result['int8_accuracy']:.4f}; the same reading "
           f"for {result['agreement']:.4f}{coarse}")
    if result["int8_accuracy"] < result["fp32_accuracy"]:
        raise ModelError(f"{model_dir}: int8 reads {result['int8_accuracy']:.4f} of {len(check)} "
                         f"images of {data_dir} (not used to calibrate) against "
                         f"{result['fp32_accuracy']:.4f} at float32; not kept (the model reads at float32)")
    info = ModelInfo.load(model_dir)
    atomic_write(model_dir / FILES.int8, data)
    info.files[FILES.int8] = sha256_file(model_dir / FILES.int8)
    info.int8 = dict(result, data=str(Path(data_dir).resolve()),
                     onnx=info.files[FILES.onnx])  # the float network it came from
    info.save(model_dir)
    return result
