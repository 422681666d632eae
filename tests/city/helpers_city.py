"""Client-side helpers of the city tests: the city tileset as a client reads it
over HTTP, and the stored coordinates of objects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import psycopg

from service.cim.wkb import polygons_from_wkb
from tiler.frames import geodetic_to_ecef, yup_to_zup
from tiler.glb import mesh_nodes, read_accessor, read_glb, read_positions
from tiler.mesh import read_property_table

DATA = Path(__file__).resolve().parents[1] / "data" / "cim"


def object_url(server, object_id: str) -> str:
    return f"{server.url}/city/objects/{quote(object_id, safe='')}"


@dataclass
class Tile:
    uri: str
    tile: dict
    ecef: np.ndarray  # (n, 3) vertex positions, metres, earth-centred
    feature: np.ndarray  # (n,) property-table row of each vertex
    triangles: np.ndarray  # (m, 3)
    rows: list[dict]
    data: bytes


@dataclass
class CityTiles:
    version: int
    tileset: dict
    tiles: list[Tile]

    def save(self, folder: Path) -> Path:
        """Write tileset.json and content as served (for the file-based checkers)."""
        folder.mkdir(parents=True, exist_ok=True)
        for t in self.tiles:
            (folder / t.uri).parent.mkdir(parents=True, exist_ok=True)
            (folder / t.uri).write_bytes(t.data)
        (folder / "tileset.json").write_text(json.dumps(self.tileset))
        return folder / "tileset.json"

    @property
    def ids(self) -> list[str]:
        return [r["id"] for t in self.tiles for r in t.rows]


def read_city_tiles(server, name: str = "cim") -> CityTiles:
    """The current CIM tileset and every content file, fetched like a client does."""
    r = httpx.get(f"{server.url}/tiles/{name}/tileset.json")
    assert r.status_code == 200, r.text
    tileset = r.json()
    root = np.array(tileset["root"]["transform"]).reshape(4, 4).T
    tiles: list[Tile] = []
    stack = [tileset["root"]]
    while stack:
        tile = stack.pop()
        stack.extend(tile.get("children", []))
        if "content" not in tile:  # over far-apart children: no content of its own
            continue
        uri = tile["content"]["uri"]
        got = httpx.get(f"{server.url}/tiles/{name}/{uri}")
        assert got.status_code == 200, uri
        doc, binary = read_glb(got.content)
        ecef_parts, fid_parts, tri_parts, base = [], [], [], 0
        # far-apart features come in nodes of their own; quantized positions are decoded
        # by their node's scale and offset
        for node, matrix in mesh_nodes(doc):
            prims = doc["meshes"][node["mesh"]]["primitives"]
            attrs = prims[0]["attributes"]
            local = read_positions(doc, binary, prims[0], matrix)
            enu = yup_to_zup(local)
            ecef_parts.append(enu @ root[:3, :3].T + root[:3, 3])
            fid_parts.append(read_accessor(doc, binary, attrs["_FEATURE_ID_0"]).astype(int))
            tri_parts += [read_accessor(doc, binary, p["indices"]).astype(np.int64) + base
                          for p in prims]
            base += len(local)
        ecef, fid = np.concatenate(ecef_parts), np.concatenate(fid_parts)
        tris = np.concatenate(tri_parts).reshape(-1, 3)
        tiles.append(Tile(uri, tile, ecef, fid, tris, read_property_table(doc, binary),
                          got.content))
    return CityTiles(int(r.headers["Twinbase-Tileset-Version"]), tileset, tiles)


def stored_faces(db_url: str) -> dict[str, list[list[np.ndarray]]]:
    """Faces (rings of lon, lat, h) of every current object with geometry, as stored."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT object_id, ST_AsBinary(geom, 'NDR') FROM city_objects "
                            "WHERE valid_to IS NULL AND geom IS NOT NULL").fetchall()
    return {oid: polygons_from_wkb(bytes(wkb)) for oid, wkb in rows}


def to_ecef(lonlath: np.ndarray) -> np.ndarray:
    return geodetic_to_ecef(lonlath[:, 0], lonlath[:, 1], lonlath[:, 2])


def nearest_distance(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Distance from each point to the nearest target (brute force, in chunks)."""
    out = np.empty(len(points))
    for i in range(0, len(points), 256):
        d2 = ((points[i:i + 256, None, :] - targets[None, :, :]) ** 2).sum(axis=2)
        out[i:i + 256] = np.sqrt(d2.min(axis=1))
    return out
