"""Live status: the latest state of every drone, and a Server-Sent Events stream of changes.

The stream polls ``drone_state`` by its change sequence (``seq``) every ``stream_poll_s``
instead of holding a LISTEN connection per client: it works the same behind any number of
API processes and costs one indexed query per client per second. Event ids are the
sequence, so a client that reconnects with ``Last-Event-ID`` misses nothing. A drone that
falls silent is announced once with the ``silent`` flag, and again when it reports.

Notices (``notice`` events: an emergency sent a drone, flights pre-empted) come from
``fleet_notices``, numbered from the same sequence as the states, so the one event id and
``Last-Event-ID`` cover both: a client resuming gets the notices it missed too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.lowalt import store
from service.lowalt.dispatch_tables import fleet_notices
from service.lowalt.ground import SEA_LEVEL_NOTE, SOURCES
from service.lowalt.settings import LowAltSettings

_nt = fleet_notices
NOTICES = select(_nt.c.seq, _nt.c.kind, _nt.c.plan_id, _nt.c.body, _nt.c.created_at
                 ).order_by(_nt.c.seq)
LAST_NOTICE = select(func.coalesce(func.max(_nt.c.seq), 0))


def notice_event(row: Any) -> dict[str, Any]:
    return {"kind": row.kind, "plan_id": row.plan_id, "at": row.created_at.isoformat(),
            **row.body}


def state_feature(row: Any, silent_after: float) -> dict[str, Any]:
    row = SimpleNamespace(**row._mapping)  # Row.t is SQLAlchemy's typing helper, not a column
    flags = list(row.flags)
    if row.age_s > silent_after:
        flags.append("silent")
    return {
        "type": "Feature", "id": row.drone_id,
        "geometry": {"type": "Point", "coordinates": [row.lon, row.lat, row.h]},
        "properties": {
            "drone_id": row.drone_id, "serial": row.serial, "operator": row.operator,
            "class": row.drone_class, "t": row.t.isoformat(), "speed_ms": row.speed_ms,
            "track_deg": row.track_deg, "battery_pct": row.battery_pct,
            "route_id": row.route_id, "height_agl_m": row.height_agl_m,
            "ground_reference": row.ground_source,
            **({"ground_note": SEA_LEVEL_NOTE} if row.ground_source == SOURCES[2] else {}),
            "received_at": row.received_at.isoformat(), "age_s": round(row.age_s, 2),
            "flags": flags, "conforming": not flags,
        },
    }


async def all_states(engine: AsyncEngine, s: LowAltSettings) -> dict[str, Any]:
    async with engine.connect() as conn:
        rows = (await conn.execute(store.ALL_STATES)).all()
    feats = [state_feature(r, s.silent_after_s) for r in rows]
    return {"type": "FeatureCollection", "features": feats, "numberReturned": len(feats)}


def _event(kind: str, seq: int | None, data: dict[str, Any]) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def stream(engine: AsyncEngine, s: LowAltSettings, last_id: int | None,
                 is_disconnected) -> AsyncIterator[bytes]:
    """A snapshot first (unless resuming), then every change and every drone gone silent."""
    silent: set[int] = set()
    yield f"retry: {int(s.stream_poll_s * 1000) + 1000}\n\n".encode()
    async with engine.connect() as conn:
        if last_id is None:
            last_id = max((await conn.execute(store.LAST_SEQ)).scalar_one(),
                          (await conn.execute(LAST_NOTICE)).scalar_one())
            for r in (await conn.execute(store.ALL_STATES)).all():
                f = state_feature(r, s.silent_after_s)
                if "silent" in f["properties"]["flags"]:
                    silent.add(r.drone_id)
                yield _event("state", r.seq, f)
        await conn.commit()
    idle = 0.0
    while not await is_disconnected():
        async with engine.connect() as conn:
            changed = (await conn.execute(store.STATES_SINCE, {"seq": last_id})).all()
            gone = (await conn.execute(store.SILENT_STATES, {
                "silent": timedelta(seconds=s.silent_after_s)})).all()
            notes = (await conn.execute(
                NOTICES.where(_nt.c.seq > last_id).limit(100))).all()
        sent = False
        # one order of ids for states and notices, so a resumed stream skips neither; a
        # full page of one kind bounds what is sent of the other this time
        cut = min([rows[-1].seq for rows, n in ((changed, 1000), (notes, 100))
                   if len(rows) >= n], default=None)
        merged = sorted([("state", r) for r in changed] + [("notice", r) for r in notes],
                        key=lambda e: e[1].seq)
        for kind, r in merged:
            if cut is not None and r.seq > cut:
                break
            last_id = max(last_id, r.seq)
            sent = True
            if kind == "notice":
                yield _event("notice", r.seq, notice_event(r))
                continue
            silent.discard(r.drone_id)
            yield _event("state", r.seq, state_feature(r, s.silent_after_s))
        for r in gone:
            if r.drone_id not in silent:
                silent.add(r.drone_id)
                sent = True
                yield _event("silent", None, state_feature(r, s.silent_after_s))
        idle = 0.0 if sent else idle + s.stream_poll_s
        if idle >= s.stream_keepalive_s:  # keeps proxies from closing an idle stream
            idle = 0.0
            yield b": keep-alive\n\n"
        await asyncio.sleep(s.stream_poll_s)
