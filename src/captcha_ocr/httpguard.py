"""uvicorn's HTTP/1.1 protocol (httptools) with the limits a public service needs.

uvicorn bounds neither the size of a request's headers nor the time a client may take
to send them or its body: a 128 MB header, or a client that sends one byte a minute,
holds a connection and memory for as long as it likes. ``GuardedHttpProtocol`` adds:

- headers: at most ``MAX_HEADER_BYTES`` bytes (request line included) and
  ``MAX_HEADERS`` fields, else ``431`` and the connection is closed;
- time: the request line and headers within ``HEADER_TIMEOUT`` seconds of the first
  byte (or of the connection, for a client that sends nothing), the body within
  ``BODY_TIMEOUT`` seconds of the headers, else ``408`` and the connection is closed.

When the server stops, a request whose body is still arriving gets ``STOPPING_BODY_GRACE``
seconds to finish sending it, then ``503`` and the connection is closed (uvicorn would
wait for it up to its graceful-shutdown timeout, then cancel the request: a traceback in
the log and a plain-text 500 for the client).

Keep-alive idle time stays uvicorn's own ``timeout_keep_alive``. Answers here are
written by the protocol itself, as one-line JSON like every other error of the service,
and logged with the status the client got: a refusal while the app reads the body is
put in the request's scope under ``httperrors.REFUSED`` for the access log
(``service.AccessLog``; the app's own answer, to a client gone, is never sent), one
before the app sees the request is logged here in the same form.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .httperrors import REFUSED

__all__ = ["BODY_TIMEOUT", "HEADER_TIMEOUT", "MAX_HEADERS", "MAX_HEADER_BYTES", "STOPPING_BODY_GRACE",
           "GuardedHttpProtocol"]

log = logging.getLogger("captcha_ocr.service")

MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
STOPPING_BODY_GRACE = 1.0

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large",
            503: b"Service Unavailable"}


class GuardedHttpProtocol(HttpToolsProtocol):
    """``uvicorn.run(app, http=GuardedHttpProtocol)``; limits are class attributes."""

    max_header_bytes = MAX_HEADER_BYTES
    max_headers = MAX_HEADERS
    header_timeout = HEADER_TIMEOUT
    body_timeout = BODY_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = True      # reading a request line and headers (or waiting for one)
        self._head_bytes = 0
        self._field_bytes = 0
        self._n_headers = 0
        self._timer: asyncio.TimerHandle | None = None
        self._limit: tuple[int, str] | None = None  # a limit the parser was stopped for
        self._events = 0  # headers and messages completed on this connection
        self._url = b""  # this request's target, once parsed (for the log)
        self._t0 = time.perf_counter()  # this request's first byte (or the connection)
        self._arm(self.header_timeout, "headers")

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired, what, seconds)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, what: str, seconds: float) -> None:
        self._timer = None
        if what == "stopping":
            self._refuse(503, "the server is stopping: send the request again")
        else:
            self._refuse(408, f"the request {what} did not arrive within {seconds:g} s")

    def shutdown(self) -> None:
        """The server stops: a body still arriving gets a short grace, then 503."""
        super().shutdown()
        cycle = self.cycle
        if not self._in_head and cycle is not None and cycle.more_body and not cycle.response_started:
            self._arm(min(self.body_timeout, STOPPING_BODY_GRACE), "stopping")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with the one-line JSON error, unless a response has begun, and close."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            body = json.dumps({"error": message}).encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body))
            if not self._in_head and cycle is not None:  # the app is reading this body
                cycle.scope[REFUSED] = status  # service.AccessLog logs this status
            else:  # the app never saw this request
                path = self._url.decode("latin-1").partition("?")[0] or "-"
                log.info("%s %s %d %.1f ms", self._method(), path, status,
                         (time.perf_counter() - self._t0) * 1000)
        self.transport.close()

    def _method(self) -> str:
        try:
            return self.parser.get_method().decode("ascii") if self._url else "-"
        except Exception:  # noqa: BLE001 - not parsed yet: the log says "-"
            return "-"

    def data_received(self, data: bytes) -> None:
        events = self._events
        super().data_received(data)  # a parse error, ours included, ends in send_400_response
        if self.transport.is_closing():
            return
        # Count the chunk when it was all header bytes: no request's headers or message
        # ended inside it (a chunk that ends a body and starts the next request's headers
        # is not counted: at most one read's worth, as the limit is checked again next read).
        if self._in_head and self._events == events:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, f"request headers over the limit of {self.max_header_bytes:,} bytes")

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request httptools cannot parse (a callback that raised
        included): ours, as JSON, with the status a limit asked for."""
        status, message = self._limit or (400, "malformed HTTP request")
        self._refuse(status, message)

    def _count_parsed(self, n: int) -> None:
        """Headers that arrive in one read never reach data_received's count of raw
        reads: the parsed request line and fields are counted too (each count alone is
        at most the true size)."""
        self._field_bytes += n
        if self._field_bytes > self.max_header_bytes:
            self._limit = (431, f"request headers over the limit of {self.max_header_bytes:,} bytes")
            raise ValueError(self._limit[1])  # stops the parser: send_400_response follows

    def on_message_begin(self) -> None:
        """A request's first byte (a keep-alive or pipelined one's too): its header clock
        starts here, unless it runs since the connection was made."""
        self._url = b""
        if self._timer is None:
            self._t0 = time.perf_counter()
            self._arm(self.header_timeout, "headers")
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._url += url[:1024]
        self._count_parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._n_headers += 1
        if self._n_headers > self.max_headers:
            self._limit = (431, f"more than {self.max_headers} request header fields")
            raise ValueError(self._limit[1])  # stops the parser: send_400_response follows
        self._count_parsed(len(name) + len(value) + 3)  # ":" and CRLF at least
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._events += 1
        self._arm(self.body_timeout, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        # The next bytes are the next request's: its header clock starts with the first
        # of them (on_message_begin; uvicorn's keep-alive timeout covers the wait for it).
        self._disarm()
        self._in_head, self._head_bytes, self._field_bytes, self._n_headers = True, 0, 0, 0
        self._events += 1
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
