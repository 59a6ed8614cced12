"""Pretraining on the zoo: the stream, checkpoints and resume, and DistributedDataParallel."""

import json
import subprocess
import sys

import numpy as np

from captcha_ocr import checkpoint
from captcha_ocr.cli import main
from captcha_ocr.modeldir import FILES
from captcha_ocr.pretrain import ALPHABET, ZooStream
from captcha_ocr.runtime import Reader
from captcha_ocr.zoo import STYLES, render

ARGS = ["--batch-size", "4", "--workers", "0", "--eval-images", "2", "--threads", "1",
        "--styles", "pastel_digits,bold_caps"]


def test_alphabet_covers_every_style_and_the_signs():
    for s in STYLES.values():
        assert set(s.alphabet) <= set(ALPHABET)
    assert {"0", "9", "a", "z", "A", "Z", "+", "-", "x", "="} <= set(ALPHABET)


def test_ranks_read_disjoint_shares_of_one_stream():
    styles = ["pastel_digits", "bold_caps"]
    take = lambda it, n: [label for _, (_, label) in zip(range(n), it)]  # noqa: E731
    r0 = take(iter(ZooStream(styles, 0, 0, rank=0, world=2)), 3)
    r1 = take(iter(ZooStream(styles, 0, 0, rank=1, world=2)), 3)
    one = take(iter(ZooStream(styles, 0, 0, rank=0, world=1)), 6)
    assert r0 == one[0::2] and r1 == one[1::2]
    assert one[2] == render("pastel_digits", 0, 1)[1]  # position 2: style 0, image 1
    later = take(iter(ZooStream(styles, 0, 4, rank=0, world=1)), 2)
    assert later == one[4:6]  # resuming at position 4


def test_pretrain_checkpoints_resumes_and_writes_a_readable_model(tmp_path, capsys):
    out = tmp_path / "base"
    assert main(["pretrain", "--out", str(out), "--steps", "3", "--checkpoint-minutes", "0",
                 *ARGS]) == 0
    state = checkpoint.load(out / "checkpoint")["meta"]
    assert state["step"] == 3 and state["images"] == 12  # written after every step
    capsys.readouterr()
    # A second run into the same folder must say how to go on, not start over.
    assert main(["pretrain", "--out", str(out), "--steps", "5", *ARGS]) != 0
    assert "--resume" in capsys.readouterr().err
    assert main(["pretrain", "--out", str(out), "--steps", "5", "--resume", *ARGS]) == 0
    assert "resumed at step 3 (12 images)" in capsys.readouterr().err
    info = json.loads((out / FILES.info).read_text())
    assert info["training"]["steps"] == 5 and info["training"]["images"] == 20
    assert info["alphabet"] == ALPHABET and info["training"]["zoo_version"] >= 1
    assert set(info["metrics"]["zoo"]) == {"pastel_digits", "bold_caps"}
    img, _ = render("pastel_digits", 9, 0)
    assert Reader.load(out).read(np.asarray(img)).ok


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
