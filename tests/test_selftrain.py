"""Self-training (``train --unlabeled``): which readings become labels, and the run end to end."""

import json
import shutil
from pathlib import Path

import pytest

from captcha_ocr import zoo
from captcha_ocr.cli import main
from captcha_ocr.data import Sample
from captcha_ocr.finetune import load_init
from captcha_ocr.modeldir import FILES, ModelError
from captcha_ocr.selftrain import pseudo_labels, self_train
from captcha_ocr.train import recipe, train

STYLE = "pastel_digits"  # four digits; the shipped base reads it well zero-shot


@pytest.fixture(scope="module")
def unlabeled(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """40 generated captchas without labels, a damaged file among them; their true texts."""
    folder = tmp_path_factory.mktemp("unlabeled")
    truth = {}
    for s in zoo.write_style(STYLE, folder, 40, seed=31):
        truth[s.path.name] = s.label
    (folder / zoo.LABELS_FILE).unlink()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder, truth


def labeled(*labels: str) -> list[Sample]:
    return [Sample(Path(f"/nowhere/{i}.png"), t) for i, t in enumerate(labels)]


def test_confident_readings_become_labels_and_are_mostly_right(unlabeled):
    folder, truth = unlabeled
    kept, record = pseudo_labels("base", folder, labeled("0123", "4567", "8901"), 0.9)
    assert record == dict(folder=str(folder), images=41, available=41, kept=len(kept),
                          min_confidence=0.9)
    assert len(kept) >= 30  # the base reads this style at about 0.98
    assert "broken.png" not in {s.path.name for s in kept}  # unreadable: left out, no crash
    right = sum(s.label == truth[s.path.name] for s in kept)
    assert right >= 0.95 * len(kept)


def test_a_higher_threshold_keeps_fewer(unlabeled):
    folder, _ = unlabeled
    digits = labeled("0123", "4567", "8901")
    loose, _ = pseudo_labels("base", folder, digits, 0.0)
    strict, _ = pseudo_labels("base", folder, digits, 0.9999)
    assert {s.path for s in strict} < {s.path for s in loose}


def test_readings_outside_the_labels_lengths_and_alphabet_are_dropped(unlabeled):
    folder, _ = unlabeled
    kept, _ = pseudo_labels("base", folder, labeled("01234", "567890"), 0.0)
    assert kept == []  # four digits never fit labels of five and six
    kept, _ = pseudo_labels("base", folder, labeled("0123", "0011"), 0.0)
    assert all(set(s.label) <= set("0123") for s in kept)


def test_a_large_folder_is_read_in_part_the_same_images_every_time(unlabeled):
    folder, _ = unlabeled
    digits = labeled("0123", "4567", "8901")
    kept, record = pseudo_labels("base", folder, digits, 0.0, max_images=10)
    assert record["images"] == 10 and record["available"] == 41 and 0 < len(kept) <= 10
    names = sorted(p.name for p in folder.glob("*.png"))
    spaced = {names[i] for i in (0, 4, 9, 13, 18, 22, 27, 31, 36, 40)}  # 40/9 apart, rounded
    assert {s.path.name for s in kept} <= spaced and len(kept) >= 8
    again, _ = pseudo_labels("base", folder, digits, 0.0, max_images=10)
    assert again == kept
    assert pseudo_labels("base", folder, digits, 0.0, max_images=0)[1]["images"] == 41


def test_labeled_files_in_the_folder_are_not_pseudo_labeled(unlabeled):
    folder, _ = unlabeled
    mine = sorted(folder.glob("0*.png"))[:5]
    kept, record = pseudo_labels("base", folder, [Sample(p, "0000") for p in mine], 0.0)
    assert record["images"] == 36 and not {s.path for s in kept} & set(mine)


def test_train_unlabeled_end_to_end(capsys, tmp_path, unlabeled):
    folder, _ = unlabeled
    data = tmp_path / "data"
    zoo.write_style(STYLE, data, 30, seed=32)
    out = tmp_path / "m"
    rc = main(["train", str(data), "--out", str(out), "--unlabeled", str(folder),
               "--steps", "30", "--threads", "1"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "pseudo-labels:" in captured.err
    assert "s in all (the last run " in captured.out  # both runs and the reading timed
    info = json.loads((out / "model.json").read_text())
    pl = info["training"]["pseudo_labels"]
    assert pl["images"] == 41 and pl["trained_on"] == pl["kept"] > 0
    assert info["training"]["n_train"] == 27 + pl["kept"]  # 30 labeled, 3 of them validate
    assert info["training"]["n_val"] == 3  # validation keeps to the human labels
    # model.json knows the labeled folder as its training data: eval on it warns
    assert info["training"]["n_images"] == 30
    assert main(["eval", str(data), "--model", str(out)]) == 0
    assert "from the folder the model was trained on" in capsys.readouterr().err


@pytest.mark.parametrize("args, needle", [
    (["--unlabeled", "{u}", "--resume"], "no interrupted run to resume"),
    (["--pseudo-confidence", "0.8"], "--pseudo-confidence needs --unlabeled"),
    (["--unlabeled-max", "100"], "--unlabeled-max needs --unlabeled"),
    (["--unlabeled", "{missing}"], "no such folder"),
    (["--unlabeled", "{empty}"], "no images there besides the labeled ones"),
    (["--unlabeled", "{data}"], "no images there besides the labeled ones"),
])
def test_train_unlabeled_errors_are_one_line(capsys, tmp_path, unlabeled, args, needle):
    data = tmp_path / "data"
    zoo.write_style(STYLE, data, 10, seed=33)
    (tmp_path / "empty").mkdir()
    args = [a.format(u=unlabeled[0], missing=tmp_path / "nope", empty=tmp_path / "empty", data=data)
            for a in args]
    rc = main(["train", str(data), "--out", str(tmp_path / "m"), "-q", *args])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "m").exists()


def test_a_cut_between_the_runs_says_resume_goes_on_from_the_first_model(capsys, tmp_path, unlabeled,
                                                                        monkeypatch):
    from captcha_ocr import selftrain

    data, out = tmp_path / "data", tmp_path / "m"
    zoo.write_style(STYLE, data, 20, seed=34)

    def cut(*args, **kwargs):  # Ctrl-C while the first model reads the unlabeled images
        raise KeyboardInterrupt

    monkeypatch.setattr(selftrain, "pseudo_labels", cut)
    args = ["train", str(data), "--out", str(out), "-q", "--unlabeled", str(unlabeled[0]),
            "--steps", "2", "--threads", "1"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert (f"the first run's model is complete in {out}: the same command with --resume goes on "
            "from it with the second run") in err and "nothing to resume" not in err
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0, capsys.readouterr().err
    assert "pseudo_labels" in json.loads((out / FILES.info).read_text())["training"]


def test_train_error_piped_is_its_line_alone(capsys, tmp_path):
    """No -q, stderr not a terminal: no progress bar, so no empty line before the error."""
    data = tmp_path / "data"
    zoo.write_style(STYLE, data, 10, seed=33)
    rc = main(["train", str(data), "--out", str(tmp_path / "m"), "--unlabeled", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("captcha-ocr train: error: --unlabeled ") and len(err.splitlines()) == 1


def test_nothing_to_pseudo_label_keeps_the_first_model(capsys, tmp_path):
    data, other = tmp_path / "data", tmp_path / "other"
    zoo.write_style(STYLE, data, 20, seed=34)
    other.mkdir()
    (other / "broken.png").write_bytes(b"not an image")
    rc = main(["train", str(data), "--out", str(tmp_path / "m"), "-q", "--unlabeled", str(other),
               "--steps", "2", "--threads", "1"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    info = json.loads((tmp_path / "m" / "model.json").read_text())
    assert "pseudo_labels" not in info["training"] and info["training"]["n_train"] == 18
    assert "s in all (one run and the reading)" in captured.out


def test_pseudo_confidence_zero_is_kept_as_asked(capsys, tmp_path, unlabeled):
    data = tmp_path / "data"
    zoo.write_style(STYLE, data, 20, seed=35)
    rc = main(["train", str(data), "--out", str(tmp_path / "m"), "-q", "--unlabeled",
               str(unlabeled[0]), "--pseudo-confidence", "0", "--steps", "2", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    info = json.loads((tmp_path / "m" / "model.json").read_text())
    assert info["training"]["pseudo_labels"]["min_confidence"] == 0.0


@pytest.mark.parametrize("second", [False, True])  # cut the first run or the second
def test_resume_after_either_run_gives_the_same_model(tmp_path, unlabeled, second):
    data = tmp_path / "data"
    zoo.write_style(STYLE, data, 20, seed=36)
    cfg = recipe("deep", finetune=True, steps=60, batch_size=8, threads=1, seed=4, extend=0.0)
    run = dict(init=load_init("base"), cfg=cfg)
    whole_rounds = []
    whole = self_train(train, data, tmp_path / "whole", unlabeled[0], 0.5,
                       on_epoch=lambda s: whole_rounds.append(s.epoch), **run)
    first_run = whole_rounds.index(1, 1)  # rounds of the first run (the second starts at 1)
    assert first_run >= 2 and len(whole_rounds) - first_run >= 2
    cut_at = first_run + 1 if second else 1  # the second round of either run
    rounds = []

    def cut(stats):
        rounds.append(stats.epoch)
        if len(rounds) == cut_at + 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        self_train(train, data, tmp_path / "cut", unlabeled[0], 0.5, on_epoch=cut,
                   checkpoint_seconds=0, **run)
    if second:  # the first run's model stands while the second is cut
        assert "pseudo_labels" not in json.loads((tmp_path / "cut" / FILES.info).read_text())["training"]
    resumed = self_train(train, data, tmp_path / "cut", unlabeled[0], 0.5, resume=True,
                         on_epoch=lambda s: rounds.append(s.epoch), **run)
    assert rounds == whole_rounds  # no round run twice, none left out
    assert resumed.info.training.get("resumed", False) is second  # cut first: the second ran whole
    pl = resumed.info.training["pseudo_labels"]
    assert pl == whole.info.training["pseudo_labels"] and pl["kept"] > 0
    weights = [(tmp_path / d / FILES.weights).read_bytes() for d in ("cut", "whole")]
    assert weights[0] == weights[1]


def test_a_cut_before_the_second_runs_first_checkpoint_resumes_from_the_first_model(tmp_path, unlabeled):
    """No checkpoint of the second run yet: --resume goes on from the first run's finished
    model (it said "no interrupted run to resume", and a rerun trained the first again)."""
    data = tmp_path / "data"
    zoo.write_style(STYLE, data, 20, seed=36)
    cfg = recipe("deep", finetune=True, steps=60, batch_size=8, threads=1, seed=4, extend=0.0)
    run = dict(init=load_init("base"), cfg=cfg, command="captcha-ocr train data --unlabeled u")
    whole_rounds = []
    whole = self_train(train, data, tmp_path / "whole", unlabeled[0], 0.5,
                       on_epoch=lambda s: whole_rounds.append(s.epoch), **run)
    rounds = []

    def cut(stats):
        rounds.append(stats.epoch)
        if stats.epoch == 2 and rounds.index(1) != len(rounds) - 2:  # the second run's round 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        self_train(train, data, tmp_path / "cut", unlabeled[0], 0.5, on_epoch=cut,
                   checkpoint_seconds=1e9, **run)
    first = json.loads((tmp_path / "cut" / FILES.info).read_text())["training"]
    assert "pseudo_labels" not in first and not (tmp_path / "cut.partial").exists()
    phases, again = [], []
    resumed = self_train(train, data, tmp_path / "cut", unlabeled[0], 0.5, resume=True,
                         on_phase=phases.append, on_epoch=lambda s: again.append(s.epoch),
                         **{**run, "command": run["command"] + " --resume"})
    assert again == whole_rounds[whole_rounds.index(1, 1):]  # the second run, whole
    assert "holds this command's first model" in phases[0]
    assert resumed.info.training["pseudo_labels"] == whole.info.training["pseudo_labels"]
    weights = [(tmp_path / d / FILES.weights).read_bytes() for d in ("cut", "whole")]
    assert weights[0] == weights[1]
    other = tmp_path / "other"  # a model of another command there: nothing to go on from
    shutil.copytree(tmp_path / "whole", other)
    with pytest.raises(ModelError, match="no interrupted run to resume"):
        self_train(train, data, other, unlabeled[0], 0.5, resume=True, **run)


def test_images_set_aside_while_labeling_are_never_pseudo_labeled(unlabeled, tmp_path):
    folder = tmp_path / "u"
    shutil.copytree(unlabeled[0], folder)
    names = sorted(p.name for p in folder.glob("0*.png"))
    (folder / "labels-skipped.csv").write_text(
        f"file,status\n{names[0]},unreadable\n{names[1]},skipped\n")
    kept, record = pseudo_labels("base", folder, labeled("0123", "4567"), 0.0)
    assert record["images"] == 39 and not {names[0], names[1]} & {s.path.name for s in kept}


def test_pseudo_labeled_copies_of_validation_images_are_not_trained_on(tmp_path):
    from captcha_ocr.config import ImageConfig
    from captcha_ocr.train import _with_extra, prepare

    data = tmp_path / "data"
    zoo.write_style(STYLE, data, 20, seed=33)
    image = ImageConfig(height=32, width=128, channels=3)
    split = prepare(data, image, 0.2, seed=1)
    held = split.data.samples[split.val[0]]
    other = tmp_path / "other"
    fresh = zoo.write_style(STYLE, other, 2, seed=34)
    copy = other / "copy of a validation image.png"
    shutil.copy(held.path, copy)
    grown = _with_extra(split, [*fresh, Sample(copy, held.label)], image)
    assert len(grown.train) == len(split.train) + 2 and list(grown.val) == list(split.val)
    assert copy not in {grown.data.samples[i].path for i in grown.train}
