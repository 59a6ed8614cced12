"""Draining: on SIGTERM, go on serving while ``/healthz`` answers 503, then stop.

A load balancer sends requests to an instance while its health check passes. An
instance that stops at once refuses the connections the balancer still sends it until
the next failed check. With ``serve --drain S``, SIGTERM first turns ``/healthz`` to 503
(``{"status": "draining"}``) for S seconds while every other request is served as
before; then uvicorn shuts down as without it (requests in flight finish). Ctrl-C
(SIGINT) still stops a process at once, and a SIGTERM to a process already stopping
does not start a drain. More SIGTERMs during the drain change nothing: with several
workers the supervisor passes its SIGTERM on to each, and a service manager may signal
the whole process group as well. The supervisor passes a SIGINT of its own on as a
SIGTERM too (uvicorn's way), so a SIGINT sent to it alone drains; a terminal's Ctrl-C
reaches every process and stops at once.

uvicorn installs its own SIGTERM handler in the main thread before the app starts;
``Drain.install`` (called from the app's startup) puts itself in front of it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import threading
from collections.abc import Callable
from types import FrameType

__all__ = ["Drain"]

log = logging.getLogger("captcha_ocr.service")


class Drain:
    """Whether this process is draining, and the SIGTERM handler that starts it.

    Attributes:
        seconds: how long to drain after SIGTERM (0: stop at once, uvicorn's way).
        draining: SIGTERM has arrived; the process stops ``seconds`` after it.
    """

    def __init__(self, seconds: float = 0.0) -> None:
        if not 0 <= seconds < math.inf:
            raise ValueError(f"drain seconds must be 0 or more and finite, not {seconds}")
        self.seconds = seconds
        self.draining = False

    def install(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Delay the server's own SIGTERM handler by ``seconds``; False where nothing was
        installed (no drain asked, not the main thread, or no handler to delay)."""
        if self.seconds <= 0 or threading.current_thread() is not threading.main_thread():
            return False
        stop = signal.getsignal(signal.SIGTERM)
        if not callable(stop):  # no server handler (SIG_DFL would kill at once anyway)
            return False

        server = getattr(stop, "__self__", None)  # uvicorn's Server, whose handler it is

        def on_sigterm(sig: int, frame: FrameType | None) -> None:
            if self.draining:
                return
            if getattr(server, "should_exit", False):  # already stopping (Ctrl-C): no drain
                stop(sig, frame)
                return
            self.draining = True
            # A signal handler runs between two bytecodes of the main thread, possibly
            # inside the loop's or the logger's own code: hand the rest to the loop.
            loop.call_soon_threadsafe(self._started, loop, stop, sig)

        signal.signal(signal.SIGTERM, on_sigterm)
        return True

    def _started(self, loop: asyncio.AbstractEventLoop, stop: Callable[[int, FrameType | None], object],
                 sig: int) -> None:
        log.info("SIGTERM: draining for %g s (/healthz answers 503), then stopping", self.seconds)
        loop.call_later(self.seconds, stop, sig, None)
