"""The OpenAPI document at /openapi.json: FastAPI's, plus what it cannot see.

- The items, item and vector tile routes are plain Starlette routes (the hottest ones: no
  per-request dependency solving), so FastAPI leaves them out; they are described in
  ``service.features.openapi`` and added here.
- Errors are RFC 9457 problem documents from one place (``service.core.errors``); FastAPI knows
  only its own 422. Every operation gets the problem schema as its ``default`` response,
  and the statuses the key and body checks answer before any route runs: 401 (no key, or
  one that is not valid), 403 (a key without the role), 413 (a body over its cap).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from service.core.auth import current_principal
from service.features import openapi as features_openapi

PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details; `detail` says what to do",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}
WRITE_METHODS = ("post", "put", "patch", "delete")


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def _key_use(dependant: Dependant) -> str | None:
    """'required' when a route's dependencies demand a key with a role, 'checked' when they
    only look at one (a key sent is checked; reads may need one), else None."""
    found: str | None = None
    stack = [dependant]
    while stack:
        d = stack.pop()
        if getattr(d.call, "required_roles", None):
            return "required"
        if d.call is current_principal:
            found = "checked"
        stack.extend(d.dependencies)
    return found


def _add_errors(op: dict[str, Any], method: str, key_use: str | None) -> None:
    responses = op.setdefault("responses", {})
    responses.setdefault("default", _problem("An error, as an RFC 9457 problem document"))
    if key_use is not None or method in WRITE_METHODS:
        responses.setdefault("401", _problem(
            "No API key where one is needed, or a key that is not valid (unknown or revoked)"))
    if key_use == "required" or method in WRITE_METHODS:
        responses.setdefault("403", _problem("The key's role may not do this"))
        op.setdefault("security", [{"bearer": []}])
    if method in ("post", "put", "patch"):
        responses.setdefault("413", _problem("The request body is over this route's limit"))
    if "422" in responses:  # FastAPI's HTTPValidationError: ours is a problem document
        responses["422"] = _problem("The request does not validate (the detail names the "
                                    "fields)")
    # a route that declares an error status with a description only still answers it with
    # a problem document (every error goes through service.core.errors)
    for status, response in responses.items():
        if status[0] in "45" and "content" not in response:
            response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}


def build(app: FastAPI, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (FastAPI's own document) with the routes and errors it lacks."""
    key_use: dict[tuple[str, str], str | None] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            for method in route.methods:
                key_use[(context.path_format, method.lower())] = _key_use(route.dependant)
    doc = features_openapi.api_document(doc, [])
    for path in features_openapi.GENERIC_PATHS:  # their handlers check the reader rule
        key_use[(path, "get")] = "checked"
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if isinstance(op, dict) and method in ("get", "head", *WRITE_METHODS):
                _add_errors(op, method, key_use.get((path, method)))
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer",
        "description": "An API key (`twinbase keys create`); `X-API-Key: <key>` works too"}
    return doc


def install(app: FastAPI) -> None:
    fastapi_document = app.openapi
    built: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not built:
            built.append(build(app, fastapi_document()))
        return built[0]

    app.openapi = openapi  # type: ignore[method-assign]
