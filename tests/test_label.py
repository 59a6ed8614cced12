"""`captcha-ocr label`: the labels file, the order, the page by keyboard, a SIGKILL.

Generated captchas (zoo), the shipped base model pre-filling readings; no dataset needed.
"""

import csv
import os
import shutil
import signal
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from captcha_ocr.cli import main
from captcha_ocr.data import DatasetError, discover
from captcha_ocr.labeling import (
    Labeling,
    create_label_app,
    folder_summary,
    read_review_list,
    read_review_suggestions,
)
from captcha_ocr.labels import SKIPPED_FILE, LabelStore
from captcha_ocr.modeldir import ModelError
from captcha_ocr.runtime import Reader, bundled_model_dir
from captcha_ocr.zoo import write_style
from conftest import Server


@pytest.fixture
def folder(tmp_path):
    """Twelve captchas named 0000.png... (not their text), the truth kept aside."""
    made = tmp_path / "made"
    write_style("bold_caps", made, 12, seed=21)
    truth = {s.path.name: s.label for s in discover(made)}
    (made / "labels.csv").unlink()
    return made, truth


def _labels(folder):
    with (folder / "labels.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "label"]
    return dict(rows[1:])


@pytest.fixture(scope="module")
def base():
    return Reader.load("base")


def test_least_confident_first_and_set_aside_images_do_not_come_back(folder, base):
    made, _ = folder
    store = LabelStore(made)
    try:
        lab = Labeling(store, base)
        conf = [lab.readings[n].confidence for n in lab.queue()]
        assert conf == sorted(conf) and len(conf) == 12
        first, second = lab.queue()[:2]
        store.set_aside_as(first, "skipped")
        store.set_aside_as(second, "unreadable")
        assert first not in lab.queue() and second not in lab.queue()
        assert lab.state()["skipped"] == 1 and lab.state()["unreadable"] == 1
        assert Labeling(store, base, order="file").queue()[:2] == sorted(lab.queue())[:2]
    finally:
        store.close()
    again = LabelStore(made)  # a restart reads what was set aside
    try:
        assert Labeling(again, base).queue() == lab.queue()
        assert (made / SKIPPED_FILE).read_text().count("\n") == 3
    finally:
        again.close()


def test_a_label_of_a_file_whose_name_has_spaces_around_it_survives_a_restart(folder):
    made, truth = folder
    first, second = sorted(truth)[:2]
    (made / first).rename(made / f" {first}")  # a leading space, as names from the web come
    (made / second).rename(made / f"{second[:-4]} .png")  # a space before the suffix
    store = LabelStore(made)
    try:
        store.set_label(f" {first}", "AB12")
        store.set_label(f"{second[:-4]} .png", "CD34")
    finally:
        store.close()
    again = LabelStore(made)
    try:
        assert again.present_labels() == {f" {first}": "AB12", f"{second[:-4]} .png": "CD34"}
        assert again.counts()["labeled"] == 2
    finally:
        again.close()
    samples = {s.path.name: s.label for s in discover(made)}
    assert samples == {f" {first}": "AB12", f"{second[:-4]} .png": "CD34"}


def test_api_labels_corrects_and_counts_unchanged(folder, base):
    made, truth = folder
    store = LabelStore(made)
    try:
        lab = Labeling(store, base)
        with TestClient(create_label_app(lab)) as c:
            name = c.get("/api/queue").json()["queue"][0]
            item = c.get(f"/api/item/{name}").json()
            prefill = item["reading"]["text"]
            s = c.post("/api/label", json={"name": name, "label": prefill, "prefill": prefill}).json()
            assert s["labeled"] == 1 and s["accepted_unchanged"] == 1 and s["session_labels"] == 1
            fix = {"name": name, "label": truth[name] + "x", "prefill": prefill}
            s = c.post("/api/label", json=fix).json()
            # a correction of the same image: still one image labeled, and not as it was read
            assert s["session_labels"] == 1 and s["accepted_unchanged"] == 0 and s["labeled"] == 1
            s = c.post("/api/set-aside", json={"name": name, "status": "unreadable"}).json()
            assert s["session_labels"] == 0 and s["labeled"] == 0  # set aside after all
            c.post("/api/label", json={"name": name, "label": truth[name], "prefill": prefill})
            assert _labels(made) == {name: truth[name]}
            assert c.get(f"/api/item/{name}").json()["label"] == truth[name]
            assert c.post("/api/label", json={"name": name, "label": " "}).status_code == 400
            for path in ("/api/image/..%2Flabels.csv", "/api/image/labels.csv", "/api/item/x.png"):
                bad = c.get(path)
                assert bad.status_code == 404 and set(bad.json()) == {"error"}, path
            assert c.post("/api/set-aside", json={"name": name, "status": "lost"}).status_code == 400
    finally:
        store.close()


def test_review_shows_the_listed_labels_to_keep_or_correct_and_loses_none(folder, base, tmp_path):
    made, truth = folder
    names = sorted(truth)
    with (made / "labels.csv").open("w", newline="") as f:  # all labeled, two of them wrongly
        csv.writer(f).writerows([("file", "label")] + [
            (n, "WRONG" if n in names[3:5] else truth[n]) for n in names])
    listing = tmp_path / "check.tsv"  # as check-labels prints it: path, label, reading, confidence
    listing.write_text(f"{made / names[4]}\tWRONG\t{truth[names[4]]}\t0.990\n"
                       f"{made / names[3]}\tWRONG\t{truth[names[3]]}\t0.950\n{names[0]}\n\n")
    review = read_review_list(listing)
    assert review == [names[4], names[3], names[0]]
    store = LabelStore(made)
    try:
        lab = Labeling(store, base, review=review, suggestions=read_review_suggestions(listing))
        with TestClient(create_label_app(lab)) as c:
            assert c.get("/api/queue").json()["queue"] == review  # labeled, yet listed: shown
            item = c.get(f"/api/item/{names[4]}").json()
            assert item["label"] == "WRONG"  # the page's pre-fill
            assert item["suggestion"] == {"text": truth[names[4]], "confidence": 0.99}  # check-labels'
            assert c.get(f"/api/item/{names[0]}").json()["suggestion"] is None  # a bare name
            s = c.post("/api/label", json={"name": names[4], "label": truth[names[4]]}).json()
            assert s["order"] == "review" and s["remaining"] == 2 and s["labeled"] == 12
            assert c.post("/api/set-aside", json={"name": names[3], "status": "skipped"}).status_code == 200
            assert c.get("/api/queue").json()["queue"] == [names[0]]
            c.post("/api/label", json={"name": names[0], "label": truth[names[0]]})
            assert c.get("/api/queue").json()["queue"] == []
    finally:
        store.close()
    # corrected where corrected; passing over a listed label (Skip) kept it, not removed it
    assert _labels(made) == {n: ("WRONG" if n == names[3] else truth[n]) for n in names}


def test_review_of_a_folder_labeled_by_file_names_keeps_every_label(tmp_path, capsys, monkeypatch):
    # check-labels read the file names as labels: review shows those, Skip writes nothing,
    # and a correction writes every label to labels.csv (not just the corrected one).
    made = tmp_path / "named"
    truth = {s.path.name: s.label for s in write_style("bold_caps", tmp_path / "z", 6, seed=23)}
    made.mkdir()
    for name, label in truth.items():
        (made / f"{label}.png").write_bytes((tmp_path / "z" / name).read_bytes())
    first, second, *_ = sorted(p.name for p in made.iterdir())
    (tmp_path / "list.txt").write_text(f"{first}\n{second}\n")
    seen = {}

    def fake_serve(folder, model, host, port, order, trust_stems, open_browser, review, suggestions,
                   names):
        store = LabelStore(folder, trust_stems=trust_stems, names=names)
        try:
            lab = Labeling(store, None, order, review)
            with TestClient(create_label_app(lab)) as c:
                seen["prefill"] = c.get(f"/api/item/{first}").json()["label"]
                c.post("/api/set-aside", json={"name": first, "status": "skipped"})
                seen["after_skip"] = sorted(p.name for p in Path(folder).iterdir() if p.suffix == ".csv")
                c.post("/api/label", json={"name": second, "label": "FIXD"})
        finally:
            store.close()

    monkeypatch.setattr("captcha_ocr.labeling.serve_labeling", fake_serve)
    assert main(["label", str(made), "--review", str(tmp_path / "list.txt"), "--model", "none"]) == 0
    assert seen["prefill"] == first.removesuffix(".png") and seen["after_skip"] == []
    stems = {p.name: p.stem for p in made.glob("*.png")}
    assert _labels(made) == {**stems, second: "FIXD"}
    assert discover(made) and len(discover(made)) == 6  # train still sees all six


def test_review_page_prefills_the_label_under_review_and_saves_the_correction(folder, tmp_path,
                                                                               browser_page):
    page, problems = browser_page
    made, truth = folder
    names = sorted(truth)
    with (made / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("file", "label")] + [(n, "WRONG" if n == names[2] else truth[n])
                                                       for n in names])
    (tmp_path / "list.tsv").write_text(f"{made / names[2]}\tWRONG\t{truth[names[2]]}\t0.990\n"
                                       f"{made / names[4]}\t{truth[names[4]]}\tZZZZ\t0.600\n")
    server = Server("base", tmp_path / "label.log", "--no-browser", "--review",
                    str(tmp_path / "list.tsv"), command=("label", str(made)), ready="/api/state")
    try:
        page.goto(server.url)
        page.wait_for_function("document.querySelector('#label').value === 'WRONG'", timeout=15_000)
        assert "order: review" in page.inner_text("#progress")
        assert f"check-labels read it as “{truth[names[2]]}” (confidence 0.99)" in page.inner_text("#message")
        page.fill("#label", truth[names[2]])
        page.press("#label", "Enter")
        # The second one's label is right: kept as shown, it counts as accepted unchanged
        page.wait_for_function(f"document.querySelector('#label').value === {truth[names[4]]!r}",
                               timeout=15_000)
        page.press("#label", "Enter")
        page.wait_for_selector("#done:not([hidden])", timeout=15_000)
        assert "Every listed image is reviewed" in page.inner_text("#done")
        state = httpx.get(server.url + "/api/state", timeout=10).json()
        assert state["session_labels"] == 2 and state["accepted_unchanged"] == 1
    finally:
        server.stop()
    assert _labels(made) == truth and problems == []


def test_review_lists_that_do_not_fit_the_folder_are_one_line(folder, tmp_path, capsys):
    made, _ = folder
    for text, needle in (("other.png\n", "'other.png' is not an image of"),
                         ("\n \n", "lists no images to review")):
        (tmp_path / "list.txt").write_text(text)
        rc = main(["label", str(made), "--no-browser", "--model", "none", "--review",
                   str(tmp_path / "list.txt")])
        err = capsys.readouterr().err.strip()
        assert rc == 1 and len(err.splitlines()) == 1 and needle in err, err
    assert main(["label", str(made), "--no-browser", "--review", str(tmp_path / "none.txt")]) == 1
    assert "cannot read the list of images to review" in capsys.readouterr().err


def test_bad_folders_are_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no images here")
    assert main(["label", str(tmp_path), "--no-browser", "--model", "none"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no images to label" in err
    write_style("bold_caps", tmp_path / "site", 2, seed=1)  # the images one level down
    assert main(["label", str(tmp_path), "--no-browser", "--model", "none"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith(
        "no images to label (expected png, jpg, gif, bmp or webp files); its subfolder site "
        "holds images, and only the folder itself is read: give one of them, or move their "
        "images into one folder")


def test_a_second_label_process_on_one_folder_is_refused(folder):
    made, _ = folder
    store = LabelStore(made)
    try:
        with pytest.raises(DatasetError, match="another captcha-ocr label is open on this folder"):
            LabelStore(made)
    finally:
        store.close()


def test_sigkill_between_two_labels_loses_nothing(folder, tmp_path):
    made, truth = folder
    server = Server("base", tmp_path / "label.log", "--no-browser", command=("label", str(made)),
                    ready="/api/state")
    try:
        names = httpx.get(f"{server.url}/api/queue").json()["queue"][:5]
        for name in names:
            r = httpx.post(f"{server.url}/api/label", json={"name": name, "label": truth[name]})
            assert r.status_code == 200
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
    finally:
        server.stop()
    assert _labels(made) == {n: truth[n] for n in names}
    assert not [p for p in made.iterdir() if p.name.endswith(".tmp")]
    # and the next session starts with them
    again = Server("base", tmp_path / "label2.log", "--no-browser", command=("label", str(made)),
                   ready="/api/state")
    try:
        state = httpx.get(f"{again.url}/api/state").json()
        assert state["labeled"] == 5 and state["remaining"] == 7
    finally:
        again.stop()


def test_label_ten_by_keyboard_correct_one_and_resume_after_reload(folder, tmp_path, browser_page):
    made, truth = folder
    page, problems = browser_page
    server = Server("base", tmp_path / "label.log", "--no-browser", command=("label", str(made)),
                    ready="/api/state")
    try:
        page.goto(server.url + "/")
        typed = {}
        shown = ""
        for _ in range(10):
            page.wait_for_function("([before]) => { const n = document.querySelector('#name').textContent;"
                                   " return n.length > 0 && n !== before && "
                                   "document.activeElement.id === 'label'; }", arg=[shown])
            shown = page.locator("#name").inner_text()
            name = shown.split(" ")[0]
            page.keyboard.press("Control+a")
            page.keyboard.type(truth[name])
            done = int(page.locator("#progress").get_attribute("data-done") or 0)
            page.keyboard.press("Enter")
            page.wait_for_function(f"Number(document.querySelector('#progress').dataset.done) > {done}")
            typed[name] = truth[name]
        assert _labels(made) == typed
        # back to the tenth image, correct it by keyboard
        page.wait_for_function("document.activeElement.id === 'label'")
        page.keyboard.press("Alt+ArrowLeft")
        last = list(typed)[-1]
        page.wait_for_function(f"document.querySelector('#name').textContent.startsWith('{last}')")
        assert page.locator("#label").input_value() == typed[last]
        page.keyboard.press("Control+a")
        page.keyboard.type("FIXED")
        page.keyboard.press("Enter")
        page.wait_for_function(f"!document.querySelector('#name').textContent.startsWith('{last}')")
        typed[last] = "FIXED"
        assert _labels(made) == typed
        # a reload continues with the two images left (once the shown image has loaded:
        # a reload aborts a request in flight)
        page.wait_for_function("document.querySelector('#image').complete")
        page.reload()
        page.wait_for_function("document.querySelector('#name').textContent.length > 0")
        name = page.locator("#name").inner_text().split(" ")[0]
        assert name not in typed
        assert "10 labeled / 12" in page.locator("#progress").inner_text()
        assert problems == []
    finally:
        server.stop()


def test_train_from_the_labels_so_far_then_switch_model(folder, base):
    import time

    made, truth = folder
    store = LabelStore(made)
    try:
        lab = Labeling(store, base)
        with TestClient(create_label_app(lab)) as c:
            r = c.post("/api/train", json={"steps": 5})
            assert r.status_code == 400 and "label at least 10" in r.json()["error"]
            for name in lab.queue()[:10]:
                c.post("/api/label", json={"name": name, "label": truth[name]})
            assert c.post("/api/train", json={"steps": 5}).json()["running"] is True
            assert c.post("/api/train", json={"steps": 5}).status_code == 400  # one at a time
            deadline = time.monotonic() + 240
            while (t := c.get("/api/train").json())["running"] and time.monotonic() < deadline:
                time.sleep(0.5)
            assert t["result"] == "done", t["lines"][-5:]
            assert lab.reader.model_dir == made / ".label-model"
            info = lab.reader.info
            assert info.training["init"]["model"] == "base" and info.training["n_images"] == 10
            assert info.training["init"]["picked"]["chosen"] == "base"  # train's pick, no --init
            assert c.get("/api/state").json()["model"].startswith(".label-model@")
            assert len(c.get("/api/queue").json()["queue"]) == 2
            assert sorted(p.name for p in made.iterdir() if not p.name.startswith(".")) == \
                sorted([*truth, "labels.csv"])
    finally:
        store.close()


def test_a_row_for_a_removed_image_is_kept_but_not_counted_or_trained_on(folder, base):
    made, truth = folder
    names = sorted(truth)
    rows = [f"{n},{truth[n]}" for n in names[:10]] + ["deleted.png,zz"]
    (made / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    store = LabelStore(made)
    try:
        lab = Labeling(store, base)
        assert lab.state()["labeled"] == 10 and lab.state()["remaining"] == 2
        with TestClient(create_label_app(lab)) as c:
            assert c.post("/api/label", json={"name": names[10], "label": "X"}).status_code == 200
        assert "deleted.png,zz" in (made / "labels.csv").read_text()
        (made / "labels-skipped.csv").write_bytes(b"file,status\n\xff\xfe,skipped\n")
    finally:
        store.close()
    with pytest.raises(DatasetError, match="labels-skipped.csv: cannot be read"):
        LabelStore(made)


def test_trusted_file_names_give_the_labels_training_reads(synth_dir):
    # LABEL_ID names: the page pre-fills (and writes) the label part, as train reads it.
    for i, s in enumerate(discover(synth_dir)):
        s.path.rename(synth_dir / f"{s.label}_{1700000000 + i}{s.path.suffix}")
    (synth_dir / "broken.png").write_bytes(b"not a png")  # set aside: not one of the names
    (synth_dir / SKIPPED_FILE).write_text("file,status\nbroken.png,unreadable\n")
    truth = {s.path.name: s.label for s in discover(synth_dir, stem_labels=True)}
    assert len(truth) == 12 and all("_" not in v for v in truth.values())
    store = LabelStore(synth_dir, trust_stems=True)
    try:
        assert store.labels == truth
    finally:
        store.close()
    (synth_dir / "broken.png").unlink()
    (synth_dir / SKIPPED_FILE).unlink()
    for i, p in enumerate(sorted(synth_dir.glob("*.png"))):  # a numbering is no labels
        p.rename(synth_dir / f"{i:04d}.png")
    store = LabelStore(synth_dir, trust_stems=True)
    try:
        assert store.labels == {}
    finally:
        store.close()


def test_the_page_starts_from_the_model_it_last_trained(tmp_path):
    """label, train from the page, label again: the second start pre-fills with the model
    the page trained, not the base it started from (a half-written one does not count)."""
    from captcha_ocr.labeling import LABEL_MODEL, default_label_model

    assert default_label_model(tmp_path) == "base"
    (tmp_path / LABEL_MODEL).mkdir()
    assert default_label_model(tmp_path) == "base"  # no model.json: not a model (yet)
    shutil.copytree(bundled_model_dir("base"), tmp_path / LABEL_MODEL, dirs_exist_ok=True)
    assert default_label_model(tmp_path) == str(tmp_path / LABEL_MODEL)
    # damaged (a file changed under it): the page starts from base, and says so
    from captcha_ocr.labeling import label_reader

    (tmp_path / LABEL_MODEL / "model.onnx").write_bytes(b"damaged")
    assert label_reader(tmp_path, None).name.startswith("base@")
    with pytest.raises(ModelError):  # named: its error stands
        label_reader(tmp_path, str(tmp_path / LABEL_MODEL))



def test_label_says_when_file_names_read_as_labels(synth_dir, tmp_path, caplog):
    from captcha_ocr.labeling import _stems_hint

    with caplog.at_level("INFO", logger="captcha_ocr"):
        _stems_hint(synth_dir)
        numbered = tmp_path / "numbered"
        numbered.mkdir()
        for i, f in enumerate(sorted(synth_dir.glob("*.png"))):
            (numbered / f"{i:04d}.png").write_bytes(f.read_bytes())
        _stems_hint(numbered)  # a numbering: no labels, nothing said
        (synth_dir / "labels.csv").write_text("file,label\n")  # labeling begun, none yet
        _stems_hint(synth_dir)
    said = [r.getMessage() for r in caplog.records]
    assert said == 2 * ["12 of these file names read as labels (as train reads them): --trust-stems "
                    "counts them as labeled and shows only the rest"]


def test_the_start_line_counts_labels_as_the_page_does(folder, base):
    made, truth = folder
    names = sorted(truth)
    rows = "".join(f"{n},{truth[n]}\n" for n in names[:3])
    (made / "labels.csv").write_text("file,label\n" + rows + "gone.png,ABCD\n")
    store = LabelStore(made)
    try:
        labeled = Labeling(store, base).state()["labeled"]  # as the page counts them
        assert labeled == 3
        assert folder_summary(store, labeled) == (f"{made}: 12 images, 3 labeled (labels.csv also names "
                                                  "1 file not in the folder)")
    finally:
        store.close()


def test_a_label_with_an_invisible_character_is_refused(folder):
    made, truth = folder
    store = LabelStore(made)
    try:
        name = sorted(truth)[0]
        with pytest.raises(ValueError, match=r"invisible character \(U\+200B\): type only what"):
            store.set_label(name, "AB\u200bC")
        for breaking in ("\u2028", "\x0c", "\x85", "\n"):  # each would split labels.csv's line
            with pytest.raises(ValueError, match="a label is one line"):
                store.set_label(name, f"AB{breaking}C")
        store.set_label(name, "\u0645\u06cc\u200c\u0634\u0648\u062f")  # a joiner Persian needs
        assert store.labels[name].count("\u200c") == 1
        store.set_label(name, "ABC")
        assert store.labels[name] == "ABC"
    finally:
        store.close()


def test_the_page_does_not_offer_trust_stems_for_names_like_a_numbering(tmp_path, caplog):
    """A trial's folder of 00008.png, 00018.png ...: the page said "600 of these file names
    read as labels ... --trust-stems counts them as labeled"; it says what they look like."""
    import logging

    from captcha_ocr import labeling

    folder = tmp_path / "site"
    folder.mkdir()
    for i, sample in enumerate(write_style("pastel_digits", tmp_path / "zoo", 8, seed=3)):
        sample.path.rename(folder / f"0{i * 13:03d}.png")
    with caplog.at_level(logging.INFO, logger="captcha_ocr.label"):
        labeling._stems_hint(folder)
    assert "zero-padded numbers of 4 digits" in caplog.text and "--trust-stems" not in caplog.text


def test_name_labels_tells_the_page_how_to_read_file_names(tmp_path, monkeypatch):
    """Digit captchas whose names count up (0000.png, 0001.png, ...): refused as labels by
    the rule, so --trust-stems trusted none, and the page had no way to say they are
    (train, eval and check-labels take --name-labels whole)."""
    from captcha_ocr.labels import LabelStore

    folder = tmp_path / "counting"
    folder.mkdir()
    for i, sample in enumerate(write_style("pastel_digits", tmp_path / "zoo", 8, seed=5)):
        sample.path.rename(folder / f"{i:04d}.png")
    store = LabelStore(folder, trust_stems=True)
    assert store.labels == {}
    store.close()
    store = LabelStore(folder, trust_stems=True, names="whole")
    assert store.labels == {f"{i:04d}.png": f"{i:04d}" for i in range(8)}
    store.close()
    with pytest.raises(SystemExit):  # the command takes it, and only a scheme
        main(["label", str(folder), "--name-labels", "nonsense"])
    from captcha_ocr import labeling

    served = {}
    monkeypatch.setattr(labeling, "serve_labeling", lambda *a, **k: served.update(k))
    main(["label", str(folder), "--name-labels", "whole", "--no-browser"])
    assert served["names"] == "whole" and served["trust_stems"] is True  # it implies --trust-stems
