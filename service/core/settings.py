"""Service settings from the environment (prefix ``TWINBASE_``; ``DATABASE_URL`` as is)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TWINBASE_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "TWINBASE_DATABASE_URL"),
        description="PostgreSQL + PostGIS server to use; unset = start an embedded cluster",
    )
    data_dir: Path = Field(Path("var"), description="uploads, tiles and the embedded cluster")
    pg_dir: Path | None = Field(None, description="embedded cluster directory (default: derived)")
    host: str = "127.0.0.1"
    public_url: str | None = Field(
        None, description="the service's address as clients reach it, e.g. "
        "https://twin.example.org (a path is the prefix a proxy strips): every absolute link "
        "is built from it instead of the request's Host header")
    port: int = 8000
    max_upload_bytes: int = Field(50 * 1024**3, description="largest upload accepted (413 above)")
    upload_expiry_hours: int = 72
    max_body_bytes: int = Field(
        4 * 1024**2, description="largest request body of a write (413 above); a batch of "
        "10,000 telemetry reports is about 2 MB")
    max_batch_body_bytes: int = Field(
        64 * 1024**2, description="largest layer batch body under /layers/ (413 above)")
    upload_free_reserve_bytes: int = Field(
        1024**3, description="disk space uploads must leave free (507 for an upload that would "
        "not): tiles, spill files and the embedded database share the disk")
    read_requires_key: bool = Field(False, description="tiles and layers need a viewer key")
    city_export_max_objects: int = Field(
        20_000, ge=0, description="most city objects one CityJSON document of /city/export "
        "holds (422 above; CityJSONSeq has no limit): the document's shared vertex list is "
        "kept until its end")
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    in_process_worker: bool | None = Field(
        None, description="run a job worker inside `serve` (default: yes with the embedded db)"
    )
    worker_concurrency: int = 1
    telemetry_retention_days: int | None = Field(
        90, description="days of drone telemetry kept (daily partitions past it are dropped; "
        "older reports are refused); empty: kept for ever")
    observations_retention_days: int | None = Field(
        None, description="days of traffic and water observations kept (monthly partitions "
        "past it are dropped); empty: kept for ever")
    job_max_attempts: int = Field(3, description="runs of a job before it is failed for good")
    lidar_split_above_points: int = Field(
        50_000_000, ge=0, description="a LiDAR survey with more points is tiled in spatial "
        "chunks, one job each, by every worker (an upload's `split` option asks for it or "
        "against it); the workers then share `<data_dir>/split`")
    lidar_chunk_points: int = Field(
        3_000_000, ge=1, description="points per chunk of a split LiDAR survey (whole "
        "octree cells: a chunk may hold more)")
    heartbeat_seconds: float = 5.0
    job_handlers: str = Field(
        "service.domains:JOB_HANDLERS",
        description="dotted path (module:attribute) of the map of job kind to handler")
    warm_start: bool = Field(
        True, description="prepare a job worker when it starts: load the job libraries and "
        "start the IFC geometry processes, so the first jobs do not wait for them (some "
        "CPU seconds and 2 processes per worker)")
    stalled_after_seconds: float = Field(30.0, description="a worker silent this long is dead")
    load_samples: bool = Field(True, description="ingest data/ samples into an empty database")
    demo: bool = Field(True, description="load the synthetic Longgang demo district on the "
                       "first start and fly its drones while serving")
    samples_dir: Path = Path("data")
    log_level: str = "info"
    tile_store: Literal["local", "s3"] = Field(
        "local", description="where published tilesets live: `local` (the tiles folder under "
        "data_dir) or `s3` (any S3-compatible object store; tilers then write to a scratch "
        "folder that is uploaded, and removed, before each publish)")
    tile_serving: Literal["proxy", "redirect"] = Field(
        "proxy", description="with the s3 store: `proxy` streams tiles through the API "
        "(Range requests too); `redirect` answers versioned files with a 307 to a presigned "
        "URL of the store, or to tile_public_url")
    tile_public_url: str | None = Field(
        None, description="s3 redirect mode: base URL of a CDN (or a public-read bucket) in "
        "front of the store; a tile's URL is this base + its key (<name>/v<n>/<file>)")
    s3_endpoint: str | None = Field(None, description="S3 endpoint URL (unset: AWS)")
    s3_bucket: str | None = Field(None, description="bucket of the tile store")
    s3_region: str = "us-east-1"
    s3_access_key: str | None = Field(None, description="unset: boto3's credential chain")
    s3_secret_key: SecretStr | None = None
    s3_upload_concurrency: int = Field(16, ge=1, le=256,
                                       description="parallel object uploads of one version")
    s3_presign_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600,
                                    description="lifetime of a redirect's presigned URL")
    home_lon: float = Field(114.25, ge=-180, le=180,
                            description="the dashboard's home area: centre longitude (WGS 84)")
    home_lat: float = Field(22.72, ge=-90, le=90,
                            description="the dashboard's home area: centre latitude (WGS 84)")
    home_radius_m: float = Field(
        6000, gt=0, description="the dashboard's home area: radius in metres; the first view "
        "flies there when a published tileset lies in it, else to the newest dataset")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query \
                    or parts.fragment:
                raise ValueError("TWINBASE_PUBLIC_URL must be http(s)://host[:port][/prefix], "
                                 f"not {value!r}")
        return value or None

    @model_validator(mode="after")
    def _store(self) -> Settings:
        if self.tile_store == "s3" and not self.s3_bucket:
            raise ValueError("TWINBASE_TILE_STORE=s3 needs TWINBASE_S3_BUCKET")
        return self

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def tiles_dir(self) -> Path:
        return self.data_dir / "tiles"

    @property
    def tiles_scratch_dir(self) -> Path:
        """Where tilers write a version before it is uploaded to an s3 store."""
        return self.data_dir / "scratch" / "tiles"


@lru_cache
def get_settings() -> Settings:
    return Settings()
