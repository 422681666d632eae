"""Run the Khronos glTF validator (npm ``gltf-validator``, via tests/js/validate_gltf.mjs).

Shared by the point-cloud and mesh tiler tests: ``validate_glb`` for one file or byte string,
``validate_glbs`` for many at once (one node start for the whole batch).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "js" / "validate_gltf.mjs"
# Severity codes of the validator: 0 error, 1 warning, 2 info, 3 hint.
SEVERITY = {0: "error", 1: "warning", 2: "info", 3: "hint"}


def node_available() -> bool:
    return shutil.which("node") is not None and (ROOT / "node_modules" / "gltf-validator").is_dir()


def validate_glbs(paths: list[Path | str], batch: int = 400) -> dict[str, dict]:
    """Validate files; return ``{path: {"errors", "warnings", "infos", "hints", "messages"}}``."""
    if not node_available():
        raise RuntimeError("node and node_modules/gltf-validator are needed (run `npm ci`)")
    out: dict[str, dict] = {}
    names = [str(p) for p in paths]
    for i in range(0, len(names), batch):
        part = names[i : i + batch]
        proc = subprocess.run(
            ["node", str(SCRIPT), *part], capture_output=True, text=True, cwd=ROOT, timeout=600
        )
        if proc.returncode != 0:
            raise RuntimeError(f"glTF validator failed: {proc.stderr.strip()[:2000]}")
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def validate_glb(path_or_bytes: Path | str | bytes) -> dict:
    """Validate one glb (a path, or the bytes of one): counts and messages of the report."""
    if isinstance(path_or_bytes, bytes | bytearray):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "content.glb"
            path.write_bytes(path_or_bytes)
            return next(iter(validate_glbs([path]).values()))
    return next(iter(validate_glbs([path_or_bytes]).values()))


def errors_of(report: dict) -> list[str]:
    """The error messages of one report, as ``CODE at pointer: message`` lines."""
    return [
        f"{m['code']} at {m.get('pointer', '')}: {m['message']}"
        for m in report["messages"]
        if m["severity"] == 0
    ]


_COMPONENT_BYTES = {"INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2, "INT32": 4, "UINT32": 4,
                    "INT64": 8, "UINT64": 8, "FLOAT32": 4, "FLOAT64": 8}


def property_table_issues(doc: dict, binary: bytes) -> list[str]:
    """EXT_structural_metadata byte-length rules the official 3D Tiles validator enforces,
    checked in Python (no node needed): every view exactly as long as the table's count and
    offsets say, aligned to its component size, offsets ascending, required columns present.
    Arrays are not written by the tiler and are reported as unchecked."""
    import numpy as np

    issues: list[str] = []
    ext = doc.get("extensions", {}).get("EXT_structural_metadata")
    if not ext:
        return issues
    views = doc["bufferViews"]
    for t, table in enumerate(ext.get("propertyTables", [])):
        props = ext["schema"]["classes"][table["class"]]["properties"]
        count = table["count"]
        columns = table.get("properties", {})
        for ident, prop in props.items():
            where = f"propertyTables/{t}/{ident}"
            column = columns.get(ident)
            if column is None:
                if prop.get("required"):
                    issues.append(f"{where}: required but not in the table")
                continue
            if prop.get("array"):
                issues.append(f"{where}: array property (not checked here)")
                continue

            def view(key: str, size: int, column: dict = column, where: str = where
                     ) -> tuple[dict, bytes]:
                v = views[column[key]]
                start = v.get("byteOffset", 0)
                if start % size:
                    issues.append(f"{where}/{key}: byteOffset {start} not aligned to {size}")
                return v, binary[start:start + v["byteLength"]]

            kind = prop["type"]
            if kind == "STRING":
                size = _COMPONENT_BYTES[column.get("stringOffsetType", "UINT32")]
                ov, raw = view("stringOffsets", size)
                if ov["byteLength"] != (count + 1) * size:
                    issues.append(f"{where}/stringOffsets: {ov['byteLength']} bytes, "
                                  f"{(count + 1) * size} expected")
                    continue
                offsets = np.frombuffer(raw, f"<u{size}")
                if (np.diff(offsets.astype(np.int64)) < 0).any():
                    issues.append(f"{where}/stringOffsets: not ascending")
                vv, _ = view("values", 1)
                if vv["byteLength"] != int(offsets[-1]):
                    issues.append(f"{where}/values: {vv['byteLength']} bytes, the last "
                                  f"string offset says {int(offsets[-1])}")
            elif kind == "BOOLEAN":
                vv, _ = view("values", 1)
                if vv["byteLength"] != -(-count // 8):
                    issues.append(f"{where}/values: {vv['byteLength']} bytes for {count} bits")
            else:
                comps = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9,
                         "MAT4": 16}.get(kind)
                size = _COMPONENT_BYTES.get(prop.get("componentType", ""))
                if comps is None or size is None:
                    issues.append(f"{where}: type {kind} not checked here")
                    continue
                vv, _ = view("values", size)
                if vv["byteLength"] != count * comps * size:
                    issues.append(f"{where}/values: {vv['byteLength']} bytes, "
                                  f"{count * comps * size} expected")
    return issues
