"""Micro-batching for the service: decode images in threads, run the network on batches.

Concurrent requests share inference batches: a batch runs as soon as it is full, or no
other image is still being decoded, or its oldest image has waited ``max_wait_ms``. The
network's outputs go back to each request, which decodes them with its own reading
options (``Reader.readings``). No HTTP here: the service wraps it, tests drive it
directly. Single images decode in a lane of their own and go first into the network's
batches, so a read never queues behind big batches; batch requests keep at least a
quarter of every inference batch, so a stream of reads does not starve them either.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .runtime import DEFAULT_OPTIONS, ImageError, Reader, Reading, ReadOptions

__all__ = ["BULK_SHARE", "DECODE_THREADS", "MAX_BATCH", "MAX_WAIT_MS", "MicroBatcher", "Unavailable",
           "item_error"]

log = logging.getLogger("captcha_ocr.service")

MAX_BATCH = 64              # images per inference batch
MAX_WAIT_MS = 2.0           # longest a queued image waits for others still being decoded
BULK_SHARE = 4              # batch requests' images get at least 1/BULK_SHARE of an inference batch
DECODE_THREADS = 2          # threads decoding and resizing images (batch requests)


class Unavailable(RuntimeError):
    """The batcher cannot read now (shutting down, or inference failed): a 503."""


def item_error(e: ImageError) -> str:
    return str(e).removeprefix("bytes: ")


def _fail(items: list[tuple[np.ndarray, asyncio.Future, float]], why: str) -> None:
    """Answer queued images' requests with ``Unavailable`` (a 503), where not answered yet."""
    for _, fut, _ in items:
        if not fut.done():
            fut.set_exception(Unavailable(why))


class MicroBatcher:
    """Decodes images in a small thread pool and reads them in batches in one inference thread.

    ``read(data, options)`` decodes one encoded image, queues its ``(C, H, W)`` array and
    waits for its network output. A background task takes up to ``max_batch`` queued
    arrays and runs ``reader.run`` on them as soon as the batch is full, or no other image
    is still being decoded, or the oldest has waited ``max_wait_ms``: a lone request does
    not wait, concurrent ones share a batch. Single reads' images are taken before those
    of batch requests (``read_many``), which keep at least ``1/BULK_SHARE`` of a batch
    while they wait. Each request then decodes its own outputs with its own reading
    options (``reader.readings``). ``sizes`` counts batches by size.
    """

    def __init__(self, reader: Reader, max_batch: int = MAX_BATCH, max_wait_ms: float = MAX_WAIT_MS,
                 decode_threads: int = DECODE_THREADS) -> None:
        self.reader = reader
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.sizes: Counter[int] = Counter()
        # queued images, (array, future, arrival time): single reads', and batch requests'
        self._lone: list[tuple[np.ndarray, asyncio.Future, float]] = []
        self._bulk: list[tuple[np.ndarray, asyncio.Future, float]] = []
        self._decoding = 0               # images in the decode pool: they will queue soon
        self._arrived = asyncio.Event()  # something is queued
        self._ready = asyncio.Event()    # a batch is full, or nothing else is coming
        self._decode = ThreadPoolExecutor(decode_threads, thread_name_prefix="captcha-decode")
        # Single images decode in their own lane: a read never queues behind big batches.
        self._decode_one = ThreadPoolExecutor(decode_threads, thread_name_prefix="captcha-decode-one")
        # Beam searches (milliseconds an image) run apart, one at a time: never in a lane
        # that plain reads wait on.
        self._search = ThreadPoolExecutor(1, thread_name_prefix="captcha-search")
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="captcha-infer")
        self._task: asyncio.Task[None] | None = None
        self._bulk_turn = False          # --max-batch 1: a batch image's turn after a read

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop taking batches, fail whatever is still queued, and join the threads."""
        n = sum(self.sizes.values())
        if n:
            images = sum(k * v for k, v in self.sizes.items())
            log.info("inference: %d batches, %d images, mean batch %.1f, largest %d",
                     n, images, images / n, max(self.sizes))
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        _fail(self._lone + self._bulk, "the server is shutting down")
        self._lone.clear()
        self._bulk.clear()
        self._decode.shutdown(wait=True)
        self._decode_one.shutdown(wait=True)
        self._search.shutdown(wait=True)
        self._thread.shutdown(wait=True)

    async def read(self, data: bytes, options: ReadOptions = DEFAULT_OPTIONS) -> Reading:
        """Read one encoded image. Raises ``ImageError`` when it cannot be decoded."""
        xs = await self._decoded([data], self._decode_one)
        if isinstance(xs[0], ImageError):
            raise xs[0]
        return (await self._readings([await self._enqueue(xs, self._lone)[0]], options))[0]

    async def read_many(self, items: list[bytes | str],
                        options: ReadOptions = DEFAULT_OPTIONS) -> list[Reading | str]:
        """Read several encoded images; a str item, or one that cannot be decoded, gives a str error."""
        xs = await self._decoded(items, self._decode)
        outs = await asyncio.gather(*self._enqueue([x for x in xs if isinstance(x, np.ndarray)], self._bulk))
        good = iter(await self._readings(outs, options) if outs else [])
        return [next(good) if isinstance(x, np.ndarray) else x if isinstance(x, str) else item_error(x)
                for x in xs]

    async def _readings(self, outs: list[tuple[np.ndarray, Reading]],
                        options: ReadOptions) -> list[Reading]:
        """One request's readings: decoded in the inference thread with the default
        options, else decoded here from the network's outputs with the request's own
        (a beam search off the event loop)."""
        if options == DEFAULT_OPTIONS:
            return [reading for _, reading in outs]
        batch = np.stack([lp for lp, _ in outs])
        if options.decode.searches or len(outs) > 8:  # long work: off the event loop
            pool = self._search if options.decode.searches else self._decode
            return await asyncio.get_running_loop().run_in_executor(
                pool, self.reader.readings, batch, options)
        return self.reader.readings(batch, options)

    async def _decoded(self, items: list[bytes | str], lane: ThreadPoolExecutor
                       ) -> list[np.ndarray | ImageError | str]:
        self._decoding += len(items)
        try:
            return await asyncio.get_running_loop().run_in_executor(lane, self._preprocess, items)
        finally:
            self._decoding -= len(items)  # and _enqueue queues them before the batcher looks
            self._poke()

    def _preprocess(self, items: list[bytes | str]) -> list[np.ndarray | ImageError | str]:
        out: list[np.ndarray | ImageError | str] = []
        for item in items:
            try:
                out.append(item if isinstance(item, str) else self.reader.preprocess(item))
            except ImageError as e:
                out.append(e)
        return out

    def _enqueue(self, xs: list[np.ndarray], queue: list) -> list[asyncio.Future]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in xs]
        now = loop.time()
        queue += [(x, fut, now) for x, fut in zip(xs, futures)]
        self._poke()
        return futures

    def _poke(self) -> None:
        queued = len(self._lone) + len(self._bulk)
        if queued:
            self._arrived.set()
            if queued >= self.max_batch or self._decoding == 0:
                self._ready.set()

    async def _take(self) -> list[tuple[np.ndarray, asyncio.Future, float]]:
        """Wait for a batch: full, nothing else coming, or its oldest item has waited ``max_wait``."""
        loop = asyncio.get_running_loop()
        await self._arrived.wait()
        oldest = min(q[0][2] for q in (self._lone, self._bulk) if q)
        left = oldest + self.max_wait - loop.time()
        if not self._ready.is_set() and left > 0:
            try:
                await asyncio.wait_for(self._ready.wait(), left)
            except asyncio.TimeoutError:
                pass
        share = -(-self.max_batch // BULK_SHARE)  # batch requests' share, if they wait
        if self.max_batch == 1:  # no room for both: a read, then a batch image, by turns
            share = int(self._bulk_turn or not self._lone)
        bulk = min(len(self._bulk), share)
        n_lone = min(len(self._lone), self.max_batch - bulk)
        n_bulk = min(len(self._bulk), self.max_batch - n_lone)
        batch = self._lone[:n_lone] + self._bulk[:n_bulk]
        del self._lone[:n_lone], self._bulk[:n_bulk]
        self._bulk_turn = n_lone > 0
        self._arrived.clear()
        self._ready.clear()
        self._poke()
        return [item for item in batch if not item[1].done()]

    def _infer(self, xs: list[np.ndarray]) -> list[tuple[np.ndarray, Reading]]:
        """The network on a batch, and its readings with the default options (what most
        requests ask for: decoded here, once per batch, off the event loop)."""
        out = self.reader.run(np.stack(xs))  # (N, C, H, W) -> (N, T, C)
        return list(zip(out, self.reader.readings(out)))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._take()
            if not batch:
                continue
            self.sizes[len(batch)] += 1
            try:
                outputs = await loop.run_in_executor(self._thread, self._infer, [x for x, _, _ in batch])
            except asyncio.CancelledError:  # stop() during this batch: its requests get a 503
                _fail(batch, "the server is shutting down")
                raise
            except Exception as e:  # an inference failure fails this batch, not the server
                log.exception("inference failed on a batch of %d", len(batch))
                _fail(batch, f"inference failed: {type(e).__name__}")
                continue
            for (_, fut, _), out in zip(batch, outputs):
                if not fut.done():
                    fut.set_result(out)
