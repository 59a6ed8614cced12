"""Resumable training state on disk, without pickle: tensors in safetensors, the rest in JSON.

A state is a nested structure of dicts, lists, numbers, strings and tensors (a model's
``state_dict()``, an optimizer's, a scheduler's, RNG states, a history). ``save`` walks
it, stores every tensor under a generated key in ``state.safetensors`` and leaves a
``{"$tensor": key}`` marker in ``state.json``; ``load`` puts them back. Both files are
written atomically, JSON last, and carry the same random save id: a crash between the
two writes leaves files of two saves, which ``load`` refuses rather than mix.

Used by ``train`` (every round, for ``--resume``) and ``pretrain`` (every few minutes).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .modeldir import ModelError, atomic_write

__all__ = ["STATE_JSON", "STATE_TENSORS", "exists", "load", "peek", "save"]

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
SAVE_ID = "save_id"  # a tensor of the save's random id (its JSON has the same)


def _flatten(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().clone().contiguous()  # safetensors refuses shared storage
        return {"$tensor": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _flatten(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        # JSON keys are strings: keep other keys (an optimizer's parameter ids) as pairs
        return {"$pairs": [[k, _flatten(v, f"{key}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {key} in a checkpoint")


def _restore(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"$tensor"}:
            return tensors[obj["$tensor"]]
        if set(obj) == {"$pairs"}:
            return {k: _restore(v, tensors) for k, v in obj["$pairs"]}
        return {k: _restore(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v, tensors) for v in obj]
    return obj


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to the folder ``path`` (created): tensors first, then the JSON."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    meta = {"state": _flatten(state, "s", tensors), "save_id": uuid.uuid4().hex}
    tensors[SAVE_ID] = torch.frombuffer(bytearray(bytes.fromhex(meta["save_id"])), dtype=torch.uint8)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / STATE_TENSORS, st_save(tensors))
    atomic_write(path / STATE_JSON, json.dumps(meta, indent=1) + "\n")


def exists(path: str | Path) -> bool:
    """Whether ``path`` holds a complete state (its JSON is written last)."""
    return (Path(path) / STATE_JSON).is_file()


def peek(path: str | Path) -> dict[str, Any] | None:
    """The JSON part of the state in ``path`` (tensors left as ``{"$tensor": key}``
    markers), without reading the tensors; None where there is no state or it is damaged."""
    try:
        return json.loads((Path(path) / STATE_JSON).read_text(encoding="utf-8"))["state"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load(path: str | Path) -> dict[str, Any]:
    """Read a state written by ``save``.

    Raises:
        ModelError: missing or damaged files (one line, naming the folder).
    """
    path = Path(path)
    try:
        meta = json.loads((path / STATE_JSON).read_text(encoding="utf-8"))
        tensors = st_load((path / STATE_TENSORS).read_bytes())
        if bytes(tensors.pop(SAVE_ID).tolist()).hex() != meta["save_id"]:
            raise ValueError("its two files come from different saves (a save was cut short)")
        return _restore(meta["state"], tensors)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type too
        raise ModelError(f"{path}: the saved training state cannot be read ({e}); "
                         "delete the folder to start again") from None
