"""``train --alphabet``: the characters a model can read, completed from the base model
where the labels look like a sample that missed some of the site's characters; and which
images of a partly labeled folder are trained on."""

import json
import random
from pathlib import Path

from captcha_ocr import zoo
from captcha_ocr.cli import main

TINY = ["--steps", "2", "--threads", "1", "-q"]


def relabeled(folder: Path, labels: list[str]) -> Path:
    """Generated captchas with the given labels (the test is about alphabets, not reading)."""
    samples = zoo.write_style("pastel_digits", folder, len(labels), seed=41)
    rows = [f"{s.path.name},{label}" for s, label in zip(samples, labels)]
    (folder / zoo.LABELS_FILE).write_text("file,label\n" + "\n".join(rows) + "\n")
    return folder


SPARSE = ["ab12", "ba21", "c3ab", "ab3c", "12ba", "b2a1", "ab13", "ca23", "3a2b", "b1c2", "Qa21", "ab2c"]


def alphabet(out: Path) -> tuple[str, dict]:
    info = json.loads((out / "model.json").read_text())
    return info["alphabet"], info["training"]["alphabet"]


def test_labels_that_miss_characters_get_the_base_models_rows_for_their_classes(tmp_path, capsys):
    data = relabeled(tmp_path / "data", SPARSE)  # 'Q' appears once: not saturated
    assert main(["train", str(data), "--out", str(tmp_path / "m"), *TINY]) == 0
    chars, record = alphabet(tmp_path / "m")
    assert chars == "".join(sorted("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    assert record["mode"] == "auto" and record["seen_once"] == 1 and "Z" in record["added"]
    assert "from the starting model" in capsys.readouterr().out


def test_saturated_labels_keep_their_own_alphabet(tmp_path):
    data = relabeled(tmp_path / "data", [x for x in SPARSE if "Q" not in x])
    assert main(["train", str(data), "--out", str(tmp_path / "m"), *TINY]) == 0
    assert alphabet(tmp_path / "m") == ("123abc", dict(mode="auto", labels=6, seen_once=0, added=""))


def test_alphabet_labels_and_given_characters(tmp_path):
    data = relabeled(tmp_path / "data", SPARSE)
    assert main(["train", str(data), "--out", str(tmp_path / "a"), *TINY, "--alphabet", "labels"]) == 0
    assert alphabet(tmp_path / "a") == ("123Qabc", dict(mode="labels"))
    assert main(["train", str(data), "--out", str(tmp_path / "b"), *TINY, "--alphabet", "0123abcdQ"]) == 0
    assert alphabet(tmp_path / "b") == ("0123Qabcd", dict(mode="given"))


def test_given_alphabet_without_a_labels_character_is_one_line(tmp_path, capsys):
    data = relabeled(tmp_path / "data", SPARSE)
    rc = main(["train", str(data), "--out", str(tmp_path / "m"), *TINY, "--alphabet", "0123abc"])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "lacks characters the labels use: 'Q'" in err
    assert not (tmp_path / "m").exists()


def test_from_scratch_auto_keeps_to_the_labels(tmp_path):
    data = relabeled(tmp_path / "data", SPARSE)  # no starting model: no rows to take
    assert main(["train", str(data), "--out", str(tmp_path / "m"), *TINY, "--init", "none"]) == 0
    assert alphabet(tmp_path / "m") == ("123Qabc", dict(mode="auto"))


def test_train_on_a_partly_labeled_folder_uses_its_labels_only(tmp_path, capsys):
    # zoo files are numbered (000000.png): stems that would pass for pastel_digits labels
    data = relabeled(tmp_path / "data", SPARSE)
    rows = (data / zoo.LABELS_FILE).read_text().splitlines()
    (data / zoo.LABELS_FILE).write_text("\n".join(rows[:9]) + "\n")  # header and 8 labels
    assert main(["train", str(data), "--out", str(tmp_path / "m"), "--steps", "2", "--threads", "1"]) == 0
    t = json.loads((tmp_path / "m" / "model.json").read_text())["training"]
    assert t["n_train"] + t["n_val"] == 8 and t["labels"] == {"labels.csv": 8, "file names": 0}
    assert "8 labeled images; 4 images not in labels.csv unlabeled (--unlabeled" in capsys.readouterr().err
    assert main(["train", str(data), "--out", str(tmp_path / "s"), *TINY, "--stem-labels"]) == 0
    t = json.loads((tmp_path / "s" / "model.json").read_text())["training"]
    assert t["n_train"] + t["n_val"] == 12 and t["labels"] == {"labels.csv": 8, "file names": 4}


def test_eval_on_the_training_images_says_so(tmp_path, capsys):
    data = relabeled(tmp_path / "data", SPARSE)
    assert main(["train", str(data), "--out", str(tmp_path / "m"), *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", str(data), "--model", str(tmp_path / "m")]) == 0
    assert "warning: these 12 images are from the folder the model was trained on" in capsys.readouterr().err
    other = relabeled(tmp_path / "other", SPARSE[:-1])  # 11 of the 12: not the training set
    assert main(["eval", str(other), "--model", str(tmp_path / "m")]) == 0
    assert "trained on" not in capsys.readouterr().err


def test_case_only_misreadings_suggest_ignore_case(tmp_path, capsys):
    # Lower-case captchas labeled in a random case: what the model cannot see is the case,
    # so its misreadings are case only, and train says what --ignore-case would do.
    data = tmp_path / "data"
    samples = zoo.write_style("gradient_colour", data, 80, seed=5)
    rng = random.Random(0)
    rows = [f"{s.path.name},{''.join(c.upper() if rng.random() < 0.5 else c for c in s.label)}"
            for s in samples]
    (data / zoo.LABELS_FILE).write_text("file,label\n" + "\n".join(rows) + "\n")
    assert main(["train", str(data), "--out", str(tmp_path / "m"), "--steps", "30", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    m = json.loads((tmp_path / "m" / "model.json").read_text())["metrics"]
    assert m["val_sequence_accuracy_ignoring_case"] >= m["val_sequence_accuracy"] + 0.5
    assert "differ from their labels in case only" in out and "train with --ignore-case" in out
    assert main(["train", str(data), "--out", str(tmp_path / "i"), "--steps", "30", "--threads", "1",
                 "--ignore-case"]) == 0
    assert "--ignore-case" not in capsys.readouterr().out
    m = json.loads((tmp_path / "i" / "model.json").read_text())["metrics"]
    acc = m["val_sequence_accuracy"]
    assert m.get("val_sequence_accuracy_ignoring_case", acc) == acc
    # the site's characters given in capitals: read as the model reads them, lower case
    letters = sorted({c for s in samples for c in s.label})
    given = "".join(c.upper() for c in letters)
    assert main(["train", str(data), "--out", str(tmp_path / "a"), "--steps", "2", "--threads", "1",
                 "--ignore-case", "--alphabet", given]) == 0, capsys.readouterr().err
    info = json.loads((tmp_path / "a" / "model.json").read_text())
    assert sorted(info["alphabet"]) == sorted({c.lower() for c in letters})
