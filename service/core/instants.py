"""Instants as the database stores them: aware, in UTC, within the range both can hold.

Python's ``datetime`` ends at 9999-12-31 in its own offset, so ``9999-12-31T23:59:59-23:59``
parses but is 10000-01-01 in UTC: converting it overflows, in the driver or in any
arithmetic on it. Normalising to UTC where an instant enters turns that into a 4xx.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator


class InstantOutOfRange(ValueError):
    pass


def to_utc(moment: datetime) -> datetime:
    """``moment`` in UTC (naive means UTC); ValueError when UTC cannot hold it."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InstantOutOfRange(
            f"{moment.isoformat()} is outside the years 1 to 9999 once in UTC") from None


# a request parameter or body field: an instant beyond the range is a 422 naming it
UtcDatetime = Annotated[datetime, AfterValidator(to_utc)]


# far enough from the calendar's ends that windows, margins and time steps computed from an
# instant (minutes to days) cannot overflow either
_ROOM = timedelta(days=366)
EARLIEST = datetime.min.replace(tzinfo=UTC) + _ROOM
LATEST = datetime.max.replace(tzinfo=UTC) - _ROOM


def to_utc_with_room(moment: datetime) -> datetime:
    """Aware instants in UTC; a naive one is left naive for its route to refuse or read."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment
    moment = to_utc(moment)
    if not EARLIEST <= moment <= LATEST:
        raise InstantOutOfRange(f"{moment.isoformat()} is too close to the calendar's ends "
                                f"(years {EARLIEST.year} to {LATEST.year} are accepted)")
    return moment


# an instant the service computes with (flight windows, telemetry)
WorkingDatetime = Annotated[datetime, AfterValidator(to_utc_with_room)]
