"""/openapi.json describes every route and the errors they answer (problem documents)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.app import create_app

PROBLEM = "application/problem+json"
GENERIC = ("/collections/{collectionId}/items", "/collections/{collectionId}/items/{featureId}",
           "/collections/{collectionId}/tiles/WebMercatorQuad/{z}/{x}/{y}")


@pytest.fixture
def client(settings, db_url):
    with TestClient(create_app(settings, db_url, in_process_worker=False)) as c:
        yield c


def _operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in ("get", "head", "post", "put", "patch", "delete"):
                yield path, method, op


def _is_problem_response(response: dict) -> bool:
    schema = response.get("content", {}).get(PROBLEM, {}).get("schema", {})
    return schema == {"$ref": "#/components/schemas/Problem"}


def _conforms(body: dict, schema: dict) -> None:
    assert set(schema["required"]) <= set(body), body
    types = {"string": str, "integer": int}
    for name, spec in schema["properties"].items():
        if name in body:
            assert isinstance(body[name], types[spec["type"]]), (name, body)


def test_items_and_tiles_routes_are_in_the_document(client):
    doc = client.get("/openapi.json").json()
    for path in GENERIC:
        assert "get" in doc["paths"][path], path
    items = doc["paths"][GENERIC[0]]["get"]
    assert {"filter", "filter-lang", "bbox", "limit"} <= {p["name"] for p in items["parameters"]}
    assert "application/vnd.mapbox-vector-tile" in \
        doc["paths"][GENERIC[2]]["get"]["responses"]["200"]["content"]
    # /api keeps its collection paths on top of the same document
    api = client.get("/api").json()
    assert "/collections/road_segments/items" in api["paths"]
    assert _is_problem_response(api["paths"][GENERIC[0]]["get"]["responses"]["default"])


def test_every_operation_documents_its_errors_as_problems(client):
    doc = client.get("/openapi.json").json()
    problem = doc["components"]["schemas"]["Problem"]
    assert problem["required"] == ["type", "title", "status", "detail"]
    writes = 0
    for path, method, op in _operations(doc):
        if path == "/uploads/{upload_id}" and method == "head":
            continue  # tus HEAD answers headers only, never a body
        responses = op["responses"]
        assert _is_problem_response(responses["default"]), (method, path)
        if "422" in responses:
            assert _is_problem_response(responses["422"]), (method, path)
        if method in ("post", "put", "patch", "delete"):
            writes += 1
            assert _is_problem_response(responses["401"]), (method, path)
            assert _is_problem_response(responses["403"]), (method, path)
            assert op["security"] == [{"bearer": []}]
        if method in ("post", "put", "patch"):
            assert _is_problem_response(responses["413"]), (method, path)
    assert writes >= 20
    # reads that check a key say so; the process's own health does not
    assert "401" in doc["paths"]["/tiles/{name}/tileset.json"]["get"]["responses"]
    assert "401" in doc["paths"][GENERIC[0]]["get"]["responses"]
    assert "401" not in doc["paths"]["/health"]["get"]["responses"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_errors_answered_match_the_documented_schema(client, auth):
    problem = client.get("/openapi.json").json()["components"]["schemas"]["Problem"]
    answers = [
        client.post("/keys", json={"name": "x", "role": "viewer"}),  # 401
        client.post("/keys", json={"name": "x", "role": "viewer"}, headers=auth("viewer")),
        client.post("/keys", content=b"{" + b" " * (5 * 2**20) + b"}",
                    headers=auth("admin") | {"Content-Type": "application/json"}),  # 413
        client.get("/collections/no_such/items"),  # 404
        client.post("/keys", json={"name": ""}, headers=auth("admin")),  # 422
    ]
    assert [r.status_code for r in answers] == [401, 403, 413, 404, 422]
    for r in answers:
        assert r.headers["content-type"] == PROBLEM
        _conforms(r.json(), problem)


def test_every_write_route_needs_a_key(settings, db_url):
    """The body guard refuses a write without a key before the route runs; that is right
    only while no write route is public. A public write would need the guard to learn it."""
    from fastapi.routing import APIRoute, iter_route_contexts

    from service.api_doc import _key_use

    app = create_app(settings, db_url, in_process_worker=False)
    writes = [(c.path_format, m) for c in iter_route_contexts(app.routes)
              if isinstance(c.original_route, APIRoute)
              for m in c.original_route.methods if m not in ("GET", "HEAD", "OPTIONS")]
    assert len(writes) >= 20
    public = [w for c in iter_route_contexts(app.routes)
              if isinstance(c.original_route, APIRoute)
              for w in [(c.path_format, sorted(c.original_route.methods))]
              if set(c.original_route.methods) - {"GET", "HEAD", "OPTIONS"}
              and _key_use(c.original_route.dependant) != "required"]
    assert public == []
