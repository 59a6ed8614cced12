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
import base64
import binascii
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
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .batcher import MAX_BATCH, MAX_WAIT_MS, MicroBatcher, Unavailable, item_error
from .cpus import default_workers
from .decoding import MAX_BEAM
from .draining import Drain
from .httperrors import add_json_errors, json_error
from .preprocess import DEFAULT_MAX_PIXELS, image_size
from .runtime import DEFAULT_OPTIONS, ImageError, Reader, Reading, ReadOptionError, ReadOptions

__all__ = ["MicroBatcher", "create_app", "serve"]

log = logging.getLogger("captcha_ocr.service")

STATIC = Path(__file__).with_name("static")
MiB = 1024 * 1024

# Defaults, one place.
MAX_BODY = 2 * MiB          # bytes in one request body (413 above)
BATCH_BODY_FACTOR = 8       # /v1/read-batch bodies may be this many times max_body
MAX_BATCH_PIXELS = 16_000_000  # pixels in all the images of one /v1/read-batch request
MAX_FORM_FIELDS = 1000      # text fields beside the files of a multipart body (ignored;
                            # the body's size bounds the parsing work)
MAX_JSON_DIGITS = 20        # digits in a JSON number (the schema has none; Python parses 4300)


class Refused(Exception):
    """A request the service answers with ``{"error": message}`` and ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------- request bodies


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) from Content-Length or as soon as it grows past ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, f"bad Content-Length {declared!r}")
        if int(declared) > limit:
            raise Refused(413, f"body is {int(declared):,} bytes, over the limit of {limit:,}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"body is over the limit of {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Refused(400, "client disconnected before sending the whole body") from None
    if size == 0:
        raise Refused(400, "empty body: send an image")
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _check_type(request: Request, media: str, ok: bool, hint: str) -> None:
    """400 for a declared empty body, 415 for a wrong type (a missing one is judged after reading)."""
    if request.headers.get("content-length") == "0":
        raise Refused(400, "empty body: send an image")
    if media and not ok:
        raise Refused(415, f"content type {media!r} is not accepted: {hint}")


def _is_image_type(media: str) -> bool:
    return media.startswith("image/") or media == "application/octet-stream"


async def _multipart_files(request: Request, body: bytes, field: str, max_files: int) -> list[bytes]:
    """The files sent as ``field`` in a multipart body (a text value there: 400)."""
    async def once() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(request.headers, once(), max_files=max_files,
                             max_fields=MAX_FORM_FIELDS)  # other fields are ignored, up to a point
    try:
        form = await parser.parse()
    except MultiPartException as e:
        if e.message.startswith("Too many files"):
            raise Refused(413, f"more than {max_files} files, over the batch limit of {max_files}") from None
        raise Refused(400, f"malformed multipart body: {e.message}") from None
    try:
        values = form.getlist(field)
        if not all(isinstance(v, UploadFile) for v in values):
            raise Refused(400, f"field {field!r} must be a file, not text")
        return [await v.read() for v in values]
    finally:
        await form.close()


def _b64(item: str) -> bytes | str:
    """Decode one base64 item of a JSON batch (an optional data: URL prefix is allowed)."""
    if item.startswith("data:") and "," in item:
        item = item.split(",", 1)[1]
    item = "".join(item.split())  # line breaks, as MIME encoders write them
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        return "not valid base64"


def _total_pixels(items: list[bytes | str]) -> int:
    """Pixels of all the images of a batch, from their headers (before any decoding)."""
    sizes = [image_size(x) for x in items if isinstance(x, bytes)]
    return sum(w * h for w, h in filter(None, sizes))


def _json_items(body: bytes, max_items: int) -> list[bytes | str]:
    """The images of a JSON batch ``{"images": [base64, ...]}``, decoded (an error string per bad item)."""
    images = _json_images(body)
    if len(images) > max_items:
        raise Refused(413, f"{len(images)} images, over the batch limit of {max_items}")
    for i, item in enumerate(images):  # the request's shape is wrong: refuse it whole
        if not isinstance(item, str):
            raise Refused(400, f"images[{i}] is {type(item).__name__}, expected a base64 string")
    return [_b64(i) for i in images]


def _small_int(text: str) -> int:
    if len(text) > MAX_JSON_DIGITS:
        raise ValueError(f"a number of {len(text)} digits (at most {MAX_JSON_DIGITS})")
    return int(text)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _json_images(body: bytes) -> list[Any]:
    try:
        doc = json.loads(body, parse_int=_small_int, parse_constant=_no_constant)
    except RecursionError:
        raise Refused(400, "body is not valid JSON (nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, the limits above
        raise Refused(400, f"body is not valid JSON ({e})") from None
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list):
        raise Refused(400, 'expected a JSON object {"images": [base64, ...]}')
    if len(doc) > 1:
        other = next(k for k in doc if k != "images")
        raise Refused(400, f'unknown field {other!r}: expected a JSON object {{"images": [base64, ...]}}')
    return images


# ---------------------------------------------------------------- responses


class Alternative(BaseModel):
    text: str
    probability: float


class ReadResult(BaseModel):
    """One reading (schema for the docs; responses are built directly)."""

    text: str
    confidence: float
    char_confidences: list[float]
    accepted: bool
    model: str
    ms: float
    alternatives: list[Alternative] | None = None
    answer: int | None = None
    answer_error: str | None = None


class BatchItem(BaseModel):
    """One item of a batch answer: a reading, or ``error`` alone."""

    text: str | None = None
    confidence: float | None = None
    char_confidences: list[float] | None = None
    accepted: bool | None = None
    model: str | None = None
    alternatives: list[Alternative] | None = None
    answer: int | None = None
    answer_error: str | None = None
    error: str | None = None


# The reading options as query parameters (the same as the CLI's). Parsed by hand: a
# FastAPI dependency with Query fields cost about half a millisecond a request here (a
# thread hop and pydantic validation), a third of a single read's time.
_OPTION_PARAMS: list[dict[str, Any]] = [
    {"name": "allow", "in": "query", "required": False,
     "description": "only these characters may be read, e.g. 0123456789",
     "schema": {"type": "string", "minLength": 1, "maxLength": 256}},
    {"name": "length", "in": "query", "required": False, "description": "exact length of the reading",
     "schema": {"type": "integer", "minimum": 1, "maximum": 64}},
    {"name": "min_length", "in": "query", "required": False, "description": "at least this many characters",
     "schema": {"type": "integer", "minimum": 0, "maximum": 64}},
    {"name": "max_length", "in": "query", "required": False, "description": "at most this many characters",
     "schema": {"type": "integer", "minimum": 1, "maximum": 64}},
    {"name": "beam", "in": "query", "required": False,
     "description": "beam search width; up to this many alternatives (0: greedy)",
     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_BEAM, "default": 0}},
    {"name": "solve", "in": "query", "required": False,
     "description": "also return the answer of an arithmetic captcha",
     "schema": {"type": "boolean", "default": False}},
    {"name": "min_confidence", "in": "query", "required": False,
     "description": "readings below it get accepted: false",
     "schema": {"type": "number", "minimum": 0, "maximum": 1}},
]
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _query_value(name: str, text: str, schema: dict[str, Any]) -> Any:
    kind = schema["type"]
    try:
        if kind == "boolean":
            if text.lower() not in _TRUE | _FALSE:
                raise ValueError
            return text.lower() in _TRUE
        value: Any = int(text) if kind == "integer" else float(text) if kind == "number" else text
    except ValueError:
        article = "an" if kind[0] in "aeiou" else "a"
        raise Refused(400, f"invalid request: query parameter {name!r} must be {article} {kind}") from None
    if kind == "string" and not schema["minLength"] <= len(value) <= schema["maxLength"]:
        raise Refused(400, f"invalid request: query parameter {name!r} must have "
                           f"{schema['minLength']}-{schema['maxLength']} characters")
    if kind in ("integer", "number") and not (schema["minimum"] <= value <= schema["maximum"]
                                              and value == value):
        raise Refused(400, f"invalid request: query parameter {name!r} must be in "
                           f"[{schema['minimum']}, {schema['maximum']}]")
    return value


_OPTION_NAMES = tuple(p["name"] for p in _OPTION_PARAMS)


def _query_options(request: Request, reader: Reader) -> ReadOptions:
    """The request's reading options; an unknown query parameter (a misspelt option
    would otherwise be ignored, and the reading done without it) is refused."""
    query = request.query_params
    if not query:
        return DEFAULT_OPTIONS
    twice = sorted(k for k in set(query) if len(query.getlist(k)) > 1)
    if twice:  # which one would count is a guess: say so rather than pick
        raise Refused(400, f"invalid request: query parameter {twice[0][:40]!r} given more than once")
    unknown = sorted(set(query) - set(_OPTION_NAMES))
    if unknown:
        raise Refused(400, f"invalid request: unknown query parameter {unknown[0][:40]!r} (the reading "
                           f"options are {', '.join(_OPTION_NAMES)})")
    kwargs = {p["name"]: _query_value(p["name"], query[p["name"]], p["schema"])
              for p in _OPTION_PARAMS if p["name"] in query}
    try:
        return reader.options(**kwargs)
    except ReadOptionError as e:
        raise Refused(400, str(e)) from None


class ErrorBody(BaseModel):
    error: str


def _reading(r: Reading, model: str) -> dict[str, Any]:
    return r.as_dict() | {"model": model}


_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody, "description": d} for s, d in [
        (400, "empty or malformed request"), (413, "body or batch over its limit"),
        (415, "wrong content type"), (422, "not an image, truncated, or over the pixel limit")]}

_READ_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["image"],
        "properties": {"image": {"type": "string", "format": "binary", "minLength": 1}}}},
    "image/*": {"schema": {"type": "string", "format": "binary", "minLength": 1}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary", "minLength": 1}}}}}


def _batch_body(max_batch: int) -> dict[str, Any]:
    def images(fmt: str) -> dict[str, Any]:  # an empty or bad item fails alone: no minLength
        return {"type": "array", "minItems": 1, "maxItems": max_batch,
                "items": {"type": "string", "format": fmt}}

    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["images"],
                                           "properties": {"images": images("binary")}}},
        "application/json": {"schema": {"type": "object", "required": ["images"],
                                        "additionalProperties": False,
                                        "properties": {"images": images("byte")}}}}}}


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

        try:
            await self.app(scope, receive, send_logged)
        finally:
            log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status,
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

    @app.post("/v1/read", response_model=ReadResult, responses=_ERRORS,
              openapi_extra={**_READ_BODY, "parameters": _OPTION_PARAMS},
              summary="Read one captcha image")
    async def read(request: Request) -> Response:
        t0 = time.perf_counter()
        options = _query_options(request, reader)
        media = _media_type(request)
        _check_type(request, media, media == "multipart/form-data" or _is_image_type(media),
                    "send image/* bytes or multipart/form-data with a file field 'image'")
        body = await _read_body(request, max_body)
        if not media:
            raise Refused(415, "no content type: send image/* bytes or multipart/form-data")
        if media == "multipart/form-data":
            files = await _multipart_files(request, body, "image", max_files=4)
            if not files:
                raise Refused(400, "multipart body has no file field 'image'")
            body = files[0]
            if not body:
                raise Refused(400, "the 'image' file is empty")
        try:
            r = await batcher().read(body, options)
        except ImageError as e:
            raise Refused(422, item_error(e)) from None
        out = _reading(r, model) | {"ms": round((time.perf_counter() - t0) * 1000, 3)}
        return JSONResponse(out)

    @app.post("/v1/read-batch", response_model=list[BatchItem], responses=_ERRORS,
              openapi_extra={**_batch_body(max_batch), "parameters": _OPTION_PARAMS},
              summary="Read several captcha images")
    async def read_batch(request: Request) -> Response:
        options = _query_options(request, reader)
        media = _media_type(request)
        _check_type(request, media, media in ("multipart/form-data", "application/json"),
                    "send multipart/form-data with file fields 'images', or JSON "
                    '{"images": [base64, ...]}')
        body = await _read_body(request, batch_body)
        if not media:
            raise Refused(415, "no content type: send multipart/form-data or JSON")
        if media == "multipart/form-data":
            items = await _multipart_files(request, body, "images", max_files=max_batch)
        else:  # parsing and base64 take a while for big bodies: off the event loop
            items = await asyncio.to_thread(_json_items, body, max_batch)
        if not items:
            raise Refused(400, "no images in the request: send them as multipart file fields "
                               "named 'images' (each one, not 'image'), or JSON "
                               '{"images": [base64, ...]}')
        if len(items) > max_batch:
            raise Refused(413, f"{len(items)} images, over the batch limit of {max_batch}")
        pixels = await asyncio.to_thread(_total_pixels, items)
        if pixels > max_batch_pixels:
            raise Refused(413, f"the images hold {pixels:,} pixels in all, over the limit of "
                               f"{max_batch_pixels:,} for one batch request")
        readings = await batcher().read_many(items, options)
        return JSONResponse([{"error": r} if isinstance(r, str) else _reading(r, model) for r in readings])

    @app.get("/healthz", summary="Readiness: 200 while serving, 503 while draining",
             responses={503: {"description": "draining after SIGTERM (`serve --drain`): "
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
    import uvicorn

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
                  timeout_graceful_shutdown=10, backlog=2048, http=GuardedHttpProtocol,
                  timeout_keep_alive=5, root_path=root_path)
    if workers is None:
        workers = default_workers(provider)
    if workers <= 1:
        app = _loaded_app(cfg)  # a bad model, provider or precision: one line, before serving
        log.info("serving on http://%s:%d with 1 worker process", host, port)
        uvicorn.run(app, **common)
        return
    # a bad model, provider or precision: one line, before forking
    Reader.load(model_dir, provider=provider, precision=precision)
    log.info("serving on http://%s:%d with %d worker processes", host, port, workers)
    os.environ[ENV_CONFIG] = json.dumps(cfg)
    uvicorn.run("captcha_ocr.service:app_from_env", factory=True, workers=workers, **common)
