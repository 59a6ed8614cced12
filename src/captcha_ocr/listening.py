"""A server's listening sockets, bound before anything slow, then handed to uvicorn.

``serve`` and ``label`` load a model (and a folder) before they can answer. Binding the
port first means a port in use is refused in one line at once, and no other program can
take the port between that check and uvicorn's own bind: uvicorn serves on the sockets
bound here (``run``). Each address the host names is bound as asyncio binds it for
uvicorn (SO_REUSEADDR; IPv6 apart from IPv4).

Imports the standard library only; uvicorn where a server runs.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any

__all__ = ["PortError", "bind", "bound_port", "close", "run"]

BACKLOG = 2048  # connections waiting to be accepted (uvicorn's default)


class PortError(ValueError):
    """The host cannot be listened on: not an address here, or the port is in use."""


def bind(host: str, port: int, backlog: int = BACKLOG) -> list[socket.socket]:
    """Listen on ``port`` (0: any free one, the same for every address) of each address
    ``host`` names. Raises ``PortError`` in one line where one is in use or the host is
    not an address of this machine; other failures are left as they are (OSError)."""
    try:
        found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        raise PortError(f"--host {host}: not an address of this machine (or not resolvable); "
                        "use 127.0.0.1, 0.0.0.0 or one of its addresses") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
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
                    raise PortError(f"port {port} on {host or 'every address'} is in use (another "
                                    "server?): stop it, or pass --port with a free one") from None
                if e.errno == errno.EADDRNOTAVAIL:
                    raise PortError(f"--host {host}: not an address of this machine; use "
                                    "127.0.0.1, 0.0.0.0 or one of its addresses") from None
                raise
            sock.listen(backlog)
            sock.set_inheritable(True)
    except BaseException:
        close(sockets)
        raise
    return sockets


def bound_port(sockets: list[socket.socket]) -> int:
    """The port the sockets listen on (the one picked where 0 was asked)."""
    return sockets[0].getsockname()[1]


def close(sockets: list[socket.socket]) -> None:
    """Stop listening (a check that hands the port to another binder)."""
    for sock in sockets:
        sock.close()


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
