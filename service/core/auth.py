"""API keys and roles.

A key is shown once when created; the database keeps its SHA-256 only (keys are 32 random
bytes, so a fast hash is enough: there is nothing to brute-force). Roles:

* viewer   - reads tiles and layers when reads need a key
* planner  - reads, plus planning queries
* operator - reads, uploads and ingests surveys, files routes
* admin    - everything, including key management

Each process keeps the keys it found valid for ``KEY_CACHE_SECONDS``, by hash: a ground
station posting telemetry every second paid a pool checkout, BEGIN, a SELECT and ROLLBACK for
its key on every POST (benchmarks/RESULTS.md). A key revoked by this process (over the API)
is refused here at once; another process (another API worker, `twinbase keys revoke`) refuses
it within ``KEY_CACHE_SECONDS``. Unknown and revoked keys are never kept: each is looked up.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
from service.core.tables import ROLES, api_keys

KEY_PREFIX = "tb_"

READ_ROLES = frozenset(ROLES)
WRITE_ROLES = frozenset({"operator", "admin"})
PLAN_ROLES = frozenset({"planner", "operator", "admin"})
ADMIN_ROLES = frozenset({"admin"})


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(conn: Connection, name: str, role: str) -> str:
    """Store a new key for ``name`` and return it (the only time it is seen)."""
    if role not in ROLES:
        raise Unprocessable(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not name or len(name) > 128:
        raise Unprocessable("key name must be 1 to 128 characters")
    exists = conn.execute(select(api_keys.c.id).where(api_keys.c.name == name)).first()
    if exists:
        raise Conflict(f"a key named {name!r} exists already")
    key = new_key()
    conn.execute(insert(api_keys).values(name=name, role=role, key_hash=hash_key(key),
                                         prefix=key[:10]))
    return key


def all_keys() -> Select:
    """Every key's row (names, roles, prefixes, revocation), oldest first."""
    return select(api_keys).order_by(api_keys.c.id)


# How long a process trusts a key it found valid without asking the database again: the
# bound on a revocation made by another process reaching this one.
KEY_CACHE_SECONDS = 2.0
KEY_CACHE_MAX = 10_000  # distinct keys kept; past that the cache starts over
# (database URL, key hash) -> (principal, monotonic time it was looked up)
_key_cache: dict[tuple[str, str], tuple[Principal, float]] = {}
# names of keys this process set out to revoke: never served from the cache again, so the
# revocation holds here from its commit on (a key's name is never reused, see create_key)
_revoked_here: set[str] = set()


def forget_keys() -> None:
    """Drop every cached key: the next request of each is checked in the database."""
    _key_cache.clear()


def revoke_key(conn: Connection, name: str, *, by: str | None = None) -> None:
    """Revoke the key ``name`` (``by``: the name of the key asking, over the API).

    A key cannot revoke itself, and the last active admin key stays: without one, keys
    could only be managed from the server's command line again."""
    # before the change commits, so no request of this process takes the key from the cache
    # once it is revoked (one refused below just makes that key looked up each time)
    _revoked_here.add(name)
    if by is not None and by == name:
        raise Conflict(f"a key cannot revoke itself ({name!r}); revoke it with another "
                       "admin key, or with `twinbase keys revoke` on the server")
    # the active admin keys first, always in the same order, so two admins revoking each
    # other at once are serialised (the second sees one admin left) instead of deadlocking
    admins = conn.execute(
        select(api_keys.c.name).where(api_keys.c.role == "admin",
                                      api_keys.c.revoked_at.is_(None))
        .order_by(api_keys.c.id).with_for_update()).scalars().all()
    if name in admins and len(admins) == 1:
        raise Conflict(f"{name!r} is the last active admin key; create another admin key "
                       "before revoking it")
    result = conn.execute(
        update(api_keys).where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    if result.rowcount == 0:
        raise NotFound(f"no active key named {name!r}")


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None


def presented_key(request: Request) -> str | None:
    return key_from_headers(request.headers)


async def principal_for(engine: AsyncEngine, key: str) -> Principal | None:
    cache_key = (str(engine.url), hash_key(key))
    cached = _key_cache.get(cache_key)
    if cached is not None:
        principal, since = cached
        if time.monotonic() - since < KEY_CACHE_SECONDS and principal.name not in _revoked_here:
            return principal
        _key_cache.pop(cache_key, None)
    looked_up = time.monotonic()  # the row's age counts from before the SELECT
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(api_keys.c.name, api_keys.c.role).where(
                    api_keys.c.key_hash == cache_key[1], api_keys.c.revoked_at.is_(None)
                )
            )
        ).first()
    if row is None:
        return None
    principal = Principal(row.name, row.role)
    if KEY_CACHE_SECONDS > 0 and row.name not in _revoked_here:
        if len(_key_cache) >= KEY_CACHE_MAX:
            _key_cache.clear()
        _key_cache[cache_key] = (principal, looked_up)
    return principal


async def current_principal(request: Request) -> Principal | None:
    """The caller's key, checked; None when no key was sent. A wrong key is always a 401."""
    if hasattr(request.state, "principal"):
        return request.state.principal
    key = presented_key(request)
    principal = None
    if key is not None:
        principal = await principal_for(request.app.state.engine, key)
        if principal is None:
            raise Unauthorized("the API key is not valid (unknown or revoked)")
    request.state.principal = principal
    return principal


def require(roles: frozenset[str], what: str):
    async def dependency(
        request: Request, principal: Annotated[Principal | None, Depends(current_principal)]
    ) -> Principal:
        if principal is None:
            raise Unauthorized(f"{what} needs an API key (Authorization: Bearer <key>)")
        if principal.role not in roles:
            raise Forbidden(
                f"{what} needs the role {' or '.join(sorted(roles))}; "
                f"key {principal.name!r} has {principal.role!r}"
            )
        return principal

    dependency.required_roles = roles  # type: ignore[attr-defined]  # read by the API doc
    return dependency


async def reader(
    request: Request, principal: Annotated[Principal | None, Depends(current_principal)]
) -> Principal | None:
    """Reads are public unless the deployment says they need a viewer key."""
    if request.app.state.settings.read_requires_key and principal is None:
        raise Unauthorized("reading needs an API key on this deployment (role viewer or above)")
    return principal


Reader = Annotated[Principal | None, Depends(reader)]
Writer = Annotated[Principal, Depends(require(WRITE_ROLES, "this change"))]
Admin = Annotated[Principal, Depends(require(ADMIN_ROLES, "key management"))]
