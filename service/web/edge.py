"""What every request meets at the service's edge, whatever its route: the configured public
URL, and HEAD on every GET route."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def route_takes(scope: Scope, method: str | None = None) -> bool:
    """Whether a route of the app takes ``method`` (default: the request's) at this path."""
    router = getattr(scope.get("app"), "router", None)
    if router is None:
        return False
    probe = scope if method is None else {**scope, "method": method}
    return any(route.matches(probe)[0] == Match.FULL for route in router.routes)


class PublicUrlMiddleware:
    """Every absolute link the service writes (features and tiles links, tus ``Location``,
    paging links, redirects) is built from the request's scheme, Host header and root path.
    Behind a proxy, or with a client that sends any Host it likes, those are not the
    service's address: with ``TWINBASE_PUBLIC_URL`` set, they are replaced by it before any
    route sees the request. A path in the URL (``https://example.org/twin``) is the prefix
    the proxy strips; it becomes the root path, so links carry it and routes still match."""

    def __init__(self, app: ASGIApp, public_url: str) -> None:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query \
                or parts.fragment:
            raise ValueError(f"TWINBASE_PUBLIC_URL must be http(s)://host[:port][/prefix], "
                             f"not {public_url!r}")
        self.app = app
        self.secure = parts.scheme == "https"
        self.host = parts.netloc.encode("idna")
        self.prefix = parts.path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scheme = ("https" if self.secure else "http") if scope["type"] == "http" \
            else ("wss" if self.secure else "ws")
        headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
        headers.append((b"host", self.host))
        public = {**scope, "scheme": scheme, "headers": headers}
        if self.prefix and not scope.get("root_path"):
            public["root_path"] = self.prefix
            public["path"] = self.prefix + scope["path"]
            if scope.get("raw_path") is not None:
                public["raw_path"] = self.prefix.encode() + scope["raw_path"]
        await self.app(public, receive, send)


class HeadMiddleware:
    """HEAD on every route that takes GET: the GET's status and headers, no body.

    Starlette's own routes take HEAD with GET, FastAPI's take only the methods they
    declare, so ``curl -I`` on a tileset, a tile or /health was a 405. A route that declares
    HEAD itself (tus) keeps its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or route_takes(scope) \
                or not route_takes(scope, "GET"):
            await self.app(scope, receive, send)
            return
        # a copy: the server's own scope keeps saying HEAD, so it sends no body either
        as_get = {**scope, "method": "GET"}

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await self.app(as_get, receive, headers_only)
        finally:
            if "route" in as_get:  # for the request metrics, which label by route
                scope["route"] = as_get["route"]
