"""Where published tileset versions live: the local tiles folder, or an S3-compatible store.

Tilers are pure libraries that write files to a folder, so both backends take a version as
a finished folder (:meth:`TileStore.put_dir`): the local store's folder is the version
itself (nothing to copy), the S3 store uploads it under the version's prefix
``<name>/v<n>/`` and the caller then removes the scratch folder. The upload comes before
the database switch (``service.jobs.publish``), so the current version is always complete
in the store; a failed upload raises :class:`ServiceUnavailable` and switches nothing.

The S3 backend uses boto3: the reference client of the protocol, kept by AWS, whose
connection pool is thread-safe. Uploads run in a thread pool (objects are many and small,
so their round trips, not bandwidth, bound a version); proxied reads stream in Starlette's
thread pool, which a sync body iterator gets anyway.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import posixpath
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from service.core.errors import ServiceUnavailable
from service.core.settings import Settings

SHORT_CACHE = "public, max-age=10, must-revalidate"
IMMUTABLE = "public, max-age=31536000, immutable"
MEDIA = {".json": "application/json", ".glb": "model/gltf-binary", ".subtree":
         "application/octet-stream", ".pnts": "application/octet-stream",
         ".b3dm": "application/octet-stream"}
# a file above this goes up in parts (boto3's managed transfer); tiles are far smaller
MULTIPART_ABOVE = 64 * 1024**2
READ_CHUNK = 256 * 1024

Progress = Callable[[int, int], None]


def media_type(name: str) -> str:
    suffix = posixpath.splitext(name)[1]
    return MEDIA.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def cache_control(name: str) -> str:
    """A version's tileset.json is replaced once (preview, then complete); content never."""
    return SHORT_CACHE if posixpath.basename(name) == "tileset.json" else IMMUTABLE


def clean_key(prefix: str, path: str) -> str | None:
    """``prefix/path`` when ``path`` stays inside the prefix (no ``..``, not absolute)."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) \
            or "\\" in path or "\x00" in path:
        return None
    return f"{prefix}/{path}"


@dataclass
class StoredObject:
    """An object (or a byte range of it) being read from the store."""

    chunks: Iterator[bytes]
    length: int
    etag: str
    content_range: str | None = None  # set for a 206 answer
    headers: dict[str, str] = field(default_factory=dict)


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int | None) -> None:
        super().__init__("range not satisfiable")
        self.size = size


class TileStore:
    """A place for tileset versions, addressed by keys ``<name>/v<n>/<file>``."""

    #: where tilers write a version (``work_dir / <name>/v<n>``) before :meth:`put_dir`
    work_dir: Path
    #: identifies the store's contents in caches shared by several stores
    ident: str

    def put_dir(self, local: Path, prefix: str, *, sent: dict[str, tuple[int, int]] | None = None,
                progress: Progress | None = None) -> int:
        """Write every file under ``local`` as ``prefix/<relative path>``; files already in
        ``sent`` (relative path -> (size, mtime_ns)) unchanged since are skipped, and every
        file written is added. Returns how many objects were written."""
        raise NotImplementedError

    def local_dir(self, prefix: str) -> Path | None:
        """The folder that holds ``prefix`` when the store is a local folder."""
        return None

    def read_bytes(self, key: str) -> bytes | None:
        """A small object whole (a tileset.json, a manifest); None when there is none."""
        raise NotImplementedError

    def open(self, key: str, byte_range: str | None = None) -> StoredObject | None:
        """Stream an object, or the range of it an HTTP ``Range`` header asks for."""
        raise NotImplementedError

    def redirect_url(self, key: str) -> str | None:
        """A URL a client can read the object from without the API, if the store has one."""
        return None

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix/``; returns how many."""
        raise NotImplementedError

    def discard_scratch(self, local: Path) -> None:
        """The version's folder after upload: removed unless it is the store itself."""


class LocalTileStore(TileStore):
    """The embedded default: versions are folders under the tiles directory, written in
    place by the tilers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work_dir = root
        self.ident = f"file:{root}"

    def _path(self, key: str) -> Path | None:
        root = self.root.resolve()
        path = (self.root / key).resolve()
        return path if path.is_relative_to(root) and path != root else None

    def put_dir(self, local: Path, prefix: str, *, sent: dict[str, tuple[int, int]] | None = None,
                progress: Progress | None = None) -> int:
        target = self._path(prefix)
        if target is None:
            raise ValueError(f"bad version prefix {prefix!r}")
        if target == local.resolve():  # written in place: nothing to copy
            return 0
        shutil.copytree(local, target, dirs_exist_ok=True)
        return sum(1 for p in local.rglob("*") if p.is_file())

    def local_dir(self, prefix: str) -> Path | None:
        return self._path(prefix)

    def read_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return path.read_bytes() if path is not None else None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def open(self, key: str, byte_range: str | None = None) -> StoredObject | None:
        raise NotImplementedError("the router serves local files with FileResponse")

    def delete_prefix(self, prefix: str) -> int:
        path = self._path(prefix)
        if path is None or not path.exists():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path, ignore_errors=True)
        return count


@dataclass(frozen=True)
class S3Config:
    endpoint: str | None
    bucket: str
    region: str
    access_key: str | None
    secret_key: str | None
    public_url: str | None
    concurrency: int
    presign_seconds: int


class S3TileStore(TileStore):
    """Any S3-compatible store (AWS S3, SeaweedFS, MinIO, Ceph RGW, ...)."""

    def __init__(self, config: S3Config, work_dir: Path) -> None:
        import boto3
        from botocore.config import Config

        self.config = config
        self.work_dir = work_dir
        self.ident = f"s3:{config.endpoint}/{config.bucket}"
        self.bucket = config.bucket
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=config.endpoint, region_name=config.region,
            aws_access_key_id=config.access_key, aws_secret_access_key=config.secret_key,
            config=Config(
                # one pooled connection per upload thread, plus the API's readers
                max_pool_connections=max(config.concurrency, 10) + 16,
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5, read_timeout=60,
                # path-style: works with every S3-compatible server and any bucket name
                s3={"addressing_style": "path"}))

    # -- writing -------------------------------------------------------------------------

    def put_dir(self, local: Path, prefix: str, *, sent: dict[str, tuple[int, int]] | None = None,
                progress: Progress | None = None) -> int:
        files: list[tuple[Path, str, tuple[int, int]]] = []
        for dirpath, _, names in os.walk(local):
            for name in names:
                path = Path(dirpath) / name
                rel = path.relative_to(local).as_posix()
                st = path.stat()
                mark = (st.st_size, st.st_mtime_ns)
                if sent is not None and sent.get(rel) == mark:
                    continue
                files.append((path, rel, mark))
        # tileset.json after the content: a preview's document names only what is there
        last = [f for f in files if posixpath.basename(f[1]) == "tileset.json"]
        rest = [f for f in files if posixpath.basename(f[1]) != "tileset.json"]
        done = 0
        lock = threading.Lock()

        def put(item: tuple[Path, str, tuple[int, int]]) -> None:
            nonlocal done
            path, rel, mark = item
            self._put_file(path, f"{prefix}/{rel}", rel)
            with lock:
                if sent is not None:
                    sent[rel] = mark
                done += 1
                if progress is not None:
                    progress(done, len(files))

        for batch in (rest, last):
            if not batch:
                continue
            with ThreadPoolExecutor(min(self.config.concurrency, len(batch)),
                                    thread_name_prefix="tile-upload") as pool:
                futures = [pool.submit(put, f) for f in batch]
                finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = next((f for f in finished if f.exception() is not None), None)
                if failed is not None:
                    for f in futures:
                        f.cancel()
                    exc = failed.exception()
                    raise ServiceUnavailable(
                        f"the tile store did not take {prefix}/ ({type(exc).__name__}: {exc}); "
                        "nothing was published") from exc
        return len(files)

    def _put_file(self, path: Path, key: str, rel: str) -> None:
        extra = {"ContentType": media_type(rel), "CacheControl": cache_control(rel)}
        if path.stat().st_size > MULTIPART_ABOVE:
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra)
            return
        with path.open("rb") as fh:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=fh, **extra)

    def discard_scratch(self, local: Path) -> None:
        shutil.rmtree(local, ignore_errors=True)
        # <scratch>/<name>/ too, once it holds no other version
        with contextlib.suppress(OSError):
            local.parent.rmdir()

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/")
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:  # at most 1,000 a page, as DeleteObjects takes
                    self.client.delete_objects(Bucket=self.bucket,
                                               Delete={"Objects": keys, "Quiet": True})
                    deleted += len(keys)
        except Exception as exc:
            raise _unavailable(f"delete {prefix}/", exc) from exc
        return deleted

    # -- reading -------------------------------------------------------------------------

    def read_bytes(self, key: str) -> bytes | None:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
            return resp["Body"].read()
        except Exception as exc:
            if _missing(exc):
                return None
            raise _unavailable(f"read {key}", exc) from exc

    def open(self, key: str, byte_range: str | None = None) -> StoredObject | None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if byte_range:
            args["Range"] = byte_range
        try:
            resp = self.client.get_object(**args)
        except Exception as exc:
            if _missing(exc):
                return None
            if _code(exc) in ("InvalidRange", "416"):
                size = None
                with contextlib.suppress(Exception):
                    size = self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
                raise RangeNotSatisfiable(size) from exc
            raise _unavailable(f"read {key}", exc) from exc
        body = resp["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(READ_CHUNK)
            finally:
                body.close()

        return StoredObject(chunks(), int(resp["ContentLength"]), resp["ETag"],
                            resp.get("ContentRange"))

    def redirect_url(self, key: str) -> str | None:
        if self.config.public_url:
            return f"{self.config.public_url.rstrip('/')}/{key}"
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.config.presign_seconds)


def _code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code"))
    return None


def _missing(exc: Exception) -> bool:
    return _code(exc) in ("NoSuchKey", "404", "NotFound")


def _unavailable(what: str, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"the tile store could not {what} ({type(exc).__name__}: {exc})",
                              headers={"Retry-After": "10"})


@lru_cache(maxsize=16)
def _s3_store(config: S3Config, work_dir: Path) -> S3TileStore:
    return S3TileStore(config, work_dir)


def tile_store(settings: Settings) -> TileStore:
    """The store ``settings`` name (one S3 client per configuration, shared by threads)."""
    if settings.tile_store == "local":
        return LocalTileStore(settings.tiles_dir)
    assert settings.s3_bucket is not None  # checked by Settings
    return _s3_store(S3Config(
        endpoint=settings.s3_endpoint, bucket=settings.s3_bucket, region=settings.s3_region,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key
        else None, public_url=settings.tile_public_url,
        concurrency=settings.s3_upload_concurrency,
        presign_seconds=settings.s3_presign_seconds), settings.tiles_scratch_dir)
