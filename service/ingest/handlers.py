"""Registers the ingest job of every dataset kind that can be ingested (importing a module
registers its handler)."""

import service.ingest.city  # noqa: F401
import service.ingest.ifc as _ifc  # noqa: F401
from service.ingest import lidar  # noqa: F401
