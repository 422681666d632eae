"""Resumable uploads over the tus 1.0.0 protocol (https://tus.io/protocols/resumable-upload).

Drone-operator tools and libraries (tus-js-client, tuspy, Uppy) speak tus; plain curl works
too. Extensions: creation, termination, checksum (per chunk), expiration. The whole file's
SHA-256 goes in the ``sha256`` metadata field and is verified when the last byte arrives.
Completing an upload creates a dataset and queues its ingest job.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import ClientDisconnect

from service.core.auth import Writer
from service.core.errors import (
    BadRequest,
    ChecksumMismatch,
    Conflict,
    Gone,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    UnsupportedMediaType,
)
from service.core.ids import header_int
from service.core.tables import uploads
from service.uploads import storage
from service.uploads.names import safe_filename
from service.uploads.space import InsufficientStorage, ensure_room, is_disk_full

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,checksum,expiration"
CHECKSUM_ALGOS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}
OPTION_KEYS = ("crs", "vertical", "name", "survey", "anchor", "model", "split")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

router = APIRouter(prefix="/uploads", tags=["uploads"])


class Intake(Protocol):
    """What happens to a file arriving here: the app wires this in (service/intake.py), so
    this package knows nothing of datasets or jobs."""

    def kind_of(self, filename: str, declared: str | None) -> str:
        """The file's kind; raises a 4xx error for a file that cannot be ingested."""
        ...

    async def admit(self, conn: AsyncConnection, upload: Any, part: Path, digest: str,
                    who: str) -> tuple[int, int]:
        """In the caller's transaction, the finished file (moved from ``part``) becomes a
        dataset and a job: (dataset id, job id)."""
        ...

    def undo(self, part: Path, dataset_id: int, filename: str) -> None:
        """The transaction of :meth:`admit` failed: the file goes back to ``part``."""
        ...


def intake(request: Request) -> Intake:
    return request.app.state.upload_intake


def _tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store", **extra}


def _check_version(request: Request) -> None:
    version = request.headers.get("tus-resumable")
    if version is not None and version != TUS_VERSION:
        raise PreconditionFailed(f"this server speaks tus {TUS_VERSION}, not {version}",
                                 headers={"Tus-Version": TUS_VERSION})


def parse_metadata(header: str | None) -> dict[str, str]:
    """``key base64value,key2 base64value2`` (tus Upload-Metadata) to a dict."""
    result: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in (header or "").split(","))):
        key, _, value = pair.partition(" ")
        try:
            result[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise BadRequest(f"Upload-Metadata value of {key!r} is not base64 UTF-8") from exc
        if "\x00" in result[key]:
            raise BadRequest(f"Upload-Metadata value of {key!r} contains a NUL character")
    return result


@router.options("", include_in_schema=False)
async def tus_options() -> Response:
    return Response(status_code=204, headers=_tus_headers(
        **{"Tus-Version": TUS_VERSION, "Tus-Extension": TUS_EXTENSIONS,
           "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGOS)}))


@router.post("", status_code=201, summary="Create a resumable upload (tus creation)",
             description=(
                 "Headers: `Tus-Resumable: 1.0.0`, `Upload-Length: <bytes>`, `Upload-Metadata:"
                 " filename <b64>,sha256 <b64 of hex>,crs <b64>,kind <b64>`. Answers 201 with"
                 " `Location`; send the bytes with PATCH. 413 over the size limit, 422 for a"
                 " kind that cannot be ingested, 507 when the server's disk cannot hold the"
                 " file (beside the free space it keeps in reserve)."))
async def create_upload(request: Request, principal: Writer) -> Response:
    _check_version(request)
    settings = request.app.state.settings
    length_header = request.headers.get("upload-length")
    if length_header is None:
        raise BadRequest("Upload-Length header (total size in bytes) is required")
    length = header_int(length_header, "Upload-Length")
    if length == 0:
        raise BadRequest("an empty file cannot be ingested")
    if length > settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"the file is {length:,} bytes; this server accepts at most "
            f"{settings.max_upload_bytes:,}", headers={"Tus-Max-Size":
                                                       str(settings.max_upload_bytes)})
    meta = parse_metadata(request.headers.get("upload-metadata"))
    filename = safe_filename(meta.get("filename") or meta.get("name") or "")
    kind = intake(request).kind_of(filename, meta.get("kind"))
    sha = (meta.get("sha256") or "").strip().lower() or None
    if sha is not None and not _HEX64.match(sha):
        raise BadRequest("metadata sha256 must be 64 hexadecimal characters")
    options = {k: meta[k] for k in OPTION_KEYS if meta.get(k)}
    upload_id = secrets.token_hex(16)
    expires = datetime.now(UTC) + timedelta(hours=settings.upload_expiry_hours)
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    ensure_room(settings.uploads_dir, length, settings.upload_free_reserve_bytes)
    part = storage.part_path(settings.uploads_dir, upload_id)
    part.touch(mode=0o640)
    try:
        async with request.app.state.engine.begin() as conn:
            await conn.execute(insert(uploads).values(
                id=upload_id, filename=filename, kind=kind, length=length, sha256=sha,
                options=options, created_by=principal.name, expires_at=expires))
    except BaseException:  # e.g. the database is down: no file without its row
        part.unlink(missing_ok=True)
        raise
    request.state.audit_detail = {"upload": upload_id, "filename": filename, "bytes": length}
    location = str(request.url_for("upload_head", upload_id=upload_id))
    return Response(status_code=201, headers=_tus_headers(
        Location=location, **{"Upload-Expires": _http_date(expires)}))


async def _load(request: Request, upload_id: str) -> Any:
    if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
        raise NotFound(f"no upload {upload_id!r}")
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(select(uploads).where(uploads.c.id == upload_id))).first()
    if row is None:
        raise NotFound(f"no upload {upload_id!r}")
    if row.status == "receiving" and row.expires_at < datetime.now(UTC):
        raise Gone(f"upload {upload_id} expired at {row.expires_at.isoformat()}; start again")
    if row.status == "cancelled":
        raise Gone(f"upload {upload_id} was cancelled")
    return row


@router.head("/{upload_id}", name="upload_head", summary="Offset of an upload (tus)")
async def upload_head(upload_id: str, request: Request, principal: Writer) -> Response:
    row = await _load(request, upload_id)
    part = storage.part_path(request.app.state.settings.uploads_dir, upload_id)
    offset = row.length if row.status == "complete" else storage.offset_of(part)
    return Response(status_code=200, headers=_tus_headers(
        **{"Upload-Offset": str(offset), "Upload-Length": str(row.length),
           "Upload-Expires": _http_date(row.expires_at)}))


@router.get("/{upload_id}", summary="State of an upload, with its dataset and job when done")
async def upload_status(upload_id: str, request: Request, principal: Writer) -> dict[str, Any]:
    row = await _load(request, upload_id)
    part = storage.part_path(request.app.state.settings.uploads_dir, upload_id)
    offset = row.length if row.status == "complete" else storage.offset_of(part)
    return {
        "id": row.id, "filename": row.filename, "kind": row.kind, "length": row.length,
        "offset": offset, "status": row.status, "dataset_id": row.dataset_id,
        "job_id": row.job_id, "expires_at": row.expires_at,
        "links": {"job": f"/jobs/{row.job_id}" if row.job_id else None,
                  "dataset": f"/datasets/{row.dataset_id}" if row.dataset_id else None},
    }


@router.patch("/{upload_id}", status_code=204,
              summary="Append bytes at Upload-Offset (tus); the last chunk completes it",
              description=(
                  "Body: raw bytes, `Content-Type: application/offset+octet-stream`. "
                  "`Upload-Offset` must equal the server's (HEAD tells it, 409 otherwise). "
                  "Optional `Upload-Checksum: sha1|sha256|md5 <base64>` per chunk (460 on "
                  "mismatch, the chunk is discarded). When the last byte arrives the whole "
                  "file's SHA-256 is checked and the dataset and its ingest job are created. "
                  "507 when the disk cannot hold the rest of the file: the upload is then "
                  "failed and its bytes freed, so send it again once space is freed."))
async def upload_patch(upload_id: str, request: Request, principal: Writer) -> Response:
    _check_version(request)
    settings = request.app.state.settings
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/offset+octet-stream":
        raise UnsupportedMediaType("PATCH bodies must be application/offset+octet-stream")
    offset_header = request.headers.get("upload-offset")
    if offset_header is None:
        raise BadRequest("Upload-Offset header is required")
    sent_offset = header_int(offset_header, "Upload-Offset")
    checksum = _parse_checksum(request.headers.get("upload-checksum"))
    row = await _load(request, upload_id)
    if row.status != "receiving":
        raise Conflict(f"upload {upload_id} is {row.status}; nothing more can be sent")
    part = storage.part_path(settings.uploads_dir, upload_id)
    request.state.audit_detail = {"upload": upload_id, "offset": sent_offset}
    with storage.exclusive(part, _gone(upload_id)) as fd:
        # a DELETE may have cancelled the upload since it was loaded above
        await _still_receiving(request, upload_id)
        offset = storage.offset_of(part)
        if sent_offset != offset:
            raise Conflict(f"Upload-Offset {offset_header} does not match the {offset} bytes "
                           "received; ask with HEAD and resume from there",
                           headers=_tus_headers(**{"Upload-Offset": str(offset)}))
        hasher = CHECKSUM_ALGOS[checksum[0]]() if checksum else None
        remaining = row.length - offset
        try:
            # before a byte is written: the rest of the file must fit beside the reserve
            ensure_room(settings.uploads_dir, remaining, settings.upload_free_reserve_bytes)
            written, overflow = await storage.append_stream(fd, request.stream(), remaining,
                                                            hasher)
        except ClientDisconnect:
            # keep what arrived (the client resumes from HEAD's offset), unless the chunk
            # carried a checksum that can no longer be verified
            if checksum:
                os.ftruncate(fd, offset)
            return Response(status_code=400, headers=_tus_headers())
        except InsufficientStorage:
            await _refuse_for_space(request, upload_id, part)
            raise
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            await _refuse_for_space(request, upload_id, part)
            raise InsufficientStorage(
                "the server's disk filled up while this chunk was written; the upload was "
                "discarded: upload the file again once space is freed") from exc
        if overflow:
            os.ftruncate(fd, offset)
            raise PayloadTooLarge(f"this chunk goes past the declared Upload-Length of "
                                  f"{row.length} bytes; the chunk was discarded")
        if checksum and hasher is not None and hasher.digest() != checksum[1]:
            os.ftruncate(fd, offset)
            raise ChecksumMismatch(f"the chunk's {checksum[0]} does not match "
                                   "Upload-Checksum; it was discarded, send it again")
        new_offset = offset + written
        extra: dict[str, str] = {}
        if new_offset == row.length:
            extra = await _complete(request, row, part, principal.name)
        else:  # a GB upload is hundreds of chunks: the audit log keeps the one that ends it
            request.state.audit_skip = True
    return Response(status_code=204, headers=_tus_headers(
        **{"Upload-Offset": str(new_offset)}, **extra))


@router.delete("/{upload_id}", status_code=204, summary="Cancel an upload (tus termination)")
async def upload_delete(upload_id: str, request: Request, principal: Writer) -> Response:
    await _load(request, upload_id)
    part = storage.part_path(request.app.state.settings.uploads_dir, upload_id)
    if not part.exists():  # nothing on disk (lost): the row alone says whether it can go
        await _cancel(request, upload_id, part)
    else:  # under the lock PATCH holds while it writes: a write in progress answers 409
        with storage.exclusive(part, _gone(upload_id), busy=Conflict):
            await _cancel(request, upload_id, part)
    return Response(status_code=204, headers=_tus_headers())


def _gone(upload_id: str) -> Gone:
    return Gone(f"upload {upload_id} was cancelled, or its bytes are gone; start it again")


async def _cancel(request: Request, upload_id: str, part: Path) -> None:
    row = await _load(request, upload_id)
    if row.status == "complete":
        raise Conflict(f"upload {upload_id} is complete; delete its dataset instead")
    async with request.app.state.engine.begin() as conn:
        await conn.execute(update(uploads).where(uploads.c.id == upload_id)
                           .values(status="cancelled"))
    part.unlink(missing_ok=True)


async def _still_receiving(request: Request, upload_id: str) -> None:
    row = await _load(request, upload_id)
    if row.status != "receiving":
        raise Conflict(f"upload {upload_id} is {row.status}; nothing more can be sent")


async def _refuse_for_space(request: Request, upload_id: str, part: Path) -> None:
    """An upload the disk cannot hold is failed and its partial file freed: it could not be
    completed, and what it holds would keep the disk full for everyone until it expired."""
    async with request.app.state.engine.begin() as conn:
        await conn.execute(update(uploads).where(uploads.c.id == upload_id,
                                                 uploads.c.status == "receiving")
                           .values(status="failed"))
    part.unlink(missing_ok=True)


def _parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    algo, _, value = header.strip().partition(" ")
    if algo not in CHECKSUM_ALGOS:
        raise BadRequest(f"checksum algorithm {algo!r} is not supported; use "
                         f"{', '.join(CHECKSUM_ALGOS)}")
    try:
        return algo, base64.b64decode(value.strip(), validate=True)
    except binascii.Error as exc:
        raise BadRequest("Upload-Checksum value is not base64") from exc


async def _complete(request: Request, row: Any, part: Path, who: str) -> dict[str, str]:
    """Verify the whole file, then create its dataset and queue its ingest, atomically."""
    digest = await asyncio.to_thread(storage.sha256_of, part)
    if row.sha256 and digest != row.sha256:
        async with request.app.state.engine.begin() as conn:
            await conn.execute(update(uploads).where(uploads.c.id == row.id)
                               .values(status="failed"))
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"the file's SHA-256 is {digest}, not the {row.sha256} announced: the upload is "
            "corrupt and was discarded; upload it again")
    hooks = intake(request)
    async with request.app.state.engine.begin() as conn:
        dataset_id, job_id = await hooks.admit(conn, row, part, digest, who)
        try:
            await conn.execute(update(uploads).where(uploads.c.id == row.id).values(
                status="complete", completed_at=func.now(), dataset_id=dataset_id,
                job_id=job_id))
        except BaseException:
            hooks.undo(part, dataset_id, row.filename)
            raise
    request.state.audit_detail = {"upload": row.id, "dataset": dataset_id, "job": job_id}
    return {"Twinbase-Dataset-Id": str(dataset_id), "Twinbase-Job-Id": str(job_id)}


def _http_date(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
