"""Property-based: requests generated from the service's own OpenAPI document (schemathesis,
valid and invalid data), sent to a live server on a real PostGIS with sample rows in it, never
get a 5xx, and their responses match the document where it describes them.

Bounded to a few examples per operation so it stays a test; ``TWINBASE_FUZZ_EXAMPLES``
raises the bound for a longer hunt (``schemathesis run`` against ``twinbase serve`` is the
other way)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from service.app import create_app
from service.core.settings import Settings

EXAMPLES = int(os.environ.get("TWINBASE_FUZZ_EXAMPLES", "6"))
SEGMENT = {"type": "Feature", "geometry": {"type": "LineString",
                                           "coordinates": [[114.25, 22.72], [114.26, 22.73]]},
           "properties": {"code": "fuzz-road", "road_class": "primary", "lanes": 4,
                          "speed_limit_kmh": 60}}
STATION = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [114.24, 22.71]},
           "properties": {"code": "fuzz-station", "name": "Fuzz", "water_body": "Longgang River",
                          "body_type": "river"}}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, db_url, live_server_factory) -> Iterator[object]:
    settings = Settings(database_url=db_url, data_dir=tmp_path_factory.mktemp("fuzz") / "var",
                        max_upload_bytes=1024 * 1024, in_process_worker=False,
                        load_samples=False)
    with live_server_factory(create_app(settings, db_url, in_process_worker=False)) as server:
        yield server


@pytest.fixture(scope="module")
def fuzz_key(db_url) -> str:
    from service.core.auth import create_key
    from service.core.db import sync_engine

    with sync_engine(db_url).begin() as conn:
        return create_key(conn, f"fuzz-admin-{os.getpid()}-{id(conn)}", "admin")


@pytest.fixture(scope="module")
def api_schema(fuzz_server, fuzz_key):
    headers = {"Authorization": f"Bearer {fuzz_key}"}
    # rows for the generated ids and filters to find (upserted by code: reruns are alike)
    for path, feature in (("/layers/traffic/segments", SEGMENT),
                          ("/layers/water/stations", STATION)):
        r = httpx.post(fuzz_server.url + path, headers=headers,
                       json={"type": "FeatureCollection", "features": [feature]})
        assert r.status_code == 201, r.text
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    # revoking keys would revoke the one the requests carry; that route is tested apart
    return schema.exclude(path_regex=r"^/keys/")


def test_no_server_errors(api_schema, fuzz_server, fuzz_key) -> None:
    headers = {"Authorization": f"Bearer {fuzz_key}"}
    failures: list[str] = []
    operations = runs = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                case.call_and_validate(base_url=fuzz_server.url, headers=headers, timeout=30,
                                       checks=[not_a_server_error, response_schema_conformance])

            try:
                run()
                runs += 1
            except Unsatisfiable:  # nothing of this operation can be made invalid
                continue
            except Exception as exc:  # every operation is tried; all failures are reported
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations > 50 and runs > operations
    assert not failures, "\n\n".join(failures)
