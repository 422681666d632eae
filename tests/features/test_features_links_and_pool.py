"""Paging links built from the request as sent, and reads that outlive their connection."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
import psycopg
import pytest

BBOX = "114.2446,22.7177,114.2494,22.7223"


def _links(page: dict) -> dict[str, str]:
    return {link["rel"]: link["href"] for link in page["links"]}


def test_next_and_prev_links_keep_every_other_parameter(server):
    params = {"bbox": BBOX, "limit": "5", "filter": "lanes >= 1 AND name LIKE '测试%'",
              "filter-lang": "cql2-text", "offset": "5"}
    r = httpx.get(f"{server.url}/collections/road_segments/items", params=params, timeout=30)
    assert r.status_code == 200, r.text
    links = _links(r.json())
    assert links["self"] == str(r.url)
    for rel, offset in (("next", "10"), ("prev", None)):
        url = urlsplit(links[rel])
        assert f"{url.scheme}://{url.netloc}{url.path}" == \
            f"{server.url}/collections/road_segments/items"
        query = dict(parse_qsl(url.query))
        assert query.pop("offset", None) == offset
        assert query == {k: v for k, v in params.items() if k != "offset"}
    following = httpx.get(links["next"], timeout=30).json()
    assert _links(following)["prev"] == links["self"]


def test_links_follow_the_host_the_client_used(server):
    r = httpx.get(f"{server.url}/collections/road_segments/items",
                  params={"bbox": BBOX, "limit": "2"}, headers={"Host": "maps.example.org"},
                  timeout=30)
    links = _links(r.json())
    assert links["self"].startswith("http://maps.example.org/collections/road_segments/items?")
    assert links["next"].startswith("http://maps.example.org/collections/road_segments/items?")
    assert links["collection"] == "http://maps.example.org/collections/road_segments"
    one = r.json()["features"][0]["id"]
    feature = httpx.get(f"{server.url}/collections/road_segments/items/{one}",
                        headers={"Host": "maps.example.org"}, timeout=30).json()
    assert _links(feature)["self"] == \
        f"http://maps.example.org/collections/road_segments/items/{one}"


def test_a_query_string_that_is_not_utf8_is_a_400():
    from service.core.errors import BadRequest
    from service.features.responses import request_urls

    scope = {"type": "http", "scheme": "http", "server": ("127.0.0.1", 8000), "path": "/x",
             "root_path": "", "headers": [], "query_string": b"limit=1&name=\xff"}
    with pytest.raises(BadRequest, match="not UTF-8"):
        request_urls(scope)
    scope["query_string"] = "name=测试".encode()
    assert request_urls(scope) == ("http://127.0.0.1:8000", "http://127.0.0.1:8000/x?name=测试")


def test_reads_go_on_after_their_database_connections_are_terminated(server, db_url):
    paths = ["/collections/road_segments/items?limit=2",
             "/collections/road_segments/tiles/WebMercatorQuad/14/13393/7131"]
    for path in paths:  # the read pool now holds open connections
        assert httpx.get(server.url + path, timeout=30).status_code == 200
    with psycopg.connect(db_url, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'twinbase-features'").fetchone()[0]
    assert ended >= 1
    feature = httpx.get(server.url + paths[0], timeout=30).json()["features"][0]["id"]
    for path in [*paths, f"/collections/road_segments/items/{feature}"]:
        assert httpx.get(server.url + path, timeout=30).status_code == 200, path


def test_the_read_gate_serves_waiting_requests_in_arrival_order(monkeypatch):
    import asyncio

    from service.core.errors import ServiceUnavailable
    from service.features import engine

    async def scenario() -> list[str]:
        reads = engine.ReadPool(pool=None, gate=asyncio.Semaphore(1))
        order: list[str] = []

        async def request(name: str) -> None:
            await reads.acquire()
            order.append(name)
            await asyncio.sleep(0)
            reads.gate.release()

        await reads.acquire()  # one request holds the only connection
        waiting = [asyncio.create_task(request(f"w{i}")) for i in range(3)]
        await asyncio.sleep(0.01)
        reads.gate.release()
        late = asyncio.create_task(request("late"))  # arrives as the connection comes back
        await asyncio.gather(*waiting, late)
        # nobody waits forever: past the limit the request gets a 503 with the reason
        monkeypatch.setattr(engine, "WAIT_TIMEOUT_S", 0.05)
        await reads.acquire()
        with pytest.raises(ServiceUnavailable, match="stayed busy"):
            await reads.acquire()
        return order

    assert asyncio.run(scenario()) == ["w0", "w1", "w2", "late"]
