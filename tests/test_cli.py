"""The command line in-process: exit codes, one-line errors, output formats."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from captcha_ocr.cli import main
from conftest import make_captchas


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train", "eval", "predict", "export", "download"):
        assert cmd in out


def assert_one_line_error(rc, err, *needles):
    assert rc == 1
    assert len(err.splitlines()) == 1 and "Traceback" not in err  # no blank line either
    for n in needles:
        assert n in err


def test_train_empty_folder(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rc, _, err = run(capsys, "train", data, "--out", tmp_path / "m", "-q")
    assert_one_line_error(rc, err, "no images", str(data))


def test_train_missing_folder(capsys, tmp_path):
    rc, _, err = run(capsys, "train", tmp_path / "nope", "--out", tmp_path / "m", "-q")
    assert_one_line_error(rc, err, "nope")


def test_train_and_eval_on_numbered_files_say_they_are_not_labels(capsys, tmp_path, synth_dir):
    for i, p in enumerate(sorted(synth_dir.glob("*.png"))):
        p.rename(synth_dir / f"captcha_{i}.png")
    rc, _, err = run(capsys, "train", synth_dir, "--out", tmp_path / "m", "-q")
    assert_one_line_error(rc, err, "captcha_0 ... captcha_11: a word and a number",
                          f"captcha-ocr label {synth_dir}")
    rc, _, err = run(capsys, "eval", synth_dir)
    assert_one_line_error(rc, err, "are not labels")
    assert not (tmp_path / "m").exists()


def test_predict_without_model_dir(capsys, tmp_path, synth_dir):
    rc, _, err = run(capsys, "predict", synth_dir, "--model", tmp_path)
    assert_one_line_error(rc, err, "not a model directory")


def test_eval_label_with_unknown_characters_counts_wrong_and_goes_on(capsys, synth_dir):
    """The bundled model knows 19 symbols; a label outside them is one wrong image, not
    the end of the run."""
    first = sorted(synth_dir.glob("*.png"))[0]
    shutil.copy(first, synth_dir / "2b3c4.png")  # a label the model can read
    (synth_dir / "labels.csv").write_text(f"file,label\n{first.name},AAA\n")
    rc, out, err = run(capsys, "eval", synth_dir, "--json", "--stem-labels")
    report = json.loads(out)
    assert rc == 0 and report["n"] == 13
    bad = [e for e in report["errors"] if e["label"] == "AAA"]
    assert len(bad) == 1 and "does not know: 'A'" in bad[0]["error"]
    rc, out, err = run(capsys, "eval", synth_dir, "--stem-labels")
    assert rc == 0 and "warning: " in err and len(err.strip().splitlines()) == 1
    assert "images: 13" in out


def test_eval_of_a_partly_labeled_folder_reads_the_labeled_images_and_says_so(capsys, synth_dir):
    names = sorted(p.name for p in synth_dir.glob("*.png"))[:3]
    (synth_dir / "labels.csv").write_text("file,label\n" + "".join(f"{n},{n[:-4]}\n" for n in names))
    rc, out, err = run(capsys, "eval", synth_dir, "--json")
    assert rc == 0 and json.loads(out)["n"] == 3
    assert "3 labeled images; 9 images not in labels.csv unlabeled (--stem-labels" in err


def test_long_error_lines_do_not_wrap_when_piped(capsys, tmp_path):
    bad = tmp_path / ("a-rather-long-file-name-" * 4 + ".png")
    bad.write_bytes(b"not an image")
    rc, _, err = run(capsys, "predict", bad, "--model", "captcha_images_v2")
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 2 and lines[0].startswith("error: ") and len(lines[0]) > 80


def test_predict_without_model_says_it_reads_with_the_shipped_one(capsys, subset):
    image = sorted(subset.glob("*.png"))[0]
    rc, out, err = run(capsys, "predict", image)
    assert rc == 0 and out.startswith(str(image))
    assert err.strip() == ("reading with the shipped captcha_images_v2 model (that set's style only); "
                           "for your site's captchas pass --model MODEL_DIR")
    rc, out_named, err = run(capsys, "predict", image, "--model", "captcha_images_v2")
    assert rc == 0 and out_named == out and err == ""


def test_predict_bad_image_fails_alone(capsys, trained, subset, tmp_path):
    good = sorted(subset.glob("*.png"))[:2]
    folder = tmp_path / "mixed"
    folder.mkdir()
    for g in good:
        shutil.copy(g, folder / g.name)
    (folder / "0truncated.png").write_bytes(good[0].read_bytes()[:300])
    rc, out, err = run(capsys, "predict", folder, "--model", trained.model_dir, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["0truncated.png", *[g.name for g in good]]
    assert "error" in rows[0] and all("error" not in r for r in rows[1:])
    assert rc == 1 and "1 of 3 images could not be read" in err
    rc, out, err = run(capsys, "predict", folder, "--model", trained.model_dir)
    lines = out.splitlines()  # one per input, in order, the unreadable one too
    assert [line.split("\t")[0].rsplit("/", 1)[1] for line in lines] == \
        ["0truncated.png", *[g.name for g in good]]
    assert lines[0].endswith("0truncated.png\t\tERROR") and "ERROR" not in "".join(lines[1:])
    assert rc == 1 and "0truncated.png" in err
    rc, out, _ = run(capsys, "predict", folder, "--model", trained.model_dir, "--solve")
    assert out.splitlines()[0].endswith("0truncated.png\t\t-\tERROR")  # the answer's column too


def _predict_stdin(args: list[str], data: bytes | None) -> subprocess.CompletedProcess:
    """predict in a fresh process, ``data`` piped to its standard input (None: a terminal)."""
    code = f"import sys; from captcha_ocr.cli import main; sys.exit(main({['predict', *args]!r}))"
    if data is not None:
        return subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=120)
    import pty

    parent, child = pty.openpty()
    try:
        return subprocess.run([sys.executable, "-c", code], stdin=child, capture_output=True, timeout=120)
    finally:
        os.close(parent)
        os.close(child)


def test_predict_reads_an_image_piped_to_standard_input(subset):
    f = sorted(subset.glob("*.png"))[0]
    piped = _predict_stdin(["-", str(f), "--model", "captcha_images_v2"], f.read_bytes())
    rows = piped.stdout.decode().splitlines()
    assert piped.returncode == 0 and rows[0].split("\t")[0] == "-"
    assert rows[0].split("\t")[1] == rows[1].split("\t")[1]  # the same reading as from its file
    bad = _predict_stdin(["-", "--model", "captcha_images_v2"], b"not an image")
    assert bad.returncode == 1 and bad.stderr.decode().splitlines() == [
        "error: <stdin>: not an image in a supported format (PNG, JPEG, GIF, BMP, WEBP)",
        "captcha-ocr predict: error: 1 of 1 images could not be read"]
    empty = _predict_stdin(["-", "--model", "captcha_images_v2"], b"")
    assert empty.returncode == 1 and "error: <stdin>: no data: pipe an image in" in empty.stderr.decode()
    twice = _predict_stdin(["-", "-", "--model", "captcha_images_v2"], f.read_bytes())
    assert twice.returncode == 1 and twice.stderr.decode().strip() == \
        "captcha-ocr predict: error: '-' (an image on standard input) can be given once"
    terminal = _predict_stdin(["-", "--model", "captcha_images_v2"], None)
    assert terminal.returncode == 1 and terminal.stderr.decode().strip() == (
        "captcha-ocr predict: error: '-' reads one image from standard input: pipe one in "
        "(captcha-ocr predict - < x.png)")


def test_predict_text_output(capsys, trained, subset):
    f = sorted(subset.glob("*.png"))[0]
    rc, out, _ = run(capsys, "predict", f, "--model", trained.model_dir)
    path, text = out.rstrip("\n").split("\t")
    assert rc == 0 and path == str(f) and text.isprintable()


def test_export_recreates_onnx(capsys, trained, subset, tmp_path):
    from captcha_ocr import Reader

    copy = tmp_path / "m"
    shutil.copytree(trained.model_dir, copy)
    (copy / "model.onnx").unlink()
    rc, out, _ = run(capsys, "export", copy)
    assert rc == 0 and "max |ONNX - PyTorch|" in out
    files = sorted(subset.glob("*.png"))[:8]
    assert [r.text for r in Reader.load(copy).read_many(files)] == \
           [r.text for r in Reader.load(trained.model_dir).read_many(files)]


@pytest.mark.parametrize("args", [
    ["predict", "x.png", "--batch-size", "0"],
    ["eval", "d", "--batch-size", "-1"],
    ["train", "d", "--out", "m", "--val-fraction", "1.5"],
    ["train", "d", "--out", "m", "--height", "4"],
    ["train", "d", "--out", "m", "--epochs", "0"],
    ["serve", "--max-batch", "0"],
    ["serve", "--port", "99999"],
    ["serve", "--drain", "-1"],
    ["serve", "--drain", "nan"],
    ["serve", "--max-wait-ms", "inf"],
    ["serve", "--root-path", "ocr"],
    ["serve", "--root-path", "/a b"],
    ["serve", "--root-path", "/ocré"],
    ["serve", "--root-path", "/a/../b"],
])
def test_bad_numbers_refused_by_the_parser(capsys, args):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "must be" in err


def test_train_unwritable_out_fails_before_training(capsys, synth_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc, _, err = run(capsys, "train", synth_dir, "--out", blocker / "m", "-q")
    assert_one_line_error(rc, err, "is under a file, not in a folder")


def test_predict_empty_folder(capsys, tmp_path):
    rc, _, err = run(capsys, "predict", tmp_path)
    assert_one_line_error(rc, err, "no images found")
    make_captchas(tmp_path / "site", 2, "abc", (3, 3), seed=1)  # the images one level down
    rc, _, err = run(capsys, "predict", tmp_path)
    assert_one_line_error(rc, err, "its subfolder site holds images")


def test_predict_gives_a_folder_of_no_images_among_other_paths_its_own_line(capsys, tmp_path, synth_dir):
    good = sorted(synth_dir.glob("*.png"))[0]
    (tmp_path / "empty").mkdir()
    (tmp_path / "dir.png").mkdir()  # a folder named like an image
    paths = [good, tmp_path / "empty", tmp_path / "dir.png", good]
    rc, out, err = run(capsys, "predict", *paths, "--model", "captcha_images_v2")
    lines = out.splitlines()
    assert rc == 1 and len(lines) == 4 and lines[0] == lines[3] and lines[0].startswith(f"{good}\t")
    assert lines[1:3] == [f"{tmp_path / 'empty'}\t\tERROR", f"{tmp_path / 'dir.png'}\t\tERROR"]
    assert [x for x in err.splitlines() if x.startswith("error:")] == [
        f"error: {tmp_path / n}: a folder with no images (expected .png, .jpg, .jpeg, .gif, .bmp, .webp)"
        for n in ("empty", "dir.png")]
    assert err.splitlines()[-1].endswith("error: 2 of 4 inputs could not be read")


def test_provider_cuda_loads_or_says_how_to_get_it(capsys, tmp_path):
    import onnxruntime as ort
    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("L", (200, 50), 255).save(img)
    rc, out, err = run(capsys, "predict", img, "--provider", "cuda")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert rc == 0 and out.startswith(str(img))
    else:
        assert_one_line_error(rc, err, "provider 'cuda' is not available", "onnxruntime-gpu")
    rc, out, _ = run(capsys, "predict", img, "--provider", "cpu")
    assert rc == 0 and out.startswith(str(img))


def test_low_confidence_is_shown_rounded_down_never_up_to_the_threshold():
    from captcha_ocr.cli import _floor3

    assert _floor3(0.999983) == "0.999" and _floor3(0.5) == "0.500" and _floor3(1.0) == "1.000"


@pytest.mark.parametrize("package, extra", [("fastapi", "serve"), ("torch", "train")])
def test_a_missing_extra_is_one_line_saying_what_to_install(tmp_path, synth_dir, package, extra):
    """In a reading install (`pip install -e .`) the commands that need torch or FastAPI
    say which extra to install, not a traceback (the package blocked in a fresh process)."""
    command = ["serve"] if extra == "serve" else ["train", str(synth_dir), "--out", str(tmp_path / "m")]
    code = (f"import sys; sys.modules[{package!r}] = None; from captcha_ocr.cli import main; "
            f"sys.exit(main({command!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    err = done.stderr.strip()
    assert done.returncode == 1 and len(err.splitlines()) == 1, err
    assert f"needs the {package} package of the [{extra}] extra" in err


def test_retraining_says_the_old_int8_network_is_gone(capsys, synth_dir, tmp_path):
    out = tmp_path / "m"
    assert main(["train", str(synth_dir), "--out", str(out), "--steps", "5", "-q"]) == 0
    (out / "model.int8.onnx").write_bytes(b"the old weights' int8 network")
    capsys.readouterr()
    assert main(["train", str(synth_dir), "--out", str(out), "--steps", "5", "-q"]) == 0
    said = capsys.readouterr().out
    assert "the earlier model.int8.onnx was the old weights' and is gone" in said
    assert not (out / "model.int8.onnx").exists()


def test_a_resumed_run_says_which_rounds_ran_before():
    import io

    from rich.console import Console

    from captcha_ocr.cli import _EpochProgress
    from captcha_ocr.train import EpochStats

    out = io.StringIO()
    with _EpochProgress(Console(file=out, width=200), 5, quiet=False) as progress:
        for k in (4, 5):  # rounds 1-3 came from the checkpoint
            progress.epoch(EpochStats(k, 0.5, 0.6, 0.9, 0.02, 1.0))
    lines = out.getvalue().splitlines()
    assert lines[0] == ("(rounds 1-3 came from the last checkpoint; later rounds that ran before "
                        "the interruption run again)")
    assert lines[1].startswith("epoch   4/5") and lines[2].startswith("epoch   5/5")
    assert "ran before" not in out.getvalue().split("\n", 1)[1]  # said once


def test_steps_and_epochs_together_are_refused(capsys, synth_dir, tmp_path):
    rc, _, err = run(capsys, "train", synth_dir, "--out", tmp_path / "m", "--steps", "60", "--epochs", "1")
    assert_one_line_error(rc, err, "--steps and --epochs both set the budget")
    assert not (tmp_path / "m").exists()


def test_training_into_a_model_says_it_replaces_it(capsys, synth_dir, tmp_path):
    args = ("train", synth_dir, "--out", tmp_path / "m", "--steps", "2", "--threads", "1")
    rc, _, err = run(capsys, *args)
    assert rc == 0 and "training" in err and "holds a model" not in err
    rc, _, err = run(capsys, *args)
    assert rc == 0 and "holds a model: this run replaces it when it is complete" in err


def test_training_on_few_labels_warns_and_says_how_few_judged_it(capsys, synth_dir, tmp_path):
    rc, out, err = run(capsys, "train", synth_dir, "--out", tmp_path / "m", "--steps", "2", "--threads", "1")
    assert rc == 0 and "validation sequence accuracy" in out
    warning = [line for line in err.splitlines() if line.startswith("warning: only")]
    assert warning == ["warning: only 12 labeled images (the accuracy above is from 1 validation image: "
                       "a rough guide); fine-tuning the shipped base reads most styles well from 50 "
                       "labels on (README: Benchmarks): label more with captcha-ocr label DIR, and "
                       "check the model with captcha-ocr eval on images it did not train on"]


def test_fifty_labels_train_without_the_few_labels_warning(capsys, tmp_path):
    make_captchas(tmp_path / "d", 50, "abc123", (3, 4), seed=3)
    rc, _, err = run(capsys, "train", tmp_path / "d", "--out", tmp_path / "m", "--steps", "2",
                     "--threads", "1")
    assert rc == 0 and "warning: only" not in err


def test_predict_lines_reach_stdout_while_its_bar_draws_on_a_terminal(capsys, monkeypatch, synth_dir):
    """``predict DIR > out.tsv`` typed at a terminal: the bar on stderr, every line in the file."""
    from rich.console import Console

    import captcha_ocr.cli as cli

    monkeypatch.setattr(cli, "_err_console",
                        lambda: Console(stderr=True, force_terminal=True, highlight=False))
    rc, out, err = run(capsys, "predict", synth_dir)
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 12 and all(line.count("\t") == 1 for line in lines)
    assert "reading" in err and ".png" not in err  # the bar, and no reading, on the terminal


@pytest.mark.parametrize("args", [["predict", ""], ["predict", "x.png", "--model", ""], ["eval", ""],
                                  ["train", "", "--out", "m"], ["train", "d", "--out", ""],
                                  ["export", ""], ["label", ""], ["download", "--dest", ""]])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(capsys, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    make_captchas(tmp_path, 3, "abc", (3, 3), seed=1)  # what "" would have read
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "an empty path (an unset shell variable?)" in err


def test_an_image_read_as_nothing_says_no_reading_not_low_confidence(capsys, tmp_path):
    from PIL import Image

    Image.new("L", (200, 50), 255).save(tmp_path / "white.png")
    rc, out, _ = run(capsys, "predict", tmp_path / "white.png")
    assert rc == 0 and out == f"{tmp_path / 'white.png'}\t\tNO READING\n"


@pytest.mark.parametrize("kind", ["missing", "empty", "other files"])
def test_export_of_no_model_directory_is_one_line_and_leaves_no_lock(capsys, tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    if kind != "missing":
        (tmp_path / "m").mkdir()
    if kind == "other files":
        (tmp_path / "m" / "model.onnx").write_bytes(b"x")
    rc, _, err = run(capsys, "export", "m")
    assert_one_line_error(rc, err, "m: not a model directory (no model.json); name one written by "
                                   "'captcha-ocr train' (export rewrites its model.onnx)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if kind == "missing" else ["m"])


def test_int8_of_a_shipped_model_says_to_export_a_copy(capsys):
    rc, _, err = run(capsys, "predict", "x.png", "--model", "base", "--precision", "int8")
    assert_one_line_error(rc, err, "base (a shipped model): has no int8 network; make one for a copy: "
                                   "cp -r ")
    assert "captcha-ocr export M --int8 --data DIR" in err


def test_predict_names_what_in_a_folder_is_called_an_image_but_is_no_file(capsys, tmp_path, synth_dir):
    import os

    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "a.png").write_bytes(sorted(synth_dir.glob("*.png"))[0].read_bytes())
    (folder / "b.png").symlink_to(tmp_path / "nowhere")
    os.mkfifo(folder / "c.png")
    (folder / "d.png").symlink_to(folder / "d.png")
    rc, out, err = run(capsys, "predict", folder, "--model", "captcha_images_v2")
    assert rc == 1 and out.startswith(f"{folder / 'a.png'}\t") and \
        out.splitlines()[1:] == [f"{folder / n}\t\tERROR" for n in ("b.png", "c.png", "d.png")]
    assert [line.rsplit(": ", 1)[0].split(".png")[0] + ".png" for line in err.splitlines()[:3]] == \
           [f"error: {folder / n}" for n in ("b.png", "c.png", "d.png")]
    assert err.splitlines()[3].endswith("error: 3 of 4 images could not be read")


@pytest.mark.parametrize("command", [["serve"], ["label", "."]])
def test_a_port_in_use_is_one_line_before_anything_starts(capsys, command, monkeypatch):
    import socket
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc, _, err = run(capsys, *command, "--port", port)
    assert rc == 1 and opened == []
    assert err.strip() == (f"captcha-ocr {command[0]}: error: port {port} on 127.0.0.1 is in use "
                           "(another server?): stop it, or pass --port with a free one")


def test_predict_and_eval_take_max_pixels(capsys, tmp_path):
    """A legitimate large scan is read where --max-pixels allows it (the message names
    the option; predict and eval had none)."""
    from PIL import Image

    big = tmp_path / "ab12c.png"
    Image.new("L", (3000, 2000), 255).save(big)
    assert main(["predict", str(big)]) != 0
    assert "over the limit of 4,000,000 pixels" in capsys.readouterr().err
    assert main(["predict", str(big), "--max-pixels", "6000000"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path)]) == 0
    assert "over the limit of 4,000,000 pixels" in capsys.readouterr().out
    assert main(["eval", str(tmp_path), "--max-pixels", "6000000"]) == 0
    assert "over the limit" not in capsys.readouterr().out


def test_predict_names_a_subfolder_of_images_it_does_not_read(capsys, tmp_path):
    make_captchas(tmp_path, 2, "2345678", (5, 5), seed=2, size=(200, 50))
    make_captchas(tmp_path / "more", 2, "2345678", (5, 5), seed=3, size=(200, 50))
    assert main(["predict", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2 and "more" not in out
    assert f"note: {tmp_path}; its subfolder more holds images, and only the folder itself is read" in err
    (tmp_path / "scan.TIFF").write_bytes(b"II*\x00")  # a format the gate does not decode
    assert main(["predict", str(tmp_path)]) == 0
    assert f"note: {tmp_path} holds 1 image in formats that are not read (scan.TIFF): convert them " \
        "to PNG" in capsys.readouterr().err
