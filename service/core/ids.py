"""Integer parameters bounded by the database columns they are compared with.

Ids are ``bigint`` and tileset versions ``integer``: a larger number cannot name a row, and
handed to the driver it overflows. As types, the bounds are checked where the parameter is
read (a 422 naming it) and published in the OpenAPI document.
"""

from __future__ import annotations

import re
from typing import Annotated

from annotated_types import Ge, Le

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

Id = Annotated[int, Ge(1), Le(INT64_MAX)]  # a bigint identity column
Version = Annotated[int, Ge(1), Le(INT32_MAX)]  # tilesets.version (integer)
BigCount = Annotated[int, Ge(0), Le(INT64_MAX)]

_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")


def header_int(value: str, name: str, maximum: int = INT64_MAX) -> int:
    """A non-negative integer header (``Upload-Length``, ``Last-Event-ID``): ASCII digits
    only. ``str.isdigit`` and ``int`` also take other scripts' digits and superscripts."""
    from service.core.errors import BadRequest

    if not _ASCII_DIGITS.fullmatch(value) or int(value) > maximum:
        raise BadRequest(f"{name} must be a whole number from 0 to {maximum} in ASCII "
                         f"digits, not {value[:40]!r}")
    return int(value)
