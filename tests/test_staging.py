"""Model directories as transactions: a lock, a staging folder, a swap, resume.

Trains tiny models on generated captchas (no dataset needed). The kill tests run the
real CLI in a subprocess that SIGKILLs itself at named points (``staging.fault``).
"""

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from captcha_ocr import staging
from captcha_ocr.cli import main
from captcha_ocr.modeldir import FILES, ModelError
from captcha_ocr.runtime import Reader
from captcha_ocr.staging import StagedModelDir
from captcha_ocr.train import recipe, train

# A few seconds per run: one round (30 steps of 8 images), from scratch.
TINY = ["--init", "none", "--steps", "8", "--batch-size", "8", "--threads", "1", "-q"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from conftest import make_captchas

    folder = tmp_path_factory.mktemp("staging") / "data"
    make_captchas(folder, 48, "0123456789", (4, 4), seed=3, size=(100, 32))
    return folder


def _digest(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / FILES.onnx).read_bytes()).hexdigest()


def _run_cli(args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CAPTCHA_OCR_KILL_AT"}
    if kill_at:
        env["CAPTCHA_OCR_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "captcha_ocr.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_second_writer_is_refused(tmp_path):
    out = tmp_path / "m"
    with StagedModelDir(out):
        with pytest.raises(ModelError, match=rf"{out}: another captcha-ocr process \(pid {os.getpid()}\)"):
            with StagedModelDir(out):
                pass
    with StagedModelDir(out):  # released on exit
        pass


def test_second_train_into_the_same_out_is_refused_while_one_runs(data, tmp_path, capsys):
    out = tmp_path / "m"
    with StagedModelDir(out):  # as a running `train` holds it
        assert main(["train", str(data), "--out", str(out), *TINY]) != 0
    err = capsys.readouterr().err
    assert "another captcha-ocr process" in err and "wait for it to finish" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_out_that_is_not_a_model_directory_is_left_alone(data, tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "history.csv").write_text("mine")
    assert main(["train", str(data), "--out", str(out), *TINY]) != 0
    assert "not empty and not a model directory" in capsys.readouterr().err
    assert (out / "history.csv").read_text() == "mine" and sorted(os.listdir(out)) == ["history.csv"]
    assert sorted(os.listdir(tmp_path)) == ["notes"]  # refused before the lock: no .notes.lock


def test_model_directory_with_a_foreign_file_is_left_alone(data, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), *TINY]) == 0
    (out / "notes.txt").write_text("mine")
    before = _digest(out)
    assert main(["train", str(data), "--out", str(out), *TINY, "--seed", "9"]) != 0
    assert "not part of a model (notes.txt)" in capsys.readouterr().err
    assert _digest(out) == before and (out / "notes.txt").read_text() == "mine"


def test_out_inside_the_data_folder_is_refused(data, capsys):
    assert main(["train", str(data), "--out", str(data / "model"), *TINY]) != 0
    assert "inside the data folder" in capsys.readouterr().err
    assert not (data / "model").exists()


def test_retrain_replaces_the_whole_directory_and_leaves_nothing_beside(data, tmp_path):
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), *TINY]) == 0
    first = _digest(out)
    assert main(["train", str(data), "--out", str(out), *TINY, "--seed", "9"]) == 0
    assert _digest(out) != first
    Reader.load(out)  # checksums agree
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock", "m"]
    assert sorted(os.listdir(out)) == sorted(staging.MODEL_FILES - {FILES.int8})  # int8: by export


def test_swap_by_two_renames_where_exchange_is_missing(data, tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "_exchange", lambda a, b: False)
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), *TINY]) == 0
    first = _digest(out)
    assert main(["train", str(data), "--out", str(out), *TINY, "--seed", "9"]) == 0
    assert _digest(out) != first and not (tmp_path / "m.prev").exists()


def test_a_swap_cut_between_its_renames_is_undone(data, tmp_path):
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), *TINY]) == 0
    old = _digest(out)
    (out / staging.OURS).write_text("1\n")  # as commit marks it before the renames
    out.rename(tmp_path / "m.prev")  # the state right after the first of the two renames
    with StagedModelDir(out):
        pass
    assert _digest(out) == old and not (tmp_path / "m.prev").exists()


@pytest.mark.parametrize("point", ["round-end", "before-swap", "after-exchange", "after-swap"])
def test_kill_at_any_point_leaves_a_loadable_model(data, tmp_path, point):
    """SIGKILL at each point of a retrain: the old model or the new one loads, never a
    mix; the next run (resuming where there is something to resume) completes."""
    out = tmp_path / "m"
    assert _run_cli(["train", str(data), "--out", str(out), *TINY]).returncode == 0
    old = _digest(out)
    killed = _run_cli(["train", str(data), "--out", str(out), *TINY, "--seed", "9"], kill_at=point)
    assert killed.returncode == -9, killed.stderr[-2000:]
    with StagedModelDir(out) as staged:  # what any next writer sees first (recovery)
        interrupted = staged.interrupted()
    assert Reader.load(out).read(next(data.glob("*.png"))).ok
    expected_old = point in ("round-end", "before-swap")
    assert (_digest(out) == old) == expected_old
    again = ["train", str(data), "--out", str(out), *TINY, "--seed", "9"]
    done = _run_cli(again + (["--resume"] if interrupted else []))
    assert done.returncode == 0, done.stderr[-2000:]
    assert _digest(out) != old
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock", "m"]


def _sigterm_a_training(data: Path, tmp_path: Path, python_c: bool = False) -> tuple[int, str]:
    """Start a long training in a fresh process (``-m captcha_ocr.cli``, or ``main`` called
    from ``python -c``), SIGTERM it 3 s after its staging folder appears; (status, stderr)."""
    import signal
    import time

    args = ["train", str(data), "--out", str(tmp_path / "m"), "--init", "none", "--steps", "4000",
            "--batch-size", "8", "--threads", "1", "-q"]
    code = f"import sys; from captcha_ocr.cli import main; sys.exit(main({args!r}))"
    cmd = [sys.executable, "-c", code] if python_c else [sys.executable, "-m", "captcha_ocr.cli", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "m.partial").is_dir() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (tmp_path / "m.partial").is_dir(), "the run never started"
        # Into the training loop (a signal in its first seconds: bench/interrupt_bench.py).
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_sigterm_stops_a_training_as_ctrl_c_does(data, tmp_path):
    """A service manager's stop ends the run with a line, as Ctrl-C does (the --resume
    hint follows where a checkpoint was written)."""
    rc, err = _sigterm_a_training(data, tmp_path)
    assert rc == 130, err[-2000:]
    assert "captcha-ocr train: interrupted" in err and "Traceback" not in err
    assert "no checkpoint yet" in err and "nothing to resume" in err  # 3 s in: none written (every 20 s)
    assert not (tmp_path / "m.partial").exists()  # and no staging folder left behind


def test_an_empty_staging_folder_is_no_obstacle(data, tmp_path):
    """What a removal of ours cut between its last two steps leaves (our mark goes last):
    an empty M.partial, which holds nothing of anyone's."""
    (tmp_path / "m.partial").mkdir()
    assert main(["train", str(data), "--out", str(tmp_path / "m"), *TINY]) == 0


def test_run_without_resume_is_told_about_the_interrupted_one(data, tmp_path, capsys):
    out = tmp_path / "m"

    def interrupt(stats):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(data, out, cfg=recipe("crnn", steps=8, batch_size=8, threads=1), on_epoch=interrupt,
              checkpoint_seconds=0)
    assert not out.exists() and (tmp_path / "m.partial" / "checkpoint").is_dir()
    assert main(["train", str(data), "--out", str(out), *TINY]) != 0
    assert "add --resume to continue it" in capsys.readouterr().err
    assert main(["train", str(data), "--out", str(out), *TINY, "--lr", "0.01", "--resume"]) != 0
    assert "cannot resume: the config differs from the interrupted run's (lr 0.003 -> 0.01)" in \
        capsys.readouterr().err
    # another folder, of another size: the data is named, not the settings it changes
    from conftest import make_captchas

    make_captchas(tmp_path / "other_data", 30, "0123456789", (4, 4), seed=4, size=(100, 32))
    assert main(["train", str(tmp_path / "other_data"), "--out", str(out), *TINY, "--resume"]) != 0
    assert "cannot resume: the data fingerprint differs" in capsys.readouterr().err
    # a speed setting may change: it resumes
    assert main(["train", str(data), "--out", str(out), *TINY, "--threads", "2", "--resume"]) == 0, \
        capsys.readouterr().err
    assert main(["train", str(data), "--out", str(tmp_path / "other"), *TINY, "--resume"]) != 0
    assert "no interrupted run to resume" in capsys.readouterr().err


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_gives_the_same_model_as_an_uninterrupted_run(data, tmp_path, ema):
    # 3 rounds of 30 steps; no plateau hold: whether a run that short crosses its
    # threshold (validation CER 0.5) would decide the round count, not resuming
    cfg = recipe("crnn", steps=90, batch_size=8, threads=1, seed=4, extend=0.0, ema=ema)
    whole = train(data, tmp_path / "whole", cfg=cfg)  # checkpoint_seconds: the default
    rounds = []

    def interrupt_after_two(stats):
        rounds.append(stats.epoch)
        if stats.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "cut", cfg=cfg, on_epoch=interrupt_after_two, checkpoint_seconds=0)
    resumed = train(data, tmp_path / "cut", cfg=cfg, resume=True, on_epoch=lambda s: rounds.append(s.epoch))
    assert rounds == [1, 2, 3] and len(whole.history) == 3
    assert resumed.info.training["resumed"] is True
    assert [h.val_loss for h in resumed.history] == [h.val_loss for h in whole.history]
    weights = [(tmp_path / d / FILES.weights).read_bytes() for d in ("cut", "whole")]
    assert weights[0] == weights[1]


def test_full_disk_is_one_line_and_the_old_model_survives(data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), *TINY]) == 0
    old = _digest(out)
    capsys.readouterr()  # the first run's output (its few-labels warning on stderr)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "m.partial" / "x"))

    monkeypatch.setattr("captcha_ocr.train.atomic_write", full)  # the weights, into m.partial
    assert main(["train", str(data), "--out", str(out), *TINY, "--seed", "9"]) != 0
    err = capsys.readouterr().err.strip()
    assert "No space left on device during training" in err and "untouched" in err
    assert len(err.splitlines()) == 1
    assert _digest(out) == old


def test_export_is_refused_while_a_train_holds_the_directory(data, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), *TINY]) == 0
    with StagedModelDir(out):
        assert main(["export", str(out)]) != 0
    assert "another captcha-ocr process" in capsys.readouterr().err
    assert main(["export", str(out)]) == 0
    Reader.load(out)


@pytest.mark.parametrize("name", ["m.prev", "m.partial"])
def test_a_users_folder_named_like_ours_is_never_touched(data, tmp_path, capsys, name):
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), *TINY]) == 0
    theirs = tmp_path / name
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert main(["train", str(data), "--out", str(out), *TINY, "--seed", "9"]) != 0
    assert "was not made by captcha-ocr" in capsys.readouterr().err
    assert (theirs / "notes.txt").read_text() == "mine" and (out / FILES.info).is_file()


def test_out_that_is_a_link_is_refused(data, tmp_path, capsys):
    real = tmp_path / "real"
    assert main(["train", str(data), "--out", str(real), *TINY]) == 0
    (tmp_path / "link").symlink_to(real)
    assert main(["train", str(data), "--out", str(tmp_path / "link"), *TINY]) != 0
    assert "is a link" in capsys.readouterr().err
    Reader.load(real)


def test_a_checkpoint_cut_between_its_two_files_or_damaged_is_one_line(tmp_path):
    import torch

    from captcha_ocr import checkpoint

    checkpoint.save(tmp_path / "a", {"epoch": 1, "w": torch.zeros(2)})
    checkpoint.save(tmp_path / "b", {"epoch": 2, "w": torch.ones(2)})
    assert checkpoint.load(tmp_path / "b")["epoch"] == 2
    # round 2's tensors beside round 1's JSON: refused, not mixed
    newer = (tmp_path / "b" / checkpoint.STATE_TENSORS).read_bytes()
    (tmp_path / "a" / checkpoint.STATE_TENSORS).write_bytes(newer)
    with pytest.raises(ModelError, match="different saves"):
        checkpoint.load(tmp_path / "a")
    (tmp_path / "b" / checkpoint.STATE_TENSORS).write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot be read"):
        checkpoint.load(tmp_path / "b")


def test_out_that_is_a_file_is_refused_leaving_no_lock(data, tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.csv").write_text("x")
    for out in (tmp_path / "m" / "notes.csv", tmp_path / "m" / "notes.csv" / "deeper"):
        assert main(["train", str(data), "--out", str(out), *TINY]) == 1
        err = capsys.readouterr().err
        assert "is a file" in err or "is under a file" in err
        assert "name a model directory" in err
    assert main(["export", str(tmp_path / "m" / "notes.csv")]) == 1
    assert "--out" not in capsys.readouterr().err  # export has none
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["notes.csv"]  # no lock files


def test_an_interrupt_never_lands_inside_an_import(tmp_path, monkeypatch):
    """SIGTERM (or Ctrl-C) during a long run waits for an import to finish: raised inside
    one it left the module half made (a RuntimeError traceback on Python 3.11, from
    torch's lazy imports at the first optimizer step) or ended the process by SIGINT.
    Two signals during the import give one interrupt after it, and nothing comes later."""
    import signal
    import time

    from captcha_ocr.cli import _interrupt

    (tmp_path / "interrupted_module.py").write_text(
        "import dataclasses, signal\n"
        "signal.raise_signal(signal.SIGTERM)\n"
        "signal.raise_signal(signal.SIGTERM)\n"
        "@dataclasses.dataclass(frozen=True)\n"  # methods exec'd from strings, as torch's
        "class Point:\n"
        "    x: int = 0\n"
        "DONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGALRM)}
    reached = []
    try:
        with pytest.raises(KeyboardInterrupt):
            import interrupted_module  # noqa: F401

            reached.append("imported")
            time.sleep(10)  # the signal comes again here, outside the import
            reached.append("slept")
        time.sleep(0.3)  # no second interrupt, no retry left
        reached.append("after")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.modules.pop("interrupted_module", None)
    assert reached == ["imported", "after"]


def test_sigterm_stops_a_training_started_from_python_c(data, tmp_path):
    """main() called from ``python -c`` (whose code is "<string>", as exec'd code is): the
    signal is taken, not put off until the run ends."""
    rc, err = _sigterm_a_training(data, tmp_path, python_c=True)
    assert rc == 130, err[-2000:]
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.partial").exists()  # nothing to resume
