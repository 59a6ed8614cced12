"""What hostile or careless clients cannot do to the service: JSON bombs, pixel-heavy
batches, starving single reads, huge or endless headers, slow bodies.

Runs on the bundled model (no dataset needed); the protocol limits on a live server.
"""

import asyncio
import base64
import io
import json
import re
import signal
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from captcha_ocr.batcher import Unavailable
from captcha_ocr.cpus import default_workers
from captcha_ocr.httpguard import STOPPING_BODY_GRACE
from captcha_ocr.runtime import Reader, bundled_model_dir
from captcha_ocr.service import MicroBatcher, create_app
from conftest import Server


def png(w: int = 200, h: int = 50) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(w * h).integers(0, 255, (h, w), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def reader():
    return Reader.load()


@pytest.fixture(scope="module")
def client(reader):
    with TestClient(create_app(reader, max_batch=8, max_batch_pixels=100_000)) as c:
        yield c


def _refused(r, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and words in r.json()["error"]


@pytest.mark.parametrize(("body", "words"), [
    (b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"images": [' + b"9" * 5000 + b"]}", "digits"),
    (b'{"images": [NaN]}', "NaN is not JSON"),
    (b'{"images": [1e999999]}', "images[0] is float"),
    (b'{"images": [], "x": 1}', "unknown field 'x'"),
    (b'{"image": "iVBOR"}', 'unknown field \'image\', and no "images"'),
])
def test_hostile_json_is_a_400(client, body, words):
    r = client.post("/v1/read-batch", content=body, headers={"content-type": "application/json"})
    _refused(r, 400, words)


def test_batch_over_its_pixel_budget_is_413_before_decoding(client):
    items = [base64.b64encode(png(200, 50)).decode()] * 8  # 80,000 pixels: fits 100,000
    assert client.post("/v1/read-batch", json={"images": items}).status_code == 200
    items.append(base64.b64encode(png(400, 100)).decode())  # 7 x 10,000 + 40,000
    _refused(client.post("/v1/read-batch", json={"images": items[1:]}), 413,
             "over the limit of 100,000 for one batch request")


def _slowed(monkeypatch, reader, method: str, seconds: float, when=lambda arg: True) -> None:
    """The reader's ``method`` (preprocess, run) sleeps ``seconds`` first where ``when(arg)``."""
    real = getattr(reader, method)

    def slowed(arg):
        if when(arg):
            time.sleep(seconds)
        return real(arg)

    monkeypatch.setattr(reader, method, slowed)


def test_single_read_does_not_wait_behind_batches(reader, monkeypatch):
    """Batches whose images decode slowly keep the batch lane busy; a single read goes
    through its own lane and finishes first."""
    slow, fast = png(201, 50), png(200, 50)
    _slowed(monkeypatch, reader, "preprocess", 0.15, when=lambda data: data == slow)

    async def scenario():
        b = MicroBatcher(reader, max_batch=64)
        b.start()
        try:
            t0 = time.perf_counter()
            batches = [asyncio.ensure_future(b.read_many([slow] * 8)) for _ in range(2)]
            await asyncio.sleep(0.01)
            r = await b.read(fast)
            single = time.perf_counter() - t0
            await asyncio.gather(*batches)
            return r, single, time.perf_counter() - t0
        finally:
            await b.stop()

    r, single, everything = asyncio.run(scenario())
    assert r.ok and single < 0.5 < everything  # the batches take 8 x 0.15 s each at least


def test_stop_during_an_inference_fails_its_reads_with_503(reader, monkeypatch):
    """stop() while a batch is in the network: its requests get Unavailable, none waits forever."""
    _slowed(monkeypatch, reader, "run", 0.3)

    async def scenario():
        b = MicroBatcher(reader, max_batch=64)
        b.start()
        read = asyncio.ensure_future(b.read(png(200, 50)))

        async def in_the_network():
            while not b.sizes:
                await asyncio.sleep(0.005)

        await asyncio.wait_for(in_the_network(), 5)
        await b.stop()
        return await asyncio.wait_for(asyncio.gather(read, return_exceptions=True), 2)

    (result,) = asyncio.run(scenario())
    assert isinstance(result, Unavailable) and "shutting down" in str(result)


def _batches_seen(reader, monkeypatch, read_image: bytes) -> list[tuple[int, int]]:
    """Slow the network down and record each batch as (single reads, batch images), the
    reads told apart by their image."""
    real, seen = reader.run, []
    mark = reader.preprocess(read_image)

    def run(x):
        reads = sum(bool(np.array_equal(row, mark)) for row in x)
        seen.append((reads, len(x) - reads))
        time.sleep(0.2)  # time for the reads to decode and queue while the first batch runs
        return real(x)

    monkeypatch.setattr(reader, "run", run)
    return seen


def _reads_beside_a_batch(reader, max_batch: int, n_bulk: int, n_reads: int, seen: list) -> None:
    """A batch request of ``n_bulk`` images, then ``n_reads`` single reads once its images
    wait for the network (its first batch running); every image is read."""
    bulk_image, read_image = png(200, 50), png(201, 50)

    async def scenario():
        b = MicroBatcher(reader, max_batch=max_batch)
        b.start()
        try:
            batch = asyncio.ensure_future(b.read_many([bulk_image] * n_bulk))
            while len(b._bulk) < n_bulk - max_batch or not seen:
                await asyncio.sleep(0.005)
            reads = await asyncio.gather(*[b.read(read_image) for _ in range(n_reads)])
            return await batch, reads
        finally:
            await b.stop()

    readings, reads = asyncio.run(scenario())
    assert len(readings) == n_bulk and all(r.ok for r in readings) and all(r.ok for r in reads)


def test_single_reads_go_ahead_of_queued_batch_images(reader, monkeypatch):
    """A batch request's 256 images wait for four inference batches; 60 single reads
    queued after them go into the next ones, beside a quarter of a batch of the request's
    images (48 + 16, then the other 12): the request is never starved."""
    seen = _batches_seen(reader, monkeypatch, png(201, 50))
    _reads_beside_a_batch(reader, 64, 256, 60, seen)
    assert seen == [(0, 64), (48, 16), (12, 52), (0, 64), (0, 60)]


def test_one_image_batches_take_reads_and_batch_images_by_turns(reader, monkeypatch):
    seen = _batches_seen(reader, monkeypatch, png(201, 50))
    _reads_beside_a_batch(reader, 1, 6, 3, seen)
    assert seen == [(0, 1), (1, 0), (0, 1), (1, 0), (0, 1), (1, 0), (0, 1), (0, 1), (0, 1)]


# ---------------------------------------------------------------- the HTTP protocol, live


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # one process: a stalled event loop must show, not hide behind a second worker
    s = Server(bundled_model_dir(), tmp_path_factory.mktemp("limits") / "server.log",
               "--header-timeout", "1", "--body-timeout", "1.5", "--workers", "1")
    yield s
    s.stop()


def _raw(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send ``data``, then read until the server closes (or ``wait`` passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def _status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


@pytest.mark.parametrize("size", [70_000, 300_000])
def test_huge_header_is_431(server, size):
    # 70 KB arrives in one read, parsed whole at once: counted as parsed fields
    answer = _raw(server.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * size + b"\r\n\r\n")
    status, error = _status_and_error(answer)
    assert status == 431 and "over the limit of 65,536 bytes" in error


def test_a_long_request_line_counts_toward_the_header_limit(server):
    answer = _raw(server.port, b"GET /healthz?q=" + b"a" * 40_000 + b" HTTP/1.1\r\nhost: x\r\nx-big: "
                  + b"a" * 30_000 + b"\r\n\r\n")
    status, error = _status_and_error(answer)
    assert status == 431 and "over the limit of 65,536 bytes" in error


def test_headers_under_the_limit_pass(server):
    answer = _raw(server.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: "
                  + b"a" * 60_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")


def test_too_many_header_fields_is_431(server):
    fields = b"".join(b"x-%d: 1\r\n" % i for i in range(150))
    request = b"GET /v1/model HTTP/1.1\r\nhost: x\r\n" + fields + b"\r\n"
    status, error = _status_and_error(_raw(server.port, request))
    assert status == 431 and "more than 100 request header fields" in error
    assert _logged(server, r"GET /v1/model 431 \d+\.\d ms$")  # no other test asks that path


def _logged(server, pattern: str) -> bool:
    """Whether the server's log has a line matching ``pattern`` (it may lag the answer)."""
    for _ in range(50):
        if re.search(pattern, server.log.read_text(), re.MULTILINE):
            return True
        time.sleep(0.05)
    return False


def test_partial_headers_time_out_with_408(server):
    t0 = time.perf_counter()
    status, error = _status_and_error(_raw(server.port, b"GET /healthz?partial HTTP/1.1\r\nhost: x\r\n"))
    assert status == 408 and "headers did not arrive within 1 s" in error
    assert time.perf_counter() - t0 < 4
    assert _logged(server, r"GET /healthz 408 \d+\.\d ms$")  # the app never saw it


def test_a_pipelined_request_whose_headers_stall_times_out_with_408(server):
    """A partial request sent right behind a whole one, in the same write: its header
    clock starts with its first byte (it had none: uvicorn's keep-alive closed it after
    5 s without a word), and the log names its own path, not the two joined."""
    answer = _raw(server.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
                  b"GET /v1/model?pipelined HTTP/1.1\r\nhost: x\r\n", wait=4)
    first, _, rest = answer.partition(b"HTTP/1.1 408")
    assert first.startswith(b"HTTP/1.1 200") and rest, answer
    error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert error == "the request headers did not arrive within 1 s"
    assert _logged(server, r"GET /v1/model 408 \d+\.\d ms$")


def test_slow_body_times_out_with_408(server):
    head = b"POST /v1/read HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: 1000\r\n\r\n"
    status, error = _status_and_error(_raw(server.port, head + b"x" * 10))
    assert status == 408 and "body did not arrive within 1.5 s" in error
    # logged with the status the client got (it was the app's 400 for a client gone)
    assert _logged(server, r"POST /v1/read 408 \d+\.\d ms$")
    assert not re.search(r"POST /v1/read 400", server.log.read_text())


def test_slow_clients_do_not_stall_the_others(server):
    """Twenty connections trickling headers: health checks and reads still answer fast."""
    idle = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"POST /v1/read HTTP/1.1\r\nhost: x\r\n")
        idle.append(s)
    try:
        t0 = time.perf_counter()
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        r = httpx.post(f"{server.url}/v1/read", content=png(), headers={"content-type": "image/png"},
                       timeout=5)
        assert r.status_code == 200 and time.perf_counter() - t0 < 1
    finally:
        for s in idle:
            s.close()


def test_normal_keep_alive_requests_are_unaffected(server):
    with httpx.Client(base_url=server.url, timeout=5) as c:
        for _ in range(3):
            assert c.get("/healthz").status_code == 200
            time.sleep(0.6)  # idle between requests is not header time
        assert c.post("/v1/read", content=png(), headers={"content-type": "image/png"}).status_code == 200


def test_malformed_http_is_a_json_400(server):
    status, error = _status_and_error(_raw(server.port, b"GARBAGE\x00\x01 / HTTP/9\r\n\r\n"))
    assert status == 400 and error == "malformed HTTP request"


def test_a_big_body_sent_with_its_headers_is_not_a_big_header(server):
    """A whole request (headers and a 100 KB body) in one read is judged by its headers."""
    body = b'{"images": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    with httpx.Client(base_url=server.url, timeout=5) as c:
        for _ in range(2):
            r = c.post("/v1/read-batch", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400 and "nested too deeply" in r.json()["error"]


def test_by_default_one_worker_process_per_usable_core(tmp_path):
    """`serve` without --workers starts default_workers() processes (2 on a 2-core machine)."""
    n = default_workers()
    s = Server(bundled_model_dir(), tmp_path / "default.log")
    try:
        with httpx.Client(base_url=s.url, timeout=10) as c:
            assert c.post("/v1/read", content=png(), headers={"content-type": "image/png"}).status_code == 200
    finally:
        s.stop()
    log = s.log.read_text()
    assert f"with {n} worker process" in log
    # uvicorn logs each process that serves: the one, or each worker under the supervisor
    assert log.count("Started server process") == n, log


def test_several_worker_processes_share_the_port(tmp_path):
    """`serve --workers 2`: two processes, each with its own model, answer on one port;
    SIGTERM stops them all."""
    import signal

    s = Server(bundled_model_dir(), tmp_path / "workers.log", "--workers", "2", "--header-timeout", "1")
    try:
        assert len(_worker_pids(s, 2)) == 2
        with httpx.Client(base_url=s.url, timeout=10) as c:
            for _ in range(20):
                r = c.post("/v1/read", content=png(), headers={"content-type": "image/png"})
                assert r.status_code == 200 and r.json()["model"].startswith("captcha_images_v2@")
        status, error = _status_and_error(_raw(s.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n"))
        assert status == 408 and "within 1 s" in error  # the limits reach the workers
    finally:
        assert s.stop(signal.SIGTERM) == 0
    assert s.log.read_text().count("model captcha_images_v2@") >= 2  # each worker loaded its own


# ---------------------------------------------------------------- draining on SIGTERM


def _worker_pids(s: Server, n: int, timeout: float = 60) -> list[int]:
    """The supervisor's ``n`` worker processes, once all have started (not multiprocessing's
    resource tracker, also its child)."""
    import subprocess

    deadline = time.monotonic() + timeout
    while s.log.read_text().count("Application startup complete") < n:
        assert time.monotonic() < deadline, s.log.read_text()
        time.sleep(0.1)
    children = subprocess.run(["pgrep", "-P", str(s.proc.pid)], capture_output=True, text=True)
    pids = [int(p) for p in children.stdout.split()]
    return [p for p in pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def _drains(s: Server, drain: float, *pids: int) -> None:
    """SIGTERM to ``pids`` in turn: /healthz turns 503 while reads are still answered, and
    the server stops once the drain is over (not before, not long after)."""
    import os
    import signal

    with httpx.Client(base_url=s.url, timeout=10) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        t0 = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        seen = set()
        while time.monotonic() - t0 < drain - 1.0:  # every worker is asked, on new connections
            with httpx.Client(base_url=s.url, timeout=5) as fresh:
                r = fresh.get("/healthz")
            if r.status_code == 503:
                assert r.json() == {"status": "draining"}
                seen.add(503)
                r = c.post("/v1/read", content=png(), headers={"content-type": "image/png"})
                assert r.status_code == 200 and "text" in r.json(), r.text  # still serving
            else:
                assert r.status_code == 200 and time.monotonic() - t0 < 1.5  # the signal on its way
            time.sleep(0.1)
        assert seen == {503}
        assert s.proc.poll() is None  # not stopped before the drain ends
    s.proc.wait(timeout=drain + 15)
    assert time.monotonic() - t0 >= drain - 0.1
    assert "draining for" in s.log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_answers_a_stalled_upload_503_within_a_second(tmp_path, sig):
    """A client that sent its headers and part of its body, then nothing: the server stops
    in about STOPPING_BODY_GRACE, answers it the one-line JSON 503 and logs no traceback
    (uvicorn waited 10 s, cancelled the request and answered a plain-text 500)."""
    s = Server(bundled_model_dir(), tmp_path / "stop.log", "--workers", "1")  # body timeout 30 s
    try:
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
            c.sendall(b"POST /v1/read HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\n"
                      b"content-length: 1000\r\n\r\nabc")
            time.sleep(0.3)
            t0 = time.monotonic()
            s.proc.send_signal(sig)
            s.proc.wait(timeout=8)
            took = time.monotonic() - t0
            answer = c.recv(65536)
        assert _status_and_error(answer) == (503, "the server is stopping: send the request again")
        assert took < 1 + STOPPING_BODY_GRACE, took
        assert "Traceback" not in s.log.read_text()
        assert re.search(r"POST /v1/read 503 \d+\.\d ms$", s.log.read_text(), re.MULTILINE)
    finally:
        s.stop()


def test_drain_keeps_serving_after_sigterm_with_healthz_503(tmp_path):
    """`serve --drain 3 --workers 1`: SIGTERM makes /healthz 503 for 3 s while reads go on."""
    s = Server(bundled_model_dir(), tmp_path / "drain.log", "--workers", "1", "--drain", "3")
    try:
        _drains(s, 3.0, s.proc.pid)
        assert s.proc.returncode == -15  # one process re-raises the signal, as without --drain
    finally:
        s.stop()


@pytest.mark.parametrize("group", [False, True])
def test_drain_with_worker_processes(tmp_path, group):
    """Two workers: SIGTERM to the supervisor alone (docker stop, Kubernetes) reaches both
    through it; SIGTERM to every process first (a service manager signals the group),
    then the supervisor's own, does not cut the drain short."""
    s = Server(bundled_model_dir(), tmp_path / "drain2.log", "--workers", "2", "--drain", "4")
    try:
        workers = _worker_pids(s, 2)
        assert len(workers) == 2
        _drains(s, 4.0, *(workers if group else []), s.proc.pid)
        assert s.proc.returncode == 0
        assert s.log.read_text().count("draining for") == 2  # each worker drained
    finally:
        s.stop()


def test_healthz_answers_503_while_draining(reader):
    app = create_app(reader, drain=5)
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        app.state.drain.draining = True
        r = c.get("/healthz")
        assert r.status_code == 503 and r.json() == {"status": "draining"}
        assert c.head("/healthz").status_code == 503
        assert c.post("/v1/read", content=png(), headers={"content-type": "image/png"}).status_code == 200
        assert "503" in c.get("/openapi.json").json()["paths"]["/healthz"]["get"]["responses"]
