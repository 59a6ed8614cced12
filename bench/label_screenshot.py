"""Write docs/label.png: the labeling page on generated captchas, after a few labels.

python bench/label_screenshot.py
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from captcha_ocr.zoo import write_style
from label_bench import CHROMIUM_ARGS, start_label_server

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "site-captchas"
        write_style("bold_caps", folder, 40, seed=8)
        (folder / "labels.csv").unlink()
        server, url = start_label_server(folder)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1000, "height": 640})
                page.goto(url + "/")
                for _ in range(3):
                    page.wait_for_function("document.activeElement.id === 'label'")
                    page.keyboard.press("Enter")
                    time.sleep(0.3)
                page.wait_for_function("document.querySelector('#image').complete")
                page.screenshot(path=str(ROOT / "docs" / "label.png"))
                browser.close()
        finally:
            server.terminate()
            server.wait(30)
    print(ROOT / "docs" / "label.png")


if __name__ == "__main__":
    main()
