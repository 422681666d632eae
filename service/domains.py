"""The domains this service is assembled from: what each one contributes to the app.

``app.py`` mounts the routers and lists the collections; the job worker reads
``JOB_HANDLERS`` by dotted path (``Settings.job_handlers``), so a process that only serves
the API never imports a handler or the libraries behind it. Adding a domain is a package
under ``service/`` with its tables, store, ingest, router and collections, and a line here.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.core.db import sync_engine
from service.core.partitions import TimePartitioned, maintain
from service.core.settings import Settings
from service.features.registry import Collection
from service.uploads.chores import CHORES as UPLOAD_CHORES

# job kind -> "module:function"
JOB_HANDLERS: dict[str, str] = {
    "ingest_lidar": "service.lidar.ingest:ingest_lidar",
    "lidar_chunk": "service.lidar.chunks:tile_lidar_chunk",
    "ingest_cityjson": "service.cim.ingest:ingest_city",
    "ingest_citygml": "service.cim.ingest:ingest_city",
    "ingest_ifc": "service.bim.ingest:ingest_ifc",
    "model_survey": "service.cim.fly:model_survey",
    "selfcheck": "service.jobs.selfcheck:selfcheck",
}


def partitioned() -> list[TimePartitioned]:
    """The domains' tables partitioned by time (kept ahead and trimmed by a chore)."""
    from service.layers.tables import TRAFFIC_PARTITIONS, WATER_PARTITIONS
    from service.lowalt.tables import TELEMETRY_PARTITIONS

    return [TELEMETRY_PARTITIONS, TRAFFIC_PARTITIONS, WATER_PARTITIONS]


def maintain_partitions(url: str, settings: Settings) -> int:
    """Chore: partitions made ahead of time, and those past their retention dropped."""
    with sync_engine(url).begin() as conn:
        report = maintain(conn, partitioned(), settings)
    return sum(r["made"] + len(r["dropped"]) for r in report.values())


def settle_failed_chunks(url: str, settings: Settings) -> int:
    """Chore: the split LiDAR ingests one of whose chunk jobs failed for good, failed."""
    from service.lidar.chunks import settle_failed_chunks as settle

    return settle(url, settings)


#: the periodic clean-ups the worker's reaper runs
CHORES = (*UPLOAD_CHORES, maintain_partitions, settle_failed_chunks)


def collections() -> list[Collection]:
    """Every feature collection, in the order ``/collections`` lists them."""
    from service.bim.collections import COLLECTIONS as BIM
    from service.cim.collections import COLLECTIONS as CIM
    from service.layers.collections import COLLECTIONS as LAYERS
    from service.lidar.collections import COLLECTIONS as LIDAR
    from service.lowalt.collections import COLLECTIONS as LOWALT

    return [*LAYERS, *LIDAR, *CIM, *BIM, *LOWALT]


def routers() -> list[APIRouter]:
    """The domains' routers, after the platform's."""
    from service.bim.router import router as bim
    from service.cim.classified import router as classified
    from service.cim.router import router as cim
    from service.cim.router import survey_router
    from service.dashboard.router import router as dashboard
    from service.layers.router import router as layers
    from service.lowalt.api import router as lowalt

    return [layers, cim, survey_router, classified, bim, lowalt, dashboard]
