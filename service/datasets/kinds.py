"""Which dataset kind a file is, from its name (the content is checked by the ingest)."""

from __future__ import annotations

from service.core.errors import Unprocessable

_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".copc.laz", "lidar"),
    (".las", "lidar"),
    (".laz", "lidar"),
    (".city.jsonl", "cityjson"),
    (".city.json", "cityjson"),
    (".jsonl", "cityjson"),
    (".json", "cityjson"),
    (".gml", "citygml"),
    (".xml", "citygml"),
    (".ifc", "ifc"),
    (".ifczip", "ifc"),
)
ALL_KINDS = ("lidar", "cityjson", "citygml", "ifc")


def kind_for(filename: str, declared: str | None = None) -> str:
    """The dataset kind for an upload; ``declared`` (from the request) wins."""
    if declared:
        if declared not in ALL_KINDS:
            raise Unprocessable(
                f"unknown dataset kind {declared!r}; kinds are {', '.join(ALL_KINDS)}"
            )
        return declared
    lower = filename.lower()
    for suffix, kind in _SUFFIXES:
        if lower.endswith(suffix):
            return kind
    raise Unprocessable(
        f"cannot tell what {filename!r} holds from its name: expected .las/.laz (LiDAR), "
        ".json/.city.json/.city.jsonl (CityJSON), .gml (CityGML) or .ifc/.ifczip (IFC), "
        "or give the kind in the upload metadata"
    )


def ingest_job_kind(kind: str) -> str:
    return f"ingest_{kind}"
