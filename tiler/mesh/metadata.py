"""EXT_structural_metadata property tables from per-feature property dicts.

One class per tile schema (``feature``) whose properties are the union of the keys of the
features in the tile. Column types are inferred: booleans, 32-bit integers, 64-bit floats,
strings; lists and objects are written as JSON text. Missing values use ``noData`` so a
property that only some features carry still has one column.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from tiler.glb import GltfBuilder

SCHEMA_ID = "twinbase_features"
CLASS_ID = "feature"
INT32_NODATA = -2147483648
FLOAT_NODATA = -3.4028234663852886e38  # lowest float32, far from any real attribute value
_IDENT = re.compile(r"[^A-Za-z0-9_]")


def identifier(name: str, taken: set[str]) -> str:
    """A schema identifier (``^[a-zA-Z_][a-zA-Z0-9_]*$``) for an attribute name, unique."""
    base = _IDENT.sub("_", name) or "_"
    if base[0].isdigit():
        base = "_" + base
    ident, n = base, 1
    while ident in taken:
        n += 1
        ident = f"{base}_{n}"
    taken.add(ident)
    return ident


def _kind(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "STRING"
    if all(isinstance(v, bool) for v in present):
        return "BOOLEAN" if len(present) == len(values) else "STRING"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present) and all(
        INT32_NODATA < v < 2**31 for v in present
    ):
        return "INT32"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present) and all(
        math.isfinite(v) for v in present
    ):
        return "FLOAT64"
    return "STRING"


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v, ensure_ascii=False, default=str)


def add_property_table(builder: GltfBuilder, rows: Sequence[dict[str, Any]]) -> None:
    """Write the rows as property table 0 (row i = feature id i) with its embedded schema."""
    keys: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for k in row:
            if k not in seen:
                seen.add(k)
                keys.append(k)
    taken: set[str] = set()
    class_props: dict[str, Any] = {}
    table_props: dict[str, Any] = {}
    for key in keys:
        values = [row.get(key) for row in rows]
        ident = identifier(key, taken)
        kind = _kind(values)
        missing = any(v is None for v in values)
        prop: dict[str, Any] = {"name": key}
        column: dict[str, Any] = {}
        if kind == "BOOLEAN":
            prop["type"] = "BOOLEAN"
            bits = np.packbits(np.array(values, bool), bitorder="little")
            column["values"] = builder.add_buffer_view(bits.tobytes(), align=8)
        elif kind == "INT32":
            prop.update(type="SCALAR", componentType="INT32")
            arr = np.array([INT32_NODATA if v is None else v for v in values], "<i4")
            column["values"] = builder.add_buffer_view(arr.tobytes(), align=8)
            if missing:
                prop["noData"] = INT32_NODATA
        elif kind == "FLOAT64":
            prop.update(type="SCALAR", componentType="FLOAT64")
            arr = np.array([FLOAT_NODATA if v is None else float(v) for v in values], "<f8")
            column["values"] = builder.add_buffer_view(arr.tobytes(), align=8)
            if missing:
                prop["noData"] = FLOAT_NODATA
        else:
            prop["type"] = "STRING"
            encoded = [_text(v).encode("utf-8") for v in values]
            if not any(encoded):
                # Zero bytes of text: a values view would have to be empty, which glTF
                # forbids, and one spare byte breaks the rule that the view is exactly as
                # long as the last string offset. The column is left out, which the
                # extension allows for a property that is not required; readers then take
                # the class's ``default`` ("" when every value was an empty string, none
                # when some were missing).
                if not missing:
                    prop["default"] = ""
                prop["required"] = False
                class_props[ident] = prop
                continue
            offsets = np.zeros(len(encoded) + 1, "<u4")
            np.cumsum([len(e) for e in encoded], out=offsets[1:])
            column["values"] = builder.add_buffer_view(b"".join(encoded), align=8)
            column["stringOffsets"] = builder.add_buffer_view(offsets.tobytes(), align=8)
            column["stringOffsetType"] = "UINT32"
            if missing:
                prop["noData"] = ""
        prop["required"] = not missing
        class_props[ident] = prop
        table_props[ident] = column
    builder.json["extensions"] = builder.json.get("extensions", {})
    builder.json["extensions"]["EXT_structural_metadata"] = {
        "schema": {"id": SCHEMA_ID, "classes": {CLASS_ID: {"properties": class_props}}},
        "propertyTables": [
            {"class": CLASS_ID, "count": len(rows), "properties": table_props}
        ],
    }
    builder.use_extension("EXT_structural_metadata")


def read_property_table(doc: dict[str, Any], binary: bytes) -> list[dict[str, Any]]:
    """Decode property table 0 back into row dicts keyed by the original names (tests, tools)."""
    ext = doc["extensions"]["EXT_structural_metadata"]
    table = ext["propertyTables"][0]
    props = ext["schema"]["classes"][table["class"]]["properties"]
    count = table["count"]
    rows: list[dict[str, Any]] = [{} for _ in range(count)]

    def view(i: int) -> bytes:
        v = doc["bufferViews"][i]
        return binary[v.get("byteOffset", 0): v.get("byteOffset", 0) + v["byteLength"]]

    for ident, prop in props.items():
        name = prop.get("name", ident)
        column = table["properties"].get(ident)
        if column is None:  # left out of the table: every row has the default, or nothing
            for row in rows:
                row[name] = prop.get("default")
            continue
        nodata = prop.get("noData")
        if prop["type"] == "STRING":
            data = view(column["values"])
            offs = np.frombuffer(view(column["stringOffsets"]), "<u4")
            vals: list[Any] = [data[offs[i]:offs[i + 1]].decode() for i in range(count)]
        elif prop["type"] == "BOOLEAN":
            bits = np.unpackbits(np.frombuffer(view(column["values"]), np.uint8),
                                 bitorder="little")
            vals = [bool(b) for b in bits[:count]]
        else:
            dt = {"INT32": "<i4", "FLOAT64": "<f8"}[prop["componentType"]]
            vals = np.frombuffer(view(column["values"]), dt)[:count].tolist()
        for row, v in zip(rows, vals, strict=True):
            row[name] = None if nodata is not None and v == nodata else v
    return rows
