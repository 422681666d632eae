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

from readers.ifc.geometry import DEFAULT_RGBA, RGBA
from readers.ifc.model import BimElement
from readers.ifc.properties import ElementInfo
from readers.ifc.spaces import BimSpace
from tiler.mesh import MeshFeature, MeshTriangles

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


def space_labels(spaces: Sequence[BimSpace]) -> dict[str, str]:
    """GlobalId -> what people call the room: its number and its name."""
    return {s.global_id: " ".join(p for p in (s.name, s.long_name) if p) or s.global_id
            for s in spaces}


def tile_row(element: BimElement, labels: dict[str, str]) -> dict[str, object]:
    """The element's property-table row, with its rooms when the model has any."""
    row = element.info.tile_row()
    if labels:
        row["space"] = labels.get(element.space_global_id or "", "")
        row["bounds_spaces"] = "; ".join(labels[g] for g in element.bounded_space_global_ids
                                         if g in labels)
    return row


def mesh_features(elements: Sequence[BimElement], colours: Sequence[RGBA],
                  spaces: Sequence[BimSpace] = ()) -> list[MeshFeature]:
    names = [colour_class(c) for c in colours] + [colour_class(DEFAULT_RGBA)]
    labels = space_labels(spaces)
    features = []
    for e in elements:
        g = e.geometry
        colour = np.where(g.face_colour < 0, len(colours), g.face_colour)
        meshes = []
        for c in np.unique(colour):
            meshes.append(MeshTriangles(e.llh, g.faces[colour == c], names[int(c)]))
        features.append(MeshFeature(e.info.global_id, tile_row(e, labels), meshes=meshes,
                                    priority=tile_priority(e.info)))
    return features
