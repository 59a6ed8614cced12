"""The HTTP service: one Reader loaded at startup, micro-batched inference, a web page.

Endpoints (all answers are JSON except the page and the docs):

- ``POST /v1/read``: one image, as multipart field ``image`` or as the raw body with an
  ``image/*`` (or ``application/octet-stream``) content type.
- ``POST /v1/read-batch``: up to ``max_batch`` images, as multipart fields ``images`` or
  JSON ``{"images": [base64, ...]}``; answers a list in the same order, where a bad item
  carries its own ``error`` and the others are read.
- ``GET /healthz``, ``GET /v1/model``, ``GET /docs``, and ``GET /`` (the page).

Every refused request gets ``{"error": "one line"}`` with its status: 400 empty or
malformed, 413 body or batch over its limit, 415 wrong content type, 422 not an image,
truncated or over the pixel limit.

Concurrency: the event loop only parses HTTP; ``batcher.MicroBatcher`` decodes images in
threads and runs the network on batches shared by concurrent requests, in its own thread.

Imports the runtime and leaves only (never torch); only ``captcha-ocr serve`` imports it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import listening
from .batcher import MAX_BATCH, MAX_WAIT_MS, MicroBatcher, Unavailable, item_error
from .cpus import default_workers
from .draining import Drain
from .httpbodies import (
    check_type,
    is_image_type,
    json_items,
    media_type,
    multipart_files,
    read_body,
    total_pixels,
)
from .httperrors import REFUSED, Refused, add_json_errors, json_error
from .httpschema import (
    ERRORS,
    OPTION_PARAMS,
    READ_BODY,
    BatchItem,
    ReadResult,
    batch_request_body,
    query_options,
    reading_json,
)
from .preprocess import DEFAULT_MAX_PIXELS
from .runtime import ImageError, Reader

__all__ = ["MicroBatcher", "create_app", "serve"]

log = logging.getLogger("captcha_ocr.service")

STATIC = Path(__file__).with_name("static")
MiB = 1024 * 1024

# Defaults, one place.
MAX_BODY = 2 * MiB          # bytes in one request body (413 above)
BATCH_BODY_FACTOR = 8       # /v1/read-batch bodies may be this many times max_body
MAX_BATCH_PIXELS = 16_000_000  # pixels in all the images of one /v1/read-batch request


# ---------------------------------------------------------------- logging


class AccessLog:
    """ASGI middleware: one log line per HTTP request: method, path, status, ms."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path, root = scope["path"], scope.get("root_path", "")  # before a mount (/static) changes them
        try:
            await self.app(scope, receive, send_logged)
        finally:
            if root and path.startswith(root):  # uvicorn puts --root-path in front
                path = path[len(root):] or "/"
            status = scope.get(REFUSED, status)  # a 408 or 503 the protocol answered instead
            log.info("%s %s %d %.1f ms", scope["method"], path, status,
                     (time.perf_counter() - t0) * 1000)


# ---------------------------------------------------------------- the app


def create_app(reader: Reader, *, max_body: int = MAX_BODY, max_batch: int = MAX_BATCH,
               max_wait_ms: float = MAX_WAIT_MS,
               max_batch_pixels: int = MAX_BATCH_PIXELS, drain: float = 0.0) -> FastAPI:
    """Build the service around a loaded Reader.

    Args:
        reader: the model; its ``max_pixels`` is the pixel limit (422 above).
        max_body: most bytes in a ``/v1/read`` body (413 above); batch bodies may be
            ``BATCH_BODY_FACTOR`` times larger.
        max_batch: most images per inference batch and per ``/v1/read-batch`` request.
        max_wait_ms: longest a queued image waits for others still being decoded.
        max_batch_pixels: most pixels in all the images of one batch request (413
            above; read from the headers, so a few huge images cannot hold the CPU).
        drain: seconds to go on serving after SIGTERM with ``/healthz`` answering 503
            (``draining.Drain``; 0: stop at once).

    Returns:
        The FastAPI app. ``app.state.batcher.sizes`` counts inference batches by size;
        ``app.state.drain.draining`` says whether SIGTERM has started the drain.
    """
    model = reader.name
    batch_body = max_body * BATCH_BODY_FACTOR

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batcher = MicroBatcher(reader, max_batch, max_wait_ms)
        app.state.batcher.start()
        app.state.drain.install(asyncio.get_running_loop())
        log.info("model %s ready: %s, max body %d bytes, batches of up to %d",
                 model, reader.model_dir, max_body, max_batch)
        try:
            yield
        finally:
            await app.state.batcher.stop()

    docs_assets = _docs_assets()
    app = FastAPI(title="captcha-ocr", summary="Read text captchas.", lifespan=lifespan,
                  docs_url=None if docs_assets else "/docs", redoc_url=None)
    app.state.drain = Drain(drain)
    app.add_middleware(AccessLog)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if docs_assets:
        _add_offline_docs(app, docs_assets)
    _add_error_handlers(app)

    def batcher() -> MicroBatcher:
        return app.state.batcher

    @app.post("/v1/read", response_model=ReadResult, responses=ERRORS,
              openapi_extra={**READ_BODY, "parameters": OPTION_PARAMS},
              summary="Read one captcha image")
    async def read(request: Request) -> Response:
        t0 = time.perf_counter()
        options = query_options(request, reader)
        media = media_type(request)
        check_type(request, media, media == "multipart/form-data" or is_image_type(media),
                    "send image/* bytes or multipart/form-data with a file field 'image'")
        body = await read_body(request, max_body)
        if not media:
            raise Refused(415, "no content type: send image/* bytes or multipart/form-data")
        if media == "multipart/form-data":
            several = Refused(400, "several files in the field 'image': /v1/read reads one; "
                                   "send several as 'images' to /v1/read-batch")
            files = await multipart_files(request, body, "image", max_files=4, too_many=several)
            if not files:
                raise Refused(400, "multipart body has no file field 'image'")
            if len(files) > 1:
                raise several
            body = files[0]
            if not body:
                raise Refused(400, "the 'image' file is empty")
        try:
            r = await batcher().read(body, options)
        except ImageError as e:
            raise Refused(422, item_error(e)) from None
        out = reading_json(r, model) | {"ms": round((time.perf_counter() - t0) * 1000, 3)}
        return JSONResponse(out)

    @app.post("/v1/read-batch", response_model=list[BatchItem], responses=ERRORS,
              openapi_extra={**batch_request_body(max_batch), "parameters": OPTION_PARAMS},
              summary="Read several captcha images")
    async def read_batch(request: Request) -> Response:
        options = query_options(request, reader)
        media = media_type(request)
        check_type(request, media, media in ("multipart/form-data", "application/json"),
                    "send multipart/form-data with file fields 'images', or JSON "
                    '{"images": [base64, ...]}')
        body = await read_body(request, batch_body)
        if not media:
            raise Refused(415, "no content type: send multipart/form-data or JSON")
        if media == "multipart/form-data":
            items = await multipart_files(request, body, "images", max_files=max_batch)
        else:  # parsing and base64 take a while for big bodies: off the event loop
            items = await asyncio.to_thread(json_items, body, max_batch)
        if not items:
            raise Refused(400, "no images in the request: send them as multipart file fields "
                               "named 'images' (each one, not 'image'), or JSON "
                               '{"images": [base64, ...]}')
        if len(items) > max_batch:
            raise Refused(413, f"{len(items)} images, over the batch limit of {max_batch}")
        pixels = await asyncio.to_thread(total_pixels, items)
        if pixels > max_batch_pixels:
            raise Refused(413, f"the images hold {pixels:,} pixels in all, over the limit of "
                               f"{max_batch_pixels:,} for one batch request")
        readings = await batcher().read_many(items, options)
        return JSONResponse([{"error": r} if isinstance(r, str) else reading_json(r, model)
                             for r in readings])

    @app.head("/healthz", include_in_schema=False)  # load balancers that check with HEAD
    async def healthz_head() -> Response:
        return Response(status_code=503 if app.state.drain.draining else 200)

    @app.get("/healthz", summary="Readiness: 200 while serving, 503 while draining",
             responses={200: {"description": "serving",
                              "content": {"application/json": {"example": {"status": "ok"}}}},
                        503: {"description": "draining after SIGTERM (`serve --drain`): "
                                             "take this instance out of the balancer",
                              "content": {"application/json": {"example": {"status": "draining"}}}}})
    async def healthz() -> Response:
        if app.state.drain.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/model", summary="The loaded model")
    async def model_info() -> dict[str, Any]:
        info = reader.info
        return {"name": model, "alphabet": info.alphabet,
                "image": {"height": info.image.height, "width": info.image.width,
                          "channels": info.image.channels, "crop": list(info.image.crop)},
                "arch": info.model.arch, "precision": reader.precision, "metrics": info.metrics,
                "limits": {"max_body": max_body, "max_batch_body": batch_body, "max_batch": max_batch,
                           "max_pixels": reader.max_pixels, "max_batch_pixels": max_batch_pixels}}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


def _docs_assets() -> Path | None:
    """Swagger UI's files from the fastapi-offline package, so /docs needs no CDN (None: absent)."""
    try:
        import fastapi_offline
    except ImportError:  # FastAPI's /docs then loads Swagger UI from its CDN
        return None
    path = Path(fastapi_offline.__file__).with_name("static")
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def _add_offline_docs(app: FastAPI, assets: Path) -> None:
    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        root = request.scope.get("root_path", "").rstrip("/")  # serve --root-path
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"), title=f"{app.title} API",
            swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs-assets/favicon.png")


def _add_error_handlers(app: FastAPI) -> None:
    """Every error becomes ``{"error": "one line"}``; nothing leaks a traceback."""

    @app.exception_handler(Refused)
    async def refused(request: Request, e: Refused) -> JSONResponse:
        return json_error(e.status, e.message)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, e: Unavailable) -> JSONResponse:
        return json_error(503, str(e))

    add_json_errors(app, log)


# ---------------------------------------------------------------- running it


ENV_CONFIG = "CAPTCHA_OCR_SERVE_CONFIG"  # how `serve --workers N` configures its workers


def _loaded_app(cfg: dict[str, Any]) -> FastAPI:
    """The app for one process: its own Reader, the protocol's limits, a frozen heap."""
    from .httpguard import GuardedHttpProtocol

    for name in ("header_timeout", "body_timeout"):  # read per connection, in this process
        if cfg.get(name) is not None:
            setattr(GuardedHttpProtocol, name, float(cfg[name]))
    reader = Reader.load(cfg["model_dir"], threads=cfg["threads"], max_pixels=cfg["max_pixels"],
                         provider=cfg["provider"], precision=cfg.get("precision", "auto"))
    app = create_app(reader, max_body=cfg["max_body"], max_batch=cfg["max_batch"],
                     max_wait_ms=cfg["max_wait_ms"], max_batch_pixels=cfg["max_batch_pixels"],
                     drain=cfg.get("drain", 0.0))
    # Everything loaded so far lives as long as the process: move it out of the cyclic GC's
    # sight, so its full collections stay short (p99 latency under load drops by about 25%).
    gc.collect()
    gc.freeze()
    return app


def app_from_env() -> FastAPI:
    """uvicorn's app factory in each worker of ``serve --workers N`` (config in the environment)."""
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    return _loaded_app(json.loads(os.environ[ENV_CONFIG]))


def serve(model_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000, *,
          max_body: int = MAX_BODY, max_batch: int = MAX_BATCH, max_wait_ms: float = MAX_WAIT_MS,
          max_pixels: int | None = DEFAULT_MAX_PIXELS, threads: int = 1,
          max_batch_pixels: int = MAX_BATCH_PIXELS, header_timeout: float | None = None,
          body_timeout: float | None = None, log_level: str = "info", provider: str = "cpu",
          workers: int | None = None, precision: str = "auto", drain: float = 0.0,
          root_path: str = "") -> None:
    """Load a model and serve it with uvicorn until SIGINT/SIGTERM.

    Args:
        model_dir: a model directory (None: the bundled model).
        host, port: where to listen.
        max_body, max_batch, max_wait_ms: see ``create_app``.
        max_pixels: images with more pixels are refused (422) before decoding.
        max_batch_pixels: see ``create_app``.
        header_timeout, body_timeout: seconds a client has to send a request's headers
            and its body (408 after; None: ``httpguard``'s defaults).
        threads: ONNX Runtime threads for inference (1 leaves the other cores to HTTP
            and decoding, which serves more requests than more inference threads).
        log_level: uvicorn's and the request log's level.
        provider: ONNX Runtime execution provider ("cpu" or "cuda").
        precision: "auto" (int8 where the model has one), "fp32" or "int8".
        workers: processes sharing the port, each with its own Reader and micro-batcher
            (uvicorn's supervisor starts, restarts and stops them); None: ``default_workers``.
        drain: seconds each process goes on serving after SIGTERM, ``/healthz`` answering
            503, before it stops (see ``create_app``).
        root_path: the path prefix a reverse proxy serves the service under and strips
            ("/ocr": the proxy's /ocr/v1/read arrives as /v1/read); the docs link their
            schema and assets under it. The page's own links are relative: it works
            under any prefix.
    """
    from .httpguard import GuardedHttpProtocol

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    cfg = dict(model_dir=str(model_dir) if model_dir is not None else None, threads=threads,
               max_pixels=max_pixels, provider=provider, max_body=max_body, max_batch=max_batch,
               max_wait_ms=max_wait_ms, max_batch_pixels=max_batch_pixels,
               header_timeout=header_timeout, body_timeout=body_timeout, precision=precision,
               drain=drain)
    # Limits on header size and count, and read timeouts for headers and bodies
    # (httpguard); idle keep-alive connections close after 5 s (uvicorn's own).
    common = dict(host=host, port=port, access_log=False, log_level=log_level, server_header=False,
                  timeout_graceful_shutdown=10, backlog=listening.BACKLOG, http=GuardedHttpProtocol,
                  timeout_keep_alive=5, root_path=root_path)
    if workers is None:
        workers = default_workers(provider)
    # A port in use: one line, before the model loads. One process listens on these
    # sockets; with several, uvicorn's supervisor binds its own to share with its workers,
    # so they only reserve the port meanwhile (connections refused, not accepted and reset).
    sockets = listening.bind(host, port, listen=workers <= 1)
    try:  # a bad model, provider or precision: one line, before serving or forking
        if workers <= 1:
            app = _loaded_app(cfg)
        else:
            Reader.load(model_dir, provider=provider, precision=precision)
    except BaseException:
        listening.close(sockets)
        raise
    if workers <= 1:
        log.info("serving on %s with 1 worker process", listening.url(host, listening.bound_port(sockets)))
        listening.run(app, sockets, **common)
        return
    common["port"] = listening.bound_port(sockets)  # the one picked, where 0 was asked
    listening.close(sockets)
    log.info("serving on %s with %d worker processes", listening.url(host, common["port"]), workers)
    os.environ[ENV_CONFIG] = json.dumps(cfg)
    listening.run_workers("captcha_ocr.service:app_from_env", workers, drain, factory=True, **common)
