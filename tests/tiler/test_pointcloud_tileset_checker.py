"""The shared tileset helpers and rule checker: each rule the checker claims to enforce is
shown to catch a broken tileset (a checker that passes everything proves nothing)."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers_tileset import check_tileset

from tiler.frames import EnuFrame
from tiler.pointcloud.content import points_glb, read_points_glb
from tiler.tileset import (
    box_contains_box,
    box_from_bounds,
    points_in_box,
    region_contains_region,
    region_from_degrees,
    tileset_document,
    write_json_atomic,
)


def _tileset(tmp_path: Path) -> dict:
    """A valid two-tile point tileset placed in Longgang."""
    rng = np.random.default_rng(1)
    tiles = []
    for i, (lo, hi) in enumerate([((0, 0, 0), (100, 100, 20)), ((0, 0, 0), (50, 50, 10))]):
        pts = rng.uniform(lo, hi, (200, 3))
        glb, blo, bhi = points_glb(pts, None, np.zeros(200, np.uint16),
                                   np.zeros(200, np.uint8), "none")
        (tmp_path / f"t{i}.glb").write_bytes(glb)
        tiles.append({"boundingVolume": {"box": box_from_bounds(blo, bhi, 1e-3)},
                      "geometricError": 2.0 - 2.0 * i, "refine": "ADD",
                      "content": {"uri": f"t{i}.glb"}})
    root, child = tiles
    root["boundingVolume"]["box"] = box_from_bounds((0, 0, 0), (100, 100, 20), 1e-3)
    root["transform"] = EnuFrame(114.0, 22.7, 50.0).matrix()
    root["children"] = [child]
    return tileset_document(root, 10.0)


def _issues(tmp_path: Path, doc: dict) -> list[str]:
    path = tmp_path / "tileset.json"
    write_json_atomic(path, doc)
    return check_tileset(path)


def test_valid_tileset_passes(tmp_path: Path) -> None:
    assert _issues(tmp_path, _tileset(tmp_path)) == []


@pytest.mark.parametrize(("breakage", "expected"), [
    (lambda d: d["asset"].update(version="1.0"), "asset.version"),
    (lambda d: d["asset"].update(gltfUpAxis="Z"), "gltfUpAxis"),
    (lambda d: d["root"]["children"][0].update(geometricError=5.0), "larger than its parent"),
    (lambda d: d.update(geometricError=-1), "non-negative"),
    (lambda d: d["root"].update(refine="add"), "ADD or REPLACE"),
    (lambda d: d["root"].pop("refine"), "refine is required"),
    (lambda d: d["root"]["children"][0]["content"].update(uri="missing.glb"), "does not resolve"),
    (lambda d: d["root"]["children"][0]["boundingVolume"].update(
        box=box_from_bounds((0, 0, 0), (150, 50, 10))), "not inside its parent"),
    (lambda d: d["root"]["children"][0]["boundingVolume"].update(
        box=box_from_bounds((0, 0, 0), (20, 20, 5))), "outside the tile bounding volume"),
    (lambda d: d["root"].update(transform=[0.0] * 16), "invertible"),
    (lambda d: d.update(transform=[1.0] * 16), "only allowed on tiles"),
    (lambda d: d["root"].update(children=[]), "non-empty"),
    (lambda d: d["root"].update(boundingVolume={"region": [114, 22, 115, 23, 0, 10]}),
     "radians"),
    (lambda d: d.update(extensions={"3DTILES_metadata": {}}), "extensionsUsed"),
])
def test_checker_catches(tmp_path: Path, breakage, expected: str) -> None:
    doc = copy.deepcopy(_tileset(tmp_path))
    breakage(doc)
    issues = _issues(tmp_path, doc)
    assert any(expected in i for i in issues), issues


def test_volume_helpers() -> None:
    outer = box_from_bounds((0, 0, 0), (10, 10, 10))
    assert box_contains_box(outer, box_from_bounds((1, 1, 1), (9, 9, 9)))
    assert not box_contains_box(outer, box_from_bounds((1, 1, 1), (11, 9, 9)))
    assert points_in_box(outer, np.array([[5, 5, 5], [10.5, 5, 5]])).tolist() == [True, False]
    r = region_from_degrees(113.9, 22.6, 114.1, 22.8, 0, 100)
    assert region_contains_region(r, region_from_degrees(114.0, 22.7, 114.05, 22.75, 10, 20))
    assert not region_contains_region(r, region_from_degrees(114.0, 22.7, 114.2, 22.75, 10, 20))


def test_atomic_json_never_shows_half_a_file(tmp_path: Path) -> None:
    """A reader polling tileset.json while it is rewritten sees only whole documents."""
    path = tmp_path / "tileset.json"
    big = {"root": {"children": [{"n": i, "pad": "x" * 200} for i in range(3000)]}}
    write_json_atomic(path, big)
    stop = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                bad.append(str(exc))

    th = threading.Thread(target=reader)
    th.start()
    for i in range(30):
        big["root"]["children"][0]["n"] = i
        write_json_atomic(path, big)
    stop.set()
    th.join()
    assert not bad
    assert not list(tmp_path.glob(".tileset.json.*")), "temporary files left behind"


def test_glb_round_trip_keeps_positions_and_attributes() -> None:
    rng = np.random.default_rng(3)
    pts = rng.uniform(-500, 500, (1000, 3)) + np.array([1000.0, 2000.0, 30.0])
    rgb = rng.integers(0, 255, (1000, 3)).astype(np.uint8)
    inten = rng.integers(0, 65535, 1000).astype(np.uint16)
    cls = rng.integers(0, 20, 1000).astype(np.uint8)
    glb, lo, hi = points_glb(pts, rgb, inten, cls, "u8")
    back = read_points_glb(glb)
    assert np.abs(back["position"] - pts).max() < 1e-3
    assert (back["color"] == rgb).all() and (back["intensity"] == inten).all()
    assert (back["classification"] == cls).all()
    assert (lo <= back["position"].min(axis=0)).all() and (hi >= back["position"].max(axis=0)).all()
