"""The pretrained model shipped in the package."""

import json

from captcha_ocr import Reader
from captcha_ocr.modeldir import FILES, sha256_file
from captcha_ocr.runtime import bundled_model_dir

SHARED_936_FINGERPRINT = "a5200f63640986630b368a1ba41b791e2521ef44611b433a080f5f49fb923a25"


def test_model_json_matches_its_files():
    d = bundled_model_dir()
    info = json.loads((d / FILES.info).read_text())
    assert set(info["files"]) == {FILES.onnx, FILES.weights}
    for name, digest in info["files"].items():
        assert sha256_file(d / name) == digest, name
    assert info["training"]["command"].startswith("captcha-ocr train")
    assert info["training"]["data_fingerprint"] == SHARED_936_FINGERPRINT
    assert info["alphabet"] == "2345678bcdefgmnpwxy"
    assert sum(f.stat().st_size for f in d.iterdir()) < 3_000_000


def test_reads_shared_images(shared_data):
    files = sorted(shared_data.glob("*.png"))[::9]  # 104 of the 936
    readings = Reader.load().read_many(files)
    wrong = [(f.stem, r.text) for f, r in zip(files, readings) if r.text != f.stem]
    assert len(wrong) <= 1, wrong


def test_default_model_used_by_predict(shared_data, capsys):
    from captcha_ocr.cli import main

    f = sorted(shared_data.glob("*.png"))[0]
    assert main(["predict", str(f)]) == 0
    assert capsys.readouterr().out == f"{f}\t{f.stem}\n"
