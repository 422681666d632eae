"""Client file names are only labels: they never become paths without this cleaning."""

from __future__ import annotations

import re
import unicodedata

from service.core.errors import BadRequest

_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)
MAX_NAME = 200


def safe_filename(name: str) -> str:
    """Last path component only, no control or separator characters, no leading dots.

    ``../../etc/passwd`` becomes ``passwd``; ``C:\\survey\\flight 1.laz`` becomes
    ``flight_1.laz``; Chinese names are kept (``龙岗_航测.laz``).
    """
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE.sub("_", name).strip("._ ")
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_NAME - len(ext) - 1] + dot + ext) if dot and len(ext) < 16 \
            else name[:MAX_NAME]
    if not name:
        raise BadRequest("the file name is empty once path parts and unsafe characters "
                         "are removed; send a plain file name such as survey.laz")
    return name
