"""The servers' sockets: bound before anything loads, held until uvicorn serves on them."""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time

import httpx
import pytest
from PIL import Image

from captcha_ocr import labeling, listening, service
from captcha_ocr.listening import PortError
from captcha_ocr.runtime import bundled_model_dir
from conftest import Server


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
    sockets = listening.bind("", 0)  # 0.0.0.0, and :: where IPv6 is on
    try:
        port = listening.bound_port(sockets)
        assert port > 0 and {s.getsockname()[1] for s in sockets} == {port}
        assert len(sockets) == 1 + (socket.has_ipv6 and socket.getaddrinfo(
            None, 0, socket.AF_INET6, socket.SOCK_STREAM, flags=socket.AI_PASSIVE) != [])
        assert _busy_errno(port) == errno.EADDRINUSE
    finally:
        listening.close(sockets)
    assert _busy_errno(port) == 0


def test_an_address_of_a_family_this_machine_lacks_is_passed_over(monkeypatch):
    real = socket.socket

    def no_ipv6(family=socket.AF_INET, *args, **kwargs):
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real(family, *args, **kwargs)

    monkeypatch.setattr(socket, "socket", no_ipv6)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("0.0.0.0", 0)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::", 0, 0, 0))])
    sockets = listening.bind("", 0)
    try:
        assert [s.family for s in sockets] == [socket.AF_INET]
    finally:
        listening.close(sockets)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::", 0, 0, 0))])
    with pytest.raises(PortError, match="^--host ::: not an address of this machine"):
        listening.bind("::", 0)


def test_urls_of_every_kind_of_host():
    assert listening.url("127.0.0.1", 80) == "http://127.0.0.1:80/"
    assert listening.url("", 80) == "http://0.0.0.0:80/"
    assert listening.url("", 80, browser=True) == "http://127.0.0.1:80/"
    assert listening.url("::", 80, browser=True) == "http://[::1]:80/"
    assert listening.url("fe80::1", 80) == "http://[fe80::1]:80/"
    assert listening.url("localhost", 80, browser=True) == "http://localhost:80/"


class Loaded(Exception):
    pass


def _connects(port: int) -> str:
    """What a client connecting now gets: "accepted" (queued) or "refused"."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return "accepted"
    except ConnectionRefusedError:
        return "refused"


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_holds_its_port_while_the_model_loads(monkeypatch, workers):
    """Another program cannot take the port. One process listens: a client's connection
    waits for it; with several, uvicorn's supervisor listens later, so the port is only
    reserved meanwhile: a client is refused (and retries), never accepted and then reset."""
    seen = []

    def loading(*args, **kwargs):
        seen.append(_busy_errno(port))  # another program starting now
        seen.append(_connects(port))
        raise Loaded

    monkeypatch.setattr(service, "_loaded_app", loading)
    monkeypatch.setattr(service.Reader, "load", loading)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Loaded):
        service.serve(None, "127.0.0.1", port, workers=workers)
    assert seen == [errno.EADDRINUSE, "accepted" if workers == 1 else "refused"]
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
            found = re.search(r"serving on http://127\.0\.0\.1:(\d+)/ with", log.read_text())
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


def test_port_zero_tries_another_port_where_a_later_address_holds_the_first(monkeypatch):
    calls = []
    real = listening._bind_each

    def first_taken(found, port):
        calls.append(port)
        if len(calls) == 1:
            raise listening._Taken
        return real(found, port)

    monkeypatch.setattr(listening, "_bind_each", first_taken)
    listening.close(listening.bind("127.0.0.1", 0))
    assert calls == [0, 0]
    asked = []

    def always_taken(found, port):
        asked.append(port)
        raise listening._Taken

    monkeypatch.setattr(listening, "_bind_each", always_taken)
    with pytest.raises(PortError, match="^port 8 on 127.0.0.1 is in use"):
        listening.bind("127.0.0.1", 8)
    assert asked == [8]  # a port asked: no retry
    with pytest.raises(PortError, match="^port 0 on 127.0.0.1 is in use"):
        listening.bind("127.0.0.1", 0)
    assert asked == [8] + [0] * listening.PORT_ZERO_TRIES



@pytest.mark.parametrize("drain", [0.0, 0.4])
def test_the_supervisor_stops_the_shared_port_listening_as_the_service_stops(drain):
    """With several workers the listening socket is shared (uvicorn's supervisor and each
    worker hold a copy): a worker that closed its copy at shutdown left the kernel
    queueing connections nobody would take, reset later (8-10 a stop under load). The
    supervisor's whole stop now refuses new ones first (after the drain, with one)."""
    [sock] = listening.bind("127.0.0.1", 0)
    port = listening.bound_port([sock])
    workers_copy = socket.socket(fileno=os.dup(sock.fileno()))
    try:
        sock.close()  # the supervisor's own copy closed: the worker's still queues
        assert _connects(port) == "accepted"
        supervisor = object.__new__(listening.supervisor(drain))  # no signal handlers here
        supervisor.sockets, supervisor.processes = [workers_copy], []
        during = []
        if drain:
            threading.Timer(drain / 2, lambda: during.append(_connects(port))).start()
        t0 = time.monotonic()
        supervisor.terminate_all()
        assert time.monotonic() - t0 >= drain
        assert during == (["accepted"] if drain else [])  # serving on while draining
        assert _connects(port) == "refused"  # though a worker's copy is still open
    finally:
        workers_copy.close()


def _healthz(port: int) -> int | str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code
    except httpx.HTTPError as e:  # a connection an old worker took as it stopped (uvicorn's race)
        return type(e).__name__


def test_serve_with_workers_restarts_them_on_sighup_and_serves_throughout(tmp_path):
    """uvicorn's rolling restart: the supervisor replaces each worker; the shared socket
    listens on for the new ones (only the whole stop stops it listening)."""
    s = Server(bundled_model_dir(), tmp_path / "serve.log", "--workers", "2")
    try:
        s.proc.send_signal(signal.SIGHUP)
        deadline, during = time.monotonic() + 60, []
        while s.log.read_text().count("Started server process") < 4 and time.monotonic() < deadline:
            during.append(_healthz(s.port))
            time.sleep(0.05)
        assert s.log.read_text().count("Started server process") == 4  # two new workers
        assert during.count(200) >= 0.9 * len(during), during
        assert [_healthz(s.port) for _ in range(5)] == [200] * 5
    finally:
        s.stop()
