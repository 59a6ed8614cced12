import json
import random

import pytest

from captcha_ocr.config import ImageConfig
from captcha_ocr.data import (
    DatasetError,
    NameLabels,
    discover,
    fingerprint,
    list_images,
    load_images,
    long_labels,
    name_labels,
    split_indices,
    survey,
)
from conftest import make_captchas

SHARED_936_FINGERPRINT = "a5200f63640986630b368a1ba41b791e2521ef44611b433a080f5f49fb923a25"


def test_labels_are_stems(synth_dir):
    samples = discover(synth_dir)
    assert len(samples) == 12
    assert all(s.label == s.path.stem for s in samples)


def _rename(folder, pattern):
    """Rename every image LABEL.png of ``folder`` to ``pattern.format(label=, i=)``."""
    truth = {}
    for i, s in enumerate(discover(folder)):
        name = pattern.format(label=s.label, i=i) + s.path.suffix
        s.path.rename(folder / name)
        truth[name] = s.label
    return truth


@pytest.mark.parametrize("pattern, scheme", [
    ("{label}_{i}", "label_id"),  # dddd_trainer's and captcha_trainer's LABEL_ID convention
    ("{label}_{i:x}9f3b2c71e0", "label_id"),  # LABEL_MD5-like: hex ids
    ("{i:05d}_{label}", "id_label"),
    ("{label}-17000000{i:02d}", "label-id"),  # a "-" before a timestamp
    ("captcha_{label}", "prefix_label"),  # one word before every label
    ("{label}", None),
])
def test_labels_from_file_names_with_an_id_part(synth_dir, pattern, scheme):
    truth = _rename(synth_dir, pattern)
    labeling = survey(synth_dir)
    assert {s.path.name: s.label for s in labeling.samples} == truth
    assert labeling.record().get("names") == scheme and labeling.record()["file names"] == 12
    if scheme:
        assert "12 labels read from file names as the part of each file name" in labeling.note()


def _labels(stems):
    names = name_labels(stems)
    return names.scheme, [names(s) for s in stems]


def test_label_id_names_of_labels_that_repeat_a_lot():
    # Repeats are why LABEL_ID names exist: 20,000 4-digit captchas, arithmetic, one letter.
    rng = random.Random(0)
    for labels in ([f"{rng.randrange(10000):04d}" for _ in range(20000)],
                   [f"{rng.randrange(10)}{rng.choice('+-x')}{rng.randrange(10)}" for _ in range(3000)],
                   [rng.choice("abcdefghij") for _ in range(100)]):
        assert _labels([f"{lab}_{1700000000 + i}" for i, lab in enumerate(labels)]) == ("label_id", labels)
        assert _labels([f"{lab}_{i}" for i, lab in enumerate(labels)]) == ("label_id", labels)


def test_id_label_names_where_both_parts_are_digits_or_hex():
    rng = random.Random(0)
    digits = [f"{x:04d}" for x in rng.sample(range(10000), 100)]  # unique: nothing repeats
    assert _labels([f"{i:05d}_{lab}" for i, lab in enumerate(digits)]) == ("id_label", digits)
    hexy = ["deadbeef", "cafe1234", "0badf00d", "feedface", "12345678"]
    assert _labels([f"{i:05d}_{lab}" for i, lab in enumerate(hexy)]) == ("id_label", hexy)
    assert _labels([f"{lab}_{1700000000 + i}" for i, lab in enumerate(digits)]) == ("label_id", digits)
    repeats = digits[:90] + digits[:10]  # neither side counts up: the side that repeats is the label
    ids = [f"{x:04d}" for x in rng.sample(range(10000), 100)]
    assert _labels([f"{i}_{lab}" for i, lab in zip(ids, repeats)]) == ("id_label", repeats)
    with pytest.raises(DatasetError, match="either part could be the label.*--name-labels label_id"):
        name_labels([f"{i}_{lab}" for i, lab in zip(ids, digits)])
    assert name_labels([f"{i}_{lab}" for i, lab in zip(ids, digits)], scheme="id_label")("1_23") == "23"


@pytest.mark.parametrize("stems", [
    ["0423", "12-5", "3+4", "Ab_c", "x_y_z"],  # no id part after every '_'
    ["deadbeef", "cafe1234", "0badf00d"],  # 8 hex-like letters, too few and too short for ids
    ["0423", "7781", "0012", "9930", "5521", "0424"],  # digits that do not count up
    ["a_b"],
    ["12-5", "3-4", "17-9", "3-1700"],  # arithmetic: a "-" before an id only where it is long
])
def test_names_read_whole(stems):
    assert _labels(stems) == ("whole", stems)


def test_a_few_names_with_an_id_like_part_among_plain_ones_stay_whole():
    rng = random.Random(2)
    plain = ["".join(rng.choice("abcdefgh2345") for _ in range(5)) for _ in range(75)]
    for odd in ("ab_3", "12_34"):
        assert _labels(plain + [odd]) == ("whole", plain + [odd])
    assert _labels([]) == ("whole", [])


def test_a_few_words_and_a_number_are_no_labels():
    stems = [f"{w}_{i:04d}" for w in ("train", "test") for i in range(50)]
    with pytest.raises(DatasetError, match="a word and a number"):
        name_labels(stems)


def test_a_folder_of_plain_and_label_id_names_reads_both():
    rng = random.Random(1)
    labels = ["".join(rng.choice("abcdefgh2345") for _ in range(5)) for _ in range(80)]
    for plain in (40, 1):
        stems = labels[:plain] + [f"{lab}_{1700000000 + i}" for i, lab in enumerate(labels[plain:])]
        names = name_labels(stems)
        assert names.scheme == "label_id" and [names(s) for s in stems] == labels


def test_a_second_copy_of_a_file_keeps_its_label(synth_dir):
    first = discover(synth_dir)[0]
    for copy in (" (1)", " - Copy", " - Copy (3)"):
        (synth_dir / f"{first.label}{copy}{first.path.suffix}").write_bytes(first.path.read_bytes())
    labels = [s.label for s in discover(synth_dir)]
    assert len(labels) == 15 and labels.count(first.label) == 4
    note = survey(synth_dir).note()  # says what was cut, and offers no option that cuts nothing
    assert f"3 labels read from the names of second copies, less their ' (1)' or ' - Copy': " \
           f"{first.label} (1){first.path.suffix} -> {first.label}" in note
    assert "--name-labels whole" not in note and "read from file names as" not in note
    (synth_dir / f"{first.label}_1700000962{first.path.suffix}").write_bytes(first.path.read_bytes())
    note = survey(synth_dir).note()  # a LABEL_ID name beside the copies: each said apart
    assert f"1 label read from file names as the part of each file name before its last '_' " \
           f"(LABEL_ID names): {first.label}_1700000962{first.path.suffix} -> {first.label} " \
           "(--name-labels whole: the whole names)" in note
    assert "3 labels read from the names of second copies" in note
    assert _labels(["3x(12)", "(4+5)x2"]) == ("whole", ["3x(12)", "(4+5)x2"])  # arithmetic


def test_a_word_before_every_label():
    assert _labels(["captcha_2b6c", "captcha_x9y2", "captcha_1234 (1)", "captcha_12-5"]) == (
        "prefix_label", ["2b6c", "x9y2", "1234", "12-5"])
    assert _labels(["img_0001_2b6c", "img_0002_x9y2", "img_0003_k4m7"])[0] == "whole"  # an id too
    # a "-" and a timestamp after the label: both the word and the timestamp go
    assert _labels([f"captcha_{t}-17000009{i:02d}" for i, t in enumerate(["2b6c", "x9y2", "k4m7"])]
                   ) == ("word+label-id", ["2b6c", "x9y2", "k4m7"])
    assert _labels(["captcha_ab", "captcha_cd"])[0] == "whole"  # two names tell nothing
    assert _labels(["train_ab2", "test_cd3", "train_ef4"])[0] == "whole"  # no one word
    assert _labels(["captcha_ab", "captcha_ab", "captcha_ab"])[0] == "whole"  # nothing varies
    assert _labels(["captcha_ab"] * 30 + ["captcha_cd"] * 30) == ("prefix_label", ["ab"] * 30 + ["cd"] * 30)


def test_a_word_before_label_id_names_and_uuid_ids():
    # the word goes too, where an id was found beside the label (digit labels included)
    assert _labels(["img_ACZR_1", "img_0067_2", "img_CCCC_3"]) == (
        "word+label_id", ["ACZR", "0067", "CCCC"])
    assert _labels(["captcha_ACZR-1700001776", "captcha_BQ12-1700001777", "captcha_AB12-1700001778"]
                   ) == ("word+label-id", ["ACZR", "BQ12", "AB12"])
    assert "less the word and '_' they all start with" in NameLabels("word+label_id").describe()
    # a UUID whose last group is all digits is the id's, whole
    assert _labels(["WGHT-c473e11e-6be8-4aa4-a63d-515398710015",
                    "ABCD-9f3b2c71-1a2b-4c3d-8e9f-0123456789ab"])[1] == ["WGHT", "ABCD"]
    # a few LABEL_ID names with timestamps among plain names are read too
    assert _labels(["ACZR", "BBBB", "CCCC", "AMTA_1700001776"]) == (
        "label_id", ["ACZR", "BBBB", "CCCC", "AMTA"])
    assert _labels(["ACZR", "BBBB", "CCCC", "a_b"])[0] == "whole"  # a label with "_"


def test_a_labels_csv_of_two_separators_says_so(synth_dir):
    first = discover(synth_dir)[0].path.name
    (synth_dir / "labels.csv").write_text(f"file,label\n{first}\tabc\n")
    with pytest.raises(DatasetError, match="the header is separated by commas and this line by "
                                           "tabs: use one separator throughout"):
        survey(synth_dir)


def test_a_labels_csv_that_names_files_with_their_folder(synth_dir):
    # Hugging Face's layout: labels.csv above, rows "images/NAME", images in images/
    images = synth_dir / "images"
    images.mkdir()
    rows = []
    for i, s in enumerate(discover(synth_dir)):
        s.path.rename(images / f"{i:04d}.png")
        rows.append(f"images/{i:04d}.png,{s.label}")
    (synth_dir / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    why = "labels.csv names each image by its file name alone, beside it in the folder given"
    with pytest.raises(DatasetError, match=r"labels.csv here names them with their folder, as "
                                           rf"images/0000.png: {why}\)$"):
        survey(synth_dir)
    with pytest.raises(DatasetError, match=r"\(../labels.csv names these images with their "
                                           rf"folder, as images/0000.png, and is not read: {why}\)$"):
        survey(images)  # 0000.png ...: a numbering, and the labels are one folder up
    for f in images.iterdir():  # the images moved up beside labels.csv, the rows not changed
        f.rename(synth_dir / f.name)
    with pytest.raises(DatasetError, match=r"labels none of them: its rows name files with a "
                                           rf"folder, as images/0000.png, where {why}"):
        survey(synth_dir)


def test_the_prefix_label_hint_only_where_it_reads_the_numbers():
    for stems, hint in ((["img_0001", "img_0002", "img_0417"], "prefix_label if the numbers"),
                        (["0001_img", "0002_img", "0417_img"], "whole if they are"),
                        (["my_img_0001", "my_img_0002", "my_img_0417"], "whole if they are")):
        with pytest.raises(DatasetError, match=hint):
            name_labels(stems, "d")


def test_names_like_a_zero_padded_numbering_get_a_note_not_a_refusal(synth_dir):
    """0008.png, 0018.png ... (a sample of a numbered set, not counting up): a note, as the
    first files of a sorted listing of digit captchas may all begin with 0 too."""
    _rename(synth_dir, "0{i:02d}8")
    note = survey(synth_dir).note()
    assert "12 labels are whole file names, zero-padded numbers of 4 digits (" in note
    assert "if the names number the images instead of spelling their text, label them" in note
    names = [f"0{i * 7:03d}" for i in range(30)]
    assert name_labels(names, "d").scheme == "whole"


def test_a_digit_site_whose_labels_begin_with_0_now_and_then_gets_no_note(synth_dir):
    _rename(synth_dir, "{i}1{i}")  # 010, 111, ..., 10110: several lengths, one with 0
    labels = [s.label for s in survey(synth_dir).samples]
    assert any(x[0] == "0" for x in labels) and not all(x[0] == "0" for x in labels)
    assert "numbers" not in survey(synth_dir).note()


def test_label_id_names_whose_labels_all_begin_with_0_stay_label_id():
    """The first files of a sorted listing of 4-digit captchas: every label begins with 0;
    the index after '_' is the id, as before (a review found the labels read as ids)."""
    stems = [f"0{i * 37 % 1000:03d}_{i}" for i in range(200)]
    rule = name_labels(stems, "d")
    assert rule.scheme == "label_id" and rule("0037_1") == "0037"


@pytest.mark.parametrize("pattern, what", [
    ("{i:04d}", "numbers counting up"),
    ("img_{i:04d}", "a word and a number"),
    ("{i:08x}-1a2b-4c3d-8e9f-0123456789ab", "timestamps, hashes or UUIDs"),
    ("{i}0731234567", "timestamps, hashes or UUIDs"),
])
def test_file_names_that_are_not_labels_are_one_clear_error(synth_dir, pattern, what):
    _rename(synth_dir, pattern)
    with pytest.raises(DatasetError, match=f"{what}\\) are not labels as they are; label the images") as e:
        survey(synth_dir)
    assert "\n" not in str(e.value)
    if what == "a word and a number":  # or a word and digit labels: the user says which
        assert str(e.value).endswith("--name-labels prefix_label if the numbers are the labels")
        labels = {s.label for s in survey(synth_dir, names="prefix_label").samples}
        assert labels == {f"{i:04d}" for i in range(12)}
    else:
        assert "--name-labels whole" in str(e.value)
    assert survey(synth_dir, names="whole").record()["file names"] == 12  # the user's word


@pytest.mark.parametrize("pattern, first, last", [
    ("img1{i:02d}", "img100", "img111"), ("captcha{i}", "captcha0", "captcha11"),
    ("z1{i:02d}", "z100", "z111"), ("captcha-{i}", "captcha-0", "captcha-11"),
])
def test_a_word_then_a_number_without_a_separator_is_no_label(synth_dir, pattern, first, last):
    _rename(synth_dir, pattern)
    with pytest.raises(DatasetError, match=rf"the file names \({first} \.\.\. {last}: a word and a "
                                           r"number\) are not labels as they are; .* or "
                                           r"--name-labels whole if they are$"):
        survey(synth_dir)
    assert survey(synth_dir, names="whole").record()["file names"] == 12  # the user's word


def test_labels_that_share_no_start_or_have_no_letter_in_it_are_labels():
    for stems in (["ab12", "cd34", "ef56", "gh78", "ij90"],  # captcha texts
                  ["7a12", "7b34", "7c56", "7d78", "7e90"],  # one first character, letters after
                  ["1234", "1299", "1301", "1377", "1402"],  # digits sharing a first digit
                  ["img1", "img2", "img3", "img4"]):  # four: too few to tell
        assert name_labels(stems, "d").scheme == "whole", stems


def test_labels_in_another_file_are_named_in_the_error(synth_dir):
    _rename(synth_dir, "{i}")
    (synth_dir / "gt.txt").write_text("0.png abc\n")
    with pytest.raises(DatasetError, match=r"\(gt.txt is not read: labels are read from labels.csv, "
                                           r"header file,label\)$"):
        survey(synth_dir)


def test_few_files_of_one_word_and_a_number_are_refused_too():
    with pytest.raises(DatasetError, match=r"\(img_2 \.\.\. img_10: a word and a number\)"):
        name_labels([f"img_{i}" for i in range(2, 11)], "d")


def test_note_names_a_file_labeled_by_its_name(synth_dir):
    truth = _rename(synth_dir, "{label}_{i}")
    first = sorted(truth)[0]
    (synth_dir / "labels.csv").write_text(f"file,label\n{first},zz9q\n")
    labeling = survey(synth_dir, stem_labels=True)
    assert labeling.record() == {"labels.csv": 1, "file names": 11, "names": "label_id"}
    second = sorted(truth)[1]
    assert f"{second} -> {truth[second]} (--name-labels whole" in labeling.note()


def test_labels_csv_overrides_file_names(synth_dir):
    truth = _rename(synth_dir, "{i:04d}")
    (synth_dir / "labels.csv").write_text("file,label\n" + "".join(f"{n},{v}\n" for n, v in truth.items()))
    assert {s.path.name: s.label for s in discover(synth_dir)} == truth

def test_labels_csv_labels_what_it_names_and_the_rest_is_unlabeled(synth_dir):
    # Numbered files of a digits site (henan_digits4's are named like 4743.jpg): their
    # stems would pass for labels, so a partly labeled folder must not train on them.
    first, second = (s.path.name for s in discover(synth_dir)[:2])
    (synth_dir / "labels.csv").write_text(f"file,label\n{first},a/b c\n{second},xyz\n")
    labeling = survey(synth_dir)
    assert [(s.path.name, s.label) for s in labeling.samples] == [(first, "a/b c"), (second, "xyz")]
    assert len(labeling.unlabeled) == 10 and first not in {p.name for p in labeling.unlabeled}
    note = labeling.note()
    assert note.endswith(": 2 labeled images; 10 images not in labels.csv unlabeled "
                         "(--stem-labels: file names as labels); a space in 1 label ('a/b c'): "
                         "it is a character to read, as any other; fix labels.csv if the site draws none")
    assert "--unlabeled" not in note  # what a command can do with them is its own hint


def test_stem_labels_fill_in_what_labels_csv_does_not_name(synth_dir):
    first = discover(synth_dir)[0]
    (synth_dir / "labels.csv").write_text(f"file,label\n{first.path.name},a/b c\n", encoding="utf-8")
    labeling = survey(synth_dir, stem_labels=True)
    labels = {s.path.name: s.label for s in labeling.samples}
    assert labels[first.path.name] == "a/b c" and len(labels) == 12
    assert all(labels[n] == n.rsplit(".", 1)[0] for n in labels if n != first.path.name)
    assert labeling.unlabeled == [] and labeling.note().endswith(
        ": 12 labeled images; a space in 1 label ('a/b c'): it is a character to read, as any "
        "other; fix labels.csv if the site draws none")


def test_images_set_aside_while_labeling_are_left_out(synth_dir):
    names = [s.path.name for s in discover(synth_dir)]
    (synth_dir / "labels-skipped.csv").write_text(
        f"file,status\n{names[0]},unreadable\n{names[1]},skipped\n{names[2]},other\n")
    # Being labeled (labels-skipped.csv, no labels.csv yet): nothing is labeled so far.
    with pytest.raises(DatasetError,
                       match=r"no labeled images among its 12 \(there is no labels.csv yet, 2 set aside\)"):
        survey(synth_dir)
    labeling = survey(synth_dir, stem_labels=True)
    assert [s.path.name for s in labeling.samples] == names[2:]
    assert labeling.set_aside == {names[0], names[1]}
    assert labeling.note().endswith("; 2 images set aside in labels-skipped.csv")
    (synth_dir / "labels.csv").write_text(f"file,label\n{names[1]},abc\n{names[3]},xyz\n")
    labeling = survey(synth_dir)  # a label given after a skip wins
    assert [(s.path.name, s.label) for s in labeling.samples] == [(names[1], "abc"), (names[3], "xyz")]
    assert labeling.set_aside == {names[0]} and len(labeling.unlabeled) == 9
    stems = survey(synth_dir, stem_labels=True)
    assert len(stems.samples) == 11 and stems.set_aside == {names[0]}
    (synth_dir / "labels.csv").unlink()
    for name in names[2:]:
        (synth_dir / name).unlink()
    with pytest.raises(DatasetError, match="all 2 images are set aside in labels-skipped.csv"):
        survey(synth_dir, stem_labels=True)


def test_hand_written_labels_csv_blank_lines_spaces_and_dot_slash(synth_dir):
    """What an editor leaves in a labels.csv: a blank or trailing line, spaces around a
    field, ./name; a row for a name in other case is named with the file it may mean."""
    names = [s.path.name for s in discover(synth_dir)][:3]
    (synth_dir / "labels.csv").write_text(
        f"\nfile,label\n\n{names[0]}, abc \n./{names[1]},xyz\n{names[2].upper()},q\n\n")
    labeling = survey(synth_dir)
    assert [(s.path.name, s.label) for s in labeling.samples] == [(names[0], "abc"), (names[1], "xyz")]
    assert f"1 row of labels.csv for files not here, ignored ({names[2].upper()}: the file is " \
           f"{names[2]})" in labeling.note()


def test_an_empty_label_in_labels_csv_names_its_line(synth_dir):
    name = discover(synth_dir)[0].path.name
    (synth_dir / "labels.csv").write_text(f"\nfile,label\n{name},\n")  # a blank line first
    with pytest.raises(DatasetError, match=rf"labels.csv:3: {name} has an empty label; write its text"):
        survey(synth_dir)


def test_rows_for_files_removed_after_labeling_are_ignored_and_counted(synth_dir):
    first = discover(synth_dir)[0].path.name
    (synth_dir / "labels.csv").write_text(f"file,label\n{first},abc\ngone.png,xyz\n")
    labeling = survey(synth_dir)
    assert [s.label for s in labeling.samples] == ["abc"] and labeling.absent == 1
    assert labeling.note().endswith(": 1 labeled image; 11 images not in labels.csv unlabeled "
                                   "(--stem-labels: file names as labels); 1 row of labels.csv "
                                   "for files not here, ignored (gone.png)")
    assert "11 images not in labels.csv unlabeled (--unlabeled M: ...; --stem-labels" in \
        labeling.note("--unlabeled M: ...")


def test_stem_labels_is_not_offered_for_names_it_would_refuse(tmp_path):
    """Id-named files left out of labels.csv: --stem-labels would refuse their names (a
    numbering), so the note does not suggest it."""
    from PIL import Image

    for i in range(1000, 1012):
        Image.new("L", (60, 20), 255).save(tmp_path / f"{i}.png")
    (tmp_path / "labels.csv").write_text("file,label\n1000.png,abc\n1001.png,abd\n")
    assert survey(tmp_path).note().endswith(": 2 labeled images; 10 images not in labels.csv unlabeled")
    with pytest.raises(DatasetError, match="numbers counting up"):
        survey(tmp_path, stem_labels=True)


def test_labels_csv_that_labels_nothing_here_is_one_clear_error(synth_dir):
    (synth_dir / "labels.csv").write_text("file,label\n")
    with pytest.raises(DatasetError, match="no labeled images among its 12 .*labels.csv labels "
                                           "none of them.*--stem-labels"):
        discover(synth_dir)
    assert len(discover(synth_dir, stem_labels=True)) == 12


def test_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match="no images"):
        discover(tmp_path)


def test_images_in_subfolders_are_named_in_the_error(synth_dir, tmp_path):
    nested = tmp_path / "nested"
    (nested / "batch0").mkdir(parents=True)
    (nested / "empty").mkdir()
    for s in discover(synth_dir)[:3]:
        s.path.rename(nested / "batch0" / s.path.name)
    with pytest.raises(DatasetError, match=r"no images found .*; its subfolder batch0 holds images, "
                                           r"and only the folder itself is read: give one of them"):
        survey(nested)


def test_a_data_folder_that_is_missing_a_file_or_a_dangling_link_says_which(tmp_path, synth_dir):
    with pytest.raises(DatasetError, match=r"nope: no such folder$"):
        discover(tmp_path / "nope")
    image = list_images(synth_dir)[0]
    with pytest.raises(DatasetError, match=r"\.png: a file, not a folder: give the folder that holds "
                                           r"the images$"):
        discover(image)
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(DatasetError, match=r"dangling: not a folder$"):
        discover(tmp_path / "dangling")


def test_unreadable_files_skipped_and_named(synth_dir):
    (synth_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (synth_dir / "text.jpg").write_text("not a jpeg")
    loaded = load_images(discover(synth_dir), ImageConfig(50, 200))
    assert loaded.images.shape == (12, 1, 50, 200)
    assert sorted(p.name for p, _ in loaded.skipped) == ["broken.png", "text.jpg"]
    assert all(p.name in reason for p, reason in loaded.skipped)


def test_split_is_seeded_and_disjoint():
    tr, va = split_indices(100, 0.1, seed=3)
    assert len(va) == 10 and not set(tr) & set(va) and len(tr) + len(va) == 100
    assert (split_indices(100, 0.1, seed=3)[1] == va).all()
    assert not (split_indices(100, 0.1, seed=4)[1] == va).all()


def test_copies_stay_on_one_side_of_the_split():
    groups = [i // 3 for i in range(90)] + list(range(100, 110))  # 30 triples, 10 singles
    for seed in range(20):
        tr, va = split_indices(100, 0.1, seed=seed, groups=groups)
        assert not {groups[i] for i in tr} & {groups[i] for i in va}
        assert 8 <= len(va) <= 10 and len(tr) + len(va) == 100
    big = ["a"] * 50 + list(range(50))  # one image 50 times: never validation's bulk
    assert all(len(split_indices(100, 0.1, seed=k, groups=big)[1]) == 10 for k in range(20))
    assert len(split_indices(10, 0.1, seed=0, groups=["a"] * 9 + ["b"])[1]) == 1
    with pytest.raises(DatasetError, match="all copies of one"):
        split_indices(10, 0.1, seed=0, groups=["a"] * 10)
    tr, va = split_indices(100, 0.1, seed=3, groups=list(range(100)))  # no copies: as without
    assert (va == split_indices(100, 0.1, seed=3)[1]).all()


def test_train_keeps_copied_files_out_of_validation(synth_dir, tmp_path, capsys):
    from captcha_ocr.cli import main

    for s in discover(synth_dir):
        for copy in (" (1)", " - Copy"):
            (synth_dir / f"{s.label}{copy}{s.path.suffix}").write_bytes(s.path.read_bytes())
    assert main(["train", str(synth_dir), "--out", str(tmp_path / "m"), "--steps", "2",
                 "--threads", "1", "--val-fraction", "0.2"]) == 0
    assert "(24 copies of other images, each on its original's side)" in capsys.readouterr().out
    t = json.loads((tmp_path / "m" / "model.json").read_text())["training"]
    assert t["copies"] == 24 and t["n_val"] == 6 and t["n_train"] == 30  # at most 20%: two triples


def test_fingerprint_matches_published_recipe(shared_data):
    assert fingerprint(s.path for s in discover(shared_data)) == SHARED_936_FINGERPRINT


@pytest.mark.parametrize("header, sep", [("file,label", ","), ("file_name,text", ","),
                                         ("Filename\tSolution", "\t"), ("image;label", ";"),
                                         ("filename,words", ",")])
def test_labels_csv_headers_and_separators_of_other_tools(synth_dir, header, sep):
    first, second = (s.path.name for s in discover(synth_dir)[:2])
    other = ";" if sep == "\t" else "\t"  # the other separators are a label's characters
    (synth_dir / "labels.csv").write_text(f"{header}\n{first}{sep}a{other}b\n{second}{sep}xyz\n")
    labels = {s.path.name: s.label for s in survey(synth_dir).samples}
    assert labels == {first: f"a{other}b", second: "xyz"}


def test_labels_csv_with_three_columns_says_what_it_found(synth_dir):
    (synth_dir / "labels.csv").write_text("file_name,text,split\na.png,abc,train\n")
    with pytest.raises(DatasetError, match=r"then label/.*\), not 'file_name,text,split'$"):
        survey(synth_dir)


def test_labels_csv_with_an_unknown_header_is_one_line(synth_dir):
    (synth_dir / "labels.csv").write_text("path,value\na.png,abc\n")
    with pytest.raises(DatasetError, match="the first line must be the header 'file,label' "
                                           r"\(two columns: file/filename/file_name/image/name, then"):
        survey(synth_dir)


def test_labels_csv_not_utf8(synth_dir):
    (synth_dir / "labels.csv").write_bytes(b"file,label\na.png,\xff\n")
    with pytest.raises(DatasetError, match="not UTF-8"):
        discover(synth_dir)


def test_labels_csv_with_a_bom_reads(synth_dir):
    first = sorted(synth_dir.glob("*.png"))[0].name
    (synth_dir / "labels.csv").write_bytes(f"\ufefffile,label\n{first},abc\n".encode())
    assert {s.path.name: s.label for s in discover(synth_dir)}[first] == "abc"


def test_labels_csv_as_excel_writes_it_reads(synth_dir):
    """Excel's "sep=;" first line, and empty cells after the label where columns were
    touched (both were "the first line must be the header")."""
    first, second = [p.name for p in sorted(synth_dir.glob("*.png"))[:2]]
    (synth_dir / "labels.csv").write_bytes(
        f"\ufeffsep=;\r\nFilename;Label;;\r\n{first};abc;;\r\n{second};a,b\r\n".encode())
    labels = {s.path.name: s.label for s in discover(synth_dir)}
    assert labels[first] == "abc" and labels[second] == "a,b"  # ";" separates, not ","
    (synth_dir / "labels.csv").write_text(f"file,label,\n{first},abc,,\n")
    assert {s.path.name: s.label for s in discover(synth_dir)}[first] == "abc"
    (synth_dir / "labels.csv").write_text(f"sep=\t\t\nfile\tlabel\t\n{first}\tabc\n")  # tabs, touched
    assert {s.path.name: s.label for s in discover(synth_dir)}[first] == "abc"
    (synth_dir / "labels.csv").write_text(f"sep=|\nfile|label\n{first}|abc\n")  # no separator of ours
    with pytest.raises(DatasetError, match="the first line must be the header"):
        discover(synth_dir)
    (synth_dir / "labels.csv").write_text(f"file,label\n{first},abc,x\n")  # a third value: no
    with pytest.raises(DatasetError, match="expected two columns"):
        discover(synth_dir)


def test_labels_csv_conflicting_rows_are_refused(synth_dir):
    first = sorted(synth_dir.glob("*.png"))[0].name
    (synth_dir / "labels.csv").write_text(f"file,label\n{first},abc\n{first},abc\n{first},abd\n")
    message = rf"labels.csv:4: {first} is labeled 'abd' here and 'abc' on line 2"
    with pytest.raises(DatasetError, match=message):
        discover(synth_dir)


def test_labels_csv_repeated_identical_row_is_fine(synth_dir):
    first = sorted(synth_dir.glob("*.png"))[0].name
    (synth_dir / "labels.csv").write_text(f"file,label\n{first},abc\n{first},abc\n")
    assert {s.path.name: s.label for s in discover(synth_dir)}[first] == "abc"


def test_images_in_a_subfolder_are_named_as_not_read(synth_dir):
    (synth_dir / "more").mkdir()
    first = discover(synth_dir)[0]
    (synth_dir / "more" / first.path.name).write_bytes(first.path.read_bytes())
    (synth_dir / ".label-model").mkdir()  # the labeling page's model: its plots are no data
    (synth_dir / ".label-model" / "curves.png").write_bytes(first.path.read_bytes())
    labeling = survey(synth_dir)
    assert len(labeling.samples) == 12
    assert labeling.note().endswith("the images in subfolder more are not read (a dataset is one folder)")


def test_labels_with_a_space_are_pointed_out(synth_dir):
    rows = [(s.path.name, s.label) for s in discover(synth_dir)]
    rows[0] = (rows[0][0], rows[0][1][:2] + " " + rows[0][1][2:])
    (synth_dir / "labels.csv").write_text("file,label\n" + "".join(f"{n},{lab}\n" for n, lab in rows))
    assert f"a space in 1 label ('{rows[0][1]}'): it is a character to read, as any other; fix " \
           "labels.csv if the site draws none" in survey(synth_dir).note()
    (synth_dir / "labels.csv").unlink()
    (synth_dir / "tab\tname.png").write_bytes(discover(synth_dir)[0].path.read_bytes())
    assert "a tab in 1 label ('tab\\tname'): it is a character to read, as any other; rename the " \
           "files if the site draws none" in survey(synth_dir).note()


def test_a_sample_of_a_numbered_set_is_named_in_the_note(tmp_path):
    """Digit names of several lengths (ids 7, 164, 1001 of a numbered set, not counting up
    one by one) are labels only by default: the note says so and how to label them."""
    numbered = tmp_path / "numbered"
    make_captchas(tmp_path / "src", 6, "0123456789", (4, 4), seed=3)
    numbered.mkdir()
    for f, n in zip(sorted((tmp_path / "src").glob("*.png")), (7, 164, 1001, 2698, 30, 555)):
        f.rename(numbered / f"{n}.png")
    note = survey(numbered).note()
    assert "6 labels are whole file names, numbers of 1 to 4 digits (" in note
    assert "label them (captcha-ocr label DIR)" in note
    same = tmp_path / "same_length"  # a site of 4-digit captchas named by their text: no note
    make_captchas(same, 6, "0123456789", (4, 4), seed=3)
    assert "numbers of" not in survey(same).note()
    captchas = tmp_path / "digit_captchas"  # several lengths, but a leading 0: the text
    numbered.rename(captchas)
    (captchas / "164.png").rename(captchas / "0412.png")
    assert "numbers of" not in survey(captchas).note()


def test_a_minority_of_label_id_names_read_whole_is_named_in_the_note(synth_dir):
    first = sorted(synth_dir.glob("*.png"))[0]
    (synth_dir / "7400_4743.png").write_bytes(first.read_bytes())  # another site's LABEL_ID
    labeling = survey(synth_dir)
    assert "7400_4743" in {s.label for s in labeling.samples}  # most names are whole labels
    assert ("1 label with a '_' read as whole file names (7400_4743.png -> 7400_4743), beside "
            "names without one: the model learns to read '_'; if the part before the last '_' "
            "is their label, give those files' labels in labels.csv or rename them") in labeling.note()


def test_label_id_names_read_whole_by_choice_get_no_underscore_note(synth_dir):
    for f in sorted(synth_dir.glob("*.png"))[:8]:  # 8 of 12 with a '_': a majority
        f.rename(synth_dir / f"{f.stem}_x{f.suffix}")
    labeling = survey(synth_dir, names="whole")
    assert sum("_" in s.label for s in labeling.samples) == 8
    assert "with a '_' read as whole file names" not in labeling.note()


def test_invisible_characters_and_far_longer_labels_are_noted(synth_dir):
    names = sorted(p.name for p in synth_dir.glob("*.png"))
    rows = [f"{n},abcd\n" for n in names]
    rows[3] = f"{names[3]},ab\u200bcd\n"  # a zero-width space, pasted
    rows[5] = f"{names[5]},{'x' * 62}\n"  # a key held down
    (synth_dir / "labels.csv").write_text("file,label\n" + "".join(rows), encoding="utf-8")
    note = survey(synth_dir).note()
    assert f"an invisible character (U+200B) in 1 label ({names[3]}: 'ab\\u200bcd')" in note
    assert (f"1 label far longer than the others (mostly 4 characters): {names[5]}: "
            f"'{'x' * 24}'... (62); the model's input widens") in note
    rows[5] = f"{names[5]},abcdefgh\n"  # twice the median, but only 4 more: a long captcha
    rows[3] = f"{names[3]},ab\tcd\n"  # a tab is noted as a tab, not as invisible
    (synth_dir / "labels.csv").write_text("file,label\n" + "".join(rows), encoding="utf-8")
    note = survey(synth_dir).note().removeprefix(f"{synth_dir}: ")  # the test's folder name has both words
    assert "far longer" not in note and "invisible" not in note and "a tab in 1 label" in note


def test_many_long_labels_are_a_sites_own_not_typos():
    assert long_labels(["3+4"] * 70 + ["12*34-56"] * 30) == []  # sums of two lengths
    assert long_labels(["abcd"] * 99 + ["x" * 40]) == [40]
    assert long_labels(["ab"] * 4) == []  # too few to tell


def test_short_hex_ids_are_not_labels_where_many_of_one_length():
    rng = random.Random(3)
    ids = [f"{rng.getrandbits(40):010x}" for _ in range(30)]  # 005c33dd48: a short hash
    with pytest.raises(DatasetError, match=r"timestamps, hashes or UUIDs\) are not labels"):
        name_labels(ids, "site")
    assert name_labels(ids[:19], "site").scheme == "whole"  # too few to tell
    assert name_labels([i[:-1] if k % 2 else i for k, i in enumerate(ids)], "s").scheme == "whole"
    caps = ["".join(rng.choice("ABCDEF") for _ in range(8)) for _ in range(30)]
    assert name_labels(caps, "s").scheme == "whole"  # capitals a-f only: maybe a site's text
