"""Turn the written nodes into a 3D Tiles 1.1 ``tileset.json``.

Nodes are keyed ``(level, ix, iy, iz)`` in the octree over the root cube. Bounding volumes are
``box``es in the local ENU frame that the root ``transform`` places on the globe; each box is
the union of its content's decoded point bounds and its children's boxes, so parents contain
children and every box contains its content. Geometric error is the node's sample spacing
(its side over the selection grid); leaves, which keep every remaining point, have 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tiler.tileset import box_from_bounds, tileset_document

NodeKey = tuple[int, int, int, int]
BOX_PAD_M = 1e-3  # keeps boxes strictly around float32-rounded content and never flat


@dataclass
class NodeInfo:
    count: int
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    uri: str
    nbytes: int


def parent_of(key: NodeKey) -> NodeKey:
    lv, x, y, z = key
    return (lv - 1, x >> 1, y >> 1, z >> 1)


def build_tileset(nodes: dict[NodeKey, NodeInfo], *, transform: list[float], root_side_m: float,
                  grid_bits: int, final: bool, extras: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The tileset document over ``nodes`` (missing ancestors become content-less tiles).

    With ``final=False`` (a preview) nodes keep their spacing as geometric error even when
    their children are not written yet, as they will have children in the final tileset.
    """
    children: dict[NodeKey, list[NodeKey]] = {}
    present: set[NodeKey] = set()
    for key in nodes:
        k = key
        while k not in present:
            present.add(k)
            if k[0] == 0:
                break
            p = parent_of(k)
            children.setdefault(p, []).append(k)
            k = p
    if (0, 0, 0, 0) not in present:
        raise ValueError("no nodes to assemble")

    def spacing(level: int) -> float:
        return root_side_m / 2 ** level / 2 ** grid_bits

    # bottom-up boxes, then top-down tiles (iteratively: trees can be deep)
    order = sorted(present, key=lambda k: -k[0])
    lo: dict[NodeKey, np.ndarray] = {}
    hi: dict[NodeKey, np.ndarray] = {}
    for k in order:
        bounds_lo, bounds_hi = [], []
        if k in nodes:
            bounds_lo.append(np.asarray(nodes[k].lo))
            bounds_hi.append(np.asarray(nodes[k].hi))
        for c in children.get(k, []):
            bounds_lo.append(lo[c])
            bounds_hi.append(hi[c])
        lo[k] = np.min(bounds_lo, axis=0)
        hi[k] = np.max(bounds_hi, axis=0)

    tiles: dict[NodeKey, dict[str, Any]] = {}
    for k in sorted(present):
        kids = children.get(k, [])
        leaf = not kids and final
        tile: dict[str, Any] = {
            "boundingVolume": {"box": box_from_bounds(lo[k], hi[k], BOX_PAD_M)},
            "geometricError": 0.0 if leaf else spacing(k[0]),
            "refine": "ADD",
        }
        if k in nodes:
            tile["content"] = {"uri": nodes[k].uri}
        tiles[k] = tile
    for k in sorted(present):
        kids = sorted(children.get(k, []))
        if kids:
            tiles[k]["children"] = [tiles[c] for c in kids]
    root = tiles[(0, 0, 0, 0)]
    root["transform"] = transform
    return tileset_document(root, spacing(0) * 8, extras=extras)
