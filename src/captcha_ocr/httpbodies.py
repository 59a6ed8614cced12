"""Request bodies of the HTTP service: size limits while reading, content types,
multipart files and JSON batches (with limits on nesting and numbers).

Every problem is a ``Refused`` with its status and one line; the service answers it as
``{"error": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from .httperrors import Refused
from .preprocess import image_size

__all__ = ["MAX_FORM_FIELDS", "MAX_JSON_DIGITS", "check_type", "is_image_type", "json_items",
           "media_type", "multipart_files", "read_body", "total_pixels"]

MAX_FORM_FIELDS = 1000      # text fields beside the files of a multipart body (ignored;
                            # the body's size bounds the parsing work)
MAX_JSON_DIGITS = 20        # digits in a JSON number (the schema has none; Python parses 4300)


async def read_body(request: Request, limit: int) -> bytes:
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


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def check_type(request: Request, media: str, ok: bool, hint: str) -> None:
    """400 for a declared empty body, 415 for a wrong type (a missing one is judged after reading)."""
    if request.headers.get("content-length") == "0":
        raise Refused(400, "empty body: send an image")
    if media and not ok:
        raise Refused(415, f"content type {media!r} is not accepted: {hint}")


def is_image_type(media: str) -> bool:
    return media.startswith("image/") or media == "application/octet-stream"


async def multipart_files(request: Request, body: bytes, field: str, max_files: int,
                          too_many: Refused | None = None) -> list[bytes]:
    """The files sent as ``field`` in a multipart body (a text value there: 400; more
    than ``max_files``: ``too_many``, by default a 413 naming the batch limit)."""
    async def once() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(request.headers, once(), max_files=max_files,
                             max_fields=MAX_FORM_FIELDS)  # other fields are ignored, up to a point
    try:
        form = await parser.parse()
    except MultiPartException as e:
        if e.message.startswith("Too many files"):
            raise too_many or Refused(413, f"more than {max_files} files, over the batch limit "
                                           f"of {max_files}") from None
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


def total_pixels(items: list[bytes | str]) -> int:
    """Pixels of all the images of a batch, from their headers (before any decoding)."""
    sizes = [image_size(x) for x in items if isinstance(x, bytes)]
    return sum(w * h for w, h in filter(None, sizes))


def json_items(body: bytes, max_items: int) -> list[bytes | str]:
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
        if isinstance(doc, dict) and "images" not in doc and doc:
            other = next(iter(doc))
            raise Refused(400, f'unknown field {other!r}, and no "images": expected a JSON object '
                               '{"images": [base64, ...]}')
        raise Refused(400, 'expected a JSON object {"images": [base64, ...]}')
    if len(doc) > 1:
        other = next(k for k in doc if k != "images")
        raise Refused(400, f'unknown field {other!r}: expected a JSON object {{"images": [base64, ...]}}')
    return images
