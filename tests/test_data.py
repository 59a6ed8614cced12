import pytest

from captcha_ocr.config import ImageConfig
from captcha_ocr.data import DatasetError, discover, fingerprint, load_images, split_indices

SHARED_936_FINGERPRINT = "a5200f63640986630b368a1ba41b791e2521ef44611b433a080f5f49fb923a25"


def test_labels_are_stems(synth_dir):
    samples = discover(synth_dir)
    assert len(samples) == 12
    assert all(s.label == s.path.stem for s in samples)


def test_labels_csv_overrides_stems(synth_dir):
    first = discover(synth_dir)[0]
    (synth_dir / "labels.csv").write_text(f"file,label\n{first.path.name},a/b c\n", encoding="utf-8")
    labels = {s.path.name: s.label for s in discover(synth_dir)}
    assert labels[first.path.name] == "a/b c"
    assert len(labels) == 12


def test_labels_csv_naming_missing_file(synth_dir):
    (synth_dir / "labels.csv").write_text("file,label\nghost.png,abc\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="ghost.png"):
        discover(synth_dir)


def test_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match="no images"):
        discover(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        discover(tmp_path / "nope")


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


def test_fingerprint_matches_published_recipe(shared_data):
    assert fingerprint(s.path for s in discover(shared_data)) == SHARED_936_FINGERPRINT


def test_labels_csv_not_utf8(synth_dir):
    (synth_dir / "labels.csv").write_bytes(b"file,label\na.png,\xff\n")
    with pytest.raises(DatasetError, match="not UTF-8"):
        discover(synth_dir)


def test_labels_csv_with_a_bom_reads(synth_dir):
    first = sorted(synth_dir.glob("*.png"))[0].name
    (synth_dir / "labels.csv").write_bytes(f"\ufefffile,label\n{first},abc\n".encode())
    assert {s.path.name: s.label for s in discover(synth_dir)}[first] == "abc"


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
