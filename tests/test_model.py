import pytest
import torch

from captcha_ocr.config import ARCHS, ImageConfig, ModelConfig
from captcha_ocr.model import build_model, count_flops, count_params


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("image", [ImageConfig(50, 200, 1), ImageConfig(64, 256, 3)])
def test_shapes_and_log_probs(arch, image):
    model = build_model(image, ModelConfig(arch, 7, ARCHS[arch])).eval()
    out = model(torch.rand(3, image.channels, image.height, image.width))
    assert out.shape == (3, model.steps, 7)
    assert torch.allclose(out.exp().sum(-1), torch.ones(3, model.steps), atol=1e-5)


def test_seed_is_the_tutorial_network():
    model = build_model(ImageConfig(), ModelConfig("seed", 20, ARCHS["seed"]))
    assert model.steps == 50  # width 200 downsampled by 4
    assert count_params(model) == 434_132
    assert count_flops(model, ImageConfig()) == pytest.approx(139e6, rel=0.01)


def test_seed_drops_the_same_lstm_inputs_at_every_time_step():
    """As Keras's LSTM(dropout=...): one mask per sequence, not per step."""
    model = build_model(ImageConfig(), ModelConfig("seed", 20, ARCHS["seed"]))
    stack = model.sequence.train()
    torch.manual_seed(0)
    y = stack._dropout(torch.ones(4, 50, 64))
    assert torch.equal(y, y[:, :1].expand_as(y))  # each feature kept or dropped for all steps
    assert 0.1 < (y == 0).float().mean() < 0.4  # about a quarter dropped (p = 0.25)
    assert torch.equal(stack.eval()._dropout(torch.ones(2, 5, 64)), torch.ones(2, 5, 64))


def test_seed_lstms_start_as_keras_does():
    """One orthogonal recurrent kernel over the four gates (each gate's block about half
    an orthogonal matrix's Frobenius norm), glorot inputs, forget-gate bias 1, as Keras's LSTM."""
    torch.manual_seed(0)
    model = build_model(ImageConfig(), ModelConfig("seed", 20, ARCHS["seed"]))
    for lstm in model.sequence.lstms:
        h = lstm.hidden_size
        w = lstm.weight_hh_l0  # (4h, h)
        assert torch.allclose(w.T @ w, torch.eye(h), atol=1e-5)  # orthonormal columns
        energy = w.reshape(4, h, h).square().sum(dim=(1, 2)) / h  # 1 for an orthogonal gate
        assert ((energy > 0.15) & (energy < 0.35)).all()  # about a quarter each
        bias = lstm.bias_ih_l0 + lstm.bias_hh_l0
        assert torch.equal(bias[h : 2 * h], torch.ones(h))
        assert torch.equal(torch.cat([bias[:h], bias[2 * h :]]), torch.zeros(3 * h))


def test_same_seed_same_weights():
    def weights():
        torch.manual_seed(3)
        return build_model(ImageConfig(), ModelConfig("fast", 20, ARCHS["fast"])).state_dict()

    a, b = weights(), weights()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_arch():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model(ImageConfig(), ModelConfig("nope", 20, {}))


def test_bf16_runs_the_conv_layers_only_and_only_while_training():
    model = build_model(ImageConfig(32, 128, 3), ModelConfig("deep", 11, ARCHS["deep"]))
    model.bf16_features = True
    seen = []
    model.features.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    model.head.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    x = torch.rand(2, 3, 32, 128)
    model.train()
    out = model(x)
    assert seen == [torch.bfloat16, torch.float32] and out.dtype == torch.float32
    out.sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())
    seen.clear()
    model.eval()  # validation and export
    assert model(x).dtype == torch.float32 and seen == [torch.float32, torch.float32]
