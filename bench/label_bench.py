"""Labeling benchmark: a simulated labeler on `captcha-ocr label`, with and without pre-fill.

For each style and model: link N images into a fresh folder, start `captcha-ocr label` on
it (no browser), and drive its page in headless Chromium (Playwright) as a labeler who
knows the truth: Enter when the pre-filled reading is right (1 key), else select all,
type the label and Enter (2 + length keys). Prints keys per image, the share accepted
unchanged, labels per minute, and the time from Enter to the next image shown (p50/p95;
target p95 <= 50 ms).

    python bench/label_bench.py                       # captcha_images_v2 and rsce_gradient5, 300 each
    python bench/label_bench.py --n 50 --styles henan_digits4
    python bench/label_bench.py --models base --train-after 60   # label, train, label
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from captcha_ocr.data import discover, link_labeled

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_label_server(folder: Path, model: str = "base") -> tuple[subprocess.Popen, str]:
    """`captcha-ocr label FOLDER` on a free loopback port, once it answers: (process, URL)."""
    port = free_port()
    cmd = [sys.executable, "-m", "captcha_ocr.cli", "label", str(folder), "--model", model,
           "--port", str(port), "--no-browser"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/api/state", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    sys.exit(f"captcha-ocr label did not start on {folder}")


def run(page, folder: Path, truth: dict[str, str], model: str, train_after: int = 0) -> dict:
    server, url = start_label_server(folder, model)
    try:
        page.goto(url + "/")
        keys, unchanged, waits, shown = 0, 0, [], ""
        right: list[bool] = []  # the pre-fill was right, per image in order
        trained_s = 0.0
        t0 = time.perf_counter()
        for i in range(len(truth)):
            if train_after and i == train_after:  # press Train, wait for the new model
                t1 = time.perf_counter()
                page.click("#train")
                page.wait_for_function(
                    "!document.querySelector('#train').disabled && "
                    "document.querySelector('#train-log').textContent.includes('done')",
                    timeout=600_000,
                )
                trained_s = time.perf_counter() - t1
                shown = ""  # the image on screen (pre-filled by the old model) is labeled next
            page.wait_for_function(
                "([b]) => { const n = document.querySelector('#name').textContent;"
                " return n.length > 0 && n !== b && document.activeElement.id === 'label'; }",
                arg=[shown],
            )
            shown = page.locator("#name").inner_text()
            name = shown.split(" ")[0]
            right.append(page.locator("#label").input_value() == truth[name])
            if right[-1]:
                keys += 1
                unchanged += 1
            else:
                page.keyboard.press("Control+a")
                page.keyboard.type(truth[name])
                keys += 2 + len(truth[name])
            start = time.perf_counter()
            page.keyboard.press("Enter")
            page.wait_for_function(
                "([b]) => document.querySelector('#name').textContent !== b || "
                "!document.querySelector('#done').hidden",
                arg=[shown],
            )
            waits.append(time.perf_counter() - start)
        minutes = (time.perf_counter() - t0) / 60
    finally:
        server.terminate()
        server.wait(30)
    w = np.array(waits) * 1000
    return dict(
        keys=keys / len(truth),
        unchanged=unchanged / len(truth),
        per_min=len(truth) / minutes,
        p50=float(np.percentile(w, 50)),
        p95=float(np.percentile(w, 95)),
        before=float(np.mean(right[: train_after or len(right)])),
        after=float(np.mean(right[train_after:])) if train_after else None,
        trained_s=trained_s,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--styles", nargs="+", default=["captcha_images_v2", "rsce_gradient5"])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument(
        "--models",
        nargs="+",
        default=["none", "base"],
        help="pre-fill models (captcha_images_v2 also gets its bundled model)",
    )
    ap.add_argument(
        "--train-after",
        type=int,
        default=0,
        help="press Train after this many labels (each run), then go on with the new model",
    )
    a = ap.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("Chromium is not installed (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    print(
        f"{'style':18} {'model':18} {'images':>6} {'keys/img':>8} {'unchanged':>9} {'labels/min':>10} "
        f"{'Enter->next p50 ms':>18} {'p95 ms':>7}"
    )
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        for style in a.styles:
            if not (REAL / style).is_dir():
                print(f"{style}: not in {REAL}, skipped")
                continue
            samples = discover(REAL / style)
            pick = [samples[i] for i in np.random.default_rng(0).permutation(len(samples))[: a.n]]
            truth = {s.path.name: s.label for s in pick}
            models = a.models + (["captcha_images_v2"] if style == "captcha_images_v2" else [])
            for model in models:
                folder = link_labeled(pick, Path(tmp) / f"{style}-{model}", with_labels=False)
                page = browser.new_page()
                r = run(page, folder, truth, model, a.train_after)
                page.close()
                print(
                    f"{style:18} {model:18} {len(truth):6d} {r['keys']:8.2f} {r['unchanged']:9.3f} "
                    f"{r['per_min']:10.1f} {r['p50']:18.1f} {r['p95']:7.1f}"
                    + (
                        f"  pre-fill right: {r['before']:.3f} of the first {a.train_after}, "
                        f"{r['after']:.3f} of the rest after training ({r['trained_s']:.0f} s)"
                        if a.train_after
                        else ""
                    ),
                    flush=True,
                )
        browser.close()


if __name__ == "__main__":
    main()
