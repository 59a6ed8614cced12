"""``captcha-ocr label DIR``: a local page to label a folder of captchas fast.

The model reads every image once at start (ONNX Runtime, no torch); the page shows one
image at a time with that reading pre-filled and selected, least confident first (or in
file order). Enter accepts; every accepted label is written to ``DIR/labels.csv`` at
once, atomically (``labels.LabelStore``), so a restart resumes where it stopped.

Endpoints (JSON unless said): ``GET /`` the page, ``GET /api/state`` counts and pace,
``GET /api/queue`` the images still to do in order, ``GET /api/item/{name}`` one image's
reading and label, ``GET /api/image/{name}`` its bytes, ``POST /api/label`` and
``POST /api/set-aside`` (skipped or unreadable). Errors are ``{"error": "one line"}``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from .labels import STATUSES, LabelStore
from .runtime import Reader, Reading

__all__ = ["Labeling", "create_label_app", "serve_labeling"]

log = logging.getLogger("captcha_ocr.label")
STATIC = Path(__file__).with_name("static")
ORDERS = ("confidence", "file")


class Labeling:
    """The folder's labels, the model's readings and the order to show the images in."""

    def __init__(self, store: LabelStore, reader: Reader | None, order: str = "confidence") -> None:
        if order not in ORDERS:
            raise ValueError(f"order {order!r}: expected one of {', '.join(ORDERS)}")
        self.store = store
        self.reader = reader
        self.order = order
        self.readings: dict[str, Reading] = {}
        self.started = time.monotonic()
        self.session_labels = 0
        self.unchanged = 0
        self.rank()

    def rank(self) -> None:
        """Read every image with the model and order them (least confident first)."""
        names = [p.name for p in self.store.images]
        if self.reader is not None:
            got = self.reader.read_many(self.store.images)
            self.readings = dict(zip(names, got))
        if self.order == "confidence" and self.readings:
            # unreadable files first (one key sets them aside), then the least confident
            names.sort(key=lambda n: (self.readings[n].ok, self.readings[n].confidence))
        self.names = names

    def queue(self) -> list[str]:
        return [n for n in self.names if not self.store.done(n)]

    def item(self, name: str) -> dict[str, Any]:
        self.store.path(name)  # KeyError: not an image of the folder
        e = self.store.entry(name)
        r = self.readings.get(name)
        reading = None
        if r is not None:
            reading = ({"error": r.error} if not r.ok else
                       {"text": r.text, "confidence": round(r.confidence, 6),
                        "char_confidences": [round(c, 6) for c in r.char_confidences]})
        return {"name": name, "label": e.label, "status": e.status, "reading": reading}

    def state(self) -> dict[str, Any]:
        minutes = max((time.monotonic() - self.started) / 60, 1e-9)
        return {**self.store.counts(), "order": self.order,
                "model": self.reader.name if self.reader else None,
                "session_labels": self.session_labels, "accepted_unchanged": self.unchanged,
                "labels_per_minute": round(self.session_labels / minutes, 2)}

    def label(self, name: str, label: str, prefill: str | None) -> None:
        self.store.set_label(name, label)
        self.session_labels += 1
        self.unchanged += prefill is not None and label.strip() == prefill


class LabelBody(BaseModel):
    name: str
    label: str
    prefill: str | None = None


class AsideBody(BaseModel):
    name: str
    status: str


def create_label_app(labeling: Labeling) -> FastAPI:
    app = FastAPI(title="captcha-ocr label", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def refuse(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": " ".join(message.split())}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return refuse(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        return refuse(400, f"invalid request: {first.get('msg', 'bad input')}")

    @app.exception_handler(KeyError)
    async def unknown(request: Request, e: KeyError) -> JSONResponse:
        return refuse(404, f"{e.args[0]!r} is not an image of {labeling.store.folder}")

    @app.exception_handler(ValueError)
    async def invalid(request: Request, e: ValueError) -> JSONResponse:
        return refuse(400, str(e))

    @app.exception_handler(OSError)
    async def disk(request: Request, e: OSError) -> JSONResponse:
        log.error("cannot save in %s: %s", labeling.store.folder, e)
        return refuse(507, f"cannot save the labels ({e.strerror or e}); nothing saved before "
                           "is lost: fix that and try again")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "label.html", media_type="text/html")

    @app.get("/api/state")
    async def state() -> dict[str, Any]:
        return labeling.state()

    @app.get("/api/queue")
    async def queue() -> dict[str, Any]:
        return {"queue": labeling.queue()}

    @app.get("/api/item/{name}")
    async def item(name: str) -> dict[str, Any]:
        return labeling.item(name)

    @app.get("/api/image/{name}")
    async def image(name: str) -> FileResponse:
        return FileResponse(labeling.store.path(name))

    @app.post("/api/label")
    async def label(body: LabelBody) -> dict[str, Any]:
        labeling.label(body.name, body.label, body.prefill)
        return labeling.state()

    @app.post("/api/set-aside")
    async def set_aside(body: AsideBody) -> dict[str, Any]:
        if body.status not in STATUSES:
            raise ValueError(f"status {body.status!r}: expected one of {', '.join(STATUSES)}")
        labeling.store.set_aside_as(body.name, body.status)
        return labeling.state()

    return app


def serve_labeling(folder: str | Path, model: str | None = "base", host: str = "127.0.0.1",
                   port: int = 8000, order: str = "confidence", trust_stems: bool = False,
                   open_browser: bool = True) -> None:
    """Load the folder and the model, then serve the page until Ctrl-C or SIGTERM."""
    import uvicorn

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    store = LabelStore(folder, trust_stems=trust_stems)
    try:
        reader = Reader.load(model) if model and model != "none" else None
        labeling = Labeling(store, reader, order)
        app = create_label_app(labeling)
        url = f"http://{host}:{port}/"
        log.info("%s: %d images, %d labeled; open %s", store.folder, len(store.images),
                 len(store.labels), url)
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
    finally:
        store.close()
