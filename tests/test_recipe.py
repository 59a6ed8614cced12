"""The default recipe: step budget, the character-count loss, and short runs on zoo styles."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from captcha_ocr.augment import NOISE_MIN
from captcha_ocr.charset import Charset
from captcha_ocr.cli import main, pick_note
from captcha_ocr.config import MAX_STEPS, MIN_STEPS, TrainConfig, steps_budget
from captcha_ocr.modeldir import FILES
from captcha_ocr.runtime import Reader
from captcha_ocr.train import (
    Split,
    _round_batches,
    ace_loss,
    native_bf16,
    recipe,
    resolve_budget,
    steps_per_round,
    train,
    uses_bf16,
)
from captcha_ocr.zoo import write_style


@pytest.mark.parametrize("n, expected", [(45, MIN_STEPS), (1800, 50 * 113), (20000, MAX_STEPS)])
def test_step_budget_scales_with_the_data_within_bounds(n, expected):
    assert steps_budget(n, 16) == expected


def test_small_datasets_get_as_many_steps_as_large_ones():
    cfg = recipe("crnn")
    small, large = resolve_budget(cfg, 45), resolve_budget(cfg, 450)
    assert small.steps == large.steps == MIN_STEPS
    for c, n in ((small, 45), (large, 450)):
        assert c.epochs * steps_per_round(n, c) >= c.steps
        assert steps_per_round(n, c) >= c.min_round


def test_a_recipe_in_epochs_is_kept():
    cfg = recipe("fast")
    assert resolve_budget(cfg, 100) == cfg
    assert resolve_budget(TrainConfig(epochs=3, steps=100), 160).epochs == 10


def test_seed_recipe_keeps_one_batch_order_as_the_tutorial():
    split = Split(None, Charset("a"), np.arange(0, 100, 2), np.arange(1, 11, 2))
    g = torch.Generator().manual_seed(0)
    fixed = recipe("seed", seed=3)
    assert not fixed.shuffle and recipe("fast").shuffle and recipe("crnn").shuffle
    a, b = _round_batches(split, fixed, g), _round_batches(split, fixed, g)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == split.train.tolist()
    assert not np.array_equal(np.concatenate(a), split.train)  # a seeded order, not sorted
    c = _round_batches(split, recipe("fast"), g)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_seed_recipe_optimises_as_keras():
    """The tutorial's loss is summed over a batch's images and Adam's epsilon is 1e-7; the
    other recipes keep PyTorch's mean per character and 1e-8."""
    seed, default = recipe("seed"), recipe("deep")
    assert (seed.ctc_sum, seed.adam_eps) == (True, 1e-7)
    assert (default.ctc_sum, default.adam_eps) == (False, 1e-8)


def test_character_count_loss_prefers_the_right_characters():
    cs = Charset("abc")
    t = 10
    right = torch.full((1, t, 4), 1e-3)
    right[0, :, 0] = 1.0  # blank everywhere ...
    right[0, 2, :] = torch.tensor([1e-3, 1.0, 1e-3, 1e-3])  # ... but an "a" and a "b"
    right[0, 6, :] = torch.tensor([1e-3, 1e-3, 1.0, 1e-3])
    wrong = right[:, :, [0, 3, 1, 2]]  # "c" and "a" instead
    lp = lambda x: (x / x.sum(-1, keepdim=True)).log()  # noqa: E731
    assert ace_loss(lp(right), ["ab"], cs) < ace_loss(lp(wrong), ["ab"], cs)


def test_short_run_on_a_zoo_style_learns(tmp_path):
    data = tmp_path / "digits"
    write_style("pastel_digits", data, 80, seed=3)
    cfg = recipe("crnn", steps=300, seed=1)
    result = train(data, tmp_path / "m", cfg=cfg, command="pytest")
    first, last = result.history[0], result.history[-1]
    assert last.train_loss < 0.7 * first.train_loss
    assert last.val_loss < 0.7 * first.val_loss
    info = result.info
    assert info.training["steps"] >= 300
    assert info.training["input"]["chosen"]["channels"] == info.image.channels == 3


def _strips(folder, n: int, seed: int):
    """``n`` colour strips with their text in the left third (test_geometry's images)."""
    from test_geometry import _strip

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        _strip(rng, text_right=0.35, colour=True).save(folder / f"{i:03d}x.png")
    return folder


def test_geometry_lands_in_model_json_and_the_reader_uses_it(tmp_path, capsys):
    data = _strips(tmp_path / "strip", 30, seed=0)
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), "--steps", "30", "-q"]) == 0
    info = json.loads((out / FILES.info).read_text())
    assert info["image"]["channels"] == 3
    assert info["image"]["crop"][2] < 0.5  # the text's third of the width
    assert info["training"]["input"]["measured"]["width"] == 255
    assert info["training"]["config"]["aug_noise"] == NOISE_MIN  # flat renderings: least noise
    assert info["training"]["config"]["bf16"] is uses_bf16(recipe("deep"))  # decided, recorded
    reader = Reader.load(out)
    assert reader.info.image.crop == tuple(info["image"]["crop"])
    assert reader.read(data / "000x.png").ok

    # Explicit options win over what the images decide.
    out2 = tmp_path / "m2"
    assert main(["train", str(data), "--out", str(out2), "--steps", "30", "--no-crop",
                 "--channels", "1", "--height", "40", "-q"]) == 0
    image = json.loads((out2 / FILES.info).read_text())["image"]
    assert image["crop"] == [0.0, 0.0, 1.0, 1.0] and image["channels"] == 1
    assert image["height"] == 40
    for flag, bf16 in (("--no-bf16", False), ("--bf16", True)):
        assert main(["train", str(data), "--out", str(out2), "--steps", "30", flag, "-q"]) == 0
        assert json.loads((out2 / FILES.info).read_text())["training"]["config"]["bf16"] is bf16


def test_seed_arch_reads_the_tutorials_fixed_input(tmp_path):
    data = _strips(tmp_path / "strip", 20, seed=1)
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), "--arch", "seed", "--epochs", "1",
                 "-q"]) == 0
    image = json.loads((out / FILES.info).read_text())["image"]
    assert (image["width"], image["height"], image["channels"]) == (200, 50, 1)
    assert image["crop"] == [0.0, 0.0, 1.0, 1.0]  # not the text's third, as crnn would
    out2 = tmp_path / "m2"
    assert main(["train", str(data), "--out", str(out2), "--arch", "seed", "--epochs", "1",
                 "--width", "160", "-q"]) == 0
    assert json.loads((out2 / FILES.info).read_text())["image"]["width"] == 160


def test_flat_then_cosine_holds_the_rate_after_a_late_plateau_exit():
    from captcha_ocr.train import FlatCos, _extend_after_plateau, _optimizer

    lam = FlatCos(100)
    assert lam(0) == lam(50) == 1.0 and lam(100) == 0.0 and 0 < lam(75) < 1
    cfg = recipe("crnn", epochs=10, extend=0.5)
    model = torch.nn.Linear(2, 2)
    rounds = {}
    for exit_round in (2, 6, 9):
        _, sched = _optimizer(model, cfg, 10)  # a budget of 100 steps
        rounds[exit_round] = _extend_after_plateau(sched, cfg, exit_round, 10)
        lam = sched.lr_lambdas[0]
        assert lam(exit_round * 10 + 10) == 1.0  # still the full rate just after the exit
    # early: the budget as it was; late: a quarter of it after the exit, capped at +50%
    assert rounds == {2: 10, 6: 14, 9: 15}


@pytest.mark.parametrize("after_plateau, rounds_run", [(False, 3), (True, 9)])
def test_seed_patience_waits_for_the_network_to_leave_the_plateau(monkeypatch, after_plateau,
                                                                   rounds_run):
    """Validation loss creeping up on the plateau (CER 1.0) for 6 rounds, then the network
    reads (CER 0.2) at round 7: patience 2 ends the run at round 3 unless it waits for the
    plateau to be left (then: the best round is 7, the run ends 2 rounds after it)."""
    import captcha_ocr.train as T

    losses = iter([3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 1.0, 1.1, 1.2, 1.3])
    cers = iter([1.0] * 6 + [0.2] * 4)
    monkeypatch.setattr(T, "train_one_epoch", lambda *a, **k: 0.0)
    monkeypatch.setattr(T, "evaluate", lambda *a, **k: (next(losses), 0.0, next(cers), []))
    split = Split(None, Charset("a"), np.arange(10), np.arange(10, 12))
    cfg = recipe("seed", epochs=10, patience=2, patience_after_plateau=after_plateau)
    assert recipe("seed").patience_after_plateau and not recipe("deep").patience_after_plateau
    history, best = T.fit(torch.nn.Linear(2, 2), split, cfg)
    assert len(history) == rounds_run
    assert best == (7 if after_plateau else 1)


def test_fine_tuning_keeps_known_rows_and_stores_the_datasets_alphabet(tmp_path):
    from safetensors.numpy import load_file

    from captcha_ocr.runtime import bundled_model_dir

    data = tmp_path / "digits"
    write_style("pastel_digits", data, 40, seed=5)
    out = tmp_path / "ft"
    assert main(["train", str(data), "--out", str(out), "--init", "captcha_images_v2",
                 "--steps", "10", "-q"]) == 0
    old_dir = bundled_model_dir("captcha_images_v2")
    old = json.loads((old_dir / FILES.info).read_text())
    new = json.loads((out / FILES.info).read_text())
    assert new["model"]["arch"] == old["model"]["arch"]
    assert new["alphabet"] == "".join(sorted(set(new["alphabet"]))) and "0" in new["alphabet"]
    assert (new["image"]["height"], new["image"]["channels"]) == (old["image"]["height"],
                                                                  old["image"]["channels"])
    assert new["training"]["init"]["model"] == "captcha_images_v2"
    # 10 steps move the weights a little; the rows of the digits both models know start
    # from the old model's rows, the new digits' rows do not.
    w_old = load_file(old_dir / FILES.weights)["head.weight"]
    w_new = load_file(out / FILES.weights)["head.weight"]
    known = [c for c in new["alphabet"] if c in old["alphabet"]]
    unknown = [c for c in new["alphabet"] if c not in old["alphabet"]]
    assert known and unknown
    def row(w, alphabet, c):  # noqa: E306
        return w[alphabet.index(c) + 1]
    for c in known:
        assert np.abs(row(w_new, new["alphabet"], c) - row(w_old, old["alphabet"], c)).max() < 0.05
    far = [np.abs(row(w_new, new["alphabet"], c) - row(w_old, old["alphabet"], k)).max()
           for c in unknown for k in old["alphabet"]]
    assert min(far) > 0.05


def test_fine_tuning_refuses_what_cannot_fit(tmp_path, capsys):
    data = tmp_path / "digits"
    write_style("pastel_digits", data, 20, seed=5)
    args = ["train", str(data), "--out", str(tmp_path / "m"), "--steps", "5", "-q"]
    assert main([*args, "--init", str(tmp_path / "nothing")]) != 0
    assert "no such model directory" in capsys.readouterr().err
    assert main([*args, "--init", "captcha_images_v2", "--arch", "crnn"]) != 0
    assert "drop --arch" in capsys.readouterr().err
    assert main([*args, "--init", "captcha_images_v2", "--channels", "1"]) != 0  # it reads colour
    err = capsys.readouterr().err
    assert "--init captcha_images_v2: it reads images of channels 3, not 1; drop --channels" in err
    assert main([*args, "--init", "auto", "--arch", "crnn"]) != 0
    err = capsys.readouterr().err
    assert "drop --init auto to train crnn from random weights" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--init", "auto", "--height", "48"]) != 0
    err = capsys.readouterr().err
    assert "--init auto: it reads images of height 32, not 48" in err and len(err.strip().splitlines()) == 1


def test_train_fine_tunes_the_base_model_unless_told(tmp_path):
    data = tmp_path / "digits"
    write_style("pastel_digits", data, 30, seed=6)
    runs = {"auto": [], "none": ["--init", "none"], "arch": ["--arch", "crnn"], "w": ["--width", "96"]}
    init, width = {}, {}
    for name, extra in runs.items():
        out = tmp_path / name
        assert main(["train", str(data), "--out", str(out), "--steps", "10", "-q", *extra]) == 0
        info = json.loads((out / FILES.info).read_text())
        init[name], width[name] = info["training"].get("init", {}), info["image"]["width"]
    assert init["auto"].get("model") == "base" and init["w"].get("model") == "base"
    assert init["auto"]["picked"]["chosen"] == "base"  # --init auto weighed both bases
    assert set(init["auto"]["picked"]["loss"]) == {"base", "base2"}
    assert init["none"] == {} and init["arch"] == {}
    # 70x30 digits: 76 pixels wide from their aspect, stretched to the base's 128 when
    # fine-tuning it (the width it was pretrained at); an explicit --width holds.
    base_width = Reader.load("base").info.image.width
    assert width["none"] == width["arch"] == 76 < base_width == width["auto"]
    assert width["w"] == 96


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    """40 packed_colour captchas: base2 was pretrained on that style as well, base was not."""
    folder = tmp_path_factory.mktemp("packed") / "data"
    write_style("packed_colour", folder, 40, seed=7)
    return folder


def test_the_default_start_is_the_base_that_fits_the_labels_clearly_better(tmp_path, packed):
    from captcha_ocr.data import discover
    from captcha_ocr.finetune import BASES, load_init, load_inits
    from captcha_ocr.train import PICK_T, pick_init

    bases = load_inits("auto")
    assert [b.source for b in bases] == list(BASES) == ["base", "base2"]
    image = bases[0].info.image
    for style, folder, expect in (("packed_colour", packed, "base2"),
                                  ("arithmetic", tmp_path / "arith", "base")):
        if style == "arithmetic":  # base fits it as well as base2 does
            write_style(style, folder, 40, seed=7)
        chosen, record = pick_init(bases, discover(folder), image, "auto")
        assert chosen.source == record["chosen"] == expect
        assert record["images"] == 40 and set(record["loss"]) == {"base", "base2"}
        clear = record["t_against_first"]["base2"] > PICK_T
        assert clear == (expect == "base2")
    twins = [load_init("base"), load_init("base")]  # alike: the first, never a coin toss
    assert pick_init(twins, discover(packed), image, "auto")[0] is twins[0]
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    pick_init(bases, discover(packed), image, "auto")
    assert torch.rand(1) == before  # the caller's random state is left alone


def test_the_shipped_bases_share_architecture_and_input():
    from captcha_ocr.finetune import load_inits

    first, *others = load_inits("auto")
    for b in others:
        assert (b.info.model, b.info.image) == (first.info.model, first.info.image)
        assert b.info.training["zoo_version"] > first.info.training["zoo_version"]


def test_train_says_why_it_kept_base_when_base2_fits_no_clearly_better(tmp_path, capsys):
    folder = tmp_path / "data"
    write_style("digits_strike", folder, 40, seed=7)  # both bases saw it: base2 no clear gain
    assert main(["train", str(folder), "--out", str(tmp_path / "m"), "--steps", "2", "--threads", "1"]) == 0
    out = capsys.readouterr()
    said = " ".join((out.out + out.err).split())
    picked = json.loads((tmp_path / "m" / FILES.info).read_text())["training"]["init"]["picked"]
    assert picked["chosen"] == "base" and picked["t_against_first"]["base2"] <= 2
    assert "training deep from base (picked by the labels' mean loss per image: base " in said
    assert f"({pick_note(picked)})" in said


@pytest.mark.parametrize("t, chosen, note", [
    (1.5, "base", "; base2 lower, but not by over 2 standard errors"),
    (-3.0, "base", ""),  # base2's loss is higher: nothing to explain
    (0.0, "base", ""),
    (4.0, "base2", ""),
])
def test_the_pick_note_explains_a_kept_base_only_where_the_other_was_lower(t, chosen, note):
    picked = dict(chosen=chosen, loss={"base": 1.0, "base2": 0.9}, t_against_first={"base2": t})
    assert pick_note(picked) == f"picked by the labels' mean loss per image: base 1.000, base2 0.900{note}"


def test_the_pick_note_shows_losses_that_differ_as_different():
    picked = dict(chosen="base", loss={"base": 0.25012, "base2": 0.24981}, t_against_first={"base2": 1.0})
    assert pick_note(picked).startswith("picked by the labels' mean loss per image: base 0.2501, "
                                        "base2 0.2498; base2 lower")


def test_train_says_and_records_the_base_it_picked_and_resumes_only_from_it(tmp_path, packed, capsys):
    from captcha_ocr.finetune import load_init, load_inits
    from captcha_ocr.modeldir import ModelError

    assert main(["train", str(packed), "--out", str(tmp_path / "m"), "--steps", "2", "--threads", "1"]) == 0
    said = capsys.readouterr()
    assert "training deep from base2 (picked by the labels' mean loss per image: base " in \
        " ".join((said.out + said.err).split())
    info = json.loads((tmp_path / "m" / FILES.info).read_text())["training"]["init"]
    assert info["model"] == "base2" and info["picked"]["chosen"] == "base2"
    cfg = recipe("deep", finetune=True, steps=50, batch_size=8, threads=1)

    def interrupt(stats):
        raise KeyboardInterrupt

    for start, expect in ((load_init("base"), "started from base, and --init auto picked base2 "
                                              "this time; resume with --init base"),
                          (load_inits("auto"), None)):
        out = tmp_path / f"cut-{expect is None}"
        with pytest.raises(KeyboardInterrupt):
            train(packed, out, cfg=cfg, init=start, on_epoch=interrupt, checkpoint_seconds=0)
        if expect:
            with pytest.raises(ModelError, match=expect):
                train(packed, out, cfg=cfg, init=load_inits("auto"), resume=True)
        else:  # interrupted under auto: the same pick, and it resumes
            done = train(packed, out, cfg=cfg, init=load_inits("auto"), resume=True)
            assert done.info.training["resumed"] and done.info.training["init"]["model"] == "base2"


def test_fine_tuning_rate_and_budget_follow_the_data_size():
    from captcha_ocr.config import FT_FEW, FT_STEPS, FT_STEPS_FEW
    from captcha_ocr.train import recipe, resolve_budget

    ft = recipe("crnn", finetune=True)
    few, many = resolve_budget(ft, FT_FEW - 1), resolve_budget(ft, FT_FEW)
    assert (few.lr, few.steps) == (ft.lr_few, FT_STEPS_FEW) and few.lr < many.lr
    assert (many.lr, many.steps) == (ft.lr, FT_STEPS)
    asked = resolve_budget(recipe("crnn", finetune=True, lr=5e-4), 10)
    assert asked.lr == 5e-4  # an explicit rate holds at every size
    assert resolve_budget(recipe("crnn"), 10).lr == recipe("crnn").lr  # scratch: one rate
    assert ft.ema > 0 and recipe("crnn").ema == 0  # fine-tuning keeps a moving average


def test_moving_average_of_the_weights_is_what_the_run_returns(tmp_path):
    """With ``ema``, validation and the result use the average of the weights after every
    step (decay d: avg = d * avg + (1 - d) * weights), batch-norm statistics included."""
    from captcha_ocr.config import ARCHS, ImageConfig, ModelConfig
    from captcha_ocr.model import build_model
    from captcha_ocr.train import ema_decay, fit, prepare
    from conftest import make_captchas

    make_captchas(tmp_path, 24, "0123456789", (4, 4), seed=2, size=(100, 32))
    image = ImageConfig(32, 64, 1)
    split = prepare(tmp_path, image, 0.25, seed=0)
    torch.manual_seed(0)
    model = build_model(image, ModelConfig("deep", split.charset.n_classes, ARCHS["deep"]))
    # 5 rounds of 3 steps, no early stopping or best round: the run's last average is kept
    cfg = TrainConfig(epochs=5, batch_size=6, lr=1e-3, augment=True, seed=1, ema=0.7, patience=0)
    expected, raw = {}, {}

    def track(step: int, n_steps: int) -> None:  # after every optimizer step
        for name, v in model.state_dict().items():
            if not v.is_floating_point():
                continue
            raw[name] = v.detach().clone()
            expected[name] = raw[name] if name not in expected else 0.7 * expected[name] + 0.3 * raw[name]

    history, kept = fit(model, split, cfg, on_batch=track)
    assert len(history) == kept == 5 and ema_decay(cfg, 15) == 0.7
    final = model.state_dict()
    assert any(not torch.allclose(final[n], raw[n]) for n in raw)  # not the last step's weights
    for name, v in expected.items():
        torch.testing.assert_close(final[name], v, rtol=1e-5, atol=1e-6)


def test_moving_average_spans_at_most_a_third_of_a_short_run():
    from captcha_ocr.train import ema_decay

    ft = recipe("deep", finetune=True)
    assert ema_decay(ft, 2520) == ema_decay(ft, 1500) == ft.ema == 0.998  # the default budgets
    assert ema_decay(ft, 60) == pytest.approx(0.95) and ema_decay(ft, 30) == pytest.approx(0.9)


def test_bf16_is_decided_from_the_cpus_own_flags():
    """Native bfloat16 (AVX-512 BF16 or AMX) only: AVX-512 alone emulates it, slower."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from (not Linux)")
    flags = set(cpuinfo.read_text().split())
    assert native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_keep_last_ends_with_the_last_round(tmp_path, capsys):
    data = tmp_path / "d"
    write_style("pastel_digits", data, 24, seed=5)
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), "--steps", "80", "--threads", "1", "-q",
                 "--keep", "last"]) == 0
    t = json.loads((out / FILES.info).read_text())["training"]
    assert t["config"]["keep_best"] is False  # the recipe's True, overridden
    assert t["epochs_run"] >= 2 and t["best_epoch"] == t["epochs_run"]
    capsys.readouterr()
    rc = main(["train", str(data), "--out", str(tmp_path / "s"), "--arch", "seed", "--keep", "last"])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "--patience 0" in err


def test_features_lr_gives_the_conv_stack_its_own_rate():
    from captcha_ocr.config import ARCHS, ImageConfig, ModelConfig
    from captcha_ocr.model import build_model
    from captcha_ocr.train import _optimizer

    model = build_model(ImageConfig(32, 128, 3), ModelConfig("deep", 20, dict(ARCHS["deep"])))
    one, _ = _optimizer(model, recipe("deep", lr=3e-3, epochs=5), 10)
    assert len(one.param_groups) == 1 and one.param_groups[0]["lr"] == 3e-3
    two, _ = _optimizer(model, recipe("deep", lr=3e-3, epochs=5, features_lr=2.0), 10)
    feats, rest = two.param_groups
    assert feats["lr"] == pytest.approx(6e-3) and rest["lr"] == pytest.approx(3e-3)
    assert len(feats["params"]) == len(list(model.features.parameters()))
    assert len(feats["params"]) + len(rest["params"]) == len(list(model.parameters()))
