"""The HTTP service in-process: every endpoint, every refusal, micro-batching, logging."""

import base64
import io
import logging
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from captcha_ocr import Reader
from captcha_ocr.service import create_app


@pytest.fixture(scope="module")
def reader(trained):
    return Reader.load(trained.model_dir, threads=1)


@pytest.fixture(scope="module")
def client(reader):
    with TestClient(create_app(reader, max_batch=8), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def images(subset):
    """Five real captcha PNGs as bytes."""
    return [p.read_bytes() for p in sorted(subset.glob("*.png"))[:5]]


def png(size, color=255) -> bytes:
    buf = io.BytesIO()
    Image.new("L", size, color).save(buf, "PNG")
    return buf.getvalue()


def expect(reader, data: bytes) -> dict:
    r = reader.read(data)
    return {"text": r.text, "confidence": pytest.approx(r.confidence, abs=1e-5),
            "char_confidences": pytest.approx(list(r.char_confidences), abs=1e-5)}


def post_image(client, data: bytes, content_type="image/png", path="/v1/read"):
    return client.post(path, content=data, headers={"Content-Type": content_type})


def assert_refused(r, status: int, words: str = ""):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"]
    assert words.lower() in body["error"].lower()


# ---------------------------------------------------------------- reading


def test_read_raw_body_matches_reader(client, reader, images):
    r = post_image(client, images[0])
    assert r.status_code == 200
    body = r.json()
    assert body | expect(reader, images[0]) == body
    assert body["model"] == reader.name and body["ms"] > 0
    assert len(body["char_confidences"]) == len(body["text"])


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream", "image/png; x=1"])
def test_read_any_image_content_type(client, reader, images, content_type):
    r = post_image(client, images[1], content_type)
    assert r.status_code == 200 and r.json()["text"] == reader.read(images[1]).text


def test_read_multipart_matches_raw(client, images):
    r = client.post("/v1/read", files={"image": ("a.png", images[2], "image/png")})
    assert r.status_code == 200
    assert r.json()["text"] == post_image(client, images[2]).json()["text"]


def test_read_batch_multipart_in_order_with_bad_item(client, reader, images):
    files = [("images", (f"{i}.png", d, "image/png")) for i, d in enumerate(images[:3])]
    files.insert(1, ("images", ("bad.png", b"not an image", "image/png")))
    r = client.post("/v1/read-batch", files=files)
    assert r.status_code == 200
    out = r.json()
    assert [o.get("text") for o in out] == [reader.read(images[0]).text, None,
                                          reader.read(images[1]).text, reader.read(images[2]).text]
    assert set(out[1]) == {"error"} and "not an image" in out[1]["error"]
    assert out[0] | expect(reader, images[0]) == out[0]


def test_read_batch_json_base64(client, reader, images):
    items = [base64.encodebytes(images[0]).decode(),  # with line breaks
             "data:image/png;base64," + base64.b64encode(images[1]).decode(),
             "***", base64.b64encode(images[0][:400]).decode()]
    r = client.post("/v1/read-batch", json={"images": items})
    assert r.status_code == 200
    out = r.json()
    assert [o.get("text") for o in out[:2]] == [reader.read(images[0]).text, reader.read(images[1]).text]
    assert "base64" in out[2]["error"]
    assert "truncated" in out[3]["error"] or "decode" in out[3]["error"]
    # an item that is not a string breaks the request's shape (the schema): 400 for all
    r = client.post("/v1/read-batch", json={"images": [items[0], 7]})
    assert r.status_code == 400 and r.json() == {"error": "images[1] is int, expected a base64 string"}


# ---------------------------------------------------------------- other endpoints


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    head = client.head("/healthz")  # some load balancers' checks
    assert head.status_code == 200 and head.content == b""


def test_two_files_to_read_one_is_a_400(client, images):
    for n in (2, 6):  # 6: over the multipart parser's limit of files too
        files = [("image", (f"{i}.png", images[i % 2], "image/png")) for i in range(n)]
        assert_refused(client.post("/v1/read", files=files), 400,
                       "several files in the field 'image': /v1/read reads one; send several as 'images'")


def test_model_info(client, reader):
    m = client.get("/v1/model").json()
    assert m["alphabet"] == reader.info.alphabet and m["name"] == reader.name
    im = reader.info.image
    assert m["image"] == {"height": im.height, "width": im.width, "channels": im.channels,
                          "crop": list(im.crop)}
    assert m["metrics"] == reader.info.metrics and m["precision"] == "fp32"  # no int8 file
    assert m["limits"]["max_batch"] == 8 and m["limits"]["max_pixels"] == reader.max_pixels


def test_docs_and_openapi(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text  # Swagger UI served by the app
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/v1/read", "/v1/read-batch", "/v1/model", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/read"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*", "application/octet-stream"} <= set(body)


def test_page_and_its_assets(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'src="static/app.js"' in r.text and 'href="static/style.css"' in r.text  # relative: any prefix
    assert "http" not in r.text
    for asset in ("app.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200


# ---------------------------------------------------------------- refusals


def test_empty_body_400(client):
    assert_refused(post_image(client, b""), 400, "empty")
    assert_refused(client.post("/v1/read"), 400, "empty")
    assert_refused(client.post("/v1/read-batch", content=b"", headers={"Content-Type": "application/json"}),
                   400, "empty")


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "text/html; charset=utf-8"])
def test_wrong_content_type_415(client, images, content_type):
    assert_refused(post_image(client, images[0], content_type), 415, content_type.split(";")[0])


def test_missing_content_type_415(client, images):
    assert_refused(client.post("/v1/read", content=images[0], headers={"Content-Type": ""}), 415)


def test_batch_wrong_content_type_415(client, images):
    assert_refused(post_image(client, images[0], "image/png", "/v1/read-batch"), 415)


def test_body_too_big_413_from_content_length(reader, images):
    with TestClient(create_app(reader, max_body=1000)) as c:
        assert_refused(post_image(c, images[0]), 413, "over the limit")
        assert post_image(c, png((10, 10))).status_code == 200


def test_body_too_big_413_while_streaming(reader, images):
    def chunks():  # no Content-Length: sent chunked
        for i in range(0, len(images[0]), 256):
            yield images[0][i:i + 256]

    with TestClient(create_app(reader, max_body=1000)) as c:
        r = c.post("/v1/read", content=chunks(), headers={"Content-Type": "image/png"})
        assert_refused(r, 413, "over the limit")


def test_not_an_image_422(client):
    assert_refused(post_image(client, b"just some bytes, no image"), 422, "not an image")


def test_damaged_image_of_a_known_format_422(client):
    assert_refused(post_image(client, b"GIF89a but not really"), 422, "a damaged GIF file")


def test_truncated_422(client, images):
    assert_refused(post_image(client, images[0][: len(images[0]) // 2]), 422, "truncated")


def test_over_pixel_limit_422(client, reader):
    side = int(np.sqrt(reader.max_pixels)) + 10
    data = png((side, side))
    assert len(data) < 2 * 1024 * 1024  # small file, huge image: refused from its header
    assert_refused(post_image(client, data), 422, "over the limit")


def test_multipart_without_image_field_400(client, images):
    r = client.post("/v1/read", files={"picture": ("a.png", images[0], "image/png")})
    assert_refused(r, 400, "'image'")
    assert_refused(client.post("/v1/read", data={"image": "text, not a file"},
                               files={"other": ("x", b"x")}), 400, "must be a file")


def test_malformed_multipart_400(client):
    r = client.post("/v1/read", content=b"--xyz\r\ngarbage",
                    headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert r.status_code in (400, 422) and set(r.json()) == {"error"}
    r = client.post("/v1/read", content=b"abc", headers={"Content-Type": "multipart/form-data"})
    assert_refused(r, 400, "boundary")


def test_batch_over_limit_413(client, images):
    assert_refused(client.post("/v1/read-batch", json={"images": [base64.b64encode(images[0]).decode()] * 9}),
                   413, "batch limit of 8")
    files = [("images", (f"{i}.png", images[0], "image/png")) for i in range(9)]
    assert_refused(client.post("/v1/read-batch", files=files), 413, "batch limit of 8")


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"images": "abc"}', b'{"images": []}'])
def test_batch_bad_json_400(client, body):
    r = client.post("/v1/read-batch", content=body, headers={"Content-Type": "application/json"})
    assert_refused(r, 400)


def test_a_batch_sent_under_the_singular_field_name_says_the_plural(client, images):
    files = [("image", ("0.png", images[0], "image/png"))]
    assert_refused(client.post("/v1/read-batch", files=files), 400, "named 'images' (each one, not 'image')")


def test_unknown_path_and_method_are_json(client):
    assert_refused(client.get("/nope"), 404)
    assert_refused(client.get("/v1/read"), 405)


def test_bad_request_does_not_break_the_next(client, reader, images):
    for bad in (b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 50, images[0][:100]):
        assert post_image(client, bad).status_code in (400, 422)
        r = post_image(client, images[3])
        assert r.status_code == 200 and r.json()["text"] == reader.read(images[3]).text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), content_type=st.sampled_from(["image/png", "image/gif",
                                                                   "multipart/form-data; boundary=b"]))
def test_random_bytes_never_500(client, data, content_type):
    r = post_image(client, data, content_type)
    assert r.status_code in (200, 400, 413, 415, 422) and r.headers["content-type"] == "application/json"


# ---------------------------------------------------------------- batching, logging, shutdown


def test_concurrent_requests_share_a_batch(reader, images, monkeypatch):
    decode = reader.preprocess

    def slow_decode(data):  # keep all eight in the decode pool at once
        time.sleep(0.05)
        return decode(data)

    monkeypatch.setattr(reader, "preprocess", slow_decode)
    app = create_app(reader, max_batch=8, max_wait_ms=5000)
    with TestClient(app) as c, ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(lambda d: post_image(c, d), [images[i % 5] for i in range(8)]))
        sizes = dict(app.state.batcher.sizes)
    assert [r.status_code for r in rs] == [200] * 8
    assert [r.json()["text"] for r in rs] == [reader.read(images[i % 5]).text for i in range(8)]
    assert sizes == {8: 1}  # one batch, run as soon as it was full, well before the 5 s bound


def test_lone_request_does_not_wait(reader, images):
    app = create_app(reader, max_batch=64, max_wait_ms=5000)
    with TestClient(app) as c:
        assert post_image(c, images[0]).json()["ms"] < 2000  # nothing else coming: no wait
        assert dict(app.state.batcher.sizes) == {1: 1}


def test_batch_request_is_one_inference_batch(reader, images):
    app = create_app(reader, max_batch=8)
    with TestClient(app) as c:
        files = [("images", (f"{i}.png", images[i], "image/png")) for i in range(5)]
        assert c.post("/v1/read-batch", files=files).status_code == 200
        assert dict(app.state.batcher.sizes) == {5: 1}


def test_batcher_stops_on_shutdown(reader, images):
    app = create_app(reader)
    with TestClient(app) as c:
        post_image(c, images[0])
        task = app.state.batcher._task
    assert task.done() and app.state.batcher._task is None


def test_one_log_line_per_request(client, images, caplog):
    with caplog.at_level(logging.INFO, logger="captcha_ocr.service"):
        post_image(client, images[0])
        post_image(client, b"", "image/png")
        client.get("/healthz")
        client.get("/static/app.js")
    lines = [r.getMessage() for r in caplog.records if r.name == "captcha_ocr.service"]
    assert len(lines) == 4
    assert lines[0].startswith("POST /v1/read 200 ") and lines[0].endswith(" ms")
    assert lines[1].startswith("POST /v1/read 400 ") and lines[2].startswith("GET /healthz 200 ")
    assert lines[3].startswith("GET /static/app.js 200 ")  # the whole path, not the mount's rest


def test_service_does_not_import_torch():
    code = "import sys, captcha_ocr.service; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
