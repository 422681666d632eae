"""Placed BIM elements as mesh-tiler features: one feature per element (id = GlobalId), its
triangles split by colour, where the colour class names an RGBA taken from the IFC styles.

The mesh tiler merges all features of a tile into at most two primitives (opaque and
translucent) with per-vertex feature ids and colours, so a model of thousands of elements
is a handful of draw calls, and glazing stays see-through.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tiler.mesh import MeshFeature, MeshTriangles

from .geometry import DEFAULT_RGBA, RGBA
from .model import BimElement


def colour_class(rgba: RGBA) -> str:
    return "ifc#" + "".join(f"{c:02x}" for c in rgba)


def palette(colours: Sequence[RGBA]) -> dict[str | None, RGBA]:
    pal: dict[str | None, RGBA] = {colour_class(c): c for c in colours}
    pal[colour_class(DEFAULT_RGBA)] = DEFAULT_RGBA
    return pal


def mesh_features(elements: Sequence[BimElement], colours: Sequence[RGBA]
                  ) -> list[MeshFeature]:
    names = [colour_class(c) for c in colours] + [colour_class(DEFAULT_RGBA)]
    features = []
    for e in elements:
        g = e.geometry
        colour = np.where(g.face_colour < 0, len(colours), g.face_colour)
        meshes = []
        for c in np.unique(colour):
            meshes.append(MeshTriangles(e.llh, g.faces[colour == c], names[int(c)]))
        features.append(MeshFeature(e.info.global_id, e.info.tile_row(), meshes=meshes))
    return features
