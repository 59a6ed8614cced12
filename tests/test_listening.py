"""The servers' sockets: bound before anything loads, held until uvicorn serves on them."""

from __future__ import annotations

import errno
import socket

import pytest
from PIL import Image

from captcha_ocr import labeling, listening, service
from captcha_ocr.listening import PortError


def _busy_errno(port: int) -> int:
    """What another program gets binding the port now (0: it binds)."""
    with socket.socket() as other:
        try:
            other.bind(("127.0.0.1", port))
        except OSError as e:
            return e.errno
    return 0


def test_a_port_in_use_is_refused_on_each_address_the_host_names():
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for host in ("0.0.0.0", "127.0.0.1", "localhost", ""):
            with pytest.raises(PortError, match=f"^port {port} on .* is in use"):
                listening.bind(host, port)
        if socket.has_ipv6:  # IPv6 apart from IPv4, as asyncio binds it: free
            listening.close(listening.bind("::", port))
    listening.close(listening.bind("127.0.0.1", port))  # free again


def test_a_host_that_is_not_here_is_one_line():
    with pytest.raises(PortError, match="^--host no-such-host.invalid: not an address of this machine"):
        listening.bind("no-such-host.invalid", 0)
    with pytest.raises(PortError, match="^--host 192.0.2.1: not an address of this machine"):
        listening.bind("192.0.2.1", 0)  # TEST-NET-1: never a local address


def test_port_zero_gets_one_free_port_for_every_address():
    sockets = listening.bind("localhost", 0)
    try:
        port = listening.bound_port(sockets)
        assert port > 0 and {s.getsockname()[1] for s in sockets} == {port}
        assert _busy_errno(port) == errno.EADDRINUSE
    finally:
        listening.close(sockets)
    assert _busy_errno(port) == 0


class Loaded(Exception):
    pass


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_holds_its_port_while_the_model_loads(monkeypatch, workers):
    seen = []

    def loading(*args, **kwargs):
        seen.append(_busy_errno(port))  # another program starting now
        raise Loaded

    monkeypatch.setattr(service, "_loaded_app", loading)
    monkeypatch.setattr(service.Reader, "load", loading)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Loaded):
        service.serve(None, "127.0.0.1", port, workers=workers)
    assert seen == [errno.EADDRINUSE]
    assert _busy_errno(port) == 0  # a failed start leaves the port free


def test_label_holds_its_port_while_the_folder_and_model_load(monkeypatch, tmp_path):
    seen = []

    def loading(*args, **kwargs):
        seen.append(_busy_errno(port))
        raise Loaded

    monkeypatch.setattr(labeling, "label_reader", loading)
    Image.new("RGB", (60, 20), "white").save(tmp_path / "a.png")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Loaded):
        labeling.serve_labeling(tmp_path, host="127.0.0.1", port=port, open_browser=False)
    assert seen == [errno.EADDRINUSE]
    assert _busy_errno(port) == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_port_zero_says_the_port_it_got_and_answers_there(tmp_path, workers):
    import re
    import subprocess
    import sys
    import time

    import httpx

    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "captcha_ocr.cli", "serve", "--port", "0",
                                 "--workers", workers], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline, status = time.monotonic() + 60, None
        while status != 200 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            found = re.search(r"serving on http://127\.0\.0\.1:(\d+) with", log.read_text())
            if found:
                assert int(found[1]) > 0
                try:
                    status = httpx.get(f"http://127.0.0.1:{found[1]}/healthz", timeout=1).status_code
                except httpx.TransportError:
                    pass
        assert status == 200, log.read_text()
    finally:
        proc.terminate()
        proc.wait(20)
