"""Failures that come from outside the code (the database, the disk) as the API's typed errors.

A request can make the database refuse a value (a number beyond a column's range, text with
NUL, an overflow while a filter is evaluated, coordinates outside a projection's domain):
that is the client's 400. The database being down, restarting or out of connections is the
server's 503, with ``Retry-After``; a full disk is 507. What is none of these stays a 500.

Errors arrive from three drivers: asyncpg (the API, through SQLAlchemy or directly on the
features read path), psycopg (jobs and the CLI, through SQLAlchemy) and the operating system.
All of them are recognised here, by SQLSTATE where there is one, so a new route needs nothing.
"""

from __future__ import annotations

import errno
import logging
import re
import traceback
from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import (
    BadRequest,
    Conflict,
    InsufficientStorage,
    ServiceUnavailable,
    TwinbaseError,
    problem,
)

log = logging.getLogger(__name__)

# seconds a client should wait before retrying while the database is unavailable: a
# restart of PostgreSQL takes about a second, a failover a few
RETRY_AFTER_S = 5
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# SQLSTATE classes and codes (PostgreSQL appendix A)
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")  # connection, resources, operator, system
_RETRY_CODES = frozenset({"40001", "40P01", "55P03"})  # serialization, deadlock, lock
_DRIVER_MODULES = ("asyncpg", "psycopg", "sqlalchemy")
_ARGUMENT = re.compile(r"^invalid input for query argument \$\d+: .*\((?P<why>[^()]*)\)\s*$",
                       re.DOTALL)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what SQLAlchemy wraps (``orig``), and its causes, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(x for x in (getattr(e, "orig", None), e.__cause__, e.__context__)
                    if isinstance(x, BaseException))


def _sqlstate(e: BaseException) -> str | None:
    state = getattr(e, "sqlstate", None)  # asyncpg and psycopg both name it so
    if isinstance(state, str) and len(state) == 5:
        return state
    return None


def _from_database_driver(exc: BaseException) -> bool:
    """Whether an OS-level error (a refused or reset socket) was raised inside a database
    driver, not by some other part of the request."""
    for e in _chain(exc):
        for frame, _ in traceback.walk_tb(e.__traceback__):
            module = frame.f_globals.get("__name__", "")
            if module.split(".", 1)[0] in _DRIVER_MODULES:
                return True
    return False


def unavailable(reason: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"{reason}; retry in a few seconds",
                              headers={"Retry-After": str(RETRY_AFTER_S)})


def _data_error(e: BaseException, state: str) -> BadRequest:
    message = " ".join(str(getattr(e, "message", None) or e).split())
    if state == "22021" or "0x00" in message or "\\u0000" in message \
            or "NUL (0x00)" in message or state == "22P05":
        return BadRequest("text in this request contains a NUL character (\\u0000), which "
                          "cannot be stored; remove it")
    argument = _ARGUMENT.match(message)
    if argument:  # the driver refused a bound value: say why, not the value's position
        return BadRequest(f"a value in this request is outside what the database can hold "
                          f"({argument.group('why')}); ids are 64-bit, versions 32-bit")
    return BadRequest(f"a value in this request cannot be used: {message[:300]}")


def translate(exc: BaseException) -> TwinbaseError | None:
    """The typed error for ``exc``, or None when it is a defect of the server (a 500)."""
    for e in _chain(exc):
        if isinstance(e, TwinbaseError):
            return e
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            return InsufficientStorage(
                "the server's disk is full; nothing was kept of this request. Retry once an "
                "operator has freed space", headers={"Retry-After": "60"})
        state = _sqlstate(e)
        if state is None:
            continue
        if state == "53100":
            return InsufficientStorage("the database's disk is full; retry once an operator "
                                       "has freed space", headers={"Retry-After": "60"})
        if state.startswith("22"):
            return _data_error(e, state)
        if state.startswith("23") or state == "21000":
            return Conflict("this request conflicts with stored data (a duplicate or a "
                            "missing reference); nothing was written")
        if state in _RETRY_CODES:
            return unavailable("the database could not serialise this request with "
                               "another one")
        if state == "57014":
            return unavailable("the query was cancelled (over the time limit or the "
                               "database is shutting down)")
        if state[:2] in _UNAVAILABLE_CLASSES:
            return unavailable("the database is unavailable")
        if state == "XX000" and str(e).startswith("transform:"):
            # PostGIS hands on PROJ's refusal: a coordinate outside the projection's domain
            return BadRequest("coordinates in this request lie outside the domain of their "
                              f"coordinate reference system ({str(e)[:200]})")
    if _is_connection_failure(exc):
        return unavailable("the database is unavailable")
    return None


def _is_connection_failure(exc: BaseException) -> bool:
    from sqlalchemy import exc as sa

    for e in _chain(exc):
        if isinstance(e, sa.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, sa.TimeoutError):  # no pooled connection came free in time
            return True
        if isinstance(e, sa.OperationalError):
            return True
        name = type(e).__module__.split(".", 1)[0]
        if name == "psycopg" and type(e).__name__ == "OperationalError":
            return True
        if name == "asyncpg" and type(e).__name__ == "InterfaceError" \
                and "connection" in str(e) and "closed" in str(e):
            return True
        if isinstance(e, ConnectionError | TimeoutError | OSError) and \
                not isinstance(e, FileNotFoundError | PermissionError | IsADirectoryError) \
                and _from_database_driver(e):
            return True
    return False


def handled_types() -> tuple[type[BaseException], ...]:
    """Exception classes whose instances may be one of the failures above."""
    import asyncpg
    import psycopg
    from sqlalchemy.exc import SQLAlchemyError

    return (OSError, SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError,
            psycopg.Error)


class ContainUnexpected:
    """Answer an unexpected exception with the 500 problem here, inside the app, rather than
    in Starlette's outermost ``ServerErrorMiddleware``: that one answers and then re-raises,
    and the server closes the connection, so the next request a client sends on it (kept
    alive) gets no answer at all. Exceptions of the framework's own signalling, and any
    raised after the response started, pass on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started or type(exc).__module__.split(".", 1)[0] in ("starlette", "fastapi"):
                raise
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            response = problem(500, "internal error; the server log has the details",
                               "internal", scope.get("path"))
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Every error the API answers, mapped to problem+json here and nowhere else."""
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
