"""A server's listening sockets, bound before anything slow, then handed to uvicorn.

``serve`` and ``label`` load a model (and a folder) before they can answer. Binding the
port first means a port in use is refused in one line at once, and no other program can
take the port between that check and uvicorn's own bind: uvicorn serves on the sockets
bound here (``run``). Each address the host names is bound as asyncio binds it for
uvicorn (SO_REUSEADDR; IPv6 apart from IPv4).

With several worker processes (``run_workers``) the listening socket is shared by
uvicorn's supervisor and its workers: a stopping worker closes only its own copy, so
the kernel went on queueing connections that nobody would take, reset when the last
copy closed (8-10 a stop under load). As the whole service stops, the supervisor now
stops the socket listening first: new connections are refused, as with one process.
A rolling restart (SIGHUP) is untouched: the socket listens on for the new workers.

Imports the standard library only; uvicorn where a server runs.
"""

from __future__ import annotations

import errno
import socket
import sys
import time
from typing import Any

__all__ = ["PortError", "bind", "bound_port", "close", "run", "run_workers", "url"]

BACKLOG = 2048  # connections waiting to be accepted (uvicorn's default)


class PortError(ValueError):
    """The host cannot be listened on: not an address here, or the port is in use."""


def bind(host: str, port: int, backlog: int = BACKLOG, listen: bool = True) -> list[socket.socket]:
    """Bind ``port`` (0: any free one, the same for every address) of each address ``host``
    names, and listen there (``listen``; unlistened, the port is reserved while connections
    to it are refused). Addresses of a family this machine lacks are passed over, as
    asyncio does (IPv6 switched off, say). Raises ``PortError`` in one line where the port
    is in use or the host is not an address of this machine; other failures are left as
    they are (OSError)."""
    try:
        found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        raise PortError(f"--host {host}: not an address of this machine (or not resolvable); "
                        "use 127.0.0.1, 0.0.0.0 or one of its addresses") from None
    for attempt in range(PORT_ZERO_TRIES if port == 0 else 1):
        try:
            sockets = _bind_each(list(dict.fromkeys(found)), port)
        except _Taken:
            if attempt + 1 < PORT_ZERO_TRIES and port == 0:
                continue  # the port the first address got is another's on a later one
            raise PortError(f"port {port} on {host or 'every address'} is in use (another "
                            "server?): stop it, or pass --port with a free one") from None
        break
    if not sockets:
        raise PortError(f"--host {host}: not an address of this machine; use "
                        "127.0.0.1, 0.0.0.0 or one of its addresses")
    if listen:
        try:
            for sock in sockets:
                sock.listen(backlog)
        except BaseException:
            close(sockets)
            raise
    return sockets


PORT_ZERO_TRIES = 5


class _Taken(Exception):
    pass


def _bind_each(found: list, port: int) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in found:
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:  # a family this machine lacks
                continue
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:  # the port the first address got
                address = (address[0], bound_port(sockets), *address[2:])
            try:
                sock.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise _Taken from None
                if e.errno == errno.EADDRNOTAVAIL:  # not configured here ("::1" without IPv6)
                    sockets.pop().close()
                    continue
                raise
    except BaseException:
        close(sockets)
        raise
    return sockets


def url(host: str, port: int, browser: bool = False) -> str:
    """The URL of a server listening on ``host`` (an IPv6 address in brackets); with
    ``browser``, one a browser on this machine can open (every address: the loopback)."""
    shown = host or "0.0.0.0"
    if browser:
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(shown, shown)
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def bound_port(sockets: list[socket.socket]) -> int:
    """The port the sockets listen on (the one picked where 0 was asked)."""
    return sockets[0].getsockname()[1]


def close(sockets: list[socket.socket]) -> None:
    """Stop listening (a check that hands the port to another binder)."""
    for sock in sockets:
        sock.close()


def _stop_listening(sockets: list[socket.socket]) -> None:
    """``shutdown(2)`` of listening sockets: the kernel refuses new connections on them in
    every process that holds them (a close only drops this process's copy)."""
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RD)
        except OSError:  # closed already, or not listening: nothing to stop
            pass


def run(app: Any, sockets: list[socket.socket], **config: Any) -> None:
    """Serve ``app`` with uvicorn on ``sockets`` (from ``bind``) until SIGINT/SIGTERM, as
    ``uvicorn.run`` does with one process; ``config``: uvicorn's ``Config`` options. The
    sockets are closed after. Exits 3 (uvicorn's startup failure) where the app never
    started."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, **config))
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    finally:
        close(sockets)
    if not server.started:
        sys.exit(3)


def supervisor(drain: float = 0.0) -> type:
    """uvicorn's worker supervisor, stopping the shared socket listening as the service
    stops: as its stop signal (SIGTERM, SIGINT) arrives, or ``drain`` seconds after it
    while the workers serve on and drain (``draining.Drain``; sooner where they have all
    exited, as after a terminal's Ctrl-C). Only a stop does it, never a rolling restart
    (SIGHUP), whose new workers listen on the same socket. Only on Linux, with workers
    on uvloop (``loop`` "auto" or "uvloop", uvloop installed): there the shutdown is a
    refusal the workers' loops take quietly; asyncio's own loop would spin on the
    socket, logging an error for each ``accept`` until the worker stops."""
    import functools
    import importlib.util
    import signal

    from uvicorn.supervisors import Multiprocess  # (config, [target,] sockets): 0.30 to 0.55

    class Supervisor(Multiprocess):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)  # installs uvicorn's handlers (they queue)
            self.stop_deadline: float | None = None
            self.refuses = (sys.platform == "linux" and self.config.loop in ("auto", "uvloop")
                            and importlib.util.find_spec("uvloop") is not None)
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, functools.partial(self._on_stop, signal.getsignal(sig)))

        def _on_stop(self, queue: Any, sig: int, frame: Any) -> None:
            self._stopping()  # now, not at the supervisor's next tick (up to 0.5 s later)
            queue(sig, frame)

        def _stopping(self) -> None:
            if self.stop_deadline is None:
                self.stop_deadline = time.monotonic() + drain
                if drain <= 0 and self.refuses:
                    _stop_listening(self.sockets)

        def terminate_all(self) -> None:  # the whole stop (a restart replaces workers itself)
            self._stopping()
            super().terminate_all()
            while time.monotonic() < self.stop_deadline and any(
                    getattr(p, "process", p).is_alive() for p in self.processes):
                time.sleep(0.02)
            if self.refuses:
                _stop_listening(self.sockets)

    return Supervisor


def run_workers(app: str, workers: int, drain: float = 0.0, **config: Any) -> None:
    """``uvicorn.run(app, workers=workers, **config)`` under ``supervisor(drain)``."""
    import importlib

    import uvicorn

    main = importlib.import_module("uvicorn.main")  # the module; ``uvicorn.main`` is its command
    own = main.Multiprocess  # the name uvicorn.run starts its supervisor by
    main.Multiprocess = supervisor(drain)
    try:
        uvicorn.run(app, workers=workers, **config)
    finally:
        main.Multiprocess = own
