"""Errors are RFC 9457 problem documents, from one place."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.app import create_app


@pytest.fixture
def client(settings, db_url):
    with TestClient(create_app(settings, db_url, in_process_worker=False)) as c:
        yield c


def _is_problem(r, status: int) -> dict:
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["title"] and body["detail"]
    return body


def test_unknown_path(client):
    body = _is_problem(client.get("/no/such/thing"), 404)
    assert body["instance"] == "/no/such/thing"


def test_unknown_job(client):
    assert "no job 999999" in _is_problem(client.get("/jobs/999999"), 404)["detail"]


def test_validation_error_names_the_field(client, auth):
    r = client.post("/jobs/selfcheck", json={"steps": -3}, headers=auth("admin"))
    body = _is_problem(r, 422)
    assert "steps" in body["detail"]
    assert body["errors"][0]["loc"][-1] == "steps"


def test_method_not_allowed(client):
    _is_problem(client.delete("/health"), 405)


def test_health_ready_docs_metrics(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["status"] == "ready"
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/uploads" in spec["paths"] and "/jobs/{job_id}" in spec["paths"]
    client.get("/health")
    metrics = client.get("/metrics").text
    assert 'twinbase_http_requests_total{method="GET",route="/health",status="200"}' in metrics
