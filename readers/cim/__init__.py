"""City information model (CIM) files: CityJSON 1.0 / 1.1 / 2.0, CityJSONSeq, CityGML 1.0-3.0.

Pure parsing: no database or web imports. ``parse_city_file`` gives checked objects in
lon / lat / ellipsoidal height plus a report; ``to_mesh_features`` turns them into the generic
input of :func:`tiler.mesh.tile_features`.
"""

from .errors import CityCrsError, CityFileError, Problem, SkippedGeometry
from .model import CityObject, CityParseResult, ParseReport, Surface
from .reader import iter_city_objects, parse_city_file

__all__ = [
    "CityCrsError",
    "CityFileError",
    "CityObject",
    "CityParseResult",
    "ParseReport",
    "Problem",
    "SkippedGeometry",
    "Surface",
    "iter_city_objects",
    "parse_city_file",
]
