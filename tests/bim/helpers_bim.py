"""BIM test helpers: the IFC samples, variants of them made with ifcopenshell, an ingest
helper that runs the real ``ingest_ifc`` job against the session's PostGIS, and tile
read-back. (Not in conftest.py: several test folders have a module named conftest, so
importing one by name can get another folder's.)"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data" / "bim"
FZK = DATA / "AC20-FZK-Haus.ifc"  # IFC4, IfcSite 49.1004 N 8.4365 E, true north
DUPLEX = DATA / "Duplex_A.ifc"  # IFC2X3, IfcSite 41.874 N -87.639 E
HOUSE = DATA / "IfcOpenHouse_IFC4.ifc"  # IFC4, millimetres, no georeferencing
MAPCONV = DATA / "geolocation-mapconversion-angle.ifc"  # IfcMapConversion, unnamed CRS


@dataclass
class Ingest:
    dataset_id: int
    job_id: int
    status: str
    job: Any  # the jobs row after the run
    settings: Any

    @property
    def tileset_dir(self) -> Path:
        return self.settings.tiles_dir / f"bim-{self.dataset_id}"


def element_ids(db_url: str, dataset_id: int) -> set[str]:
    """GlobalIds of the elements stored for a dataset."""
    from sqlalchemy import text

    from service.core.db import sync_engine

    with sync_engine(db_url).connect() as conn:
        return {r[0] for r in conn.execute(text(
            "SELECT global_id FROM bim_elements WHERE dataset_id = :d"), {"d": dataset_id})}


def run_ingest(db_url: str, settings, path: Path, dataset_id: int | None = None,
               **params: Any) -> Ingest:
    """Create a dataset for ``path`` (or reuse one) and run an ingest_ifc job to its end."""
    from sqlalchemy import select

    from service.core.db import sync_engine
    from service.core.tables import jobs
    from service.datasets.store import new_dataset
    from service.jobs.execute import run_job
    from service.jobs.submit import submit_job

    engine = sync_engine(db_url)
    with engine.begin() as conn:
        if dataset_id is None:
            dataset_id = conn.execute(new_dataset(
                "ifc", path.name, source_path="", sha256=None, size_bytes=path.stat().st_size,
                options={}, uploaded_by="test")).scalar_one()
            target = settings.data_dir / "sources" / str(dataset_id) / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            from service.core.tables import datasets
            conn.execute(datasets.update().where(datasets.c.id == dataset_id)
                         .values(source_path=str(target)))
        job_id = submit_job(conn, "ingest_ifc", dataset_id=dataset_id, params=params,
                            enqueue=False, max_attempts=1)
    status = run_job(job_id, db_url, settings)
    with engine.connect() as conn:
        job = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
    return Ingest(dataset_id, job_id, status, job, settings)


def edit_ifc(src: Path, dst: Path, edit: Callable[[Any], None]) -> Path:
    """Write a variant of a sample: open it with ifcopenshell, apply ``edit``, save."""
    import ifcopenshell

    model = ifcopenshell.open(str(src))
    edit(model)
    model.write(str(dst))
    return dst


def tile_vertices(tileset_dir: Path) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Read a published BIM tileset back: ({GlobalId: (n, 3) lon, lat, h of its vertices},
    {GlobalId: [its property-table rows]}) over every tile of the current version."""
    import json

    import numpy as np

    from tiler.frames import ecef_to_geodetic, yup_to_zup
    from tiler.glb import mesh_nodes, read_accessor, read_glb, read_positions
    from tiler.mesh import read_property_table

    versions = sorted(tileset_dir.glob("v*"), key=lambda p: int(p.name[1:]))
    root = versions[-1]
    doc = json.loads((root / "tileset.json").read_text())
    world = np.asarray(doc["root"]["transform"], float).reshape(4, 4).T
    uris: list[str] = []

    def walk(tile: dict[str, Any]) -> None:
        if "content" in tile:
            uris.append(tile["content"]["uri"])
        for child in tile.get("children", []):
            walk(child)

    walk(doc["root"])
    verts: dict[str, list[Any]] = {}
    rows: dict[str, list[Any]] = {}
    for uri in uris:
        gltf, binary = read_glb((root / uri).read_bytes())
        table = read_property_table(gltf, binary)
        pos_parts, fid_parts = [], []
        for node, matrix in mesh_nodes(gltf):  # quantized positions: scale and offset too
            prim = gltf["meshes"][node["mesh"]]["primitives"][0]
            pos_parts.append(read_positions(gltf, binary, prim, matrix))
            fid_parts.append(read_accessor(gltf, binary, prim["attributes"]["_FEATURE_ID_0"]))
        fid = np.concatenate(fid_parts).astype(int)
        enu = yup_to_zup(np.concatenate(pos_parts))
        ecef = enu @ world[:3, :3].T + world[:3, 3]
        llh = ecef_to_geodetic(ecef)
        for row_index, row in enumerate(table):
            rows.setdefault(row["id"], []).append(row)
            verts.setdefault(row["id"], []).append(llh[fid == row_index])
    return {k: np.concatenate(v) for k, v in verts.items()}, rows


def ifcopenshell_world(path: Path, global_ids: list[str]) -> dict[str, Any]:
    """ifcopenshell's own world coordinates (metres) of some elements: the reference."""
    import ifcopenshell
    import ifcopenshell.geom
    import numpy as np

    model = ifcopenshell.open(str(path))
    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)
    products = [model.by_guid(g) for g in global_ids]
    out = {}
    for shape in ifcopenshell.geom.iterator(settings, model, 1, include=products):
        out[shape.guid] = np.frombuffer(shape.geometry.verts_buffer, np.float64).reshape(-1, 3)
    return out


def make_ifc4x3(path: Path, walls: int = 3) -> Path:
    """A small IFC4X3 model made with ifcopenshell's API: a storey of walls 5 m apart with
    Pset_WallCommon, georeferenced by IfcMapConversion to EPSG:4547 (Longgang) at
    E 500000, N 2510000, 40 m, with the Scale written as 1 in a millimetre project."""
    import ifcopenshell.api.aggregate
    import ifcopenshell.api.context
    import ifcopenshell.api.geometry
    import ifcopenshell.api.georeference
    import ifcopenshell.api.project
    import ifcopenshell.api.pset
    import ifcopenshell.api.root
    import ifcopenshell.api.spatial
    import ifcopenshell.api.unit
    import numpy as np

    api = ifcopenshell.api
    f = api.project.create_file(version="IFC4X3")
    project = api.root.create_entity(f, ifc_class="IfcProject", name="Longgang test")
    api.unit.assign_unit(f)
    model = api.context.add_context(f, context_type="Model")
    body = api.context.add_context(f, context_type="Model", context_identifier="Body",
                                   target_view="MODEL_VIEW", parent=model)
    site = api.root.create_entity(f, ifc_class="IfcSite", name="Site")
    building = api.root.create_entity(f, ifc_class="IfcBuilding", name="B1")
    storey = api.root.create_entity(f, ifc_class="IfcBuildingStorey", name="F1")
    api.aggregate.assign_object(f, relating_object=project, products=[site])
    api.aggregate.assign_object(f, relating_object=site, products=[building])
    api.aggregate.assign_object(f, relating_object=building, products=[storey])
    for i in range(walls):
        wall = api.root.create_entity(f, ifc_class="IfcWall", name=f"W{i}")
        placement = np.eye(4)
        placement[0, 3] = i * 5.0
        api.geometry.edit_object_placement(f, product=wall, matrix=placement)
        rep = api.geometry.add_wall_representation(f, context=body, length=5, height=3,
                                                   thickness=0.2)
        api.geometry.assign_representation(f, product=wall, representation=rep)
        api.spatial.assign_container(f, relating_structure=storey, products=[wall])
        pset = api.pset.add_pset(f, product=wall, name="Pset_WallCommon")
        api.pset.edit_pset(f, pset=pset, properties={"IsExternal": i == 0,
                                                      "FireRating": "EI90"})
    api.georeference.add_georeferencing(f)
    api.georeference.edit_georeferencing(
        f, projected_crs={"Name": "EPSG:4547"},
        coordinate_operation={"Eastings": 500000.0, "Northings": 2510000.0,
                              "OrthogonalHeight": 40.0, "XAxisAbscissa": 1.0,
                              "XAxisOrdinate": 0.0, "Scale": 1.0})
    f.write(str(path))
    return path
