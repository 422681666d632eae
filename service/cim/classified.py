"""The classified survey: the classes ``model_survey`` gave a survey's points, carried by the
survey's point-cloud tiles (their ``classification`` property) and downloadable as LAZ.

When the job classified the points itself (the file's classes were not meaningful, or it was
asked to classify anew), the survey is written again as LAZ: the same points in the same
order, the same header scales, offsets and CRS records, only the classification changed. The
survey's point-cloud tileset is rebuilt from that file as a new version, published in the
model's transaction (:func:`service.jobs.publish.publish`, ``also``). When the file's classes
were kept, the tiles made at ingest carry them already and the download is the source itself.

The file lives beside the survey's source in the server's storage,
``sources/<dataset id>/classified-job<job>-a<attempt>.laz``: written under a temporary name,
renamed before the model's transaction commits, and named in the dataset's stats
(``stats.classification.laz_file``) by that transaction. A name of its own for every attempt
means a failed or killed attempt never touches the file the stats name; older files go only
after a newer one is published.

The tiles of a survey belong to it only while its tileset shows it: a later survey of the
same area (same tileset name) is a newer version of that tileset, and modelling the older
survey again must not bring its points back over the newer ones. Its tiles are then left as
they are, and the report says why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from sqlalchemy import Connection, func, select

from service.core.auth import Reader
from service.core.errors import Conflict, NotFound, Unprocessable
from service.core.ids import Id
from service.core.tables import datasets, jobs, tilesets
from service.jobs.context import JobContext, JobFailed
from service.tilesets.storage import tile_store
from service.tilesets.store import TilesetVersion, begin_version, fail_version

log = logging.getLogger(__name__)

KEY = "classification"  # the dataset's stats entry
MODEL, FILE = "model", "file"  # whose classes the survey's tiles carry
LAZ_MEDIA = "application/vnd.laszip"
_NAME = re.compile(r"^classified-job(\d+)-a(\d+)\.laz$")
_PART = re.compile(r"^\.classified-job(\d+)-a(\d+)\.laz\.part$")
CHUNK_POINTS = 1_000_000
# COPC's records describe the octree of the file they came from; the file written here is
# ordinary LAZ, so they are left out (everything else of the header is kept)
_COPC_USER_ID = "copc"


def _counts(classes: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(classes, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}


def sources_folder(data_dir: Path, dataset_id: int) -> Path:
    """The dataset's folder in the server's storage (where an upload's source is kept)."""
    return Path(data_dir) / "sources" / str(dataset_id)


def write_classified(src: Path, dst: Path, classes: np.ndarray, *,
                     progress: Callable[[int, int], None] | None = None,
                     chunk: int = CHUNK_POINTS) -> int:
    """Write the points of LAS/LAZ ``src`` to ``dst`` as LAZ with ``classes`` as their
    classification (one per point, in file order); every other field, the scales, offsets
    and (extended) variable-length records are copied. Streamed chunk by chunk: a survey of
    millions of points never sits in memory twice. Returns the number of points written.
    Raises ValueError when ``classes`` does not have one value per point."""
    import laspy
    from laspy.vlrs.vlrlist import VLRList

    with laspy.open(src) as reader:
        total = int(reader.header.point_count)
        if total != len(classes):
            raise ValueError(f"{len(classes)} classes for the {total} points of {src.name}")
        header = reader.header
        header.vlrs = VLRList([v for v in header.vlrs if v.user_id != _COPC_USER_ID])
        evlrs = [v for v in (reader.header.evlrs or []) if v.user_id != _COPC_USER_ID]
        done = 0
        with laspy.open(dst, mode="w", header=header, do_compress=True) as writer:
            for points in reader.chunk_iterator(chunk):
                n = len(points)
                points.classification = classes[done:done + n]
                writer.write_points(points)
                done += n
                if progress is not None:
                    progress(done, total)
            if evlrs:
                writer.write_evlrs(VLRList(evlrs))
    if done != total:
        raise ValueError(f"{src.name} gave {done} points where its header says {total}")
    return done


class ClassifiedSurvey:
    """What one ``model_survey`` run does for its survey's classes. In the job:
    :meth:`prepare` before the model's transaction, :meth:`claim` in it (before
    :func:`~service.jobs.publish.publish`, which takes :attr:`versions` and
    :meth:`stats`), :meth:`discard` when the job fails, :meth:`settle` after the commit."""

    def __init__(self, ctx: JobContext, row: Any, options: dict[str, Any],
                 classes: np.ndarray, kept: bool, reason: str) -> None:
        self.ctx, self.row, self.options = ctx, row, options
        self.classes, self.kept, self.reason = classes, kept, reason
        self.folder = sources_folder(ctx.settings.data_dir, row.id)
        stem = f"classified-job{ctx.job_id}-a{ctx.attempt}.laz"
        self.file = self.folder / stem
        self._part = self.folder / f".{stem}.part"
        self.written = False
        self.version: TilesetVersion | None = None
        self.tile_stats: dict[str, Any] | None = None
        self.versions: list[tuple[TilesetVersion, dict[str, Any]]] = []
        self.note: str | None = None
        self._previous: dict[str, Any] = dict(row.stats or {})
        self._superseded = False
        self._current_version: int | None = None
        self.seconds: dict[str, float] = {}

    # -- before the transaction ----------------------------------------------------------------

    def prepare(self) -> None:
        """The classified LAZ written and the survey's tiles rebuilt from it, when the job
        classified the points itself; the tiles rebuilt from the source when the file's
        classes were kept but the tiles show an earlier run's classes."""
        before = (self.row.stats or {}).get(KEY) or {}
        tile_from: Path | None = None
        if not self.kept:
            t = time.monotonic()
            self._write()
            self.seconds["write"] = round(time.monotonic() - t, 3)
            tile_from = self.file
        elif before.get("tiles_carry") == MODEL:
            tile_from = Path(self.row.source_path)
        if tile_from is None:
            return
        with self.ctx.engine.connect() as conn:
            name = self._tileset_name(conn)
        if name is not None:
            t = time.monotonic()
            self._tile(name, tile_from)
            self.seconds["tiles"] = round(time.monotonic() - t, 3)

    def _write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        total = len(self.classes)
        self.ctx.progress("writing the classified survey", 0, total)
        try:
            write_classified(Path(self.row.source_path), self._part, self.classes,
                             progress=lambda done, n: self.ctx.progress(
                                 "writing the classified survey", done, n))
            with open(self._part, "rb+") as fh:  # on disk before it takes its name
                os.fsync(fh.fileno())
        except ValueError as exc:
            self._part.unlink(missing_ok=True)
            raise JobFailed(f"the classified survey cannot be written: {exc}") from exc
        except BaseException:
            self._part.unlink(missing_ok=True)
            raise
        os.replace(self._part, self.file)
        self.written = True

    def _tileset_name(self, conn: Connection) -> str | None:
        """The survey's point-cloud tileset, if it still shows this survey (else None, with
        the note why)."""
        t = tilesets.c
        name = conn.execute(
            select(t.name).where(t.dataset_id == self.row.id, t.kind == "pointcloud",
                                 t.status == "published")
            .order_by(t.version.desc()).limit(1)).scalar()
        if name is None:
            self.note = (f"survey {self.row.id} has no published point-cloud tileset: its "
                         "tiles were not rebuilt (ingest it again)")
            return None
        current = conn.execute(select(t.dataset_id, t.version).where(
            t.name == name, t.is_current)).first()
        if current is not None and current.dataset_id != self.row.id:
            self.note = (f"the tileset {name} shows survey {current.dataset_id} now (a later "
                         f"survey of the same area): the tiles of survey {self.row.id} were "
                         "not rebuilt; its classified points are in the LAZ download")
            return None
        return name

    def _tile(self, name: str, src: Path) -> None:
        from tiler.errors import TilerInputError
        from tiler.pointcloud import tile_point_cloud

        ctx = self.ctx
        self.version = begin_version(ctx.bookkeeping, tile_store(ctx.settings), name,
                                     "pointcloud", dataset_id=self.row.id, job_id=ctx.job_id)
        try:
            result = tile_point_cloud(
                src, self.version.path, crs=self.options.get("crs"),
                vertical=self.options.get("vertical"),
                progress=lambda stage, done, total: ctx.progress(
                    f"retiling the survey: {stage}", done, total))
        except TilerInputError as exc:
            raise JobFailed(f"the classified survey cannot be tiled: {exc}") from exc
        self.tile_stats = {
            "points": result.points,
            "class_counts": {str(k): int(v) for k, v in result.class_counts.items()},
            "density_per_m2": round(float(result.density), 3),
            "tiles": result.tiles, "bytes": result.bytes,
            "tileset": f"/tiles/{name}/tileset.json",
            "classes": MODEL if not self.kept else FILE, "model_job_id": ctx.job_id,
        }

    # -- in the transaction ------------------------------------------------------------------

    def claim(self, conn: Connection, report: dict[str, Any]) -> None:
        """In the model's transaction (after its lock, which serialises model runs): read
        the survey's stats as they are now, take the survey's tileset for the new version
        unless a later survey took it meanwhile, and say what was done in ``report``."""
        self._previous = dict(conn.execute(select(datasets.c.stats).where(
            datasets.c.id == self.row.id)).scalar() or {})
        t = tilesets.c
        if self.version is not None:
            # the lock publish_in takes: no other version of this tileset switches meanwhile
            conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(self.version.name))))
            current = conn.execute(select(t.dataset_id).where(
                t.name == self.version.name, t.is_current)).first()
            if current is not None and current.dataset_id != self.row.id:
                self._superseded = True
                self.note = (f"the tileset {self.version.name} shows survey "
                             f"{current.dataset_id} now (a later survey of the same area): "
                             f"the tiles of survey {self.row.id} were not rebuilt")
            else:
                assert self.tile_stats is not None
                self.versions = [(self.version, self.tile_stats)]
        else:
            self._current_version = conn.execute(
                select(t.version).where(t.dataset_id == self.row.id, t.kind == "pointcloud",
                                        t.is_current)).scalar()
        report["classified"] = {**self._entry(), "seconds": self.seconds}

    def _entry(self) -> dict[str, Any]:
        before = self._previous.get(KEY) or {}
        if self.versions:
            carry = FILE if self.kept else MODEL
            version: int | None = self.versions[0][0].version
            by_job = None if self.kept else self.ctx.job_id
        else:
            carry = before.get("tiles_carry", FILE)
            version = (self._current_version if self._current_version is not None
                       else before.get("tiles_version"))
            by_job = before.get("tiles_classified_by_job")
        entry: dict[str, Any] = {
            "kept_file_classes": self.kept, "reason": self.reason,
            # whose classes the survey's tiles carry: the file's, or a model job's
            "tiles_carry": carry, "tiles_classified_by_job": by_job,
            "tiles_version": version,
            "class_counts": _counts(self.classes),
            "file_class_counts": before.get("file_class_counts")
            or self._previous.get("class_counts"),
            "job_id": self.ctx.job_id,
            "download": f"/datasets/{self.row.id}/classified.laz",
            "laz_file": self.file.name if self.written else None,
        }
        if self.note:
            entry["note"] = self.note
        return entry

    def stats(self) -> dict[str, Any]:
        """The survey's stats with the classes its tiles now carry (call after
        :meth:`claim`)."""
        stats = dict(self._previous)
        if self.versions and self.tile_stats is not None:
            for k in ("class_counts", "tiles", "bytes", "density_per_m2"):
                stats[k] = self.tile_stats[k]
        stats[KEY] = self._entry()
        return stats

    # -- after -------------------------------------------------------------------------------

    def discard(self) -> None:
        """The job failed: remove what this attempt made; what was published stays."""
        self._part.unlink(missing_ok=True)
        if self.written:
            self.file.unlink(missing_ok=True)
        if self.version is not None:
            fail_version(self.ctx.engine, self.version)

    def settle(self) -> None:
        """Committed: the files no longer named (the previous run's, those of attempts that
        are over) are removed; a version a later survey overtook is given up. The job has
        succeeded by now: a clean-up that fails is logged (the next run retries it)."""
        try:
            self._settle()
        except Exception:
            log.warning("survey %s: clearing older classified files failed", self.row.id,
                        exc_info=True)

    def _settle(self) -> None:
        if self._superseded and self.version is not None:
            fail_version(self.ctx.engine, self.version)
        keep = self.file.name if self.written else None
        named = ((self._previous.get(KEY) or {}).get("laz_file"))
        found: dict[str, int] = {}
        for p in self.folder.glob("*classified-job*") if self.folder.is_dir() else ():
            m = _NAME.match(p.name) or _PART.match(p.name)
            if m is not None and p.name != keep:
                found[p.name] = int(m.group(1))
        if not found:
            return
        with self.ctx.engine.connect() as conn:
            busy = set(conn.execute(select(jobs.c.id).where(
                jobs.c.id.in_(set(found.values())),
                jobs.c.status.in_(("queued", "running")))).scalars())
        for fname, job_id in found.items():
            # a job still running may publish its file yet (it names its own only)
            if fname == named or job_id not in busy:
                with contextlib.suppress(OSError):
                    (self.folder / fname).unlink()


# -- the download ----------------------------------------------------------------------------

router = APIRouter(tags=["datasets"])

_STEM = re.compile(r"\.(copc\.laz|laz|las)$", re.I)


@router.get(
    "/datasets/{dataset_id}/classified.laz", response_class=FileResponse,
    summary="A modelled survey's points with the classes its model job gave them (LAZ)",
    description="The survey as LAZ: the same points in the same order as the file uploaded, "
                "with the classification the model job gave them. When the job kept the "
                "file's own classes, the file uploaded itself. 409 until the survey has "
                "been modelled (POST /datasets/{id}/model).",
    responses={200: {"content": {LAZ_MEDIA: {}, "application/octet-stream": {}},
                     "description": "the classified survey"}})
async def classified_laz(dataset_id: Id, request: Request, _: Reader) -> FileResponse:
    d = datasets.c
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(select(d.id, d.kind, d.status, d.name, d.stats,
                                         d.source_path).where(d.id == dataset_id))).first()
        if row is None:
            raise NotFound(f"no dataset {dataset_id}")
        if row.kind != "lidar":
            raise Unprocessable(f"dataset {dataset_id} is {row.kind}, not a LiDAR survey: "
                                "only surveys have classified points")
        entry = (row.stats or {}).get(KEY)
        if not entry:
            pending = (await conn.execute(
                select(jobs.c.id, jobs.c.status).where(
                    jobs.c.dataset_id == dataset_id, jobs.c.kind == "model_survey",
                    jobs.c.status.in_(("queued", "running"))).order_by(jobs.c.id.desc())
                .limit(1))).first()
    if not entry:
        if pending is not None:
            raise Conflict(f"survey {dataset_id} is being modelled (job {pending.id} is "
                           f"{pending.status}): its classified points can be downloaded "
                           "once that job has succeeded")
        raise Conflict(f"survey {dataset_id} has not been modelled, so its points have no "
                       f"classes of the model yet: run the model job (POST /datasets/"
                       f"{dataset_id}/model) and download them once it has succeeded")
    source = Path(row.source_path) if row.source_path else None
    laz = entry.get("laz_file")
    if laz:
        if not _NAME.match(laz) or source is None:
            raise Conflict(f"survey {dataset_id}'s classified file is not known: run the "
                           f"model job again (POST /datasets/{dataset_id}/model)")
        path = sources_folder(request.app.state.settings.data_dir, dataset_id) / laz
        stem = _STEM.sub("", source.name) or f"survey-{dataset_id}"
        filename, media = f"{stem}-classified.laz", LAZ_MEDIA
    else:  # the file's own classes were kept: the file is the classified survey
        path = source
        filename = source.name if source is not None else ""
        media = LAZ_MEDIA if filename.lower().endswith(".laz") else "application/octet-stream"
    if path is None or not path.is_file():
        raise Conflict(f"the classified file of survey {dataset_id} is no longer on the "
                       f"server: run the model job again (POST /datasets/{dataset_id}/model)")
    return FileResponse(path, media_type=media, filename=filename)
