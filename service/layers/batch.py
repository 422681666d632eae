"""Bulk bodies (JSON array, NDJSON, CSV) to validated rows, all or nothing.

Every row is checked before anything is written; if any row is bad the whole batch is
refused with the row numbers (1-based, in body order) and the reasons, so a client fixes
its file and sends it again instead of guessing what was kept."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from service.core.errors import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from service.core.ids import INT64_MAX
from service.core.instants import to_utc

MAX_ROWS = 200_000
MAX_BYTES = 64 * 1024 * 1024
MAX_REPORTED = 100


@dataclass(frozen=True)
class Field:
    name: str
    type: Literal["integer", "number", "datetime"]
    required: bool = False
    min: float | None = None
    max: float | None = None


def read_rows(body: bytes, content_type: str) -> list[dict[str, Any]]:
    if len(body) > MAX_BYTES:
        raise PayloadTooLarge(f"a batch is at most {MAX_BYTES // 2**20} MiB; split it")
    kind = content_type.split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8") from None
    if kind in ("application/json", ""):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"the body is not JSON: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("observations"), list):
            data = data["observations"]
        if not isinstance(data, list):
            raise BadRequest("a JSON batch is an array of objects (or {\"observations\": [...]})")
        rows = data
    elif kind in ("application/x-ndjson", "application/ndjson", "application/jsonl",
                  "application/jsonlines", "application/json-seq"):
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise Unprocessable("batch refused: line is not JSON", errors=[
                    {"row": n, "reasons": [str(exc)]}]) from None
    elif kind in ("text/csv", "application/csv"):
        reader = csv.DictReader(io.StringIO(text))
        rows = [{k.strip(): (v.strip() if isinstance(v, str) else v)
                 for k, v in row.items() if k is not None} for row in reader]
    else:
        raise UnsupportedMediaType(
            f"send application/json, application/x-ndjson or text/csv, not {kind!r}")
    if not rows:
        raise BadRequest("the batch is empty")
    if len(rows) > MAX_ROWS:
        raise PayloadTooLarge(f"a batch is at most {MAX_ROWS} rows; split it")
    return rows


def _convert(field: Field, raw: Any) -> Any:
    if field.type == "datetime":
        if not isinstance(raw, str):
            raise ValueError("must be an RFC 3339 date-time string")
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        if value.tzinfo is None:
            raise ValueError("needs a time zone (e.g. Z or +08:00)")
        return to_utc(value)
    if isinstance(raw, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(raw, str):
        raw = float(raw)
    if not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ValueError("must be a finite number")
    if field.type == "integer":
        if float(raw) != int(raw):
            raise ValueError("must be a whole number")
        raw = int(raw)
        if not -INT64_MAX <= raw <= INT64_MAX:
            raise ValueError("is beyond a 64-bit integer")
    else:
        raw = float(raw)
    if field.min is not None and raw < field.min:
        raise ValueError(f"must be at least {field.min:g}")
    if field.max is not None and raw > field.max:
        raise ValueError(f"must be at most {field.max:g}")
    return raw


def validate(rows: list[Any], fields: tuple[Field, ...]) -> tuple[list[dict[str, Any]],
                                                                   list[dict[str, Any]]]:
    """Typed rows, and errors as [{"row": n, "reasons": [...]}]."""
    known = {f.name for f in fields}
    good: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for n, raw in enumerate(rows, start=1):
        reasons: list[str] = []
        out: dict[str, Any] = {}
        if not isinstance(raw, dict):
            errors.append({"row": n, "reasons": ["must be an object"]})
            continue
        unknown = sorted(set(raw) - known)
        if unknown:
            reasons.append(f"unknown field(s): {', '.join(unknown)}")
        for field in fields:
            value = raw.get(field.name)
            if value is None or value == "":
                if field.required:
                    reasons.append(f"{field.name} is required")
                out[field.name] = None
                continue
            try:
                out[field.name] = _convert(field, value)
            except (ValueError, TypeError, OverflowError) as exc:
                reasons.append(f"{field.name}={value!r}: {exc}")
        if reasons:
            errors.append({"row": n, "reasons": reasons})
        else:
            out["_row"] = n  # the row number in the body, for later checks' reports
            good.append(out)
    return good, errors


def refuse(errors: list[dict[str, Any]], total: int) -> None:
    if errors:
        errors.sort(key=lambda e: e["row"])
        raise Unprocessable(
            f"batch refused: {len(errors)} of {total} rows are invalid; nothing was written",
            errors=errors[:MAX_REPORTED], invalid_rows=len(errors))
