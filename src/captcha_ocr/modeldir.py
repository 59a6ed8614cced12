"""The model directory: file names, ``model.json`` metadata, and atomic writes.

A model directory holds ``model.safetensors`` (weights), ``model.onnx`` (the exported
network), ``model.json`` (everything needed to rebuild and run it: alphabet, input
size, architecture, blank index, file checksums, how it was trained and its metrics),
``history.csv``, ``curves.png`` and ``predictions.png``. No pickle anywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .charset import BLANK, Charset
from .config import ImageConfig, ModelConfig, from_dict

__all__ = ["FILES", "ModelError", "ModelInfo", "atomic_write", "sha256_file"]

FORMAT = 1


class FILES:
    """Names inside a model directory."""

    weights = "model.safetensors"
    info = "model.json"
    onnx = "model.onnx"
    int8 = "model.int8.onnx"  # optional: ``captcha-ocr export --int8``
    history = "history.csv"
    curves = "curves.png"
    grid = "predictions.png"
    calibration = "calibration.png"


class ModelError(ValueError):
    """A model directory is missing, incomplete or inconsistent (one-line message)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _inside(model_dir: str | Path, name: str) -> Path:
    """``model_dir/name``, refused when it is a link that leads out of the directory."""
    path = Path(model_dir) / name
    if path.is_symlink() and Path(model_dir).resolve() not in path.resolve().parents:
        raise ModelError(f"{path}: a link to {path.resolve()}, outside the model directory; "
                         "refusing to follow it (copy the file into the directory instead)")
    return path


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _damaged(path: Path, what: str) -> ModelError:
    return ModelError(f"{path}: damaged model metadata ({what}); restore {FILES.info} from a "
                      "copy of the model directory, or train the model again")


@dataclass
class ModelInfo:
    """Contents of ``model.json``."""

    alphabet: str
    image: ImageConfig
    model: ModelConfig
    blank: int = BLANK
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT
    # The temperature that calibrates confidences (``calibration``); {} before it existed.
    calibration: dict[str, Any] = field(default_factory=dict)
    # The int8 network's check (``quantize``): images, accuracies, the float ONNX's digest.
    int8: dict[str, Any] = field(default_factory=dict)

    @property
    def charset(self) -> Charset:
        return Charset(self.alphabet)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False) + "\n"

    def save(self, model_dir: str | Path) -> None:
        atomic_write(Path(model_dir) / FILES.info, self.to_json())

    @classmethod
    def load(cls, model_dir: str | Path) -> ModelInfo:
        """Read ``model_dir/model.json``.

        Raises:
            ModelError: missing, not JSON, or a format this version cannot read.
        """
        path = _inside(model_dir, FILES.info)
        if not path.is_file():
            raise ModelError(f"{model_dir}: not a model directory (no {FILES.info}); name one "
                             "written by 'captcha-ocr train', or a model shipped with captcha-ocr "
                             "by its name")
        try:
            d = json.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise _damaged(path, "not UTF-8 text") from None
        except RecursionError:
            raise _damaged(path, "not valid JSON: nested too deeply") from None
        except json.JSONDecodeError as e:
            raise _damaged(path, f"not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise _damaged(path, "not a JSON object")
        if d.get("format") != FORMAT:
            raise ModelError(f"{path}: model format {d.get('format')!r} is not supported "
                             f"(this version reads format {FORMAT})")
        if d.get("blank", BLANK) != BLANK:
            raise ModelError(f"{path}: blank index {d['blank']} is not supported (expected {BLANK})")
        for key in ("image", "model", "files", "training", "metrics", "calibration", "int8"):
            if key in d and not isinstance(d[key], dict):
                raise _damaged(path, f"field '{key}' is not an object")
        try:
            info = cls(
                alphabet=d["alphabet"], image=from_dict(ImageConfig, d["image"]),
                model=from_dict(ModelConfig, d["model"]), blank=d.get("blank", BLANK),
                files=d.get("files", {}), training=d.get("training", {}),
                metrics=d.get("metrics", {}), calibration=d.get("calibration", {}),
                int8=d.get("int8", {}),
            )
            info._check(path)
            return info
        except KeyError as e:
            raise _damaged(path, f"no {e} field") from None
        except (TypeError, ValueError, AttributeError) as e:
            if isinstance(e, ModelError):
                raise
            raise _damaged(path, f"a field of the wrong type or value: {e}") from None

    @property
    def temperature(self) -> float:
        """The calibrating temperature (1.0 when the model has none)."""
        return float(self.calibration.get("temperature", 1.0))

    def _check(self, path: Path) -> None:
        """The fields agree with each other (a hand edit can break that)."""
        t = self.calibration.get("temperature", 1.0)
        if not isinstance(t, (int, float)) or not 0 < t < 1000:
            raise ModelError(f"{path}: calibration temperature {t!r} is not a positive number")
        n = self.charset.n_classes  # ImageConfig checks its own fields
        if self.model.n_classes != n:
            raise ModelError(f"{path}: an alphabet of {len(self.alphabet)} characters needs "
                             f"{n} output classes, the model has {self.model.n_classes}; "
                             "re-train or restore model.json")

    def verify(self, model_dir: str | Path, name: str) -> Path:
        """The path of file ``name`` in ``model_dir`` after checking its recorded SHA-256.

        Raises:
            ModelError: the file is missing, unrecorded, or does not match its checksum.
        """
        path = _inside(model_dir, name)
        remedy = (f"re-create it with 'captcha-ocr export {model_dir}' (export needs the train extra, "
                  "torch; a model shipped in the package: reinstall captcha-ocr)")
        if name == FILES.int8:
            remedy = (f"re-create it with 'captcha-ocr export {model_dir} --int8 --data DIR' (labeled "
                      "images of the site), or read with --precision fp32")
        if not path.is_file():
            raise ModelError(f"{path}: missing; {remedy}")
        expected = self.files.get(name)
        if expected is None:
            raise ModelError(f"{model_dir}/{FILES.info} records no checksum for {name}; {remedy}")
        if sha256_file(path) != expected:
            raise ModelError(f"{path}: SHA-256 does not match {FILES.info}; the file was changed "
                             f"or damaged: {remedy}")
        return path
