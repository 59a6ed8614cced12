"""Start training from an existing model (``captcha-ocr train --init``).

The feature and sequence layers are kept as they are; the output layer is rebuilt for
the new dataset's alphabet: the rows of characters the old model knows (and the blank)
are copied, new characters get freshly initialised rows. The model's architecture,
input height and channels are the old model's (its layers are sized for them); width
and crop may follow the new images (every layer slides along the width).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .charset import BLANK, Charset
from .config import DEFAULT_ARCH, ImageConfig, ModelConfig
from .model import CRNN, build_model
from .modeldir import FILES, ModelError, ModelInfo
from .runtime import BASE_MODELS, resolve_model, shipped_models

__all__ = ["BASES", "InitModel", "input_overrides", "load_init", "load_inits", "transfer"]

# The base models shipped with the package, the default first: "base" was pretrained on
# the twelve styles of zoo version 1, "base2" on zoo version 2 (those and packed_colour:
# glyphs packed tight, each in its own colour, often in the left part of a wide strip).
# ``--init auto`` (the default) starts from the one that fits the labels (``train.pick_init``);
# they share one architecture and input, which that choice relies on.
BASES = BASE_MODELS

BLANK_KEY = object()  # the blank's key beside the characters


class InitModel:
    """A model to start from: its metadata, weights and where it came from."""

    def __init__(self, source: str, model_dir: Path, info: ModelInfo, state: dict) -> None:
        self.source, self.model_dir, self.info, self.state = source, model_dir, info, state

    def record(self) -> dict:
        """What ``model.json`` keeps of it (``training.init``)."""
        return dict(model=self.source, alphabet=self.info.alphabet,
                    weights_sha256=self.info.files.get(FILES.weights, ""),
                    trained_by=self.info.training.get("command", ""))


def load_init(name: str | Path) -> InitModel:
    """A model directory, or the name of a model shipped in the package ("base",
    "base2", "captcha_images_v2").

    Raises:
        ModelError: no such directory or bundled model, or its files are damaged.
    """
    from safetensors.torch import load as st_load

    choices = (f"try 'auto', {', '.join(repr(m) for m in shipped_models())}, 'none', or a folder "
               "written by 'captcha-ocr train'")
    if not str(name).strip():
        raise ModelError(f"--init is empty: {choices}")
    try:
        path = resolve_model(name)  # as the Reader finds it: a folder, else a shipped name
    except ModelError as e:
        raise ModelError(f"--init {e}") from None
    if not (path / FILES.info).is_file():
        raise ModelError(f"--init {name}: not a model directory (no {FILES.info}); {choices}")
    info = ModelInfo.load(path)
    weights = info.verify(path, FILES.weights)
    return InitModel(str(name), path, info, st_load(weights.read_bytes()))


def load_inits(name: str | Path) -> InitModel | list[InitModel]:
    """``load_init``, or for "auto" the shipped bases (``BASES``) to choose among.

    Raises:
        ModelError: as ``load_init``.
    """
    if str(name) == "auto" and not Path(name).is_dir():
        return [load_init(b) for b in BASES]
    return load_init(name)


def default_start(name: str | Path | None) -> tuple[str, InitModel | list[InitModel] | None]:
    """The architecture and starting model(s) of a run started from ``--init name``
    ("auto": the shipped bases to choose among; None: random weights, the default
    architecture), as ``captcha-ocr train`` runs it.

    Raises:
        ModelError: as ``load_init``.
    """
    if name is None:
        return DEFAULT_ARCH, None
    init = load_inits(name)
    return (init[0] if isinstance(init, list) else init).info.model.arch, init


def input_overrides(init: InitModel) -> dict:
    """The input settings a fine-tuned model must share with the one it starts from."""
    return dict(height=init.info.image.height, channels=init.info.image.channels)


def transfer(init: InitModel, image: ImageConfig, charset: Charset) -> CRNN:
    """A model for ``image`` and ``charset`` holding ``init``'s weights (see module doc).

    Raises:
        ModelError: ``image`` differs from the old model's in height or channels.
    """
    old = init.info
    for key in ("height", "channels"):
        if getattr(image, key) != getattr(old.image, key):
            raise ModelError(f"--init {init.source}: it reads images of {key} "
                             f"{getattr(old.image, key)}, not {getattr(image, key)}; drop "
                             f"the --{key} option to fine-tune it")
    cfg = ModelConfig(old.model.arch, charset.n_classes, dict(old.model.params))
    model = build_model(image, cfg)  # fresh output rows for new characters
    state = dict(init.state)
    head_w, head_b = state.pop("head.weight"), state.pop("head.bias")
    try:
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys != ["head.weight", "head.bias"] or result.unexpected_keys:
            raise RuntimeError(f"missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    except RuntimeError as e:
        raise ModelError(f"--init {init.source}: its weights do not fit its architecture "
                         f"({str(e).splitlines()[0]})") from None
    old_ids = {ch: i for i, ch in enumerate(old.alphabet, start=1)}
    old_ids[BLANK_KEY] = old.blank
    head: nn.Linear = model.head
    with torch.no_grad():
        for new_id, ch in [(BLANK, BLANK_KEY), *enumerate(charset.alphabet, start=1)]:
            if ch in old_ids:
                head.weight[new_id] = head_w[old_ids[ch]]
                head.bias[new_id] = head_b[old_ids[ch]]
    return model

