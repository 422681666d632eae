"""Service settings from the environment (prefix ``TWINBASE_``; ``DATABASE_URL`` as is)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
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
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    in_process_worker: bool | None = Field(
        None, description="run a job worker inside `serve` (default: yes with the embedded db)"
    )
    worker_concurrency: int = 1
    job_max_attempts: int = Field(3, description="runs of a job before it is failed for good")
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
    samples_dir: Path = Path("data")
    log_level: str = "info"
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

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def tiles_dir(self) -> Path:
        return self.data_dir / "tiles"


@lru_cache
def get_settings() -> Settings:
    return Settings()
