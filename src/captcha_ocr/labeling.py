"""``captcha-ocr label DIR``: a local page to label a folder of captchas fast.

The model reads every image once at start (ONNX Runtime, no torch); the page shows one
image at a time with that reading pre-filled and selected, least confident first (or in
file order). Enter accepts; every accepted label is written to ``DIR/labels.csv`` at
once, atomically (``labels.LabelStore``), so a restart resumes where it stopped.

Endpoints (JSON unless said): ``GET /`` the page, ``GET /api/state`` counts and pace,
``GET /api/queue`` the images still to do in order, ``GET /api/item/{name}`` one image's
reading and label, ``GET /api/image/{name}`` its bytes, ``POST /api/label`` and
``POST /api/set-aside`` (skipped or unreadable), ``POST /api/train`` (start training on
the labels so far, in a background process) and ``GET /api/train`` (its output; when it
ends, the page's model is the new one). Errors are ``{"error": "one line"}``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from . import listening
from .data import DatasetError, Sample, counted, link_labeled, survey
from .httperrors import add_json_errors, json_error
from .labels import STATUSES, LabelStore
from .modeldir import FILES, ModelError
from .runtime import BASE_MODELS, Reader, Reading, is_shipped
from .tsv import parse_field

__all__ = ["Labeling", "create_label_app", "read_review_list", "read_review_suggestions",
           "serve_labeling"]

log = logging.getLogger("captcha_ocr.label")
STATIC = Path(__file__).with_name("static")
ORDERS = ("confidence", "file")
MIN_TRAIN_LABELS = 10  # fewer cannot fill a training and a validation split
MAX_LINES = 40         # of the training run's output kept for the page
LABEL_MODEL = ".label-model"  # where the page trains, inside the folder being labeled


class Labeling:
    """The folder's labels, the model's readings and the order to show the images in.

    With ``review`` (names of the folder's images, e.g. what ``captcha-ocr check-labels``
    listed), the page shows those images, labeled or not, in that order, each with its
    current label to keep or correct, until each has been accepted or set aside once.
    """

    def __init__(self, store: LabelStore, reader: Reader | None, order: str = "confidence",
                 review: list[str] | None = None,
                 suggestions: dict[str, dict[str, Any]] | None = None) -> None:
        if order not in ORDERS:
            raise ValueError(f"order {order!r}: expected one of {', '.join(ORDERS)}")
        names = {p.name for p in store.images}
        unknown = [n for n in review or [] if n not in names]
        if unknown:
            raise DatasetError(f"{unknown[0]!r} is not an image of {store.folder} ({len(unknown)} "
                               "listed names are not); list images of that folder (as "
                               "'captcha-ocr check-labels' on it prints them)")
        self.store = store
        self.reader = reader
        self.order = order
        self.review = list(dict.fromkeys(review)) if review is not None else None
        self.reviewed: set[str] = set()
        self.suggestions = suggestions or {}  # under review: what check-labels read
        self.readings: dict[str, Reading] = {}
        self.started = time.monotonic()
        # image -> whether its label this session is the reading it was shown (pre-filled):
        # an image labeled twice (a correction) counts once, as its last label
        self.session: dict[str, bool] = {}
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
        self.names = names if self.review is None else self.review

    def queue(self) -> list[str]:
        if self.review is not None:
            return [n for n in self.names if n not in self.reviewed]
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
        return {"name": name, "label": e.label, "status": e.status, "reading": reading,
                "suggestion": self.suggestions.get(name)}

    def state(self) -> dict[str, Any]:
        minutes = max((time.monotonic() - self.started) / 60, 1e-9)
        counts = self.store.counts()
        if self.review is not None:
            counts["remaining"] = len(self.queue())
        return {**counts, "order": "review" if self.review is not None else self.order,
                "model": self.reader.name if self.reader else None,
                "session_labels": len(self.session), "accepted_unchanged": sum(self.session.values()),
                "labels_per_minute": round(len(self.session) / minutes, 2)}

    def use(self, reader: Reader) -> None:
        """Switch to a new model and rank the images again."""
        self.reader = reader
        self.rank()

    def label(self, name: str, label: str, prefill: str | None) -> None:
        self.store.set_label(name, label)
        self.reviewed.add(name)
        self.session[name] = prefill is not None and label.strip() == prefill

    def set_aside(self, name: str, status: str) -> None:
        if self.review is not None and status == "skipped":
            self.store.path(name)  # KeyError: not an image of the folder
            self.reviewed.add(name)  # passing over an image under review changes nothing
            return
        self.store.set_aside_as(name, status)
        self.reviewed.add(name)
        self.session.pop(name, None)  # labeled earlier this session, set aside now: not labeled


class Trainer:
    """One background ``captcha-ocr train`` on the labels so far, its output kept for the page.

    The labeled images are linked into a folder of their own (with their ``labels.csv``)
    and trained into ``DIR/.label-model`` (fine-tuned from the page's model where it has
    one); when the run ends, the page's model is replaced by the new one and the images
    are ranked again.
    """

    def __init__(self, labeling: Labeling) -> None:
        self.labeling = labeling
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.result: str | None = None  # "done", or the failure's last line
        self.model_dir = labeling.store.folder / LABEL_MODEL
        self._busy = False  # from start until the new model is in use (or the run failed)

    @property
    def running(self) -> bool:
        return self._busy

    def start(self, steps: int | None = None) -> None:
        if self.running:
            raise ValueError("a training run is already going on")
        store = self.labeling.store
        labeled = sorted(store.present_labels().items())
        if len(labeled) < MIN_TRAIN_LABELS:
            raise ValueError(f"{len(labeled)} labels: label at least {MIN_TRAIN_LABELS} before training")
        work = tempfile.TemporaryDirectory(prefix="captcha-ocr-label-")
        data = link_labeled([Sample(store.path(name), label) for name, label in labeled],
                            Path(work.name) / "data")
        cmd = [sys.executable, "-m", "captcha_ocr.cli", "train", str(data), "--out", str(self.model_dir)]
        reader = self.labeling.reader
        if reader is not None:  # a shipped model by its name, as the user would write it
            shipped = is_shipped(reader.model_dir)
            if not (shipped and reader.model_dir.name in BASE_MODELS):  # those: train's own pick
                cmd += ["--init", reader.model_dir.name if shipped else str(reader.model_dir)]
        if steps:
            cmd += ["--steps", str(steps)]
        self.lines, self.result = [f"training on {len(labeled)} labels"], None
        self._busy = True
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "COLUMNS": "120"})
        self.proc = proc
        threading.Thread(target=self._follow, args=(proc, work), daemon=True).start()

    def _follow(self, proc: subprocess.Popen, work: tempfile.TemporaryDirectory) -> None:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    self.lines = (self.lines + [line])[-MAX_LINES:]
            code = proc.wait()
            if code == 0:
                try:
                    self.labeling.use(Reader.load(self.model_dir))
                    self.result = "done"
                except Exception as e:  # noqa: BLE001 - shown on the page, one line
                    self.result = f"the new model cannot be loaded: {e}"
            else:
                self.result = self.lines[-1] if self.lines else f"exit status {code}"
        finally:
            work.cleanup()
            self._busy = False  # only now: the page re-ranks when it sees "done"

    def state(self) -> dict[str, Any]:
        return {"running": self.running, "lines": self.lines[-MAX_LINES:], "result": self.result}


class LabelBody(BaseModel):
    name: str
    label: str
    prefill: str | None = None


class AsideBody(BaseModel):
    name: str
    status: str


class TrainBody(BaseModel):
    steps: int | None = Field(None, ge=1, le=100_000, description="optimizer steps (default: the recipe's)")


def create_label_app(labeling: Labeling) -> FastAPI:
    app = FastAPI(title="captcha-ocr label", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    add_json_errors(app, log)

    @app.exception_handler(KeyError)
    async def unknown(request: Request, e: KeyError) -> JSONResponse:
        return json_error(404, f"{e.args[0]!r} is not an image of {labeling.store.folder}")

    @app.exception_handler(ValueError)
    async def invalid(request: Request, e: ValueError) -> JSONResponse:
        return json_error(400, str(e))

    @app.exception_handler(OSError)
    async def disk(request: Request, e: OSError) -> JSONResponse:
        log.error("cannot save in %s: %s", labeling.store.folder, e)
        return json_error(507, f"cannot save the labels ({e.strerror or e}); nothing saved before "
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
        labeling.set_aside(body.name, body.status)
        return labeling.state()

    trainer = Trainer(labeling)
    app.state.trainer = trainer

    @app.post("/api/train")
    async def train(body: TrainBody) -> dict[str, Any]:
        trainer.start(body.steps)
        return trainer.state()

    @app.get("/api/train")
    async def training() -> dict[str, Any]:
        return trainer.state()

    return app


def _review_lines(path: str | Path) -> list[list[str]]:
    """The non-blank lines of a review list, split at tabs (one line, one error)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read the list of images to review "
                           f"({getattr(e, 'strerror', None) or e})") from None
    rows = [[parse_field(f.strip()) for f in line.split("\t")] for line in text.splitlines() if line.strip()]
    if not rows:
        raise DatasetError(f"{path}: lists no images to review (one file name or path a line)")
    return rows


def read_review_list(path: str | Path) -> list[str]:
    """Image file names from a list: one per line, the first tab-separated field (the
    output of ``captcha-ocr check-labels``), a path or a bare name; blank lines skipped.

    Raises:
        DatasetError: the file cannot be read, or lists nothing (one line).
    """
    return [Path(row[0]).name for row in _review_lines(path)]


def read_review_suggestions(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{name: {"text", "confidence"}}``: what ``check-labels`` read each listed image as
    (its READING and CONFIDENCE columns), for the lines that carry them."""
    out = {}
    for row in _review_lines(path):
        if len(row) >= 4 and row[2]:
            try:
                out[Path(row[0]).name] = {"text": row[2], "confidence": float(row[3])}
            except ValueError:
                continue  # not check-labels' output: a plain list of names
    return out


def default_label_model(folder: str | Path) -> str:
    """The model that pre-fills readings unless one is named: the one the page last
    trained (``DIR/.label-model``, where complete), else the shipped base."""
    trained = Path(folder) / LABEL_MODEL
    return str(trained) if (trained / FILES.info).is_file() else "base"


def label_reader(folder: str | Path, model: str | None) -> Reader | None:
    """The Reader that pre-fills readings: ``model`` (a directory, a shipped name, or
    "none": no reader), or where None ``default_label_model``; a damaged model the page
    trained itself falls back to base, with a warning."""
    named, model = model, model or default_label_model(folder)
    try:
        reader = Reader.load(model) if model != "none" else None
    except ModelError as e:
        if named:
            raise
        log.warning("%s; the page starts from base instead", e)
        model, reader = "base", Reader.load("base")
    if reader is not None:
        log.info("readings pre-filled by %s", model)
    return reader


def _stems_hint(folder: Path) -> None:
    """Where ``train`` would read the file names as labels, say so: the page shows every
    image as unlabeled until ``--trust-stems``."""
    try:
        labeling = survey(folder, stem_labels=True)  # as --trust-stems would
    except DatasetError:  # names that are no labels (a numbering, ids): nothing to say
        return
    named, numbered = labeling.by_file_name, labeling.numbered_note()
    if numbered:  # names like 00008, 00018: not offered as labels
        log.info("%s", numbered)
    elif named:
        log.info("%d of these file names read as labels (as train reads them): --trust-stems "
                 "counts them as labeled and shows only the rest", named)


def folder_summary(store: LabelStore, labeled: int) -> str:
    """"FOLDER: N images, M labeled" (``labeled``: as the page counts them), and the rows
    of labels.csv that name files no longer in the folder (kept, not counted)."""
    gone = len(store.labels) - labeled
    return (f"{store.folder}: {len(store.images)} images, {labeled} labeled"
            + (f" (labels.csv also names {counted(gone, 'file')} not in the folder)" if gone else ""))


def serve_labeling(folder: str | Path, model: str | None = None, host: str = "127.0.0.1",
                   port: int = 8000, order: str = "confidence", trust_stems: bool = False,
                   open_browser: bool = True, review: list[str] | None = None,
                   suggestions: dict[str, dict[str, Any]] | None = None, names: str = "auto") -> None:
    """Load the folder and the model (None: ``default_label_model``), then serve the page
    until Ctrl-C or SIGTERM; ``names``: how ``trust_stems`` reads the file names."""
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    sockets = listening.bind(host, port)  # a port in use: one line, before the folder and model load
    try:
        store = LabelStore(folder, trust_stems=trust_stems, names=names)
    except BaseException:
        listening.close(sockets)
        raise
    try:
        reader = label_reader(folder, model)
        labeling = Labeling(store, reader, order, review, suggestions)
        app = create_label_app(labeling)
        url = listening.url(host, listening.bound_port(sockets), browser=True)
        labeled = store.counts()["labeled"]
        log.info("%s; open %s", folder_summary(store, labeled), url)
        if not labeled and not trust_stems:
            _stems_hint(store.folder)
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        listening.run(app, sockets, host=host, port=port, log_level="warning", server_header=False)
    finally:
        listening.close(sockets)
        store.close()
