"""Loading a model directory: metadata checked against itself and against the network,
and no link followed out of the directory. Works on copies of the shipped models."""

import json
import shutil

import pytest

from captcha_ocr.modeldir import FILES, ModelError
from captcha_ocr.runtime import Reader, bundled_model_dir


@pytest.fixture
def model_copy(tmp_path):
    dest = tmp_path / "m"
    shutil.copytree(bundled_model_dir(), dest)
    return dest


def _edit(model_dir, **changes):
    info = json.loads((model_dir / FILES.info).read_text())
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        d = info
        for k in path:
            d = d[k]
        d[last] = value
    (model_dir / FILES.info).write_text(json.dumps(info))


def test_the_copy_loads(model_copy):
    assert Reader.load(model_copy).info.alphabet == Reader.load().info.alphabet


def test_alphabet_that_does_not_fit_the_output_rows(model_copy):
    alphabet = json.loads((model_copy / FILES.info).read_text())["alphabet"]
    _edit(model_copy, alphabet=alphabet + "Z")
    with pytest.raises(ModelError, match=r"alphabet of \d+ characters needs \d+ output classes"):
        Reader.load(model_copy)


def test_alphabet_and_class_count_edited_together_still_refused_by_the_network(model_copy):
    info = json.loads((model_copy / FILES.info).read_text())
    _edit(model_copy, alphabet=info["alphabet"] + "Z", model__n_classes=info["model"]["n_classes"] + 1)
    with pytest.raises(ModelError, match=r"output classes, the network in model.onnx has \d+"):
        Reader.load(model_copy)


def test_channels_that_do_not_fit_the_network(model_copy):
    channels = json.loads((model_copy / FILES.info).read_text())["image"]["channels"]
    _edit(model_copy, image__channels=4 - channels)  # grey <-> colour
    with pytest.raises(ModelError, match=f"input channels {4 - channels} does not fit the network"):
        Reader.load(model_copy)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("image__height", 64, "input height 64 does not fit the network"),
    ("image__channels", 2, r"damaged model metadata \(a field of the wrong .*: channels must be 1"),
    ("image__width", -5, r"damaged model metadata \(a field of the wrong .* image size -5x\d+ is too small"),
    ("image__crop", [0.5, 0, 0.2, 1], "damaged model metadata .*crop"),
])
def test_input_that_does_not_fit(model_copy, key, value, message):
    _edit(model_copy, **{key: value})
    with pytest.raises(ModelError, match=message):
        Reader.load(model_copy)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda text: text[:100], r"damaged model metadata \(not valid JSON: Unterminated string"),
    (lambda text: "[1, 2]", r"damaged model metadata \(not a JSON object\)"),
    (lambda text: "[" * 100_000, r"damaged model metadata \(not valid JSON: nested too deeply\)"),
    (lambda text: json.dumps({**json.loads(text), "files": [1]}), r"\(field 'files' is not an object\)"),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "image"}),
     r"damaged model metadata \(no 'image' field\)"),
    (lambda text: json.dumps({**json.loads(text), "alphabet": 5}), "damaged model metadata"),
    (lambda text: json.dumps({**json.loads(text), "image": {**json.loads(text)["image"], "height": "32"}}),
     "damaged model metadata"),
])
def test_damaged_metadata_is_one_line_that_says_what_to_do(model_copy, damage, message):
    path = model_copy / FILES.info
    path.write_text(damage(path.read_text()))
    _refused_in_one_line(model_copy, message)


def test_metadata_that_is_not_utf8_says_so(model_copy):
    path = model_copy / FILES.info
    path.write_bytes(path.read_bytes().replace(b'"alphabet"', b'"alph\xe9bet"'))
    _refused_in_one_line(model_copy, r"damaged model metadata \(not UTF-8 text\)")


def _refused_in_one_line(model_copy, message):
    with pytest.raises(ModelError, match=message) as e:
        Reader.load(model_copy)
    assert "\n" not in str(e.value)
    assert str(e.value).endswith("restore model.json from a copy of the model directory, "
                                 "or train the model again")


def test_link_out_of_the_directory_is_not_followed(model_copy, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(model_copy / FILES.onnx, outside)
    (model_copy / FILES.onnx).symlink_to(outside)
    with pytest.raises(ModelError, match="outside the model directory; refusing to follow it"):
        Reader.load(model_copy)


def test_link_inside_the_directory_is_fine(model_copy):
    shutil.move(model_copy / FILES.onnx, model_copy / "v1.onnx")
    (model_copy / FILES.onnx).symlink_to("v1.onnx")
    assert Reader.load(model_copy).info.alphabet
