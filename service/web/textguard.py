"""Refuse NUL characters in paths, query strings and JSON bodies, before any route sees them.

PostgreSQL text cannot hold U+0000, file names and subprocess arguments cannot either, and
no field of this API means one: a NUL is always a mistake or an attack. Checking here, once,
gives a 400 that says so instead of a driver error deep inside a route. Bodies are checked
as they stream in (nothing is buffered here), and only JSON and text ones: uploads are bytes.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import BadRequest, problem

_ESCAPE = b"u0000"
_BACKSLASH = 0x5C
NUL_DETAIL = "a NUL character (\\u0000) is not allowed in {where}; no field of this API takes one"


class NulInBody(BadRequest, HTTPException):
    """Raised while the body is read. It is also an ``HTTPException`` because FastAPI turns
    any other exception from reading a body into a generic "error parsing the body"."""

    def __init__(self) -> None:
        detail = NUL_DETAIL.format(where="the request body")
        BadRequest.__init__(self, detail)
        self.status_code = 400


class JsonNulScanner:
    """Finds a NUL in a JSON text fed in arbitrary pieces: a raw 0x00 byte, or a ``\\u0000``
    escape whose backslash is not itself escaped (``\\\\u0000`` is a backslash and "u0000")."""

    def __init__(self) -> None:
        self._carry = b""  # the last bytes seen, where an escape may continue
        self._carry_odd = False  # backslashes just before the carry: an odd run?

    def _odd_run_before(self, data: bytes, end: int) -> bool:
        n = 0
        while end - n > 0 and data[end - n - 1] == _BACKSLASH:
            n += 1
        odd = n % 2 == 1
        return odd != self._carry_odd if n == end else odd

    def feed(self, chunk: bytes) -> bool:
        if b"\x00" in chunk:
            return True
        data = self._carry + chunk
        at = data.find(_ESCAPE)
        while at != -1:
            if self._odd_run_before(data, at):
                return True
            at = data.find(_ESCAPE, at + 1)
        cut = max(len(data) - len(_ESCAPE), 0)
        self._carry_odd = self._odd_run_before(data, cut)
        self._carry = data[cut:]
        return False


def _checked_type(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            if b"json" in kind:
                return "json"
            if kind.startswith(b"text/"):
                return "text"
            return None
    return None


class NulGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        where = ("the path" if "\x00" in scope.get("path", "") else
                 "the query string" if b"%00" in query or b"\x00" in query else None)
        if where is not None:
            response = problem(400, NUL_DETAIL.format(where=where), "bad-request",
                               scope.get("path", "").replace("\x00", "\\u0000"))
            await response(scope, receive, send)
            return
        kind = _checked_type(scope)
        if kind is None:
            await self.app(scope, receive, send)
            return
        scanner = JsonNulScanner()

        async def checked_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                if body and (scanner.feed(body) if kind == "json" else b"\x00" in body):
                    raise NulInBody()
            return message

        await self.app(scope, checked_receive, send)
