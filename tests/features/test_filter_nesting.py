"""Deeply nested CQL2 filters are refused with a 400 before the parser sees them.

The cql2 parser (Rust) recurses once per parenthesis, prefix operator and chained
operator and overflows the stack at about 1,500 levels: the process dies with SIGSEGV.
The attacks run against ``twinbase serve`` in a process of its own, so a crash fails these
tests (and says so) instead of ending the test session."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from helpers_server import ServeProcess

from service.features.cql2sql import (
    MAX_JSON_NESTING,
    MAX_TEXT_NESTING,
    json_nesting,
    text_nesting,
)

ITEMS = "/collections/city_objects/items"
TILE = "/collections/city_objects/tiles/WebMercatorQuad/12/3340/1781"

# each of these overflowed an 8 MB stack in cql2 0.6.0 (the thresholds were 1,560 parentheses,
# 3,473 unary minuses, 3,421 NOTs, 3,105 nested calls, 3,906 chained comparisons)
ATTACKS = {
    "parentheses": "(" * 1800 + "height>1" + ")" * 1800,
    "unary minus": "height > " + "-" * 6000 + "1",
    "unary minus, spaced": "height > " + "- " * 4000 + "1",
    "NOT": "NOT " * 4000 + "height>1",
    "function calls": "f(" * 4000 + "1" + ")" * 4000 + " = 1",
    "chained comparison": "=".join(["1"] * 4500),
    "chained sum": "height > " + "+".join(["1"] * 9500),
    "arrays": "A_CONTAINS(x, " + "(" * 1800 + "1" + ")" * 1800 + ")",
    "minus and parentheses": "height > " + "-(" * 1200 + "1" + ")" * 1200,
}


@pytest.fixture(scope="module")
def server(db_url, tmp_path_factory) -> Iterator[ServeProcess]:
    with ServeProcess(db_url, tmp_path_factory.mktemp("nesting") / "var") as served:
        yield served


def _get(server: ServeProcess, path: str, **params: str) -> httpx.Response:
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    try:
        return httpx.get(f"{server.url}{path}?{query}", timeout=30)
    except httpx.TransportError as exc:
        server.proc.wait(10)
        raise AssertionError(f"no answer ({exc!r}); {server.why_dead()}") from None


@pytest.mark.parametrize("name", list(ATTACKS))
def test_deep_text_filter_is_refused_and_the_server_lives(server, name):
    for path in (ITEMS, TILE):
        r = _get(server, path, filter=ATTACKS[name])
        assert r.status_code == 400, (name, path, r.status_code, r.text[:300])
        assert r.headers["content-type"] == "application/problem+json"
        assert "nests too deeply" in r.json()["detail"]
    assert server.alive(), server.why_dead()
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_deep_json_filter_is_refused(server):
    deep = '{"op":"not","args":[' * 400 + '{"op":"=","args":[1,1]}' + "]}" * 400
    r = _get(server, ITEMS, filter=deep, **{"filter-lang": "cql2-json"})
    assert r.status_code == 400 and "nests too deeply" in r.json()["detail"], r.text[:300]
    assert server.alive(), server.why_dead()


def test_ordinary_filters_still_work(server):
    polygon = ("S_INTERSECTS(geometry, POLYGON((-180 -90, 180 -90, 180 90, -180 90, "
               "-180 -90)))")
    for flt in ("height > 1", "((((height > -(-1)))))", "NOT (height < 0 AND type = 'x')",
                polygon, "name = '" + "(" * 3000 + "'", "name = 'it''s ((((('",
                "height BETWEEN -1 AND 1e3 OR type IN ('Building', 'Road')"):
        r = _get(server, ITEMS, filter=flt, limit="1")
        assert r.status_code == 200, (flt[:80], r.text[:300])
        assert r.json()["type"] == "FeatureCollection"
    # a filter right at the bound parses; one past it is refused
    at = "(" * (MAX_TEXT_NESTING - 1) + "height > 1" + ")" * (MAX_TEXT_NESTING - 1)
    assert _get(server, ITEMS, filter=at, limit="1").status_code == 200
    past = "(" * MAX_TEXT_NESTING + "height > 1" + ")" * MAX_TEXT_NESTING
    assert "nests too deeply" in _get(server, ITEMS, filter=past).json()["detail"]


def test_string_literals_and_quoted_quotes_do_not_count():
    assert text_nesting("name = '" + "(" * 5000 + "'") == 1
    assert text_nesting("name = 'it''s ((((' AND type = ')))'") == 1
    assert text_nesting("(" * 10 + "a=1" + ")" * 10) == 11
    assert json_nesting('{"a": "[[[[{{{{\\"[[["}') == 1
    assert json_nesting("[" * 200 + "]" * 200) == 200 > MAX_JSON_NESTING


def test_everything_the_bound_lets_through_parses_on_a_small_stack():
    """The worst filters under the bound, of every recursive construct of the grammar, parse
    on a 1 MiB thread stack (an eighth of the main thread's), in a child process so an
    overflow fails this test instead of ending the session."""
    program = textwrap.dedent(f"""
        import threading
        import cql2
        from service.features.cql2sql import text_nesting
        M = {MAX_TEXT_NESTING}
        shapes = [
            lambda n: "(" * n + "height>1" + ")" * n,
            lambda n: "height > " + "-" * n + "1",
            lambda n: "NOT " * n + "height>1",
            lambda n: "f(" * n + "1" + ")" * n + " = 1",
            lambda n: "height > " + "-(" * n + "1" + ")" * n,
            lambda n: "NOT (" * n + "a=1" + ")" * n,
            lambda n: "=".join(["1"] * n),
            lambda n: "height > " + "+".join(["1"] * n),
            lambda n: "height > " + "^".join(["-1"] * n),
            lambda n: "A_CONTAINS(x, " + "(" * n + "1" + ")" * n + ")",
        ]
        worst = []
        for shape in shapes:
            n = 1
            while text_nesting(shape(n + 1)) <= M:
                n += 1
            worst.append(shape(n))
        def run():
            for text in worst:
                try:
                    cql2.parse_text(text).to_json()
                except Exception:
                    pass  # a parse error is an answer; only a crash is not
            print("parsed", len(worst))
        threading.stack_size(1024 * 1024)
        t = threading.Thread(target=run)
        t.start()
        t.join()
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "parsed 10" in done.stdout
