"""Placed BIM elements as mesh-tiler features: one feature per element (id = GlobalId), its
triangles split by colour, where the colour class names an RGBA taken from the IFC styles.

The mesh tiler merges all features of a tile into at most two primitives (opaque and
translucent) with per-vertex feature ids and colours, so a model of thousands of elements
is a handful of draw calls, and glazing stays see-through.

A large model streams envelope first: elements that say they are external (IsExternal in
their Pset_*Common), roofs, curtain walls and the site (terrain) get the top priority, the
rest of the shell and structure (walls, slabs, columns, beams, members, stairs, windows,
doors) the next, and furniture, coverings, fittings and services the last, so they sit in
the deepest tiles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tiler.mesh import MeshFeature, MeshTriangles

from .geometry import DEFAULT_RGBA, RGBA
from .model import BimElement
from .properties import ElementInfo

ENVELOPE_CLASSES = {"ifcroof", "ifccurtainwall", "ifcsite"}
SHELL_CLASSES = {"ifcwall", "ifcslab", "ifcroof", "ifccolumn", "ifcbeam", "ifcfooting",
                 "ifcstair", "ifcstairflight", "ifcramp", "ifcrampflight", "ifcwindow",
                 "ifcdoor", "ifccurtainwall", "ifcplate", "ifcmember", "ifcpile"}


def tile_priority(info: ElementInfo) -> int:
    """2 envelope, 1 other shell and structure, 0 the rest (see the module docstring)."""
    classes = set(info.class_path)
    if info.assembly_class:
        classes.add(info.assembly_class.lower())
    external = any(props.get("IsExternal") is True for name, props in info.psets.items()
                   if name.startswith("Pset_") and name.endswith("Common"))
    if external or classes & ENVELOPE_CLASSES:
        return 2
    return 1 if classes & SHELL_CLASSES else 0


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
        features.append(MeshFeature(e.info.global_id, e.info.tile_row(), meshes=meshes,
                                    priority=tile_priority(e.info)))
    return features
