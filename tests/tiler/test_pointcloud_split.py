"""A survey tiled in chunks (prepare, chunks in any order, a chunk run twice as after a
crash, finish) gives the single run's tileset: the same tiles with the same points, byte for
byte; a damaged shared folder is refused with a reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers_lidar import read_tileset_points, write_survey
from helpers_tileset import check_tileset

from tiler.pointcloud import Settings, tile_point_cloud
from tiler.pointcloud.split import (
    SplitStateError,
    finish_split,
    pack_chunks,
    prepare_split,
    tile_chunk,
)

# several spill cells on a small survey; a worker pool as the service uses
SETTINGS = Settings(workers=2, sample_points=5000, cell_target=40_000, leaf_max=5000)


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> Path:
    return write_survey(tmp_path_factory.mktemp("split") / "survey.laz", 300_000, size=400.0,
                        chunk=50_000)


def _contents(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted((root / "content").rglob("*.glb"))}


def test_chunks_in_any_order_and_twice_give_the_single_run(survey, tmp_path):
    single = tile_point_cloud(survey, tmp_path / "single", workers=2, settings=SETTINGS)

    out, spill = tmp_path / "split", tmp_path / "spill"
    plan = prepare_split(survey, out, spill, settings=SETTINGS, chunk_target=30_000)
    assert len(plan.chunks) >= 4  # the test is about chunks
    assert plan.preview_points + sum(c.points for c in plan.chunks) == 300_000
    # the preview is there before any chunk
    preview = json.loads((out / "tileset.json").read_text())
    assert preview["asset"]["extras"]["twinbase"]["stage"] == "preview"
    # chunk 0 "crashes" halfway (its files half written) and runs again; the others in
    # reverse order, each in a folder of its own (as a worker on another machine would)
    scratch = tmp_path / "chunk-scratch"
    first = tile_chunk(spill, 0, scratch)
    for p in list(scratch.rglob("*.glb"))[::2]:
        p.write_bytes(p.read_bytes()[:10])
    again = tile_chunk(spill, 0, scratch)
    assert again.points == first.points == plan.chunks[0].points
    for c in reversed(plan.chunks[1:]):
        tile_chunk(spill, c.index, tmp_path / f"chunk-{c.index}")
    for folder in [scratch, *(tmp_path / f"chunk-{c.index}" for c in plan.chunks[1:])]:
        for p in folder.rglob("*.glb"):
            target = out / p.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, target)
    result = finish_split(spill, out, workers=2)

    assert result.points == single.points == 300_000
    assert result.tiles == single.tiles
    assert result.class_counts == single.class_counts
    assert result.bounds == pytest.approx(single.bounds)
    a, b = _contents(tmp_path / "single"), _contents(out)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert (out / "tileset.json").read_text() == (tmp_path / "single" / "tileset.json"
                                                  ).read_text()
    # and decoded: every point once, with its attributes
    pa, pb = read_tileset_points(tmp_path / "single" / "tileset.json"), \
        read_tileset_points(out / "tileset.json")
    assert len(pb["ecef"]) == 300_000
    for key in ("ecef", "color", "intensity", "classification"):
        np.testing.assert_array_equal(np.sort(pa[key], axis=0), np.sort(pb[key], axis=0))
    assert check_tileset(out / "tileset.json") == []


def test_a_damaged_shared_folder_is_refused_with_a_reason(survey, tmp_path):
    spill = tmp_path / "spill"
    plan = prepare_split(survey, tmp_path / "out", spill, settings=SETTINGS,
                         chunk_target=30_000)
    key = plan.chunks[1].cells[0][0]
    victim = sorted((spill / "cells").glob(f"{key[0]}-{key[1]}-{key[2]}-{key[3]}.*"))[0]
    victim.write_bytes(victim.read_bytes()[:-20])  # one record and a bit gone
    with pytest.raises(SplitStateError, match="were damaged or removed"):
        tile_chunk(spill, 1, tmp_path / "c1")
    tile_chunk(spill, 0, tmp_path / "c0")  # the other chunks are fine
    with pytest.raises(SplitStateError, match="cannot be read here"):
        tile_chunk(tmp_path / "elsewhere", 0, tmp_path / "c0")


def test_chunks_pack_whole_cells():
    cells = {(3, 0, 0, 0): 50, (3, 1, 0, 0): 10, (3, 0, 1, 0): 30, (3, 1, 1, 0): 25}
    chunks = pack_chunks(cells, 40)
    assert [[k for k, _ in c.cells] for c in chunks] == [
        [(3, 0, 0, 0)], [(3, 0, 1, 0), (3, 1, 1, 0)], [(3, 1, 0, 0)]]
    assert sum(c.points for c in chunks) == 115
