"""Pretraining on the zoo: the stream, checkpoints and resume, and DistributedDataParallel."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from captcha_ocr import checkpoint
from captcha_ocr.cli import main
from captcha_ocr.modeldir import FILES
from captcha_ocr.pretrain import ALPHABET, ZooStream, choose_device, default_threads
from captcha_ocr.runtime import Reader
from captcha_ocr.zoo import STYLES, render

ARGS = ["--batch-size", "4", "--workers", "0", "--eval-images", "2", "--threads", "1",
        "--styles", "pastel_digits,bold_caps"]


def test_alphabet_covers_every_style_and_the_signs():
    for s in STYLES.values():
        assert set(s.alphabet) <= set(ALPHABET)
    assert {"0", "9", "a", "z", "A", "Z", "+", "-", "x", "="} <= set(ALPHABET)


def test_default_threads_leave_the_cores_to_the_drawing_workers():
    assert default_threads(16, 1, 15, "cuda") == 1  # the GPU computes; 16 threads drew 2.5x slower
    assert default_threads(2, 1, 1, "cpu") == 1  # one core trains, one draws
    assert default_threads(2, 1, 0, "cpu") == 2
    assert default_threads(16, 2, 3, "cpu") == 5
    assert default_threads(2, 2, 1, "cpu") == 1  # never below one


def test_each_process_gets_its_own_gpu_or_the_cpu():
    # Two processes on a one-GPU machine (seen on a lent H100: rank 1 asked for cuda:1).
    assert choose_device("auto", 1, 1) == ("cuda", "")
    assert choose_device("auto", 8, 8) == ("cuda", "")
    assert choose_device("auto", 0, 2) == ("cpu", "")
    device, note = choose_device("auto", 1, 2)
    assert device == "cpu" and "--nproc-per-node 1" in note
    assert choose_device("cpu", 4, 1) == ("cpu", "")
    assert choose_device("cuda", 2, 2) == ("cuda", "")
    for gpus, procs, words in [(0, 1, "no CUDA device"), (1, 2, "--nproc-per-node 1")]:
        with pytest.raises(ValueError, match=words):
            choose_device("cuda", gpus, procs)


def test_pretrain_reads_the_local_process_count_and_says_why_it_takes_the_cpu(
        tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # as torchrun --nproc-per-node 2 sets it
    assert main(["pretrain", "--out", str(tmp_path / "b"), "--steps", "1", *ARGS]) == 0
    assert "2 processes on this machine but 1 GPU(s): training on the CPU" in capsys.readouterr().err
    assert json.loads((tmp_path / "b" / FILES.info).read_text())["training"]["device"] == "cpu"


def _labels(stream, batches: int) -> list[list[str]]:
    return [labels for _, (_, labels) in zip(range(batches), stream)]


def test_ranks_read_disjoint_shares_of_one_stream():
    styles = ["pastel_digits", "bold_caps"]
    one = _labels(iter(ZooStream(styles, 0, 0, rank=0, world=1, batch_size=2)), 6)
    r0 = _labels(iter(ZooStream(styles, 0, 0, rank=0, world=2, batch_size=2)), 3)
    r1 = _labels(iter(ZooStream(styles, 0, 0, rank=1, world=2, batch_size=2)), 3)
    assert r0 == one[0::2] and r1 == one[1::2]  # step b of 2 ranks: positions 4b to 4b+3
    assert one[1][0] == render("pastel_digits", 0, 1)[1]  # position 2: style 0, image 1
    later = _labels(iter(ZooStream(styles, 0, 4, rank=0, world=1, batch_size=2)), 2)
    assert later == one[2:4]  # resuming at position 4


def test_the_batches_do_not_depend_on_the_drawing_workers():
    """Two workers yield the batches of one, in order: a run stopped at any step
    resumes on the images it would have seen next."""
    from torch.utils.data import DataLoader

    stream = ZooStream(["pastel_digits", "bold_caps"], 0, 6, rank=0, world=1, batch_size=3)
    alone = [(x.numpy(), y) for x, y in _take(iter(stream), 5)]
    pooled = [(x.numpy(), y) for x, y in _take(iter(DataLoader(stream, batch_size=None, num_workers=2)), 5)]
    assert [y for _, y in pooled] == [y for _, y in alone]
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(pooled, alone))


def _take(it, n: int) -> list:
    return [item for _, item in zip(range(n), it)]


def test_a_share_of_the_stream_is_placed_in_wider_strips():
    styles = ["pastel_digits"]
    plain = [x[0] for x, _ in _take(iter(ZooStream(styles, 0, 0, 0, 1)), 40)]
    wide = [x[0] for x, _ in _take(iter(ZooStream(styles, 0, 0, 0, 1, widen=0.5)), 40)]
    again = [x[0] for x, _ in _take(iter(ZooStream(styles, 0, 0, 0, 1, widen=0.5)), 40)]
    changed = sum(not np.array_equal(a, b) for a, b in zip(plain, wide))
    assert 8 <= changed <= 32  # about half, seeded by position
    assert all(np.array_equal(a, b) for a, b in zip(wide, again))


def test_pretrain_killed_after_a_checkpoint_resumes_and_swaps_in_a_readable_model(tmp_path, capsys):
    out = tmp_path / "base"
    assert main(["pretrain", "--out", str(out), "--steps", "2", *ARGS]) == 0
    assert "pretraining on 2 zoo styles (version " in capsys.readouterr().err  # before any step line
    old = (out / FILES.info).read_bytes()
    # Killed (as kill -9) right after its first checkpoint: the old model stays whole.
    cmd = [sys.executable, "-m", "captcha_ocr.cli", "pretrain", "--out", str(out), "--steps", "3",
           "--checkpoint-minutes", "0", *ARGS]
    env = dict(os.environ, CAPTCHA_OCR_KILL_AT="round-end")
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (out / FILES.info).read_bytes() == old
    state = checkpoint.load(tmp_path / "base.partial" / "checkpoint")["meta"]
    assert state["step"] == 1 and state["images"] == 4
    capsys.readouterr()
    # A second run into the same folder must say how to go on, not start over.
    assert main(["pretrain", "--out", str(out), "--steps", "3", *ARGS]) != 0
    assert "--resume" in capsys.readouterr().err
    # Resuming with other images (another font pool) is refused, and the checkpoint stays.
    assert main(["pretrain", "--out", str(out), "--steps", "3", "--resume", *ARGS, "--fonts", "wide"]) != 0
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--resume: the interrupted run drew its images with --fonts zoo; resume with the same "
        "options, or start afresh without --resume")
    # So is another schedule: --steps fixes where the cosine decay runs.
    assert main(["pretrain", "--out", str(out), "--steps", "5", "--resume", *ARGS]) != 0
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--resume: the interrupted run's learning-rate schedule was that of --steps 3; resume "
        "with the same, or start afresh without --resume")
    assert main(["pretrain", "--out", str(out), "--steps", "3", "--resume", *ARGS]) == 0
    err = capsys.readouterr().err
    assert "resumed at step 1 (4 images)" in err and "pretraining on" not in err
    assert not (tmp_path / "base.partial").exists() and not (out / "checkpoint").exists()
    info = json.loads((out / FILES.info).read_text())
    assert info["training"]["steps"] == 3 and info["training"]["images"] == 12
    assert info["alphabet"] == ALPHABET and info["training"]["zoo_version"] >= 1
    assert set(info["metrics"]["zoo"]) == {"pastel_digits", "bold_caps"}
    img, _ = render("pastel_digits", 9, 0)
    assert Reader.load(out).read(np.asarray(img)).ok
    # The same three steps without a stop: the very same weights (images, augmentation, Adam)
    assert main(["pretrain", "--out", str(tmp_path / "whole"), "--steps", "3", *ARGS]) == 0
    whole = json.loads((tmp_path / "whole" / FILES.info).read_text())
    assert whole["training"]["rank_weight_digests"] == info["training"]["rank_weight_digests"]
    # Nothing to resume: one line, and the model is left as it is.
    assert main(["pretrain", "--out", str(out), "--steps", "3", "--resume", *ARGS]) != 0
    assert "no interrupted run to resume" in capsys.readouterr().err


def test_two_processes_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "captcha_ocr.cli", "pretrain", "--out", str(out), "--steps", "3", *ARGS]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    # torchrun's summary hides the cause: show the ranks' own error lines too
    why = [line for line in done.stderr.splitlines()
           if any(w in line.lower() for w in ("error", "what()", "terminate", "exception"))]
    assert done.returncode == 0, "\n".join(why[:40]) + "\n" + done.stderr[-3000:]
    t = json.loads((out / FILES.info).read_text())["training"]
    assert t["processes"] == 2 and t["images"] == 3 * 4 * 2
    digests = t["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]


def test_the_wide_font_pool_draws_other_typefaces_from_the_same_stream():
    styles = ["bold_caps"]
    zoo = _take(iter(ZooStream(styles, 0, 0, 0, 1)), 12)
    wide = _take(iter(ZooStream(styles, 0, 0, 0, 1, fonts="wide")), 12)
    again = _take(iter(ZooStream(styles, 0, 0, 0, 1, fonts="wide")), 12)
    assert [y for _, y in zoo] == [y for _, y in wide]  # the same labels, other glyphs
    assert sum(not np.array_equal(a[0], b[0]) for a, b in zip(zoo, wide)) >= 6
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(wide, again))


def test_the_fonts_option_offers_the_zoo_pools(capsys):
    from captcha_ocr.zoo import FONT_POOLS

    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    assert "--fonts {" + ",".join(FONT_POOLS) + "}" in capsys.readouterr().out


def test_a_missing_font_package_stops_pretrain_with_one_line_before_training(tmp_path, capsys, monkeypatch):
    from captcha_ocr.zoo import fonts as zoo_fonts

    fake = {k: v for k, v in zoo_fonts.font_paths().items() if not k.startswith("Caladea")}
    monkeypatch.setattr(zoo_fonts, "_font_paths", lambda system: fake)
    zoo_fonts.pool.cache_clear()
    try:
        assert main(["pretrain", "--out", str(tmp_path / "b"), "--steps", "1", *ARGS, "--fonts", "wide"]) == 1
    finally:
        zoo_fonts.pool.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fonts Caladea-Bold" in err[0]
    assert "pip install 'captcha-ocr[train,fonts]'" in err[0]
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()


def test_no_evaluation_images_still_writes_the_model(tmp_path):
    out = tmp_path / "noeval"
    assert main(["pretrain", "--out", str(out), "--steps", "1", *ARGS, "--eval-images", "0",
                 "--fonts", "wide"]) == 0
    info = json.loads((out / FILES.info).read_text())
    assert info["metrics"]["zoo"] == {} and info["metrics"]["zoo_median_accuracy"] is None
    assert info["training"]["config"]["fonts"] == "wide"
    assert Reader.load(out).info.alphabet == ALPHABET


@pytest.mark.parametrize("option, value", [("--eval-images", "-1"), ("--checkpoint-minutes", "nan"),
                                           ("--widen", "1.5"), ("--lr", "0"), ("--workers", "-2")])
def test_bad_pretrain_numbers_are_refused_by_the_parser(capsys, tmp_path, option, value):
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--out", str(tmp_path / "x"), option, value])
    assert e.value.code == 2 and "must be" in capsys.readouterr().err
