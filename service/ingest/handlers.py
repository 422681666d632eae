"""Registers the ingest job of every dataset kind that can be ingested (importing a module
registers its handler)."""

from service.ingest import lidar  # noqa: F401
