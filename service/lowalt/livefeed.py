"""One poll of ``drone_state`` per process, shared by every live stream client of it.

Each stream client polling by itself costs a query and the encoding of every changed state
per client per poll: at 1,000 drones and 50 dashboards that is 50,000 features a second to
read and write as JSON. The feed polls once (per engine, event loop and poll settings),
encodes each event once, and hands the same bytes to every subscriber's queue.

A subscriber takes its opening snapshot (or, resuming with ``Last-Event-ID``, the changes
since) itself, after subscribing, and skips what the feed then brings that it already sent
(events are ordered by ``seq``), so it misses nothing between the two. A subscriber that
falls :data:`QUEUE_POLLS` polls behind is dropped; its client reconnects with its last event
id and catches up from the table.

A state's ``seq`` is drawn when its report is written, and reports commit in a different
order than they draw: a poll can see seq 1050 while 1020 is not yet committed. The feed
therefore looks again at the last :data:`LOOKBACK` sequence numbers at each poll (the
numbers alone, from the index) and sends the states it had not sent (a state may so come
after a later one, each with its own id).

The feed also keeps which drones are silent, and announces each one once when it falls
silent (and again after it reports and falls silent again), and brings the fleet's notices
(``fleet_notices``: an emergency sent a drone, flights pre-empted), numbered from the same
sequence as the states.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.lowalt import store
from service.lowalt.dispatch_tables import fleet_notices
from service.lowalt.settings import LowAltSettings

log = logging.getLogger(__name__)

#: polls a subscriber may have waiting before it is dropped (its client reconnects)
QUEUE_POLLS = 30
#: sequence numbers looked at again at each poll, for reports committed after a later one
#: (at 1,000 reports a second: the last second)
LOOKBACK = 1000
#: rows a page of ``store.STATES_SINCE`` holds (the statement's limit)
PAGE = 1000

_nt = fleet_notices
NOTICES = select(_nt.c.seq, _nt.c.kind, _nt.c.plan_id, _nt.c.body, _nt.c.created_at
                 ).order_by(_nt.c.seq)
LAST_NOTICE = select(func.coalesce(func.max(_nt.c.seq), 0))


async def notices_since(conn: Any, seq: int) -> list[Any]:
    """Every notice after ``seq``, in seq order (notices are rare: no paging)."""
    return list((await conn.execute(NOTICES.where(_nt.c.seq > seq))).all())


@dataclass
class Poll:
    """What one poll found: state changes (seq, drone) in seq order, each encoded, all of
    them joined, the drones that fell silent, each encoded, and the new notices (seq,
    encoded)."""

    states: list[tuple[int, int]]
    state_events: list[bytes]
    blob: bytes
    silent: list[tuple[int, bytes]]
    notices: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass(eq=False)  # kept in a set, by identity
class Subscriber:
    queue: asyncio.Queue[Poll] = field(default_factory=lambda: asyncio.Queue(QUEUE_POLLS))
    dropped: bool = False


Encode = Callable[[Any], bytes]


async def changes_since(conn: Any, seq: int) -> list[Any]:
    """Every state changed after ``seq``, in seq order, page by page."""
    out: list[Any] = []
    while True:
        page = (await conn.execute(store.STATES_SINCE, {"seq": seq})).all()
        out.extend(page)
        if len(page) < PAGE:
            return out
        seq = page[-1].seq


class Feed:
    def __init__(self, engine: AsyncEngine, s: LowAltSettings, key: tuple[Any, ...],
                 encode_state: Encode, encode_silent: Encode, encode_notice: Encode) -> None:
        self.engine, self.s, self.key = engine, s, key
        self.encode_state, self.encode_silent = encode_state, encode_silent
        self.encode_notice = encode_notice
        self.last_notice = 0
        self.subscribers: set[Subscriber] = set()
        self.last_seq: int | None = None
        self.sent: set[int] = set()  # seqs sent, down to last_seq - LOOKBACK
        self.start_seq = 0  # where the feed started: what subscribers read themselves
        self.silent: set[int] = set()
        self.task: asyncio.Task[None] | None = None
        self.started = asyncio.Lock()
        self.polls = 0

    async def subscribe(self) -> Subscriber:
        async with self.started:
            if self.last_seq is None:
                # where the feed starts, and who is silent already, before the subscriber
                # reads its own snapshot: nothing falls between the two
                async with self.engine.connect() as conn:
                    self.last_seq = (await conn.execute(store.LAST_SEQ)).scalar_one()
                    self.start_seq = self.last_seq
                    self.last_notice = (await conn.execute(LAST_NOTICE)).scalar_one()
                    self.silent = {r.drone_id for r in (await conn.execute(
                        store.SILENT_STATES, {"silent": self._silent_after()})).all()}
            sub = Subscriber()
            self.subscribers.add(sub)
            if self.task is None or self.task.done():
                self.task = asyncio.get_running_loop().create_task(self._run())
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def _silent_after(self) -> timedelta:
        return timedelta(seconds=self.s.silent_after_s)

    async def _run(self) -> None:
        try:
            while self.subscribers:
                await asyncio.sleep(self.s.stream_poll_s)
                try:
                    poll = await self._poll()
                except Exception:  # a failed poll is tried again at the next one
                    log.exception("live feed poll failed")
                    continue
                self.polls += 1
                for sub in list(self.subscribers):
                    try:
                        sub.queue.put_nowait(poll)
                    except asyncio.QueueFull:
                        sub.dropped = True
                        self.subscribers.discard(sub)
        finally:
            self.last_seq = None  # a restart reads where the table is then
            self.sent.clear()
            if _FEEDS.get(self.key) is self:
                del _FEEDS[self.key]

    async def _poll(self) -> Poll:
        assert self.last_seq is not None
        async with self.engine.connect() as conn:
            lo = max(self.start_seq, self.last_seq - LOOKBACK)
            late = [q for q in (await conn.execute(store.SEQS_BETWEEN, {
                "lo": lo, "hi": self.last_seq})).scalars() if q not in self.sent]
            changed = (await conn.execute(store.STATES_OF_SEQS, {"seqs": late})).all() \
                if late else []
            changed += await changes_since(conn, self.last_seq)
            gone = (await conn.execute(store.SILENT_STATES,
                                       {"silent": self._silent_after()})).all()
            notes = await notices_since(conn, self.last_notice)
        notices = []
        for r in notes:
            self.last_notice = max(self.last_notice, r.seq)
            notices.append((r.seq, self.encode_notice(r)))
        states, events = [], []
        for r in changed:
            if r.seq in self.sent:
                continue
            self.sent.add(r.seq)
            self.last_seq = max(self.last_seq, r.seq)
            self.silent.discard(r.drone_id)
            states.append((r.seq, r.drone_id))
            events.append(self.encode_state(r))
        silent = []
        for r in gone:
            if r.drone_id not in self.silent:
                self.silent.add(r.drone_id)
                silent.append((r.drone_id, self.encode_silent(r)))
        low = self.last_seq - LOOKBACK
        self.sent = {q for q in self.sent if q > low}
        return Poll(states, events, b"".join(events), silent, notices)


_FEEDS: dict[tuple[Any, ...], Feed] = {}


def feed_for(engine: AsyncEngine, s: LowAltSettings, encode_state: Encode,
             encode_silent: Encode, encode_notice: Encode) -> Feed:
    """The feed of this engine, event loop and poll settings (made on first use; it stops
    polling, and is forgotten, when its last subscriber leaves)."""
    key = (id(engine), id(asyncio.get_running_loop()), s.stream_poll_s, s.silent_after_s)
    feed = _FEEDS.get(key)
    if feed is None or feed.engine is not engine:
        feed = _FEEDS[key] = Feed(engine, s, key, encode_state, encode_silent, encode_notice)
    return feed
