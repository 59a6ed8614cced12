"""One-line JSON errors for the FastAPI apps (the service and the labeling page).

Every error a client can cause becomes ``{"error": "one line"}`` with its status; an
unexpected one is logged with its traceback and answered 500 without it.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

__all__ = ["REFUSED", "Refused", "add_json_errors", "json_error"]

# A request's scope key: the status the HTTP protocol (``httpguard``) answered in the
# app's place (a body that timed out, a stop), for the access log to log.
REFUSED = "captcha_ocr.refused"


class Refused(Exception):
    """A request the service answers with ``{"error": message}`` and ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """``{"error": message}`` on one line."""
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


def add_json_errors(app: FastAPI, log: logging.Logger) -> None:
    """Routing errors (404, 405), invalid requests (400) and unexpected ones (500) as JSON."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> Response:
        if e.status_code in (204, 304):
            return Response(status_code=e.status_code, headers=e.headers)
        return json_error(e.status_code, str(e.detail), e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        return json_error(400, f"invalid request: {first.get('msg', 'bad input')}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return json_error(500, f"internal error ({type(e).__name__})")
