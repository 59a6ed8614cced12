"""Dataset download: content check, nothing half-written, offline message, search order."""

import zipfile

import pytest

from captcha_ocr import download as dl
from captcha_ocr.data import DatasetError, fingerprint, list_images


@pytest.fixture
def zipped(synth_dir, tmp_path):
    """A zip of the synthetic images inside a folder, as the public zip is packed."""
    path = tmp_path / "set.zip"
    with zipfile.ZipFile(path, "w") as z:
        for f in list_images(synth_dir):
            z.write(f, f"captcha_images_v2/{f.name}")
    return path, fingerprint(list_images(synth_dir))


def fake(monkeypatch, url: str, sha: str):
    monkeypatch.setitem(dl.DATASETS, "captcha_images_v2",
                        dl.RemoteDataset("captcha_images_v2", url, sha))


def test_download_checks_and_unpacks(monkeypatch, zipped, tmp_path):
    path, sha = zipped
    fake(monkeypatch, path.as_uri(), sha)
    folder = dl.download(dest=tmp_path / "cache")
    assert folder == tmp_path / "cache" / "captcha_images_v2"
    assert fingerprint(list_images(folder)) == sha


def test_failed_check_leaves_nothing(monkeypatch, zipped, tmp_path):
    path, _ = zipped
    fake(monkeypatch, path.as_uri(), "0" * 64)
    with pytest.raises(DatasetError, match="content check failed"):
        dl.download(dest=tmp_path / "cache" / "new")
    assert not (tmp_path / "cache").exists()  # the folders it made are gone too
    (tmp_path / "mine").mkdir()
    with pytest.raises(DatasetError, match="content check failed"):
        dl.download(dest=tmp_path / "mine")
    assert list((tmp_path / "mine").iterdir()) == []  # a folder that was there stays


def test_offline_message_says_how_to_point_at_a_folder(monkeypatch, tmp_path):
    fake(monkeypatch, (tmp_path / "nowhere.zip").as_uri(), "0" * 64)
    with pytest.raises(DatasetError, match="captcha-ocr train DIR. or set CAPTCHA_OCR_DATA"):
        dl.download(dest=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_dest_that_cannot_be_a_folder_is_one_line(tmp_path):
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"^--dest .*f.png: a file, not a folder: choose a folder$"):
        dl.download(dest=tmp_path / "f.png")
    with pytest.raises(DatasetError, match=r"^--dest .*f.png/sub: cannot make the folder \(Not a "
                                           r"directory\): choose another$"):
        dl.download(dest=tmp_path / "f.png" / "sub")


def test_resolve_order(monkeypatch, synth_dir, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(dl.ENV_DATA, str(synth_dir))
    assert dl.resolve_data(None) == synth_dir  # the environment variable
    assert dl.resolve_data(tmp_path) == tmp_path  # an explicit folder wins
    monkeypatch.delenv(dl.ENV_DATA)
    cached = tmp_path / "xdg" / "captcha-ocr" / "captcha_images_v2"
    cached.mkdir(parents=True)
    (cached / "ab.png").write_bytes((synth_dir / list_images(synth_dir)[0].name).read_bytes())
    assert dl.resolve_data(None) == cached  # then the cache
    with pytest.raises(DatasetError, match="missing: no such folder$"):
        dl.resolve_data(tmp_path / "missing")
    monkeypatch.setenv(dl.ENV_DATA, str(tmp_path / "gone"))
    with pytest.raises(DatasetError, match=r"^\$CAPTCHA_OCR_DATA .*gone: no such folder$"):
        dl.resolve_data(None)
