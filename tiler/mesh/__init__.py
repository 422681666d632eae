"""Mesh tiler: features with properties and polygon / triangle geometry -> 3D Tiles 1.1.

Generic (no city-model or IFC knowledge): CIM buildings and BIM elements both come in as
:class:`MeshFeature`. Output: glb tiles with EXT_mesh_features ids and an
EXT_structural_metadata property table per tile, ADD refinement with every feature in exactly
one tile, an ENU root transform, and a manifest that lets a new version reuse unchanged tiles.
"""

from .features import CITY_PALETTE, MeshFeature, MeshPolygon, MeshTriangles
from .manifest import ManifestDiff, diff_manifests, load_manifest
from .metadata import read_property_table
from .tiler import MeshTilesetResult, tile_features

__all__ = [
    "CITY_PALETTE",
    "ManifestDiff",
    "MeshFeature",
    "MeshPolygon",
    "MeshTilesetResult",
    "MeshTriangles",
    "diff_manifests",
    "load_manifest",
    "read_property_table",
    "tile_features",
]
