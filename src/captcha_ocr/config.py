"""Settings as plain dataclasses, saved to and rebuilt from JSON.

The CLI builds these; the library never parses arguments. A model directory's
``model.json`` holds an ``ImageConfig`` and a ``ModelConfig`` so that a model
rebuilds itself and the runtime never guesses its input size or alphabet.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ARCHS", "DEFAULT_ARCH", "RECIPES", "ImageConfig", "ModelConfig", "TrainConfig", "from_dict",
           "steps_budget"]


@dataclass(frozen=True)
class ImageConfig:
    """How an image becomes a model input.

    Attributes:
        height: input height in pixels (the tutorial: 50).
        width: input width in pixels (the tutorial: 200); width becomes time.
        channels: 1 for grey (the tutorial), 3 for RGB.
        crop: (left, top, right, bottom) as fractions of the source image: the part that
            is resized to the input (the whole image by default). Training finds it from
            the data when a site draws its text in a fixed part of the image.
    """

    height: int = 50
    width: int = 200
    channels: int = 1
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop", tuple(float(v) for v in self.crop))  # JSON gives a list
        left, top, right, bottom = self.crop
        if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
            raise ValueError(f"crop {self.crop} is not a box inside the image (fractions 0-1)")
        if self.height < 8 or self.width < 8:
            raise ValueError(f"image size {self.width}x{self.height} is too small (min 8x8)")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), not {self.channels}")


@dataclass(frozen=True)
class ModelConfig:
    """Network architecture: its name and the sizes that rebuild it.

    Attributes:
        arch: architecture name (see ``captcha_ocr.model.ARCHS``).
        n_classes: alphabet size + 1 (the CTC blank, index 0).
        params: architecture hyper-parameters (widths, dropout, ...).
    """

    arch: str = "fast"
    n_classes: int = 20
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """One training run. Defaults are the tutorial's; recipes override them.

    Attributes:
        epochs: maximum number of epochs.
        patience: epochs without val-loss improvement before stopping (0: never stop early).
        batch_size: images per optimisation step.
        lr: peak learning rate (Adam).
        schedule: "constant" (the tutorial), "onecycle", or "flatcos" (constant, then a
            cosine decay to zero over the second half).
        weight_decay: AdamW weight decay (0: plain Adam).
        augment: random affine jitter / noise / line occlusion on training images.
        val_fraction: share of the labeled images held out for early stopping and metrics.
        seed: fixes the split, the initialisation, the batch order and the augmentation.
        threads: torch intra-op threads (0: all cores).
        steps: the budget in optimizer steps (0: ``epochs`` passes over the data). An
            "epoch" is then a round of at least ``min_round`` steps between evaluations.
        min_round: the fewest optimizer steps between two evaluations.
        keep_best: end with the weights of the round with the lowest validation loss.
        ace: weight of the alignment-free character-count loss added to CTC (0: none).
        aug_ramp: share of the rounds over which augmentation rises from none to full.
        extend: with the "flatcos" schedule, keep the full rate for a quarter of the budget
            after the validation CER first falls below 0.5 (the plateau left), adding at
            most this share of the budget when that happens late (0: a fixed budget).
        finetune: the run starts from a trained model (``--init``): the fine-tuning step
            budget (``steps_budget``) and ``FINETUNE``'s settings.
        shuffle: a fresh batch order every round; False: one seeded order, kept for every
            round (the tutorial's tf.data pipeline, which shuffles only at the split).
        lr_few: the peak rate instead of ``lr`` when there are fewer than ``FT_FEW``
            training images (None: ``lr`` always; an explicit ``--lr`` clears it).
        ctc_sum: minimise the CTC loss summed over a batch's images (the Keras tutorial's
            ``ctc_batch_cost`` through ``add_loss``) instead of its mean per character
            (PyTorch's default); the train loss in history.csv is then per image.
        adam_eps: Adam's epsilon (PyTorch's 1e-8; Keras's is 1e-7).
        patience_after_plateau: early stopping waits until the network has left the CTC
            plateau (validation CER under 0.5 once), as the Keras tutorial's does in effect
            (its validation loss creeps down on the plateau, so patience never runs out).
        aug_noise: sd of the augmentation's pixel noise at full strength (0-1 scale);
            ``train`` sets it from the training images' own noise (``augment.aug_noise``).
        features_lr: the conv stack's learning rate as a multiple of ``lr`` (1: one rate).
            Fine-tuning, 6 styles, seed 1 (`bench/styles_bench.py --extra-args
            "--features-lr X"`): 0.3 lost on 8 of 12 cells at N=50 and 200; 2 gained at
            N=200 (rsce_gradient5 0.890 -> 0.928, seed 3 0.936 -> 0.956) but was mixed at
            N=500 (-0.016 to +0.016) and lost at N=50. At N=200 over 13 more cells (seed 2
            of the six, seeds 1-2 of imagecaptcha, gradient_colour, packed_colour and one of
            rotated_tiles) it lost 0.004 on average (better on 5, worse on 7: dots_noise
            0.800 -> 0.772, wavy 0.954 -> 0.942): not the default at any size.
        ema: decay per step of an exponential moving average of the weights (0: none).
            Where set, validation, the best round and the result use the averaged weights.
        bf16: train the conv layers in bfloat16 (autocast; the rest, validation and the
            exported model stay float32). None: where the CPU computes bfloat16 natively
            (``train`` records what it decided). Fine-tuning with the moving average, seed
            1, N=200 / 500, 500 test images, float32 -> bfloat16 (`bench/styles_bench.py
            --extra-args "--ema 0.998 --bf16"`): line_mesh 0.966 -> 0.960 / 0.978 -> 0.982,
            wavy 0.926 both / 0.944 -> 0.940, rsce_gradient5 0.908 -> 0.902 / 0.968 ->
            0.974, captcha_images_v2 0.983 -> 0.987 / 0.993 both, dots_noise 0.754 -> 0.762
            / 0.794 -> 0.814; a run 94-99 s -> 63-68 s.
    """

    epochs: int = 100
    patience: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    schedule: str = "constant"
    weight_decay: float = 0.0
    augment: bool = False
    val_fraction: float = 0.1
    seed: int = 2021
    threads: int = 0
    steps: int = 0
    min_round: int = 1
    keep_best: bool = False
    ace: float = 0.0
    aug_ramp: float = 0.0
    shuffle: bool = True
    extend: float = 0.0
    finetune: bool = False
    lr_few: float | None = None
    ctc_sum: bool = False
    adam_eps: float = 1e-8
    aug_noise: float = 0.03
    patience_after_plateau: bool = False
    ema: float = 0.0
    bf16: bool | None = None
    features_lr: float = 1.0


def from_dict(cls: type, data: dict[str, Any]):
    """Build dataclass ``cls`` from ``data``, ignoring unknown keys (forward compatible)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


# ---------------------------------------------------------------- named architectures
# Each stage of ``convs`` is [out_channels, conv_stride, pool_h, pool_w]; the strides
# and pools multiply to 4 along the width (the tutorial's downsampling factor).
ARCHS: dict[str, dict[str, Any]] = {
    # The Keras tutorial's network, layer for layer (LSTM "dropout" = dropout on its inputs).
    "seed": dict(convs=[[32, 1, 2, 2], [64, 1, 2, 2]], batch_norm=False, proj=64,
                 proj_dropout=0.2, seq="lstm", hidden=[128, 64], seq_dropout=0.25,
                 dropout_per_sequence=True),
    # Compact default: a narrow CNN with strided convs, height pooled away, and a residual
    # 1-D conv sequence head instead of LSTMs (ONNX Runtime runs it in parallel). No batch
    # norm in the conv stages: in exploratory runs of a narrower variant (seeds 1-4) it
    # made the CTC plateau last from 3 to over 40 epochs; without it, 3 to 5. Check with
    # `captcha-ocr train DIR --out M` and M/history.csv (`batch_norm` is a parameter here).
    "fast": dict(convs=[[12, 2, 1, 1], [24, 2, 1, 1], [48, 1, 2, 1]], batch_norm=False,
                 proj=64, proj_dropout=0.1, seq="conv", hidden=[64, 64], kernel=5,
                 seq_dropout=0.1),
    # The default for any style: "fast" twice as wide, with batch norm, and each image
    # normalised per column (its mean over the rows subtracted: a gradient background
    # is gone, text is what is left). Scripted runs, seed 1, 500 labels, 500 held out:
    # on rsce_gradient5 (cropped) "fast" read 0.70, twice as wide 0.81, with batch norm
    # 0.83, and without input normalisation it never left the CTC plateau; on the zoo's
    # gradient_colour, normalising the whole image read 0.11, per column 0.54, a local
    # (box) mean 0.00. bench/styles_bench.py measures the recipe across styles.
    "crnn": dict(convs=[[24, 2, 1, 1], [48, 2, 1, 1], [96, 1, 2, 1]], batch_norm=True,
                 input_norm="column", proj=96, proj_dropout=0.1, seq="conv", hidden=[96, 96],
                 kernel=5, seq_dropout=0.1),
    # The default since stop 4: "crnn" with two more conv layers (a second at each of the
    # two coarse resolutions: receptive field 15 -> 31 pixels), about twice the FLOPs.
    # From scratch, seed 1, 500 labels, 500 held out (`python bench/styles_bench.py
    # --styles S --ns 500 --extra-args "--arch A"`), crnn -> deep: rsce_gradient5 0.774 ->
    # 0.894, gradient_colour 0.588 -> 0.714, dots_noise 0.564 -> 0.670, line_mesh 0.664 ->
    # 0.792, imagecaptcha 0.192 -> 0.166 (neither left the plateau), henan_digits4 0.972 ->
    # 0.966. A per-column local contrast scaling of the input (for dark grey text on a dark
    # gradient) read rsce_gradient5 0.814 on crnn but 0.842 on this network: not kept.
    "deep": dict(convs=[[24, 2, 1, 1], [48, 1, 1, 1], [48, 2, 1, 1], [96, 1, 2, 1], [96, 1, 2, 1]],
                 batch_norm=True, input_norm="column", proj=96, proj_dropout=0.1, seq="conv",
                 hidden=[96, 96], kernel=5, seq_dropout=0.1),
}

# Per-architecture training recipes: what ``captcha-ocr train --arch A`` uses unless told.
RECIPES: dict[str, dict] = {
    # One batch order for every epoch, as the tutorial (tf.data, no reshuffle). Reshuffled,
    # the port's validation loss on the CTC plateau jumped from epoch to epoch 7-10x more
    # than the Keras tutorial's (sd of the change, epochs 2-12, per image: 0.048-0.065
    # against 0.007; fold 0 of bench/train_bench.py, 673/75 split, seeds 1-2), so patience
    # 10 could end a run on the plateau. With a fixed order: 0.016-0.035 (0.006-0.010 with
    # every other Keras detail matched too). It does not prevent every stop on the plateau:
    # seed 1 of that split still stopped at epoch 11, its val loss drifting up from epoch 1.
    # So the optimisation is the tutorial's (CTC summed over the batch, Adam eps 1e-7, one
    # LSTM dropout mask per sequence) and patience starts once the network reads (the
    # Keras run's val loss creeps down on the plateau, so its patience never runs out
    # there): `python bench/train_bench.py --archs seed --seeds 1` converged on 3 folds of
    # 5 (0.995, 0.995, 0.989; fold 0 left the plateau late and read 0.867 at epoch 100,
    # fold 3 only at the end), against 2 before; 216 wrong of 936 against 557. With the
    # LSTMs initialised as Keras's (model.py): 5 of 5 (1.000, 0.995, 0.995, 0.989, 0.984).
    "seed": dict(epochs=100, patience=10, batch_size=16, lr=1e-3, schedule="constant",
                 augment=False, shuffle=False, ctc_sum=True, adam_eps=1e-7,
                 patience_after_plateau=True, bf16=False),
    # A fixed 50-epoch budget (no early stopping: the last weights are kept), full rate
    # from the first step (a warm-up lengthens the CTC plateau), cosine decay over the
    # second half, with augmentation (it cut held-out errors on a fold from 4 to 1).
    "fast": dict(epochs=50, patience=0, batch_size=16, lr=3e-3, schedule="flatcos",
                 augment=True),
    # The budget is in optimizer steps, not epochs: 200 images get as many updates as
    # 2,000 (see ``steps_budget``); the round with the lowest validation loss is kept.
    # The character-count loss (ace) and augmentation that starts at zero get the network
    # off the CTC plateau sooner: on gradient_colour, 0.11 -> 0.54 -> 0.64 read (above).
    "crnn": dict(epochs=0, patience=0, batch_size=16, lr=3e-3, schedule="flatcos",
                 augment=True, min_round=25, keep_best=True, ace=1.0, aug_ramp=0.4, extend=0.5),
}
RECIPES["deep"] = RECIPES["crnn"]

DEFAULT_ARCH = "deep"

# Architectures whose input is fixed rather than decided from the images (explicit
# options still override): the tutorial resizes every image to 200x50 grey, uncropped.
FIXED_INPUT: dict[str, dict] = {
    "seed": dict(height=50, width=200, channels=1, crop=(0.0, 0.0, 1.0, 1.0)),
}

# Step budget of step-based recipes: about 50 passes over the training images, at
# least MIN_STEPS (small datasets need many passes to leave the CTC plateau and settle)
# and at most MAX_STEPS (large ones learn what they can within the time a user waits).
# With 500 labels, 4,000 steps against 2,000 lifted the median style from 0.888 to
# 0.950 (mean 0.767 -> 0.811) and took 61-103 s (bench/styles_bench.py --ns 500, both budgets).
MIN_STEPS, MAX_STEPS, BUDGET_EPOCHS = 4000, 6000, 50
# Fine-tuning a trained model (``--init``) starts past the plateau: fewer steps and
# augmentation from the start. From FT_FEW training images on, the scratch rate and
# FT_STEPS; below, a lower rate and FT_STEPS_FEW (more would undo what the base knows).
# Measured from the base model, seed 1, 300 test images (bench/styles_bench.py
# --styles rsce_gradient5 henan_digits4 captcha_images_v2 --ns 50 200 --test 300
# --extra-args "--init base --lr R --steps S"): at N=200, rate 1e-3 / 3e-3 and 1,500
# or 2,500 steps read rsce_gradient5 0.450 / 0.573 (1,500) and 0.447 / 0.647 (2,500),
# captcha_images_v2 0.970 / 0.980 and 0.980 / 0.977, henan_digits4 0.963 in all four;
# at N=50, 3e-3 read rsce 0.273 against 0.323 and captcha_images_v2 0.853 against
# 0.903 (henan 0.963 both).
FT_FEW = 100
FT_STEPS_FEW, FT_STEPS = 1500, 2500
# The fine-tuned model is a moving average of the weights (decay 0.998 a step: about the
# last 500 steps). Seed 1, 500 test images (captcha_images_v2 300), without -> with, at
# N=200 / N=500 (`python bench/styles_bench.py --styles S --ns 200 500 --extra-args "--ema
# 0.998"` against stop 6's table): line_mesh 0.924 -> 0.966 / 0.954 -> 0.978, wavy 0.852
# -> 0.926 / 0.932 -> 0.944, rsce_gradient5 0.882 -> 0.908 / 0.932 -> 0.968,
# captcha_images_v2 0.977 -> 0.983 / 0.977 -> 0.993, dots_noise 0.706 -> 0.754 / 0.796 ->
# 0.794, henan_digits4 0.974 / 0.972 both, gradient_colour 0.958 -> 0.968 / 0.958 -> 0.972,
# imagecaptcha 0.410 -> 0.462 / 0.430 -> 0.484, pastel_digits 0.982 -> 0.996 / 0.992 -> 0.994.
FINETUNE: dict = dict(lr=3e-3, lr_few=1e-3, aug_ramp=0.0, extend=0.0, ema=0.998)


def steps_budget(n_train: int, batch_size: int, finetune: bool = False) -> int:
    """Optimizer steps for ``n_train`` training images in a step-based recipe."""
    if finetune:
        return FT_STEPS_FEW if n_train < FT_FEW else FT_STEPS
    per_epoch = -(-n_train // batch_size)
    return min(MAX_STEPS, max(MIN_STEPS, BUDGET_EPOCHS * per_epoch))
