"""The upload a client makes through the service's tus endpoint (one POST, one PATCH), shared
by the test folders that ingest through the API. (Not in conftest.py: every test folder has
a module named conftest, so importing one by name can get another folder's.)"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx

TUS = {"Tus-Resumable": "1.0.0"}


def upload(server: Any, headers: dict[str, str], data: bytes, **meta: str) -> tuple[int, int]:
    """Upload ``data`` in one tus PATCH with ``meta`` as Upload-Metadata; return (dataset
    id, job id)."""
    fields = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta.items())
    r = httpx.post(f"{server.url}/uploads", headers=TUS | headers | {
        "Upload-Length": str(len(data)), "Upload-Metadata": fields})
    assert r.status_code == 201, r.text
    done = httpx.patch(r.headers["Location"], content=data, headers=TUS | headers | {
        "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, timeout=60)
    assert done.status_code == 204, done.text
    return int(done.headers["Twinbase-Dataset-Id"]), int(done.headers["Twinbase-Job-Id"])


def upload_file(server: Any, headers: dict[str, str], path: Path, **meta: str
                ) -> tuple[int, int]:
    """:func:`upload` of a file under its own name."""
    return upload(server, headers, path.read_bytes(), **{"filename": path.name, **meta})
