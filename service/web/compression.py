"""Gzip for text responses only (JSON, GeoJSON, JavaScript, CSS, HTML).

Starlette's GZipMiddleware compresses everything but a blocklist; tiles are glb and point
data that gzip barely shrinks, and the CPU is better spent elsewhere, so this one allows a
list instead. Partial (206) responses and bodies that already carry an encoding pass as they
are, so Range keeps working. A compressed body gets a weak ETag (the bytes differ from the
identity representation); the tile routes compare If-None-Match weakly, so a revalidation
with either tag still answers 304.
"""

from __future__ import annotations

import zlib

import anyio
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMPRESSIBLE = ("application/json", "application/geo+json", "application/problem+json",
                "application/schema+json", "application/vnd.oai.openapi+json",
                "application/city+json", "application/city+json-seq",
                "text/javascript", "application/javascript", "text/css", "text/html",
                "image/svg+xml")
THREAD_MIN = 128 * 1024  # compress larger chunks off the event loop


class TextGZipMiddleware:
    def __init__(self, app: ASGIApp, minimum_size: int = 500, level: int = 6) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        accepts = "gzip" in Headers(scope=scope).get("accept-encoding", "")
        await _Responder(self, accepts, send)(scope, receive, self.app)


class _Responder:
    def __init__(self, mw: TextGZipMiddleware, accepts: bool, send: Send) -> None:
        self.mw, self.accepts, self.send = mw, accepts, send
        self.start: Message | None = None  # held until the first body chunk
        self.compressor: zlib._Compress | None = None

    async def __call__(self, scope: Scope, receive: Receive, app: ASGIApp) -> None:
        await app(scope, receive, self.on_message)

    async def on_message(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = MutableHeaders(raw=message.setdefault("headers", []))
            media = headers.get("content-type", "").partition(";")[0].strip().lower()
            if message["status"] == 206 or "content-encoding" in headers \
                    or media not in COMPRESSIBLE:
                await self.send(message)
                return
            headers.add_vary_header("Accept-Encoding")  # caches keep both representations
            if not self.accepts:
                await self.send(message)
                return
            self.start = message
            return
        if kind == "http.response.body" and self.compressor is not None:
            body, more = message.get("body", b""), message.get("more_body", False)
            data = await self._compress(body, final=not more)
            await self.send({"type": "http.response.body", "body": data, "more_body": more})
            return
        if self.start is None or kind != "http.response.body":
            if self.start is not None:  # e.g. pathsend: send the file as it is
                await self.send(self.start)
                self.start = None
            await self.send(message)
            return
        body, more = message.get("body", b""), message.get("more_body", False)
        start, self.start = self.start, None
        if not more and len(body) < self.mw.minimum_size:
            await self.send(start)
            await self.send(message)
            return
        self.compressor = zlib.compressobj(self.mw.level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        headers = MutableHeaders(raw=start["headers"])
        headers["Content-Encoding"] = "gzip"
        if "content-length" in headers:
            del headers["Content-Length"]
        if "etag" in headers and not headers["etag"].startswith("W/"):
            headers["ETag"] = "W/" + headers["etag"]
        data = await self._compress(body, final=not more)
        if not more:
            headers["Content-Length"] = str(len(data))
        await self.send(start)
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def _compress(self, body: bytes, *, final: bool) -> bytes:
        def run() -> bytes:
            assert self.compressor is not None
            out = self.compressor.compress(body)
            return out + self.compressor.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)

        if len(body) >= THREAD_MIN:
            return await anyio.to_thread.run_sync(run)
        return run()
