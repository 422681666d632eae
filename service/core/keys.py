"""API key management (admin only). The CLI does the same with `twinbase keys`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from service.core.auth import Admin, create_key, revoke_key
from service.core.db import sync_engine
from service.core.tables import ROLES, api_keys

router = APIRouter(prefix="/keys", tags=["keys"])


def _in_transaction(request: Request, func: Callable[..., Any], *args: Any) -> Any:
    """Key functions are shared with the CLI and take a synchronous connection."""
    with sync_engine(request.app.state.database_url).begin() as conn:
        return func(conn, *args)


class KeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=128, description="who or what uses the key")
    role: str = Field(description=f"one of {', '.join(ROLES)}")


@router.post("", status_code=201, summary="Create a key; the answer is the only copy of it")
async def create(body: KeyRequest, request: Request, principal: Admin) -> dict[str, str]:
    key = await asyncio.to_thread(_in_transaction, request, create_key, body.name, body.role)
    request.state.audit_detail = {"key": body.name, "role": body.role}
    return {"name": body.name, "role": body.role, "key": key}


@router.get("", summary="List keys (names, roles, prefixes; never the keys)")
async def list_keys(request: Request, principal: Admin) -> list[dict[str, Any]]:
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(
            select(api_keys.c.name, api_keys.c.role, api_keys.c.prefix, api_keys.c.created_at,
                   api_keys.c.revoked_at).order_by(api_keys.c.id))).mappings().all()
    return [dict(r) for r in rows]


@router.delete("/{name}", status_code=204,
               summary="Revoke a key (not the caller's own, nor the last admin key: 409)")
async def revoke(name: str, request: Request, principal: Admin) -> None:
    await asyncio.to_thread(_in_transaction, request, partial(revoke_key, by=principal.name),
                            name)
    request.state.audit_detail = {"key": name}
