"""Shared fixtures: the real dataset (skipped cleanly when absent), seeded synthetic
captchas from the ``captcha`` package, and a small model trained once per session."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("CAPTCHA_OCR_DATA")
              or Path(__file__).resolve().parents[2] / "shared" / "data" / "captcha_images_v2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The 936 shared captcha_images_v2 images."""
    if not SHARED.is_dir():
        pytest.skip(f"real data not found at {SHARED} (place captcha_images_v2 there to run this)")
    return SHARED


def make_captchas(folder: Path, n: int, alphabet: str, lengths: tuple[int, int], seed: int,
                  size: tuple[int, int] = (160, 60), ext: str = "png") -> list[tuple[Path, str]]:
    """Write ``n`` seeded captcha images named by their (distinct) labels."""
    from captcha.image import ImageCaptcha

    rng = random.Random(seed)
    random.seed(seed)  # the captcha package draws its noise from the global generator
    gen = ImageCaptcha(width=size[0], height=size[1])
    folder.mkdir(parents=True, exist_ok=True)
    out, seen = [], set()
    while len(out) < n:
        label = "".join(rng.choice(alphabet) for _ in range(rng.randint(*lengths)))
        if label in seen:
            continue
        seen.add(label)
        path = folder / f"{label}.{ext}"
        gen.generate_image(label).save(path)
        out.append((path, label))
    return out


@pytest.fixture
def synth_dir(tmp_path: Path) -> Path:
    """Twelve colour captchas of 3-6 characters from a small alphabet."""
    make_captchas(tmp_path / "synth", 12, "abcdeXYZ123", (3, 6), seed=7)
    return tmp_path / "synth"


@pytest.fixture(scope="session")
def subset(tmp_path_factory, shared_data: Path) -> Path:
    """240 of the shared images, copied (a deterministic choice)."""
    files = sorted(shared_data.glob("*.png"))[::3][:240]
    dest = tmp_path_factory.mktemp("subset")
    for f in files:
        shutil.copy(f, dest / f.name)
    return dest


@pytest.fixture(scope="session")
def trained(tmp_path_factory, subset: Path):
    """A model trained briefly on the real subset through the library (a few epochs)."""
    from captcha_ocr.train import recipe, train

    out = tmp_path_factory.mktemp("model")
    cfg = recipe("fast", epochs=4, seed=1)
    return train(subset, out, arch="fast", cfg=cfg, command="pytest")
