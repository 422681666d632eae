"""The key before the body, and a cap on every request body: one ASGI middleware.

FastAPI reads and parses a route's body before it solves the route's dependencies, so the
key check (a dependency) used to come after the whole body was in memory: 105 MB of JSON
without a key grew a worker by gigabytes and stalled its event loop before the 401.
Every write (any method but GET, HEAD, OPTIONS) needs a key, so here, before any byte of
the body is read:

* a write to a route without a key, or with a key that is unknown or revoked, is answered
  401 (the routes still check the role, after the body: the body is capped by then);
* a body whose Content-Length is over the route's cap is answered 413;
* a body sent without Content-Length (chunked) is counted as it is read, and reading stops
  with a 413 at the cap.

The caps: ``max_body_bytes`` for ordinary JSON writes, ``max_batch_body_bytes`` for the
layer batches under ``/layers/`` (JSON arrays, NDJSON or CSV of up to 200,000 rows), none
for tus PATCH under ``/uploads/``, which streams its chunks to disk and is bounded by the
upload's declared length (itself at most ``max_upload_bytes``).
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.auth import key_from_headers, principal_for
from service.core.errors import problem
from service.core.settings import Settings
from service.web.edge import route_takes

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes its cap; FastAPI lets an
    HTTPException raised while it reads a body through, and the error handlers turn it
    into a problem document."""

    slug = "payload-too-large"

    def __init__(self, cap: int) -> None:
        super().__init__(413, _too_large(cap))


def _too_large(cap: int) -> str:
    return (f"the request body is over this route's limit of {_size(cap)}; send less (split "
            "a batch), or upload files with tus at /uploads")


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def body_cap(settings: Settings, method: str, path: str) -> int | None:
    """The largest body this request may send; None when the route bounds it itself."""
    if path.startswith("/uploads/") and method == "PATCH":
        return None
    if path.startswith("/layers/"):
        return settings.max_batch_body_bytes
    return settings.max_body_bytes


def _route_path(scope: Scope) -> str:
    """The path the routes see: without the root path (TWINBASE_PUBLIC_URL's prefix)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root + "/") else path


class GuardMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS \
                or not route_takes(scope):
            # reads, and writes to no route (the router answers those 404 or 405)
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = _route_path(scope)
        key = key_from_headers(headers)
        if key is None:
            await self._refuse(scope, receive, send, 401, "unauthorized",
                               "writes need an API key (Authorization: Bearer <key>)")
            return
        known = await self._check_key(scope, key)
        if known is False:
            await self._refuse(scope, receive, send, 401, "unauthorized",
                               "the API key is not valid (unknown or revoked)")
            return
        cap = body_cap(self.settings, scope["method"], path)
        if cap is None:
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > cap:
            await self._refuse(scope, receive, send, 413, "payload-too-large",
                               _too_large(cap))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise BodyTooLarge(cap)
            return message

        await self.app(scope, counted, send)

    async def _check_key(self, scope: Scope, key: str) -> bool | None:
        """True (and the principal kept for the route) or False; None when the database
        could not say, so the route's own check meets the same error and answers it."""
        app = scope.get("app")
        engine = getattr(app.state, "engine", None) if app is not None else None
        if engine is None:
            return None
        try:
            principal = await principal_for(engine, key)
        except Exception:  # the route's own check meets the same error and reports it
            log.debug("key check deferred to the route", exc_info=True)
            return None
        if principal is None:
            return False
        scope.setdefault("state", {})["principal"] = principal
        return True

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, slug: str,
                      detail: str) -> None:
        headers = {"WWW-Authenticate": 'Bearer realm="twinbase"'} if status == 401 else {}
        # the body is never read: the connection cannot be reused for another request
        headers["Connection"] = "close"
        response = problem(status, detail, slug, scope["path"], headers)
        await response(scope, receive, send)
