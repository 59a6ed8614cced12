"""The CRNN: convolutional features -> sequence model -> per-step class logits.

One network class built from named stages (features, sequence, head), sized by a
``ModelConfig``; ``ARCHS`` holds the named architectures. ``forward`` returns
log-probabilities ``(B, T, n_classes)``, T = width / 4; loss and decoding live
elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ARCHS, ImageConfig, ModelConfig

__all__ = ["ARCHS", "CRNN", "arch_params", "build_model", "count_flops", "count_params",
           "feature_size"]


def arch_params(arch: str, params: dict | None = None) -> dict:
    """The named architecture's hyper-parameters with ``params`` over them.

    Raises:
        ValueError: an unknown architecture.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    return {**ARCHS[arch], **(params or {})}


def feature_size(image: ImageConfig, convs: list) -> tuple[int, int]:
    """Height and width of the conv stages' output for ``image``: the width is the
    number of time steps."""
    h, w = image.height, image.width
    for _, stride, ph, pw in convs:
        h, w = (h + stride - 1) // stride // ph, (w + stride - 1) // stride // pw
    return h, w


def _conv_stage(c_in: int, c_out: int, stride: int, pool: tuple[int, int], bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    if pool != (1, 1):
        layers.append(nn.MaxPool2d(pool))
    return nn.Sequential(*layers)


class BiLSTMStack(nn.Module):
    """Stacked bidirectional LSTMs with input dropout: (B, T, D) -> (B, T, 2 * hidden[-1]).

    ``per_sequence``: drop the same input features at every time step of a sequence, as
    Keras's ``LSTM(dropout=...)`` does (the tutorial's layers), instead of a fresh mask per
    step and feature (``nn.Dropout``): far less noise in each update.
    """

    def __init__(self, d_in: int, hidden: list[int], dropout: float, per_sequence: bool = False) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.p, self.per_sequence = dropout, per_sequence
        dims = [d_in] + [2 * h for h in hidden[:-1]]
        self.lstms = nn.ModuleList(
            nn.LSTM(d, h, batch_first=True, bidirectional=True) for d, h in zip(dims, hidden)
        )
        self.d_out = 2 * hidden[-1]

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.per_sequence and self.training and self.p):
            return self.drop(x)
        keep = torch.rand(x.shape[0], 1, x.shape[2], device=x.device) >= self.p  # (B, 1, D)
        return x * keep / (1 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lstm in self.lstms:
            x, _ = lstm(self._dropout(x))
        return x


class ConvSequence(nn.Module):
    """1-D convolutions over time with residual connections: (B, T, D) -> (B, T, hidden[-1])."""

    def __init__(self, d_in: int, hidden: list[int], kernel: int, dropout: float) -> None:
        super().__init__()
        dims = [d_in] + hidden
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(a, b, kernel, padding=kernel // 2, bias=False),
                          nn.BatchNorm1d(b), nn.ReLU(inplace=True), nn.Dropout(dropout))
            for a, b in zip(dims, dims[1:])
        )
        self.d_out = hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, T, D) -> (B, D, T)
        for block in self.blocks:
            y = block(x)
            x = x + y if y.shape == x.shape else y
        return x.transpose(1, 2)  # (B, D, T) -> (B, T, D)


class CRNN(nn.Module):
    """Image ``(B, C, H, W)`` in [0, 1] -> log-probabilities ``(B, T, n_classes)``.

    T is the width over the architecture's width downsampling factor (4 for the seed).

    Args:
        image: input size and channels.
        cfg: architecture name, number of classes (blank at 0) and hyper-parameters.
    """

    def __init__(self, image: ImageConfig, cfg: ModelConfig) -> None:
        super().__init__()
        p = arch_params(cfg.arch, cfg.params)
        stages, c = [], image.channels
        for c_out, stride, ph, pw in p["convs"]:
            stages.append(_conv_stage(c, c_out, stride, (ph, pw), p["batch_norm"]))
            c = c_out
        h, w = feature_size(image, p["convs"])
        if w < 1 or h < 1:
            raise ValueError(f"architecture {cfg.arch!r} downsamples a {image.width}x{image.height} "
                             "input to nothing; use a larger input size")
        self.steps = w  # time steps T: the input width over the width downsampling factor
        self.input_norm = p.get("input_norm", False)
        self.norm_k = image.height | 1  # odd window for "local" normalisation
        self.features = nn.Sequential(*stages)
        # How the remaining rows become one feature vector per column: "flatten" (the
        # tutorial: C' x H' features, position-specific) or "max" (max over the rows:
        # C' features, the same wherever the glyph sits vertically).
        self.collapse = p.get("collapse", "flatten")
        if self.collapse not in ("flatten", "max"):
            raise ValueError(f"unknown collapse {self.collapse!r} (flatten, max)")
        d_feat = c * h if self.collapse == "flatten" else c
        self.proj = nn.Sequential(nn.Linear(d_feat, p["proj"]), nn.ReLU(inplace=True),
                                  nn.Dropout(p["proj_dropout"]))
        if p["seq"] == "lstm":
            self.sequence = BiLSTMStack(p["proj"], p["hidden"], p["seq_dropout"],
                                        p.get("dropout_per_sequence", False))
        elif p["seq"] == "conv":
            self.sequence = ConvSequence(p["proj"], p["hidden"], p["kernel"], p["seq_dropout"])
        else:
            raise ValueError(f"unknown sequence model {p['seq']!r}")
        self.head = nn.Linear(self.sequence.d_out, cfg.n_classes)
        # Training only: run the conv layers in bfloat16 (autocast), the rest in float32.
        # Evaluation and export always run in float32.
        self.bf16_features = False
        self._init_weights()

    def _init_weights(self) -> None:
        """Keras's initialisers, as the tutorial trained with: torch's defaults are smaller
        and lengthen the CTC plateau (the flat loss before the model starts to read)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv1d)):  # he_normal, as the tutorial's convs
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.Linear):  # glorot_uniform
                nn.init.xavier_uniform_(m.weight)
            elif isinstance(m, nn.LSTM):
                for name, w in m.named_parameters():
                    if name.startswith("weight_ih"):
                        nn.init.xavier_uniform_(w)
                    elif name.startswith("weight_hh"):
                        # Keras: one orthogonal (h, 4h) recurrent kernel, the four gates
                        # side by side (each gate's block about half the norm of an
                        # orthogonal h x h matrix): torch's (4h, h), orthonormal columns.
                        nn.init.orthogonal_(w)
                    elif name.startswith("bias_ih"):  # gates i, f, g, o: forget bias 1
                        nn.init.zeros_(w)
                        w.data[m.hidden_size : 2 * m.hidden_size] = 1.0
                    else:
                        nn.init.zeros_(w)
                continue
            else:
                continue
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_norm == "local":
            k = self.norm_k  # a k x k box mean, as two 1-D passes
            m = F.avg_pool2d(x, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)
            m = F.avg_pool2d(m, (1, k), stride=1, padding=(0, k // 2), count_include_pad=False)
            x = x - m
            x = x / x.square().mean(dim=(2, 3), keepdim=True).add(1e-4).sqrt()
        elif self.input_norm == "column":
            x = x - x.mean(dim=2, keepdim=True)
            x = x / x.square().mean(dim=(2, 3), keepdim=True).add(1e-4).sqrt()
        elif self.input_norm:
            # Per image and channel, zero mean and unit spread: the network sees the same
            # input whether the site draws dark on light, light on dark or on a gradient.
            mean = x.mean(dim=(2, 3), keepdim=True)
            std = (x - mean).square().mean(dim=(2, 3), keepdim=True).add(1e-4).sqrt()
            x = (x - mean) / std
        if self.training and self.bf16_features:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                f = self.features(x).float()
        else:
            f = self.features(x)  # (B, C, H, W) -> (B, C', H', W')
        if self.collapse == "max":
            f = f.amax(dim=2).transpose(1, 2)  # (B, C', H', W') -> (B, T=W', C')
        else:
            b, c, h, w = f.shape
            f = f.permute(0, 3, 1, 2).reshape(b, w, c * h)  # (B, C', H', W') -> (B, T=W', C'*H')
        s = self.sequence(self.proj(f))  # (B, T, D)
        return self.head(s).log_softmax(-1)  # (B, T, n_classes)


def build_model(image: ImageConfig, cfg: ModelConfig) -> CRNN:
    """A fresh model (use ``torch.manual_seed`` first for a repeatable initialisation)."""
    return CRNN(image, cfg)


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: CRNN, image: ImageConfig) -> int:
    """Multiply-adds x 2 for one image, counted with torch's FLOP counter (eval mode)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(1, image.channels, image.height, image.width)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    model.train(was_training)
    # The counter does not see fused LSTM kernels: add 2 x (4 gates x h x (d_in + h)) per step.
    steps = model.steps
    lstm = sum(2 * 4 * m.hidden_size * (m.input_size + m.hidden_size) * steps * 2
               for m in model.modules() if isinstance(m, nn.LSTM))
    return counter.get_total_flops() + lstm
