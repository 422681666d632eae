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
