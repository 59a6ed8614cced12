"""int8 networks: made by `export --int8`, kept only where they read as well, used by default."""

import json
import shutil

import numpy as np
import pytest

from captcha_ocr import quantize
from captcha_ocr.cli import main
from captcha_ocr.modeldir import FILES, ModelError
from captcha_ocr.runtime import Reader, bundled_model_dir
from captcha_ocr.zoo import write_style


@pytest.fixture(scope="module")
def caps(tmp_path_factory):
    """80 labeled bold_caps images the shipped base model reads zero-shot."""
    folder = tmp_path_factory.mktemp("caps")
    write_style("bold_caps", folder, 80, seed=31)
    return folder


@pytest.fixture
def base_copy(tmp_path):
    dest = tmp_path / "base"
    shutil.copytree(bundled_model_dir("base"), dest)
    return dest


def test_int8_is_written_recorded_and_read_by_default(base_copy, caps, capsys):
    assert main(["export", str(base_copy), "--int8", "--data", str(caps)]) == 0
    out = capsys.readouterr().out
    assert "40 images calibrated the int8 ranges; 40 others: float32 reads" in out and FILES.int8 in out
    assert "(a check on 40 images sees a difference of one image in 40 at best: more labeled " in out
    info = json.loads((base_copy / FILES.info).read_text())
    assert FILES.int8 in info["files"]
    q = info["int8"]
    assert q["calibration_images"] == 40 and q["checked_images"] == 40
    assert q["int8_accuracy"] >= q["fp32_accuracy"] > 0.8
    auto, fp32 = Reader.load(base_copy), Reader.load(base_copy, precision="fp32")
    assert auto.onnx_file == FILES.int8 and fp32.onnx_file == FILES.onnx
    assert (auto.precision, fp32.precision) == ("int8", "fp32")
    assert main(["eval", str(caps), "--model", str(base_copy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "int8"  # eval says which ran
    files = sorted(caps.glob("*.png"))
    a = [r.text for r in auto.read_many(files)]
    b = [r.text for r in fp32.read_many(files)]
    assert np.mean([x == y for x, y in zip(a, b)]) >= 0.9
    # A changed int8 file is refused like a changed model.onnx: one line.
    with open(base_copy / FILES.int8, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="SHA-256 does not match") as e:
        Reader.load(base_copy)
    assert "--int8 --data DIR" in str(e.value) and "--precision fp32" in str(e.value)  # not a plain export
    assert Reader.load(base_copy, precision="fp32").onnx_file == FILES.onnx
    # A damaged model.onnx beside an int8 file: the error names model.onnx, the real damage.
    (base_copy / FILES.onnx).write_bytes(b"half")
    with pytest.raises(ModelError, match=rf"{FILES.onnx}: SHA-256 does not match"):
        Reader.load(base_copy)


def test_int8_that_reads_worse_is_not_kept(base_copy, caps, monkeypatch):
    real = quantize._arrays
    calls = []

    def zero_calibration(reader, samples):
        x, labels = real(reader, samples)
        calls.append(len(x))
        return (np.zeros_like(x) if len(calls) == 1 else x), labels  # ranges from blank images

    monkeypatch.setattr(quantize, "_arrays", zero_calibration)
    with pytest.raises(ModelError, match="not kept"):
        quantize.quantize_model(base_copy, caps)
    assert not (base_copy / FILES.int8).exists()
    assert FILES.int8 not in json.loads((base_copy / FILES.info).read_text())["files"]


def test_int8_asked_of_a_model_without_one_and_options_without_data(base_copy, caps, capsys):
    with pytest.raises(ModelError, match="no int8 network"):
        Reader.load(base_copy, precision="int8")
    assert main(["export", str(base_copy), "--int8"]) == 1
    assert "--int8 needs --data" in capsys.readouterr().err
    assert main(["export", str(base_copy), "--data", str(caps)]) == 1
    assert "--data is for --int8" in capsys.readouterr().err


def test_reexport_from_other_weights_drops_a_stale_int8(base_copy, caps, capsys):
    assert main(["export", str(base_copy), "--int8", "--data", str(caps)]) == 0
    info = json.loads((base_copy / FILES.info).read_text())
    info["int8"]["onnx"] = "0" * 64  # as if it came from another float network
    (base_copy / FILES.info).write_text(json.dumps(info))
    assert main(["export", str(base_copy)]) == 0
    info = json.loads((base_copy / FILES.info).read_text())
    assert FILES.int8 not in info["files"] and info["int8"] == {}
    assert not (base_copy / FILES.int8).exists()
    assert Reader.load(base_copy).onnx_file == FILES.onnx


def test_stem_labels_reach_the_int8_check(base_copy, caps, tmp_path, capsys):
    # A folder labeled by file names, with one correction in labels.csv.
    named = tmp_path / "named"
    named.mkdir()
    rows = (caps / "labels.csv").read_text().splitlines()[1:]
    for row in rows:
        name, label = row.split(",")
        shutil.copy(caps / name, named / f"{label}.png")
    first = rows[0].split(",")[1]
    (named / "labels.csv").write_text(f"file,label\n{first}.png,{first}\n")
    before = (base_copy / FILES.onnx).stat().st_mtime_ns
    assert main(["export", str(base_copy), "--int8", "--data", str(named)]) == 1
    out, err = capsys.readouterr()
    assert "1 labeled images; int8 needs at least 20" in err and "wrote" not in out
    assert (base_copy / FILES.onnx).stat().st_mtime_ns == before  # checked before writing
    assert main(["export", str(base_copy), "--int8", "--data", str(named), "--stem-labels"]) == 0
    assert (base_copy / FILES.int8).exists()
    assert main(["export", str(base_copy), "--stem-labels"]) == 1
    assert "--stem-labels is for --int8 --data DIR" in capsys.readouterr().err


def test_export_int8_checks_its_data_before_writing_anything(base_copy, tmp_path, capsys):
    unlabeled = tmp_path / "unlabeled"
    write_style("bold_caps", unlabeled, 30, seed=5)
    (unlabeled / "labels.csv").unlink()
    for i, f in enumerate(sorted(unlabeled.glob("*.png"))):
        f.rename(unlabeled / f"{i:04d}.png")  # numbered: no labels anywhere
    before = (base_copy / FILES.onnx).stat().st_mtime_ns
    assert main(["export", str(base_copy), "--int8", "--data", str(unlabeled)]) == 1
    out, err = capsys.readouterr()
    assert "wrote" not in out and len(err.strip().splitlines()) == 1
    assert (base_copy / FILES.onnx).stat().st_mtime_ns == before


def test_export_int8_on_the_training_images_warns(trained, subset, tmp_path, capsys):
    copy = tmp_path / "m"
    shutil.copytree(trained.model_dir, copy)
    main(["export", str(copy), "--int8", "--data", str(subset)])  # kept or not: the warning comes first
    assert "holds the images the model was trained on" in capsys.readouterr().err



def test_int8_check_on_another_sites_images_is_refused(tmp_path, caps, capsys):
    """Capitals for a model of captcha_images_v2's 19 symbols, or labels float32 never
    matches: the comparison would be 0 against 0, so no int8 is written."""
    model = tmp_path / "civ2"
    shutil.copytree(bundled_model_dir("captcha_images_v2"), model)
    before = (model / FILES.onnx).stat().st_mtime_ns
    assert main(["export", str(model), "--int8", "--data", str(caps)]) == 1
    out, err = capsys.readouterr()
    assert err.strip().endswith("give --data labeled images of the site this model reads")
    assert "80 of 80 labels hold characters" in err and len(err.strip().splitlines()) == 1
    assert not (model / FILES.int8).exists() and out == ""  # before anything is written
    assert (model / FILES.onnx).stat().st_mtime_ns == before
    wrong = tmp_path / "wrong"
    shutil.copytree(caps, wrong)
    rows = (wrong / "labels.csv").read_text().splitlines()
    pairs = [r.split(",") for r in rows[1:]]  # every first character changed
    (wrong / "labels.csv").write_text("\n".join(
        [rows[0]] + [f"{name},{'Q' if label[0] != 'Q' else 'X'}{label[1:]}" for name, label in pairs]))
    base = tmp_path / "base"
    shutil.copytree(bundled_model_dir("base"), base)
    assert main(["export", str(base), "--int8", "--data", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert "float32 reads none of 40 images right" in err and not (base / FILES.int8).exists()


def test_int8_of_a_one_case_model_compares_in_one_case(tmp_path, caps, capsys):
    """A model trained with --ignore-case is checked as eval checks it: the labels'
    case (here lower, for capitals the model reads) does not count."""
    lower = tmp_path / "lower"
    shutil.copytree(caps, lower)
    rows = (lower / "labels.csv").read_text().splitlines()
    (lower / "labels.csv").write_text("\n".join([rows[0]] + [r.lower() for r in rows[1:]]))
    base = tmp_path / "base"
    shutil.copytree(bundled_model_dir("base"), base)
    info = json.loads((base / FILES.info).read_text())
    info["training"]["ignore_case"] = True
    (base / FILES.info).write_text(json.dumps(info))
    assert main(["export", str(base), "--int8", "--data", str(lower)]) == 0, capsys.readouterr().err
    assert json.loads((base / FILES.info).read_text())["int8"]["fp32_accuracy"] > 0.8
