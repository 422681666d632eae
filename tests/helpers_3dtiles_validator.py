"""The official CesiumGS 3D Tiles validator, run on a tileset on disk.

It is not published on npm under its own name, so it comes as a built copy beside the project
(``../shared/tools/3d-tiles-validator``); ``./run test`` installs its production dependencies
once per version of that copy into the user's cache and links it as
``.cache/3d-tiles-validator``. ``TWINBASE_3DTILES_VALIDATOR`` points elsewhere.

Without it the tests that need it skip, except in CI (``CI=true``), where they fail: a check
that silently does not run is no check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = Path(os.environ.get("TWINBASE_3DTILES_VALIDATOR",
                                ROOT / ".cache" / "3d-tiles-validator"))


def validator_main() -> Path:
    """``build/main.js`` of the installed validator; skips (fails in CI) when it is missing."""
    main = VALIDATOR / "build" / "main.js"
    if shutil.which("node") and main.is_file() and (VALIDATOR / "node_modules").is_dir():
        return main
    why = (f"the official 3D Tiles validator is not installed at {VALIDATOR} (./run test "
           "installs it from ../shared/tools/3d-tiles-validator; or set "
           "TWINBASE_3DTILES_VALIDATOR to an installed copy)")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(why)
    pytest.skip(why)


def validate_tileset(tileset: Path) -> dict[str, Any]:
    """The validator's report on ``tileset`` (a tileset.json, with its content and external
    tilesets beside it): ``numErrors``, ``numWarnings``, ``issues``."""
    main = validator_main()
    with tempfile.TemporaryDirectory(prefix="twinbase-3dtv-") as tmp:
        report = Path(tmp) / "report.json"
        done = subprocess.run(["node", str(main), "--tilesetFile", str(tileset),
                               "--reportFile", str(report)],
                              capture_output=True, text=True, timeout=600, cwd=VALIDATOR)
        assert report.is_file(), (f"the validator wrote no report (exit {done.returncode}): "
                                  f"{done.stderr[-2000:]}{done.stdout[-2000:]}")
        return json.loads(report.read_text())


def flatten(issues: list[dict[str, Any]], depth: int = 0) -> list[str]:
    """Errors and warnings with their causes (content issues nest) as ``SEVERITY TYPE at
    path: message``; infos (e.g. "cannot validate EXT_mesh_features") are left out."""
    out: list[str] = []
    for issue in issues:
        if issue.get("severity") == "INFO":
            continue
        out.append(f"{'  ' * depth}{issue.get('severity')} {issue.get('type')} at "
                   f"{issue.get('path')}: {str(issue.get('message'))[:400]}")
        out.extend(flatten(issue.get("causes") or [], depth + 1))
    return out


def assert_no_errors(tileset: Path) -> dict[str, Any]:
    """Validate and fail with every issue listed when there is an error; return the report."""
    report = validate_tileset(tileset)
    assert report["numErrors"] == 0, "\n".join(flatten(report["issues"]))
    return report
