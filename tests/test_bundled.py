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


def test_base_model_reads_unseen_zoo_images_zero_shot(capsys, tmp_path):
    import numpy as np

    from captcha_ocr.cli import main
    from captcha_ocr.zoo import render

    d = bundled_model_dir("base")
    info = json.loads((d / FILES.info).read_text())
    for name, digest in info["files"].items():
        assert sha256_file(d / name) == digest, name
    assert info["training"]["command"].startswith("captcha-ocr pretrain")
    assert info["training"]["zoo_version"] >= 1
    assert sum(f.stat().st_size for f in d.iterdir()) < 3_000_000
    reader = Reader.load("base")  # by name, as --model base
    pairs = [render(style, 4242, i) for style in ("digits_strike", "bold_caps") for i in range(25)]
    readings = reader.read_many([np.asarray(img) for img, _ in pairs])
    right = sum(r.text == label for r, (_, label) in zip(readings, pairs))
    assert right >= 40, right  # a seed it never trained on
    img, label = pairs[0]
    img.save(tmp_path / "one.png")
    assert main(["predict", str(tmp_path / "one.png"), "--model", "base"]) == 0
    assert capsys.readouterr().out.strip().endswith(label)
