"""One page of a collection: its query run on the read pool, and where the next one starts.

The OGC items endpoint and the domains' own list endpoints (``/city/objects``,
``/bim/elements``, ``/bim/spaces``) page the same way: :func:`read_page` runs
:func:`items_sql` in turn at the read pool's gate, and :func:`next_url` / :func:`prev_url`
give the links. A domain list passes its own filters as a Core statement (the source the
page is read from, :func:`restricted`) and reshapes the features into its own answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Select

from service.features.binds import Binds
from service.features.crs import DEFAULT
from service.features.engine import ReadPool
from service.features.execute import fetchrow
from service.features.query import COUNT_CAP, ItemsQuery, items_sql
from service.features.registry import Collection
from service.features.responses import page_url


@dataclass(frozen=True)
class Page:
    body: bytes  # the features as PostgreSQL wrote them, joined by commas
    returned: int
    matched: int | None  # numberMatched, when it was counted and is exact
    more: bool  # another page follows

    def features(self) -> list[dict[str, Any]]:
        """The features parsed, for an answer that is not the engine's own bytes."""
        return json.loads(b"[" + self.body + b"]")


def _filtered(q: ItemsQuery) -> bool:
    return bool(q.bbox or q.interval or q.equals or q.filter_sql)


def restricted(c: Collection, statement: Select[Any], binds: Binds) -> Collection:
    """``c`` read from ``statement`` (a Core SELECT of its source's rows, with the
    domain's filters) instead of its whole source. PostgreSQL folds such a subquery into
    the query around it, so the filters plan as if written in the page's own WHERE."""
    return replace(c, source=f"({binds.statement(statement)})")


async def read_page(reads: ReadPool, c: Collection, q: ItemsQuery,
                    binds: Binds | None = None) -> Page:
    binds = binds if binds is not None else Binds()
    row = await fetchrow(reads, items_sql(c, q, binds, q.crs or DEFAULT), binds.values)
    returned = row["returned"]
    if not q.count:
        return Page(row["body"], returned, None, row["more"])
    matched = row["matched"] if row["matched"] <= COUNT_CAP or not _filtered(q) else None
    more = returned == q.limit and (matched is None or q.offset + q.limit < matched)
    return Page(row["body"], returned, matched, more)


def next_url(url: str, q: ItemsQuery, page: Page) -> str | None:
    return page_url(url, q.offset + q.limit) if page.more else None


def prev_url(url: str, q: ItemsQuery) -> str | None:
    return page_url(url, max(0, q.offset - q.limit)) if q.offset > 0 else None


def list_links(url: str, q: ItemsQuery, page: Page,
               media_type: str | None = None) -> list[dict[str, str]]:
    """``self`` and, while more follow, ``next``: the links of a domain's list (with a
    ``type`` when given)."""
    typed = {"type": media_type} if media_type else {}
    links = [{"rel": "self", **typed, "href": url}]
    following = next_url(url, q, page)
    if following is not None:
        links.append({"rel": "next", **typed, "href": following})
    return links
