"""Which feature goes in which tile: a regular quadtree on the local ENU plane, ADD refinement.

Every feature is in exactly one tile (counting and picking stay simple). A tile whose features
fit the triangle budget is a leaf holding all of them. Otherwise it keeps its *largest* features
(up to a quarter of the budget), so coarse levels show the big buildings first, and hands the
rest down to the four quadrants their centres fall in. Cells are fixed squares of a grid
anchored at the frame origin, so a tile's key (level, x, y) means the same area in every
version, and a change in one place only touches the tiles whose cells contain it.

A tile whose cell is wider than ``max_cell`` (a few km) holds only the features at least a
quarter of its cell wide and hands the rest down whatever the budget: data from far-apart
places (one city model of Delft, Zurich and Karlsruhe) would otherwise share one tile
hundreds of kilometres wide, which a client must load whole before it can show any building.

Geometric error of a tile = the size of the largest feature below it (what is missing when the
tile is drawn without its children); leaves have 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_LEVEL = 24


@dataclass
class TileNode:
    level: int
    x: int
    y: int
    features: np.ndarray  # feature indices whose geometry is this tile's content
    children: list[TileNode] = field(default_factory=list)
    geometric_error: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.level}-{self.x}-{self.y}"

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


def root_half_size(centres: np.ndarray, minimum: float = 64.0) -> float:
    """Half the side of the root square around the origin: a power of two metres."""
    extent = float(np.abs(centres[:, :2]).max()) if len(centres) else 0.0
    return float(2.0 ** np.ceil(np.log2(max(extent * 1.0001, minimum))))


def build_quadtree(
    centres: np.ndarray,
    sizes: np.ndarray,
    triangles: np.ndarray,
    ids: np.ndarray,
    half: float,
    max_triangles: int,
    coarse_share: float = 0.25,
    priority: np.ndarray | None = None,
    max_cell: float = 4096.0,
) -> TileNode:
    """Assign features (ENU centres, sizes in m, triangle counts) to quadtree tiles; a tile
    keeps the first features by (priority, size) and hands the rest to its children."""
    # Higher priority first, then larger; ties broken by id so the result does not depend
    # on input order.
    prio = np.zeros(len(sizes), np.int64) if priority is None else np.asarray(priority)
    rank = np.lexsort((ids, -sizes, -prio))
    order = np.empty(len(rank), np.int64)
    order[rank] = np.arange(len(rank))

    def build(members: np.ndarray, level: int, x: int, y: int) -> TileNode:
        members = members[np.argsort(order[members], kind="stable")]
        tri = triangles[members]
        cell = 2 * half / (1 << level)
        if cell > max_cell and level < MAX_LEVEL:
            big = sizes[members] >= cell / 4
            node = TileNode(level, x, y, members[big])
            rest = members[~big]
        elif tri.sum() <= max_triangles or level >= MAX_LEVEL:
            return TileNode(level, x, y, members)
        else:
            cum = np.cumsum(tri)
            take = max(1, int(np.searchsorted(cum, max_triangles * coarse_share,
                                              side="right")))
            node = TileNode(level, x, y, members[:take])
            rest = members[take:]
        x0, y0 = -half + x * cell, -half + y * cell
        qx = (centres[rest, 0] >= x0 + cell / 2).astype(np.int64)
        qy = (centres[rest, 1] >= y0 + cell / 2).astype(np.int64)
        for dx in (0, 1):
            for dy in (0, 1):
                sub = rest[(qx == dx) & (qy == dy)]
                if len(sub):
                    node.children.append(build(sub, level + 1, 2 * x + dx, 2 * y + dy))
        node.geometric_error = float(sizes[rest].max()) if len(rest) else 0.0
        return node

    return build(np.arange(len(centres)), 0, 0, 0)


def cell_centre(node: TileNode, half: float) -> np.ndarray:
    cell = 2 * half / (1 << node.level)
    return np.array([-half + (node.x + 0.5) * cell, -half + (node.y + 0.5) * cell, 0.0])
