"""The ``twinbase`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from service.core.settings import get_settings
from service.runtime.logs import configure_logging

app = typer.Typer(help="Twinbase: city digital-twin spatial data service.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema and the embedded cluster.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys and roles.", no_args_is_help=True)
jobs_app = typer.Typer(help="Background jobs.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")
model_app = typer.Typer(help="Fly and model: surveys into buildings of the city model.",
                        no_args_is_help=True)
app.add_typer(model_app, name="model")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="port to bind")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="API processes; above 1, each has its own socket on the port "
                    "(SO_REUSEPORT), a supervisor restarts any that dies, and the "
                    "in-process job worker runs as one more process")] = 1,
    samples: Annotated[bool, typer.Option(help="queue data/ samples on an empty db")] = True,
    demo: Annotated[bool, typer.Option(help="load the synthetic Longgang demo district on "
                                            "the first start and fly its drones")] = True,
) -> None:
    """Run the API (and, with the embedded database, a job worker in the same process).

    Without DATABASE_URL an embedded PostgreSQL + PostGIS cluster is created (first run) or
    reused under the data directory, migrated, and stopped when the server exits (Ctrl-C or
    SIGTERM). With --workers above 1 the job worker is a process of its own.
    """
    from service.runtime.cluster import database

    settings = get_settings()
    configure_logging(settings.log_level)
    host, port = host or settings.host, port or settings.port
    embedded = settings.database_url is None
    # uvicorn re-raises the SIGTERM it handled once it has stopped; exiting through Python
    # (not by the signal's default action) lets the embedded cluster below stop too
    signal.signal(signal.SIGTERM, _exit_cleanly)
    sock = None
    if workers == 1:
        from service.runtime.supervisor import PortTaken, listening_socket

        # before the database and the app start: a taken port is an error at once
        try:
            sock = listening_socket(host, port)
        except PortTaken as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    with database(settings) as url:
        if samples and settings.load_samples:
            from service.intake import queue_samples

            queue_samples(settings, url)
        if not demo:
            settings.demo = False  # the API processes read it from the environment too
            os.environ["TWINBASE_DEMO"] = "false"
        if settings.demo:
            from service.demo import queue_demo

            queue_demo(settings, url)
        os.environ["DATABASE_URL"] = url
        in_process = settings.in_process_worker
        if in_process is None:
            in_process = embedded
        typer.echo(f"twinbase on http://{host}:{port} (docs at /docs); database "
                   f"{'embedded' if embedded else 'from DATABASE_URL'}; "
                   f"{workers} API process{'es' if workers > 1 else ''}; "
                   f"in-process worker {'on' if in_process else 'off'}", err=True)
        if workers > 1:
            from service.runtime.supervisor import PortTaken, serve_workers

            try:
                code = serve_workers(
                    host, port, workers, jobs=in_process,
                    api_command=[sys.executable, "-m", "service.api_worker"],
                    # the same command as `twinbase worker`, so it behaves exactly as one
                    jobs_command=[sys.executable, "-m", "service.cli", "worker"])
            except PortTaken as exc:
                typer.echo(f"error: {exc}", err=True)
                code = 1
            if code:
                raise typer.Exit(code)
        else:
            import uvicorn

            from service.app import create_app
            from service.core.heap import freeze_heap

            api = create_app(settings, url, in_process_worker=in_process)
            freeze_heap()  # what the app loaded lives as long as the process
            server = uvicorn.Server(uvicorn.Config(api, log_level="warning",
                                                   access_log=False))
            server.run(sockets=[sock])
            if not server.started:  # the app's start-up failed (uvicorn logged why)
                raise typer.Exit(3)


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(0)


@app.command()
def worker() -> None:
    """Run a job worker until SIGINT / SIGTERM (uses DATABASE_URL or the embedded db)."""
    from service.domains import CHORES
    from service.jobs.worker import run_worker
    from service.runtime.cluster import database

    settings = get_settings()
    configure_logging(settings.log_level)
    with database(settings) as url:
        os.environ["DATABASE_URL"] = url
        typer.echo("twinbase worker waiting for jobs", err=True)
        asyncio.run(run_worker(settings, url, chores=CHORES))


@contextlib.contextmanager
def _job_progress() -> Iterator[tuple[Any, Callable[[Any], None]]]:
    """A progress bar for a job run here, and the watcher that moves it with the job's row
    (stage, fraction, items done of total)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[items]}"), TimeElapsedColumn(), transient=False,
    ) as bar:
        task = bar.add_task("queued", total=1.0, items="")

        def watch(row: Any) -> None:
            items = (f"{row.items_done:,} of {row.items_total:,}" if row.items_total
                     else f"{row.items_done:,}" if row.items_done else "")
            bar.update(task, completed=row.progress, description=row.stage, items=items)

        yield bar, watch


INGEST_KINDS = {"lidar": "lidar", "city": None, "bim": "ifc"}


@app.command()
def ingest(
    kind: Annotated[str, typer.Argument(help="lidar (LAS/LAZ/COPC), city (CityJSON/CityGML) "
                                             "or bim (IFC, .ifc or .ifczip)")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    crs: Annotated[str | None, typer.Option(help="CRS of the file, e.g. EPSG:4547; wins "
                                                 "over the file's own")] = None,
    vertical: Annotated[str | None, typer.Option(help="heights are 'ellipsoidal' or "
                                                      "'orthometric' (geoid applied)")] = None,
    name: Annotated[str | None, typer.Option(help="dataset name (default: file name)")] = None,
    anchor: Annotated[str | None, typer.Option(help="bim: place the model here, "
                                                    "'lon,lat,height,rotation_deg'; wins "
                                                    "over the file's georeferencing")] = None,
    model: Annotated[bool, typer.Option(help="lidar: then model the survey into buildings "
                                             "of the city model here (fly and model)")] = True,
) -> None:
    """Ingest FILE here, with a progress bar, then print a summary (the same dataset, job and
    tileset as an upload would make; the file is read where it lies). A LiDAR survey is then
    modelled into buildings here too, as an upload's would be by a worker."""
    from service.datasets.kinds import kind_for
    from service.intake import ingest_file
    from service.runtime.cluster import database

    if kind not in INGEST_KINDS:
        typer.echo(f"error: kind must be one of {', '.join(INGEST_KINDS)}", err=True)
        raise typer.Exit(2)
    dataset_kind = INGEST_KINDS[kind] or kind_for(file.name)
    if kind == "city" and dataset_kind not in ("cityjson", "citygml"):
        typer.echo(f"error: {file.name} is not a CityJSON or CityGML file name", err=True)
        raise typer.Exit(2)
    options = {k: v for k, v in {"crs": crs, "vertical": vertical, "anchor": anchor}.items()
               if v}
    settings = get_settings()
    logging.basicConfig(level="WARNING")
    # the model job is run here after the ingest, not queued: a queued job would wait for a
    # worker that a command-line user may never start
    with database(settings) as url:
        with _job_progress() as (_, watch):
            final = ingest_file(url, dataset_kind, file, options=options, name=name,
                                watch=watch, job_params={"model": False})
        if final.status != "succeeded":
            typer.echo(f"ingest failed: {final.error}", err=True)
            raise typer.Exit(1)
        summary = {"dataset_id": final.dataset_id, "job_id": final.id, **(final.report or {})}
        if dataset_kind == "lidar" and model:
            summary["model"] = _model_here(url, final.dataset_id, {})
    typer.echo(json.dumps(summary, default=str, indent=2))


@model_app.command("survey")
def model_survey(
    dataset_id: Annotated[int, typer.Argument(help="id of a ready LiDAR survey")],
    footprints: Annotated[Path | None, typer.Option(
        exists=True, readable=True, help="footprint layer (GeoJSON, GeoPackage or any OGR "
        "source), trusted over the city model's and derived footprints")] = None,
    layer: Annotated[str | None, typer.Option(help="layer of the footprint source")] = None,
    reclassify: Annotated[bool, typer.Option(help="classify anew even where the file's "
                                                  "classes are meaningful")] = False,
) -> None:
    """Model survey DATASET_ID into buildings of the city model here, with a progress bar,
    then print the report (new / changed / unchanged / demolished buildings)."""

    from service.runtime.cluster import database

    params: dict[str, object] = {"reclassify": reclassify} if reclassify else {}
    if footprints is not None:
        params["footprints"] = str(footprints.resolve())
    if layer:
        params["footprints_layer"] = layer
    settings = get_settings()
    logging.basicConfig(level="WARNING")
    with database(settings) as url:
        report = _model_here(url, dataset_id, params)
    typer.echo(json.dumps({"dataset_id": dataset_id, **report}, default=str, indent=2))


def _model_here(url: str, dataset_id: int, params: dict[str, object]) -> dict[str, Any]:
    """Model survey ``dataset_id`` in this process with a progress bar; its report without
    the change list (that is at /datasets/{id}/changes), or exit when it cannot."""
    from service.cim.fly import SurveyRefused, model_here

    with _job_progress() as (bar, watch):
        try:
            final = model_here(url, dataset_id, params=params, watch=watch)
        except SurveyRefused as exc:
            bar.stop()
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
    if final.status != "succeeded":
        typer.echo(f"modelling failed: {final.error}", err=True)
        raise typer.Exit(1)
    report = dict(final.report or {})
    report.pop("changes", None)
    return {"model_job_id": final.id, **report}


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    from service.core import db
    from service.runtime.cluster import database

    with database(get_settings(), migrate=False) as url:
        db.upgrade(url, revision)
        typer.echo(f"database at {db.current_revision_sync(url)}")


@db_app.command("current")
def db_current() -> None:
    """Show the migration the database is at, and the latest one."""
    from service.core import db
    from service.runtime.cluster import database

    with database(get_settings(), migrate=False) as url:
        typer.echo(f"database {db.current_revision_sync(url)}; latest {db.head_revision()}")


@db_app.command("url")
def db_url() -> None:
    """Start the embedded cluster if needed and print its URL (it keeps running)."""
    from service.runtime.cluster import embedded_cluster

    settings = get_settings()
    if settings.database_url:
        typer.echo(settings.database_url)
        return
    pg = embedded_cluster(settings)
    pg.start()
    typer.echo(pg.url)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="who or what uses the key")],
    role: Annotated[str, typer.Option(help="viewer, operator, planner or admin")],
) -> None:
    """Create a key and print it: this is the only time it is shown."""
    from service.core.auth import create_key
    from service.core.db import sync_engine
    from service.core.errors import TwinbaseError
    from service.runtime.cluster import database

    with database(get_settings()) as url:
        try:
            with sync_engine(url).begin() as conn:
                key = create_key(conn, name, role)
        except TwinbaseError as exc:
            typer.echo(f"error: {exc.detail}", err=True)
            raise typer.Exit(2) from exc
    typer.echo(key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (names, roles, prefixes)."""
    from service.core.auth import all_keys
    from service.core.db import sync_engine
    from service.runtime.cluster import database

    with database(get_settings()) as url, sync_engine(url).connect() as conn:
        for r in conn.execute(all_keys()):
            state = "revoked" if r.revoked_at else "active"
            typer.echo(f"{r.name}\t{r.role}\t{r.prefix}…\t{state}")


@keys_app.command("revoke")
def keys_revoke(name: str) -> None:
    """Revoke the key NAME."""
    from service.core.auth import revoke_key
    from service.core.db import sync_engine
    from service.core.errors import TwinbaseError
    from service.runtime.cluster import database

    with database(get_settings()) as url:
        try:
            with sync_engine(url).begin() as conn:
                revoke_key(conn, name)
        except TwinbaseError as exc:
            typer.echo(f"error: {exc.detail}", err=True)
            raise typer.Exit(2) from exc
    typer.echo(f"revoked {name}")


@jobs_app.command("list")
def jobs_list(limit: int = 20) -> None:
    """Recent jobs."""
    from service.core.db import sync_engine
    from service.jobs import store
    from service.runtime.cluster import database

    with database(get_settings()) as url, sync_engine(url).connect() as conn:
        rows = conn.execute(store.recent(status=None, dataset_id=None, limit=limit)).all()
        for r in rows:
            typer.echo(f"{r.id}\t{r.kind}\t{r.status}\t{r.stage}\t{r.progress:.0%}\t"
                       f"{r.error or ''}")


@jobs_app.command("show")
def jobs_show(job_id: int) -> None:
    """One job as JSON."""
    from service.core.db import sync_engine
    from service.jobs import store
    from service.jobs.router import job_view
    from service.runtime.cluster import database

    with database(get_settings()) as url, sync_engine(url).connect() as conn:
        row = conn.execute(store.one(job_id)).first()
    if row is None:
        typer.echo(f"no job {job_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(job_view(row), default=str, indent=2))


if __name__ == "__main__":
    app()
