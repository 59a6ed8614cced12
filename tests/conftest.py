"""Shared fixtures: the real dataset (skipped cleanly when absent), seeded synthetic
captchas from the ``captcha`` package, and a small model trained once per session."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
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


# ---------------------------------------------------------------- a live server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`captcha-ocr serve` on a free loopback port, its output in a log file."""

    def __init__(self, model_dir: Path | str, log: Path, *args: str,
                 command: tuple[str, ...] = ("serve",), ready: str = "/healthz") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.ready = ready
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "captcha_ocr.cli", *command, "--model", str(model_dir),
                 "--port", str(self.port), *args], stdout=out, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}{self.ready}", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# ---------------------------------------------------------------- a browser

# The machine's network is closed: without these Chromium keeps trying to reach outside hosts.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser_page(tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); the page is untested")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            # A request the page itself cancels (an image replaced by the next one before
            # it loaded: net::ERR_ABORTED) is not a failure; any other is.
            page.on("requestfailed", lambda r: None if "ERR_ABORTED" in (r.failure or "")
                    else problems.append(f"request failed: {r.url} ({r.failure})"))
            yield page, problems
        finally:
            context.close()
