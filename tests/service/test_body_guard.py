"""The key is checked before a body is read, and every body has a cap.

Against ``twinbase serve`` in a process of its own (its memory is measured in /proc), with
raw sockets: the client sends the head and keeps sending the body while it waits for the
answer, so a server that reads the whole body first is seen doing it."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from helpers_server import ServeProcess

MiB = 1024 * 1024
# a telemetry report as a client sends them; repeated, the body of the attack
REPORT = (b'{"drone_id":1,"t":"2026-06-01T08:00:00Z","lon":114.2461,"lat":22.7203,"h":120.5,'
          b'"speed":12.1,"heading":270.0,"battery":0.81},')


@pytest.fixture(scope="module")
def server(db_url, tmp_path_factory) -> Iterator[ServeProcess]:
    with ServeProcess(db_url, tmp_path_factory.mktemp("guard") / "var") as served:
        yield served


class Sent:
    def __init__(self) -> None:
        self.bytes = 0
        self.done = False


def _request(server: ServeProcess, method: str, path: str, headers: dict[str, str],
             body_size: int, *, chunked: bool = False, wait_s: float = 30
             ) -> tuple[http.client.HTTPResponse, bytes, Sent, float]:
    """Send the head, then ``body_size`` bytes of JSON from another thread while reading the
    answer here; the (answer, its body, what was sent by then, seconds to the answer)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=wait_s)
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
            "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {body_size}")
    sent = Sent()
    stop = threading.Event()

    def body() -> None:
        piece = b'{"points":[' + REPORT * (256 * 1024 // len(REPORT))
        try:
            while sent.bytes < body_size and not stop.is_set():
                chunk = piece[: body_size - sent.bytes]
                frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
                sock.sendall(frame)
                sent.bytes += len(chunk)
            if chunked and not stop.is_set():
                sock.sendall(b"0\r\n\r\n")
            sent.done = sent.bytes >= body_size
        except OSError:  # the server answered and closed: the rest is not wanted
            pass

    start = time.monotonic()
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    sender = threading.Thread(target=body, daemon=True)
    sender.start()
    try:
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        took = time.monotonic() - start
        content = answer.read()
    finally:
        stop.set()
        sock.close()
        sender.join(30)
    return answer, content, sent, took


@pytest.mark.parametrize("path", ["/telemetry", "/keys", "/drone-routes/validate",
                                  "/layers/traffic/observations", "/bim/datasets/1/ingest",
                                  "/uploads"])
def test_a_write_without_a_key_is_refused_before_its_body_is_read(server, path):
    rss = server.rss_kib()
    size = 48 * MiB
    answer, content, sent, took = _request(server, "POST", path, {}, size)
    assert answer.status == 401, content[:300]
    assert answer.getheader("content-type") == "application/problem+json"
    assert "API key" in json.loads(content)["detail"]
    # answered while the client was still sending: the server never waited for the body
    assert not sent.done and sent.bytes < size // 2, (sent.bytes, took)
    assert server.rss_kib() - rss < 16 * 1024, (rss, server.rss_kib())
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_a_write_with_a_wrong_key_is_refused_before_its_body_is_read(server):
    answer, content, sent, _ = _request(server, "POST", "/telemetry",
                                        {"Authorization": "Bearer tb_not-a-key"}, 48 * MiB)
    assert answer.status == 401 and "not valid" in json.loads(content)["detail"]
    assert not sent.done


def test_an_oversized_body_with_a_valid_key_is_413_by_its_length(server, make_key):
    key = {"Authorization": f"Bearer {make_key('operator')}"}
    rss = server.rss_kib()
    answer, content, sent, _ = _request(server, "POST", "/telemetry", key, 100 * MiB)
    assert answer.status == 413, content[:300]
    problem = json.loads(content)
    assert problem["type"].endswith("/payload-too-large")
    assert "limit of 4 MiB" in problem["detail"]
    assert not sent.done and server.rss_kib() - rss < 16 * 1024


def test_an_oversized_chunked_body_is_cut_at_the_cap(server, make_key):
    key = {"Authorization": f"Bearer {make_key('operator')}"}
    rss = server.rss_kib()
    answer, content, sent, _ = _request(server, "POST", "/telemetry", key, 100 * MiB,
                                        chunked=True)
    assert answer.status == 413, content[:300]
    problem = json.loads(content)
    assert problem["type"].endswith("/payload-too-large") and "4 MiB" in problem["detail"]
    assert not sent.done and server.rss_kib() - rss < 32 * 1024


def test_layer_batches_have_a_larger_cap(server, make_key):
    """A 6 MiB batch passes the guard (its rows are then checked: these name no segment)."""
    key = {"Authorization": f"Bearer {make_key('operator')}"}
    row = b'{"segment_code":"NO-SUCH","observed_at":"2026-06-01T08:00:00Z","volume":10},'
    body = b"[" + row * (6 * MiB // len(row)) + row[:-1] + b"]"
    r = httpx.post(f"{server.url}/layers/traffic/observations", content=body, timeout=60,
                   headers=key | {"Content-Type": "application/json"})
    assert r.status_code not in (401, 413), r.text[:300]
    assert r.status_code in (400, 422) and r.headers["content-type"] == \
        "application/problem+json", r.text[:300]
    over = httpx.post(f"{server.url}/layers/traffic/observations", timeout=60,
                      content=b" " * (65 * MiB), headers=key)
    assert over.status_code == 413 and "64 MiB" in over.json()["detail"]


def test_ordinary_writes_still_work(server, make_key):
    admin = {"Authorization": f"Bearer {make_key('admin')}"}
    name = f"guard-test-{time.monotonic_ns()}"
    made = httpx.post(f"{server.url}/keys", json={"name": name, "role": "viewer"},
                      headers=admin, timeout=30)
    assert made.status_code == 201, made.text
    # the same through a chunked body (no Content-Length)
    chunked = httpx.post(f"{server.url}/keys", headers=admin | {
        "Content-Type": "application/json"}, timeout=30,
        content=iter([json.dumps({"name": name + "-2", "role": "viewer"}).encode()]))
    assert chunked.status_code == 201, chunked.text
    # a viewer's key is a valid key: the role is checked by the route, after the body
    viewer = {"Authorization": f"Bearer {made.json()['key']}"}
    refused = httpx.post(f"{server.url}/keys", json={"name": "x", "role": "viewer"},
                         headers=viewer, timeout=30)
    assert refused.status_code == 403
