"""Find or fetch a dataset: a given folder, the local cache, or the public download.

The public ``captcha_images_v2`` zip is checked by content (the fingerprint of its
1040 PNGs, see ``data.fingerprint``) before it is unpacked into the cache; a failed
check or an interrupted download leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .data import DatasetError, fingerprint, list_images, require_folder

__all__ = ["DATASETS", "RemoteDataset", "cache_dir", "download", "resolve_data"]

ENV_DATA = "CAPTCHA_OCR_DATA"


@dataclass(frozen=True)
class RemoteDataset:
    """A public dataset: where to get it and what its images must hash to."""

    name: str
    url: str
    sha256: str  # data.fingerprint of the unpacked images


DATASETS = {
    "captcha_images_v2": RemoteDataset(
        name="captcha_images_v2",
        url="https://github.com/AakashKumarNain/CaptchaCracker/raw/master/captcha_images_v2.zip",
        sha256="5026ff75b9f3fbf25e64529c39ec6665f004157c5b7191791be0f56df11cece8",
    ),
}


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/captcha-ocr`` (default ``~/.cache/captcha-ocr``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "captcha-ocr"


def _fetch(url: str, dest: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, dest.open("wb") as f:
            shutil.copyfileobj(r, f)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise DatasetError(f"cannot download {url} ({reason}); you are offline or the address "
                           f"moved: give the dataset folder (captcha-ocr train DIR) or set "
                           f"{ENV_DATA}") from None


def _unpack_images(zip_path: Path, into: Path) -> None:
    """Extract the image files of a zip, flat, refusing unsafe names."""
    try:
        with zipfile.ZipFile(zip_path) as z:
            for info in z.infolist():
                name = Path(info.filename).name
                if info.is_dir() or not name or name.startswith("."):
                    continue
                if name.lower().endswith((".png", ".jpg", ".jpeg")):
                    (into / name).write_bytes(z.read(info))
    except zipfile.BadZipFile as e:
        raise DatasetError(f"{zip_path}: the download is not a valid zip ({e})") from None


def download(name: str = "captcha_images_v2", dest: str | Path | None = None,
             timeout: float = 60.0) -> Path:
    """Download, check and unpack a public dataset; return its folder.

    Args:
        name: a key of ``DATASETS``.
        dest: parent folder (default: the cache); the images land in ``dest/name``.
        timeout: network timeout in seconds.

    Raises:
        DatasetError: unknown name, network failure, or content check failure. Nothing
            is left in ``dest`` on failure.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    ds = DATASETS[name]
    parent = Path(dest) if dest is not None else cache_dir()
    target = parent / name
    if target.is_dir() and fingerprint(list_images(target)) == ds.sha256:
        return target
    made = _make_folder(parent, "--dest" if dest is not None else "the cache folder")
    try:
        with tempfile.TemporaryDirectory(dir=parent, prefix=f".{name}-") as tmp:
            zip_path, unpacked = Path(tmp) / "data.zip", Path(tmp) / name
            unpacked.mkdir()
            _fetch(ds.url, zip_path, timeout)
            _unpack_images(zip_path, unpacked)
            got = fingerprint(list_images(unpacked))
            if got != ds.sha256:
                raise DatasetError(f"{ds.url}: content check failed (sha256 {got[:12]}..., expected "
                                   f"{ds.sha256[:12]}...); nothing was saved")
            if target.exists():
                shutil.rmtree(target)
            os.replace(unpacked, target)  # atomic: the folder appears whole or not at all
    except BaseException:
        for folder in made:  # the folders this call made, deepest first, where still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return target


def _make_folder(folder: Path, what: str) -> list[Path]:
    """Make ``folder`` and its missing parents; return those made, deepest first.

    Raises:
        DatasetError: it cannot be made (a file in the way, no permission), in one line.
    """
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    if folder.exists() and not folder.is_dir():
        raise DatasetError(f"{what} {folder}: a file, not a folder: choose a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"{what} {folder}: cannot make the folder ({e.strerror}): choose "
                           "another") from None
    return missing


def resolve_data(data: str | Path | None = None, name: str = "captcha_images_v2") -> Path:
    """Where to read a dataset from, in order: ``data``, ``$CAPTCHA_OCR_DATA``, the cache,
    a download.

    Raises:
        DatasetError: a given folder does not exist, or nothing is cached and the
            download fails (the message says how to point at a local folder).
    """
    given = data or os.environ.get(ENV_DATA)
    if given:
        return require_folder(given, "" if data else f"${ENV_DATA}")
    cached = cache_dir() / name
    if cached.is_dir() and list_images(cached):
        return cached
    return download(name)
