"""Typed errors and their one mapping to HTTP: RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://twinbase.dev/problems/"


class TwinbaseError(Exception):
    """Base of every error the API reports on purpose."""

    status: int = 400
    slug: str = "bad-request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class BadRequest(TwinbaseError):
    status, slug = 400, "bad-request"


class Unauthorized(TwinbaseError):
    status, slug = 401, "unauthorized"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="twinbase"'},
                         **extra)


class Forbidden(TwinbaseError):
    status, slug = 403, "forbidden"


class NotFound(TwinbaseError):
    status, slug = 404, "not-found"


class Conflict(TwinbaseError):
    status, slug = 409, "conflict"


class Gone(TwinbaseError):
    status, slug = 410, "gone"


class PreconditionFailed(TwinbaseError):
    status, slug = 412, "precondition-failed"


class PayloadTooLarge(TwinbaseError):
    status, slug = 413, "payload-too-large"


class UnsupportedMediaType(TwinbaseError):
    status, slug = 415, "unsupported-media-type"


class Unprocessable(TwinbaseError):
    status, slug = 422, "unprocessable"


class Locked(TwinbaseError):
    status, slug = 423, "locked"


class ChecksumMismatch(TwinbaseError):
    # tus' checksum extension answers 460 for a chunk whose checksum does not match
    status, slug = 460, "checksum-mismatch"


class ServiceUnavailable(TwinbaseError):
    status, slug = 503, "unavailable"


class InsufficientStorage(TwinbaseError):
    status, slug = 507, "insufficient-storage"


def problem(status: int, detail: str, slug: str | None = None, instance: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Checksum Mismatch" if status == 460 else "Error"
    body: dict[str, Any] = {
        "type": TYPE_BASE + (slug or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TwinbaseError)
    async def _typed(request: Request, exc: TwinbaseError) -> JSONResponse:
        return problem(exc.status, exc.detail, exc.slug, request.url.path, exc.headers,
                       **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"nothing at {request.url.path}"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem(exc.status_code, detail, getattr(exc, "slug", None), request.url.path,
                       getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""),
             "type": e.get("type", "")}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem(422, f"invalid request: {summary}", "validation", request.url.path,
                       errors=errors)

    from service.faults import handled_types, translate

    async def _translated(request: Request, exc: Exception) -> JSONResponse:
        # database, driver and disk failures: the client's 400, or the server's 503 / 507
        typed = translate(exc)
        if typed is None:
            return await _unexpected(request, exc)
        if typed.status >= 500:
            log.warning("%s %s: %s (%s: %s)", request.method, request.url.path, typed.detail,
                        type(exc).__name__, exc)
        return await _typed(request, typed)

    for failure in handled_types():
        app.add_exception_handler(failure, _translated)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal error; the server log has the details",
                       "internal", request.url.path)
