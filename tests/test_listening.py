"""The servers' sockets: bound before anything loads, held until uvicorn serves on them."""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
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



class _Worker:
    """A supervised worker as ``Supervisor`` sees it: alive until ``exits`` seconds from now."""

    def __init__(self, exits: float) -> None:
        self.until = time.monotonic() + exits

    def terminate(self) -> None:
        pass

    def is_alive(self) -> bool:
        return time.monotonic() < self.until


def _supervisor(drain: float, port_holder: socket.socket, workers: list):
    """``listening.supervisor(drain)`` on ``port_holder``, without uvicorn's own start-up
    (its signal handlers, its config): the state ``__init__`` sets on Linux with uvloop."""
    sup = object.__new__(listening.supervisor(drain))
    sup.sockets, sup.processes, sup.stop_deadline, sup.refuses = [port_holder], workers, None, True
    return sup


@pytest.fixture
def shared_port():
    """A listening port and the copy a worker holds: (port, the supervisor's socket)."""
    [sock] = listening.bind("127.0.0.1", 0)
    workers_copy = socket.socket(fileno=os.dup(sock.fileno()))
    yield listening.bound_port([sock]), sock
    sock.close()
    workers_copy.close()


def test_a_copy_closed_alone_leaves_the_port_queueing(shared_port):
    """Why the supervisor must act: with several workers the listening socket is shared,
    and a stopping worker only closed its copy, so the kernel went on taking connections
    nobody would accept, reset when the last copy closed (8-10 a stop under load)."""
    port, sock = shared_port
    sock.close()
    assert _connects(port) == "accepted"


def test_the_supervisor_refuses_new_connections_as_its_stop_signal_arrives(shared_port):
    port, sock = shared_port
    sup = _supervisor(0.0, sock, [_Worker(60)])
    queued = []
    sup._on_stop(lambda sig, frame: queued.append(sig), signal.SIGTERM, None)
    assert queued == [signal.SIGTERM]  # uvicorn's own handler still queues it
    assert _connects(port) == "refused"  # at once, though a worker's copy is open
    sup.terminate_all()
    assert _connects(port) == "refused"


def test_with_a_drain_the_port_listens_until_it_ends(shared_port):
    port, sock = shared_port
    sup = _supervisor(0.6, sock, [_Worker(60)])
    during = []
    threading.Timer(0.3, lambda: during.append(_connects(port))).start()
    t0 = time.monotonic()
    sup.terminate_all()
    assert time.monotonic() - t0 >= 0.6
    assert during == ["accepted"]  # served on while draining
    assert _connects(port) == "refused"


def test_a_drain_ends_early_where_every_worker_has_exited(shared_port):
    """A terminal's Ctrl-C stops each worker at once: the supervisor does not wait out
    the drain with a port that queues connections."""
    port, sock = shared_port
    sup = _supervisor(30.0, sock, [_Worker(0.2), _Worker(0.3)])
    t0 = time.monotonic()
    sup.terminate_all()
    assert 0.3 <= time.monotonic() - t0 < 2
    assert _connects(port) == "refused"


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_the_supervisor_refuses_only_for_workers_on_uvloop(shared_port, loop):
    """asyncio's own loop would spin on a shut-down listening socket, logging an error for
    every accept until the worker stops: there the socket is left as uvicorn leaves it."""
    import importlib.util
    import inspect

    import uvicorn
    from uvicorn.supervisors.multiprocess import SIGNALS  # the handlers uvicorn's __init__ sets

    _, sock = shared_port
    config = uvicorn.Config(app=None, loop=loop, workers=2)
    kind = listening.supervisor(0.0)
    args = {"sockets": [sock]}
    if "target" in inspect.signature(kind.__mro__[1].__init__).parameters:  # older uvicorn
        args["target"] = lambda sockets=None: None
    handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}
    try:
        sup = kind(config, **args)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    uvloop = importlib.util.find_spec("uvloop") is not None
    assert sup.refuses is (loop == "auto" and uvloop and sys.platform == "linux")


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
