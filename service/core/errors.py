"""Typed errors and their one mapping to HTTP: RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse

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
