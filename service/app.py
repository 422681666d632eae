"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service import __version__, api_doc, domains
from service.core import health, keys
from service.core.db import make_async_engine
from service.core.faults import ContainUnexpected, install_error_handlers
from service.core.observe import ObserveMiddleware
from service.core.settings import Settings, get_settings
from service.datasets import router as datasets
from service.features import router as features
from service.features.registry import Catalog
from service.intake import UploadIntake
from service.jobs import router as jobs
from service.terrain import router as terrain
from service.tilesets import router as tiles
from service.uploads import tus
from service.web.compression import TextGZipMiddleware
from service.web.edge import HeadMiddleware, PublicUrlMiddleware
from service.web.guard import GuardMiddleware
from service.web.textguard import NulGuardMiddleware

log = logging.getLogger(__name__)

DESCRIPTION = """
Twinbase is the 3D spatial base of a city digital twin: drone LiDAR, BIM (IFC) and CIM
(CityJSON, CityGML) in, OGC 3D Tiles and layers out, on PostgreSQL + PostGIS.

Reads are public unless the deployment requires a key; writes need an API key with the role
`operator` or `admin`, sent as `Authorization: Bearer <key>`. Errors are
`application/problem+json` (RFC 9457). Uploads speak tus 1.0.0 at `/uploads`.
"""


def create_app(settings: Settings | None = None, database_url: str | None = None,
               *, in_process_worker: bool | None = None) -> FastAPI:
    settings = settings or get_settings()
    url = database_url or settings.database_url
    if url is None:
        raise RuntimeError("create_app needs a database URL (twinbase serve starts one)")
    run_worker = settings.in_process_worker if in_process_worker is None else in_process_worker

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = make_async_engine(url)
        worker_task = None
        if run_worker:
            from service.jobs.worker import run_worker as worker_main

            worker_task = asyncio.create_task(
                worker_main(settings, url, install_signal_handlers=False, chores=domains.CHORES))
            log.info("in-process job worker started")
        stop_demo = asyncio.Event()
        demo_task = None
        if settings.demo:
            from service.demo import fly

            demo_task = asyncio.create_task(fly(app.state.engine, settings, stop_demo))
        try:
            yield
        finally:
            stop_demo.set()
            if demo_task is not None:
                with contextlib.suppress(Exception):
                    await demo_task
            if worker_task is not None:
                worker_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker_task
            for more in getattr(app.state, "more_engines", ()):  # made by a domain, lazily
                await more.dispose()
            await app.state.engine.dispose()

    app = FastAPI(title="Twinbase", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.database_url = url
    # built once here, looked up per request (features.registry.catalog)
    app.state.catalog = Catalog(domains.collections())
    app.state.upload_intake = UploadIntake(settings)
    install_error_handlers(app)
    app.add_middleware(ContainUnexpected)  # a 500 keeps the client's connection open
    app.add_middleware(NulGuardMiddleware)  # inside the ones below: its 400s are logged
    # outside those: the key and the body's size are checked before a route reads the body
    app.add_middleware(GuardMiddleware, settings=settings)
    # gzip for JSON and the dashboard's text files only (tiles are binary; see the module)
    app.add_middleware(TextGZipMiddleware)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                       allow_methods=["*"], allow_headers=["*"],
                       expose_headers=["Location", "Upload-Offset", "Upload-Length",
                                       "Tus-Resumable", "Upload-Expires", "ETag",
                                       "Twinbase-Dataset-Id", "Twinbase-Job-Id",
                                       "Content-Range", "Accept-Ranges",
                                       "Twinbase-Tileset-Version", "Twinbase-Tilesets",
                                       "Content-Crs"])
    app.add_middleware(ObserveMiddleware)
    if settings.public_url:
        app.add_middleware(PublicUrlMiddleware, public_url=settings.public_url)
    # OGC API - Features first: its landing page is the service's "/" (links to /docs,
    # /health, /ready, /datasets, /jobs, /tiles and /uploads included), and its item and
    # tile routes are the hottest, so they are matched before the rest
    app.include_router(features.router)
    for platform in (health, keys, jobs, datasets, tiles, terrain, tus):
        app.include_router(platform.router)
    for router in domains.routers():
        app.include_router(router)
    api_doc.install(app)

    return app
