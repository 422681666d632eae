"""The tile store: how fast a real tileset goes into the local tiles folder and into an S3
store (SeaweedFS, started here), and how fast it is read back through the API in proxy and
redirect mode.

    uv run python benchmarks/tile_store.py

The tileset is the AHN3 Delft crop tiled by the LiDAR tiler. Writes are what a publish does
(``LocalTileStore.put_dir`` copies into the tiles folder; ``S3TileStore.put_dir`` uploads with
the default 16 parallel puts), each the median of 3 rounds into a fresh version prefix.
Reads fetch every file of the version once through ``twinbase serve`` (2 processes) with 8
client threads, median of 3 rounds; redirect mode follows each 307 to SeaweedFS.

The last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import update

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers_seaweedfs import ACCESS_KEY, REGION, SECRET_KEY, SeaweedS3  # noqa: E402
from helpers_server import ServeProcess  # noqa: E402

from service.core import db  # noqa: E402
from service.core.tables import tilesets  # noqa: E402
from service.runtime.embedded_pg import EmbeddedPostgres  # noqa: E402
from service.tilesets.storage import LocalTileStore, S3Config, S3TileStore  # noqa: E402
from service.tilesets.store import begin_version  # noqa: E402
from tiler.pointcloud import tile_point_cloud  # noqa: E402

SURVEY = ROOT / "tests" / "data" / "lidar" / "ahn3_delft_cropped_1.laz"
ROUNDS = 3
READERS = 8
BUCKET = "tiles"


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def read_all(url: str, name: str, version: int, rels: list[str], follow: bool) -> int:
    with httpx.Client(follow_redirects=follow, timeout=60,
                      limits=httpx.Limits(max_connections=READERS * 2)) as client:
        def one(rel: str) -> int:
            r = client.get(f"{url}/tiles/{name}/v{version}/{rel}")
            r.raise_for_status()
            return len(r.content)

        with ThreadPoolExecutor(READERS) as pool:
            return sum(pool.map(one, rels))


def main() -> None:
    load_before = [round(x, 2) for x in os.getloadavg()]
    base = Path(tempfile.mkdtemp(prefix="tile-store-bench-"))
    base.chmod(0o755)
    tiled = base / "tiled"
    tile_point_cloud(SURVEY, tiled, crs="EPSG:28992")
    files = files_of(tiled)
    rels = [p.relative_to(tiled).as_posix() for p in files]
    total = sum(p.stat().st_size for p in files)
    mb = total / 1e6

    # local: copy into the tiles folder, as a store whose scratch is elsewhere would
    local_s = []
    for r in range(ROUNDS):
        store = LocalTileStore(base / f"local-{r}")
        t = time.perf_counter()
        store.put_dir(tiled, "bench/v1")
        local_s.append(time.perf_counter() - t)

    seaweed = SeaweedS3(base / "seaweedfs").start()
    pg = EmbeddedPostgres(base / "pg")
    pg.start()
    try:
        seaweed.create_bucket(BUCKET)
        config = S3Config(endpoint=seaweed.endpoint, bucket=BUCKET, region=REGION,
                          access_key=ACCESS_KEY, secret_key=SECRET_KEY, public_url=None,
                          concurrency=16, presign_seconds=3600)
        s3 = S3TileStore(config, base / "scratch")
        db.upgrade(pg.url)
        engine = db.sync_engine(pg.url)
        s3_s = []
        version = None
        for _ in range(ROUNDS):
            tv = begin_version(engine, s3, "bench", "pointcloud", dataset_id=None, job_id=None)
            shutil.rmtree(tv.path)
            shutil.copytree(tiled, tv.path)
            t = time.perf_counter()
            s3.put_dir(tv.path, tv.prefix)
            s3_s.append(time.perf_counter() - t)
            version = tv
        assert version is not None
        with engine.begin() as conn:  # the last one published, as an ingest would
            conn.execute(update(tilesets).where(tilesets.c.id == version.id).values(
                status="published", is_current=True))

        env = {"TWINBASE_TILE_STORE": "s3", "TWINBASE_S3_ENDPOINT": seaweed.endpoint,
               "TWINBASE_S3_BUCKET": BUCKET, "TWINBASE_S3_REGION": REGION,
               "TWINBASE_S3_ACCESS_KEY": ACCESS_KEY, "TWINBASE_S3_SECRET_KEY": SECRET_KEY}
        reads: dict[str, list[float]] = {}
        for mode in ("proxy", "redirect"):
            srv = ServeProcess(pg.url, base / f"serve-{mode}" / "var",
                               env={**env, "TWINBASE_TILE_SERVING": mode},
                               args=("--workers", "2"))
            try:
                srv.wait_ready(timeout=300)  # a loaded machine starts it slowly
                read_all(srv.url, "bench", version.version, rels, mode == "redirect")  # warm
                reads[mode] = []
                for _ in range(ROUNDS):
                    t = time.perf_counter()
                    got = read_all(srv.url, "bench", version.version, rels, mode == "redirect")
                    reads[mode].append(time.perf_counter() - t)
                    assert got == total, (got, total)
            finally:
                srv.stop()
    finally:
        pg.destroy()
        seaweed.stop()
        shutil.rmtree(base, ignore_errors=True)

    def rate(seconds: list[float]) -> float:
        return round(mb / statistics.median(seconds), 1)

    print(json.dumps({
        "tileset": SURVEY.name, "objects": len(files), "bytes": total,
        "local_write_mb_s": rate(local_s), "s3_write_mb_s": rate(s3_s),
        "s3_write_objects_s": round(len(files) / statistics.median(s3_s)),
        "s3_read_proxy_mb_s": rate(reads["proxy"]),
        "s3_read_redirect_mb_s": rate(reads["redirect"]),
        "s3_read_proxy_objects_s": round(len(files) / statistics.median(reads["proxy"])),
        "s3_read_redirect_objects_s": round(len(files) / statistics.median(reads["redirect"])),
        "upload_concurrency": 16, "readers": READERS, "rounds": ROUNDS,
        "load_avg_before": load_before,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }))


if __name__ == "__main__":
    main()
