"""Train briefly on real images through the CLI, then eval and predict the result."""

import json

from captcha_ocr.cli import main
from captcha_ocr.labelcheck import CONFIDENT
from captcha_ocr.modeldir import FILES


def test_train_eval_predict(subset, tmp_path, capsys):
    out = tmp_path / "m"
    rc = main(["train", str(subset), "--out", str(out), "--epochs", "3", "--seed", "5", "-q",
               "--init", "none"])  # from scratch: the input decided from the images alone
    summary = capsys.readouterr().out
    assert rc == 0, summary
    assert "validation sequence accuracy" in summary and str(out) in summary
    for name in (FILES.weights, FILES.info, FILES.onnx, FILES.history, FILES.curves, FILES.grid):
        assert (out / name).stat().st_size > 0, name
    info = json.loads((out / FILES.info).read_text())
    assert info["alphabet"] == "2345678bcdefgmnpwxy"
    # The input is decided from the images: grey, the captcha's height, its aspect.
    image = info["image"]
    assert image["channels"] == 1 and image["height"] == 32
    assert image == info["training"]["input"]["chosen"]
    assert info["training"]["command"].startswith("captcha-ocr train")
    rows = (out / FILES.history).read_text().splitlines()
    assert rows[0].split(",")[:3] == ["epoch", "train_loss", "val_loss"]
    losses = [float(r.split(",")[1]) for r in rows[1:]]
    assert len(losses) == 3 and losses[-1] < losses[0]

    assert main(["eval", str(subset), "--model", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"n", "sequence_accuracy", "cer", "precision", "errors"}
    assert report["precision"] == "fp32"
    assert report["n"] == 240 and 0 <= report["sequence_accuracy"] <= 1
    assert len(report["errors"]) == round(240 * (1 - report["sequence_accuracy"]))
    # Each wrong reading carries its confidence; a confident one flags the label to check.
    assert all(set(e) == {"file", "label", "prediction", "confidence", "label_to_check"}
               and e["label_to_check"] == (e["confidence"] >= CONFIDENT
                                           and set(e["prediction"]) <= set("2345678bcdefgmnpwxy"))
               for e in report["errors"])

    files = sorted(subset.glob("*.png"))[:3]
    assert main(["predict", *map(str, files), "--model", str(out), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["path"] for x in lines] == [str(f) for f in files]
    assert all(set(x) == {"path", "text", "confidence", "accepted"} and 0 <= x["confidence"] <= 1
               for x in lines)


def test_train_colour_variable_length_any_size(tmp_path, capsys):
    """Another style: colour, 3-6 characters, Unicode, another input size."""
    from conftest import make_captchas

    data = tmp_path / "data"
    made = make_captchas(data, 40, "aбcdé12", (3, 6), seed=11, size=(150, 40), ext="jpg")
    out = tmp_path / "m"
    rc = main(["train", str(data), "--out", str(out), "--epochs", "2", "--channels", "3",
               "--height", "32", "--width", "128", "-q"])
    assert rc == 0, capsys.readouterr().err
    info = json.loads((out / FILES.info).read_text())
    assert info["alphabet"] == "".join(sorted(set("".join(label for _, label in made))))
    assert {k: info["image"][k] for k in ("height", "width", "channels")} == \
        {"height": 32, "width": 128, "channels": 3}
    capsys.readouterr()
    assert main(["predict", str(made[0][0]), "--model", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(made[0][0])


def test_train_names_unreadable_images_before_training_once(tmp_path, capsys):
    from captcha_ocr.zoo import write_style

    folder = tmp_path / "data"
    write_style("pastel_digits", folder, 30, seed=4)
    (folder / "000001.png").write_bytes(b"not a png")  # still named in labels.csv
    assert main(["train", str(folder), "--out", str(tmp_path / "m"), "--steps", "2", "--threads", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    named = [i for i, line in enumerate(err) if line.startswith(f"skipped {folder / '000001.png'}: ")]
    first_round = next(i for i, line in enumerate(err) if line.startswith("epoch "))
    assert len(named) == 1 and named[0] < first_round


def test_an_unreadable_image_neither_adds_characters_nor_hides_the_training_folder(tmp_path, capsys):
    """A corrupt file's label adds nothing to the alphabet, and eval still knows the
    folder for the one the model was trained on (training's fingerprint was of the
    readable images only, eval's of every file: the warning was missing)."""
    from conftest import make_captchas

    data = tmp_path / "data"
    make_captchas(data, 30, "0123456789", (4, 4), seed=5, size=(100, 32))
    (data / "BOMB.png").write_bytes(b"not a png at all")  # its name holds B, O and M
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), "--init", "none", "--steps", "2",
                 "--threads", "1", "-q"]) == 0, capsys.readouterr().err
    info = json.loads((out / FILES.info).read_text())
    assert info["alphabet"] == "0123456789" and info["training"]["n_skipped"] == 1
    capsys.readouterr()
    assert main(["eval", str(data), "--model", str(out)]) == 0
    assert "from the folder the model was trained on" in capsys.readouterr().err
    (data / "extra.png").write_bytes((data / "BOMB.png").read_bytes())  # another folder now
    assert main(["eval", str(data), "--model", str(out)]) == 0
    assert "from the folder the model was trained on" not in capsys.readouterr().err


def test_a_label_too_long_for_the_width_stops_before_any_work(tmp_path, capsys):
    """Checked on the labels before the bases are compared or anything is left behind."""
    from conftest import make_captchas

    data = tmp_path / "data"
    make_captchas(data, 12, "ABCDE", (5, 5), seed=6, size=(100, 32))
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), "--width", "8"]) != 0
    err = capsys.readouterr().err
    assert "time steps but a 8-pixel-wide input gives 2; use a larger --width" in err
    assert "picked" not in err and "base2" not in err  # no comparison of the bases ran
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock", "data"]  # no m.partial


def test_quiet_training_still_says_what_is_odd_about_the_labels(tmp_path, capsys):
    """-q hides the rounds, not a note on the labels (a space in one: a new user's trial
    missed it under -q)."""
    from conftest import make_captchas

    data = tmp_path / "data"
    made = make_captchas(data, 16, "0123456789", (4, 4), seed=8, size=(100, 32))
    rows = [(p.name, label[:2] + " " + label[2:] if i == 0 else label) for i, (p, label) in enumerate(made)]
    (data / "labels.csv").write_text("file,label\n" + "".join(f"{n},{label}\n" for n, label in rows))
    assert main(["train", str(data), "--out", str(tmp_path / "m"), "--init", "none", "--steps", "2",
                 "--threads", "1", "-q"]) == 0
    err = capsys.readouterr().err
    assert "a space in 1 label" in err and "epoch " not in err and "training " not in err
