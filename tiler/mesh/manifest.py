"""The manifest of a mesh tileset: tile key -> content file, its hash and the features in it.

Content files are named by their SHA-256, so an unchanged tile keeps its name from one version
to the next and the service can hard-link it into the new version directory instead of
rewriting it. :func:`diff_manifests` says which tiles changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT = "twinbase-mesh-manifest"


@dataclass
class ManifestDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def rewritten(self) -> list[str]:
        """Tiles whose content had to be written anew."""
        return self.added + self.changed


def diff_manifests(previous: dict[str, Any] | None, current: dict[str, Any]) -> ManifestDiff:
    """Compare two manifests tile by tile (by key and content hash)."""
    old = (previous or {}).get("tiles", {})
    new = current.get("tiles", {})
    diff = ManifestDiff()
    for key, tile in new.items():
        if key not in old:
            diff.added.append(key)
        elif old[key]["sha256"] != tile["sha256"]:
            diff.changed.append(key)
        else:
            diff.unchanged.append(key)
    diff.removed = [k for k in old if k not in new]
    return diff


def load_manifest(path: str | Path) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not a mesh tileset manifest")
    return doc
