"""The ONNX Runtime Reader: parity with PyTorch, input kinds, bad items, no torch."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from captcha_ocr import ImageError, ModelError, Reader, ReadOptionError
from captcha_ocr.decoding import greedy_decode, sequence_log_probs, temper
from captcha_ocr.modeldir import FILES
from captcha_ocr.preprocess import preprocess
from captcha_ocr.train import load_checkpoint


@pytest.fixture(scope="module")
def reader(trained):
    return Reader.load(trained.model_dir)


@pytest.fixture(scope="module")
def val_images(trained, subset):
    files = sorted(subset.glob("*.png"))[:64]
    return files, np.stack([preprocess(f, trained.info.image) for f in files])


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_onnx_matches_pytorch(trained, reader, val_images, batch):
    _, x = val_images
    model, info = load_checkpoint(trained.model_dir)
    with torch.no_grad():
        ref = model(torch.from_numpy(x[:batch])).numpy()
    got = reader.run(x[:batch])
    assert got.shape == ref.shape == (batch, model.steps, len(info.alphabet) + 1)
    assert np.abs(got - ref).max() < 1e-4
    assert [d.text for d in greedy_decode(got, reader.charset)] == \
           [d.text for d in greedy_decode(ref, reader.charset)]


def test_read_accepts_path_bytes_pil_array(reader, val_images):
    path = val_images[0][0]
    img = Image.open(path)
    results = [reader.read(path), reader.read(path.read_bytes()), reader.read(img),
               reader.read(np.asarray(img))]
    assert len({r.text for r in results}) == 1
    r = results[0]
    assert 0 <= r.confidence <= 1 and len(r.char_confidences) == len(r.text)
    # the confidence is the probability of the text, all its CTC paths, at the temperature
    lp = temper(reader.run(reader.preprocess(path)[None]), reader.info.temperature)
    text_p = np.exp(sequence_log_probs(lp, [reader.charset.encode(r.text)]))[0]
    assert r.confidence == pytest.approx(text_p, rel=1e-4)


def test_read_many_same_order_as_read(reader, val_images):
    files = val_images[0][:20]
    many = reader.read_many(files, batch_size=6)
    assert [r.text for r in many] == [reader.read(f).text for f in files]


def test_bad_item_fails_alone(reader, val_images, tmp_path):
    good = val_images[0][:3]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    out = reader.read_many([good[0], bad, good[1], b"", good[2]], batch_size=2)
    assert [r.ok for r in out] == [True, False, True, False, True]
    assert "bad.png" in out[1].error and out[1].text == ""
    assert [out[0].text, out[2].text, out[4].text] == [reader.read(g).text for g in good]


def test_read_many_takes_options_second_and_refuses_misuse_in_one_line(reader, val_images):
    files = val_images[0][:3]
    opts = reader.options(beam=2)
    assert [r.alternatives for r in reader.read_many(files, opts)] == \
           [reader.read(f, opts).alternatives for f in files]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=f"batch_size must be a whole number of at least 1, "
                                             f"not {bad!r}$"):
            reader.iter_read(files, batch_size=bad)  # on the call, before any reading
    assert len(reader.read_many(files, batch_size=np.int64(2))) == 3
    with pytest.raises(ReadOptionError, match="options must come from reader.options"):
        reader.read_many(files, 32)
    with pytest.raises(ReadOptionError, match="options must come from reader.options"):
        reader.read(files[0], "0123")
    with pytest.raises(TypeError, match="take a list of images, not one str: read\\(x\\) reads one"):
        reader.iter_read(str(files[0]))
    with open(files[0], "rb") as f, pytest.raises(TypeError, match="not one BufferedReader"):
        reader.read_many(f)
    with pytest.raises(TypeError, match=r"not an array of shape \(2, 32, 32\): a stack of images\? "
                                        r"pass list\(arr\)"):
        reader.read_many(np.zeros((2, 32, 32), np.uint8))
    out = reader.read_many([files[0], None, 7, files[1]])  # items of no image type fail alone
    assert [r.ok for r in out] == [True, False, False, True] and "NoneType is not an image" in out[1].error


@pytest.mark.parametrize("kwargs, needle", [
    (dict(threads=-1), "threads must be a whole number of at least 0"),
    (dict(max_pixels=0), "max_pixels must be a whole number of at least 1"),
    (dict(max_pixels=-5), "max_pixels must be a whole number of at least 1"),
])
def test_load_refuses_bad_numbers(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Reader.load(**kwargs)


def test_read_raises_image_error(reader):
    with pytest.raises(ImageError, match="not an image"):
        reader.read(b"hello")


def test_tampered_onnx_refused(trained, tmp_path):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(trained.model_dir, copy)
    with open(copy / FILES.onnx, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="SHA-256 does not match"):
        Reader.load(copy)


def test_session_that_fell_back_to_the_cpu_is_refused(reader):
    # ONNX Runtime runs on the CPU, logging an error, where its CUDA provider cannot start;
    # a Reader asked for the GPU must say so instead of reading on the CPU.
    from captcha_ocr.runtime import _check_provider, _provider_failed

    path = reader.model_dir / FILES.onnx
    assert reader.session.get_providers() == ["CPUExecutionProvider"]
    _check_provider(reader.session, "cpu", path)
    with pytest.raises(ModelError, match="its 'cuda' provider on this machine: is a GPU") as e:
        _check_provider(reader.session, "cuda", path)
    assert "\n" not in str(e.value) and "--provider cpu" in str(e.value)
    # What ONNX Runtime raises where no GPU is visible (seen on a lent H100 with
    # CUDA_VISIBLE_DEVICES empty) becomes its reason in brackets.
    seen = ("/onnxruntime_src/onnxruntime/core/providers/cuda/cuda_call.cc:154 std::conditional_t"
            "<THRW, void, onnxruntime::common::Status> onnxruntime::CudaCall(...) CUDA failure 100: "
            "no CUDA-capable device is detected ; GPU=-1 ; hostname=vm ; file=cuda_execution_provider.cc")
    assert "machine (no CUDA-capable device is detected): is a GPU" in _provider_failed(path, "cuda", seen)


def test_cuda_provider_uses_cudnns_heuristic_algorithm_choice(monkeypatch):
    # ORT's default searches every convolution's algorithm again for each new batch size
    # (seen on a lent H100: the service served 70 req/s at 16 clients, 370 with this).
    import onnxruntime as ort

    from captcha_ocr.runtime import _providers

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider",
                                                                  "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "preload_dlls", lambda: None, raising=False)
    assert _providers("cuda") == [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}),
                                  "CPUExecutionProvider"]
    assert _providers("cpu") == ["CPUExecutionProvider"]


def test_not_a_model_dir(tmp_path):
    with pytest.raises(ModelError, match="not a model directory"):
        Reader.load(tmp_path)


def test_reading_never_imports_torch(trained, val_images):
    code = (
        "import sys, json; from captcha_ocr import Reader; "
        f"r = Reader.load({str(trained.model_dir)!r}).read({str(val_images[0][0])!r}); "
        "print(json.dumps([r.text, 'torch' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    text, torch_loaded = json.loads(out.stdout)
    assert torch_loaded is False
    assert isinstance(text, str)


def test_png_bytes_and_decoded_equal(reader):
    buf = io.BytesIO()
    Image.new("L", (200, 50), 255).save(buf, format="PNG")
    assert reader.read(buf.getvalue()).text == reader.read(Image.new("L", (200, 50), 255)).text


def test_lazy_pil_image_and_float_array_are_image_errors(reader, val_images, tmp_path):
    trunc = tmp_path / "t.png"
    trunc.write_bytes(val_images[0][0].read_bytes()[:200])
    with Image.open(trunc) as lazy, pytest.raises(ImageError):
        reader.read(lazy)
    with pytest.raises(ImageError, match="uint8"):
        reader.read(np.zeros((50, 200)))
    with Image.open(trunc) as lazy:
        out = reader.read_many([lazy, val_images[0][1]])
    assert [r.ok for r in out] == [False, True]


def test_a_model_name_that_is_neither_a_folder_nor_shipped_lists_the_shipped(tmp_path, monkeypatch):
    shipped = r"'nope': no such model directory, .*\(base, base2, captcha_images_v2\)"
    with pytest.raises(ModelError, match=shipped):
        Reader.load("nope")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()  # a folder of that name, but no model: the shipped one loads
    assert Reader.load("base").name.startswith("base@")
