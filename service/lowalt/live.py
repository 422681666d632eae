"""Live status: the latest state of every drone, and a Server-Sent Events stream of changes.

The stream polls ``drone_state`` by its change sequence (``seq``) every ``stream_poll_s``
instead of holding a LISTEN connection per client: it works the same behind any number of
API processes. One poll per process serves all its clients (``service.lowalt.livefeed``):
each event is read and encoded once. Event ids are the sequence, so a client that
reconnects with ``Last-Event-ID`` misses nothing. A drone that
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

from sqlalchemy.ext.asyncio import AsyncEngine

from service.lowalt import store
from service.lowalt.ground import SEA_LEVEL_NOTE, SOURCES
from service.lowalt.livefeed import LAST_NOTICE, Poll, changes_since, feed_for, notices_since
from service.lowalt.settings import LowAltSettings


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


def _state_event(row: Any, silent_after: float) -> bytes:
    return _event("state", row.seq, state_feature(row, silent_after))


def _silent_event(row: Any, silent_after: float) -> bytes:
    return _event("silent", None, state_feature(row, silent_after))


async def stream(engine: AsyncEngine, s: LowAltSettings, last_id: int | None,
                 is_disconnected) -> AsyncIterator[bytes]:
    """A snapshot first (unless resuming), then every change and every drone gone silent."""
    after = s.silent_after_s
    yield f"retry: {int(s.stream_poll_s * 1000) + 1000}\n\n".encode()
    feed = feed_for(engine, s, lambda r: _state_event(r, after),
                    lambda r: _silent_event(r, after),
                    lambda r: _event("notice", r.seq, notice_event(r)))
    # subscribed before reading the snapshot or the changes since last_id: what the feed
    # brings after is skipped when this client read it itself (its seq is at most last_id,
    # or one this client sent)
    sub = await feed.subscribe()
    try:
        seen: set[int] = set()
        announced: set[int] = set()  # silent drones this client was told of itself
        async with engine.connect() as conn:
            if last_id is None:
                # notices take their ids from the states' sequence: the stream starts
                # after both
                nfloor = (await conn.execute(LAST_NOTICE)).scalar_one()
                last_id = max((await conn.execute(store.LAST_SEQ)).scalar_one(), nfloor)
                for r in (await conn.execute(store.ALL_STATES)).all():
                    f = state_feature(r, after)
                    if "silent" in f["properties"]["flags"]:
                        announced.add(r.drone_id)
                    seen.add(r.seq)
                    yield _event("state", r.seq, f)
            else:
                nfloor = last_id
                missed = [("state", r) for r in await changes_since(conn, last_id)] + [
                    ("notice", r) for r in await notices_since(conn, last_id)]
                for kind, r in sorted(missed, key=lambda e: e[1].seq):  # one order of ids
                    if kind == "notice":
                        nfloor = max(nfloor, r.seq)
                        yield _event("notice", r.seq, notice_event(r))
                        continue
                    seen.add(r.seq)
                    yield _state_event(r, after)
                for r in (await conn.execute(store.SILENT_STATES, {
                        "silent": timedelta(seconds=after)})).all():
                    announced.add(r.drone_id)
                    yield _silent_event(r, after)
            await conn.commit()
        floor = max(seen, default=last_id)
        idle = 0.0
        while not await is_disconnected():
            try:
                poll = await asyncio.wait_for(sub.queue.get(), s.stream_poll_s * 5 + 5)
            except TimeoutError:
                if sub.dropped:  # too far behind: the client comes back with its last id
                    return
                poll = Poll([], [], b"", [])
            sent = False
            for seq, event in poll.notices:
                if seq > nfloor:  # not already read by this client itself
                    nfloor = seq
                    sent = True
                    yield event
            if poll.states:
                if poll.states[0][0] > floor:  # all new to this client: the shared bytes
                    seen.clear()
                    sent = True
                    yield poll.blob
                else:
                    for (seq, _), event in zip(poll.states, poll.state_events, strict=True):
                        if seq > last_id and seq not in seen:
                            sent = True
                            yield event
                if announced:
                    announced.difference_update(d for _, d in poll.states)
            for drone_id, event in poll.silent:
                if drone_id not in announced:
                    sent = True
                    yield event
            announced.difference_update(d for d, _ in poll.silent)
            idle = 0.0 if sent else idle + s.stream_poll_s
            if idle >= s.stream_keepalive_s:  # keeps proxies from closing an idle stream
                idle = 0.0
                yield b": keep-alive\n\n"
    finally:
        feed.unsubscribe(sub)
