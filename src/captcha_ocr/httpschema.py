"""What the HTTP service's answers and reading options look like: the response models
and OpenAPI fragments shown in ``/docs``, and the query parameters parsed into the
Reader's options.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from .decoding import MAX_BEAM, MAX_LENGTH
from .httperrors import Refused
from .runtime import DEFAULT_OPTIONS, Reader, Reading, ReadOptionError, ReadOptions

__all__ = ["ERRORS", "OPTION_PARAMS", "READ_BODY", "BatchItem", "ReadResult",
           "batch_request_body", "query_options", "reading_json"]


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
OPTION_PARAMS: list[dict[str, Any]] = [
    {"name": "allow", "in": "query", "required": False,
     "description": "only these characters may be read, e.g. 0123456789",
     "schema": {"type": "string", "minLength": 1, "maxLength": 256}},
    {"name": "length", "in": "query", "required": False, "description": "exact length of the reading",
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LENGTH}},
    {"name": "min_length", "in": "query", "required": False, "description": "at least this many characters",
     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LENGTH}},
    {"name": "max_length", "in": "query", "required": False, "description": "at most this many characters",
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LENGTH}},
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


_OPTION_NAMES = tuple(p["name"] for p in OPTION_PARAMS)


def query_options(request: Request, reader: Reader) -> ReadOptions:
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
              for p in OPTION_PARAMS if p["name"] in query}
    try:
        return reader.options(**kwargs)
    except ReadOptionError as e:
        raise Refused(400, str(e)) from None


class ErrorBody(BaseModel):
    error: str


def reading_json(r: Reading, model: str) -> dict[str, Any]:
    return r.as_dict() | {"model": model}


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody, "description": d} for s, d in [
        (400, "empty or malformed request, or reading options that exclude each other"),
        (413, "body or batch over its limit"),
        (415, "wrong content type"), (422, "not an image, truncated, or over the pixel limit")]}

READ_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["image"],
        "properties": {"image": {"type": "string", "format": "binary", "minLength": 1}}}},
    "image/*": {"schema": {"type": "string", "format": "binary", "minLength": 1}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary", "minLength": 1}}}}}


def batch_request_body(max_batch: int) -> dict[str, Any]:
    def images(fmt: str) -> dict[str, Any]:  # an empty or bad item fails alone: no minLength
        return {"type": "array", "minItems": 1, "maxItems": max_batch,
                "items": {"type": "string", "format": fmt}}

    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["images"],
                                           "properties": {"images": images("binary")}}},
        "application/json": {"schema": {"type": "object", "required": ["images"],
                                        "additionalProperties": False,
                                        "properties": {"images": images("byte")}}}}}}
