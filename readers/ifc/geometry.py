"""Triangulated geometry of every IFC product through ifcopenshell's geometry iterator, in
world coordinates (metres: ifcopenshell converts units itself, so nothing is scaled again;
its placement matrices are in metres too).

The iterator runs in child processes, for two reasons:

* isolation: the geometry kernel can crash the whole process on a malformed element (a
  segmentation fault, not an exception). A crashed chunk of elements is split in halves and
  retried until the element that crashes it is found; that element is reported and the rest
  loads.
* speed: the kernel is single-threaded per element and its own thread pool scales poorly
  here (two threads used much more CPU time than one for the same model), while independent
  processes, each with a share of the elements, scale with the cores.

Elements the kernel refuses are reported with the reason from its log.

The kernel is ifcopenshell's hybrid one by default: its simple CGAL kernel (double precision,
fast booleans), with OpenCASCADE taking over any element the simple kernel cannot build (and
here also any it returns empty, or that crashes its child process). Measured on the four
samples against OpenCASCADE alone, what IfcConvert uses by default: faster on each of them
(benchmarks/RESULTS.md); every element's bounding box within 1 mm and its
surface area within 0.1 % of OpenCASCADE's (tests/bim/test_bim_kernel.py). Some faces come
out with the opposite winding; the tiles are double-sided, so that does not show. The job
option ``geometry_library=opencascade`` restores IfcConvert's kernel.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context, parent_process
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from tiler.lifetime import alive, end_with_parent

from .footprint import plan_footprint

RGBA = tuple[int, int, int, int]
# IfcConvert leaves these out by default too: openings are voids, spaces are rooms' air.
EXCLUDED = ("IfcOpeningElement", "IfcSpace")
BODY_IDENTIFIERS = {"body", "facetation", "mesh", ""}
MIN_ALPHA = 60  # glazing often says 90 % transparent: keep it visible and clickable
DEFAULT_RGBA: RGBA = (200, 200, 196, 255)
Progress = Callable[[int, int], None]
MIN_CHUNK_PRODUCTS = 4
PREFETCH_MIN_BYTES = 1 << 20
CRASH_ENV = "TWINBASE_IFC_CRASH_ON"  # step ids whose chunk exits at once (tests only)
GEOMETRY_LIBRARIES = ("hybrid-cgal-simple-opencascade", "opencascade")
DEFAULT_GEOMETRY_LIBRARY = GEOMETRY_LIBRARIES[0]


@dataclass
class ElementGeometry:
    step_id: int
    verts: np.ndarray  # (n, 3) float64, world metres
    faces: np.ndarray  # (m, 3) int32
    face_colour: np.ndarray  # (m,) index into GeometryResult.colours
    plan: Any = None  # shapely footprint in model x / y metres


@dataclass
class GeometryResult:
    elements: dict[int, ElementGeometry] = field(default_factory=dict)
    colours: list[RGBA] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)  # step id -> reason


def has_body(product) -> bool:
    """Whether a product should come out of the iterator with a 3D body (as an element)."""
    return product.is_a() not in EXCLUDED and has_body_representation(product)


def has_body_representation(product) -> bool:
    """Whether a product has a 3D body in a model context, whatever its class (spaces too,
    which :func:`has_body` leaves out)."""
    rep = getattr(product, "Representation", None)
    if rep is None:
        return False
    for r in rep.Representations or ():
        ctx = r.ContextOfItems
        parent = getattr(ctx, "ParentContext", None) or ctx
        if (parent.ContextType or "").lower() not in ("model", "") or not r.Items:
            continue
        if (r.RepresentationIdentifier or "").lower() in BODY_IDENTIFIERS:
            return True
    return False


def cost(model, product) -> int:
    """A rough cost of meshing a product, to balance the chunks: entities in its
    representation, and boolean operations (openings) weigh most."""
    n = sum(1 for _ in model.traverse(product.Representation))
    return n + 1000 * len(getattr(product, "HasOpenings", ()) or ())


def shape_key(product) -> tuple[int, ...] | None:
    """The mapped representations a product instantiates (None when it has its own): the
    products sharing a key are meshed once, if they go to the same child."""
    sources = []
    for rep in product.Representation.Representations or ():
        for item in rep.Items or ():
            if not item.is_a("IfcMappedItem"):
                return None
            sources.append(item.MappingSource.id())
    return tuple(sorted(sources)) or None


def work_units(model, products: Iterable) -> list[tuple[list[int], int]]:
    """Products as (step ids, cost) units: instances of the same mapped shape (and with no
    openings cut into them) form one unit, costed once."""
    units: list[tuple[list[int], int]] = []
    shared: dict[tuple[int, ...], tuple[list[int], int]] = {}
    for p in products:
        key = None if getattr(p, "HasOpenings", None) else shape_key(p)
        if key is None:
            units.append(([p.id()], cost(model, p)))
        elif key in shared:
            shared[key][0].append(p.id())
        else:
            shared[key] = ([p.id()], cost(model, p))
    return units + [(ids, c + len(ids)) for ids, c in shared.values()]


def rgba_of(material) -> RGBA:
    diffuse = getattr(material, "diffuse", None)
    if diffuse is None:
        return DEFAULT_RGBA
    rgb = [min(255, max(0, round(float(c) * 255))) for c in diffuse.components]
    t = float(material.transparency)
    alpha = 255 if not math.isfinite(t) or t <= 0 else max(MIN_ALPHA, round((1 - t) * 255))
    return (rgb[0], rgb[1], rgb[2], min(255, alpha))


# ------------------------------------------------------------------ child process side

_MODEL: dict[str, Any] = {}


def _open_cached(path: str):
    import ifcopenshell

    stat = os.stat(path)
    key = f"{path}:{stat.st_mtime_ns}:{stat.st_size}"
    if _MODEL.get("key") != key:
        _MODEL.clear()
        _MODEL.update(key=key, model=ifcopenshell.open(path))
    return _MODEL["model"]


_LOG_ENTRY = re.compile(r"^\[(\w+)\] \[(\w+)\] \[[^\]]*\] ", re.M)


def _log_errors(text: str) -> list[str]:
    starts = [m for m in _LOG_ENTRY.finditer(text)]
    out = []
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        if m.group(1) == "error":
            out.append(text[m.end():end].strip())
    return out


def mesh_chunk(path: str, step_ids: list[int], library: str = DEFAULT_GEOMETRY_LIBRARY
               ) -> tuple[list[tuple], list[RGBA], list[str]]:
    """Run in a child: mesh these products. Returns (elements, colours, log errors) with
    elements as (step id, verts bytes, faces bytes, face colour indices, footprint WKB); the
    footprints are made here too, so that work is spread over the children as well.

    The iterator runs in local coordinates and the placement is applied here: in world
    coordinates it would mesh every instance of a mapped representation (a type's window,
    a repeated column) anew, while locally it meshes each shape once and reuses it (a third
    to half of the elements of the samples are such instances). The result is identical.
    """
    import ifcopenshell.ifcopenshell_wrapper as wrapper

    # fault injection for the isolation tests: die like a segmentation fault would, without
    # cleanup, on these step ids ("123", or "123:<library>" for one kernel only)
    for item in os.environ.get(CRASH_ENV, "").split(","):
        step, _, only = item.strip().partition(":")
        if step and int(step) in step_ids and only in ("", library):
            os._exit(139)
    model = _open_cached(path)
    wrapper.get_log()  # drop what earlier chunks left in the global log
    colours: dict[RGBA, int] = {}
    out: list[tuple] = []
    _iterate(model, step_ids, library, colours, out)
    if library != "opencascade":
        # In local coordinates the hybrid kernel gives some elements with openings back
        # empty instead of handing them to OpenCASCADE (Duplex_A's cabinets); so do that.
        meshed = {row[0] for row in out if row[2]}
        rest = [i for i in step_ids if i not in meshed]
        if rest:
            out = [row for row in out if row[0] in meshed]
            _iterate(model, rest, "opencascade", colours, out)
    return out, list(colours), _log_errors(wrapper.get_log())


def _iterate(model, step_ids: list[int], library: str, colours: dict[RGBA, int],
             out: list[tuple]) -> None:
    import ifcopenshell.geom

    products = [model.by_id(i) for i in step_ids]
    it = ifcopenshell.geom.iterator(ifcopenshell.geom.settings(), model, 1, include=products,
                                    geometry_library=library)
    shapes: dict[str, tuple[np.ndarray, bytes, bytes]] = {}
    wanted = set(step_ids)
    if not it.initialize():
        return
    while True:
        shape = it.get()
        if shape.id in wanted:
            geo = shape.geometry
            if geo.id not in shapes:
                lut = np.array([colours.setdefault(rgba_of(m), len(colours))
                                for m in geo.materials] + [-1], np.int32)
                mids = np.frombuffer(geo.material_ids_buffer, np.int32)
                shapes[geo.id] = (np.frombuffer(geo.verts_buffer, np.float64).reshape(-1, 3),
                                  bytes(geo.faces_buffer), lut[mids].tobytes())
            local, faces, face_colours = shapes[geo.id]
            m = np.asarray(shape.transformation.matrix, float).reshape(4, 4).T
            world = local @ m[:3, :3].T + m[:3, 3]
            plan = plan_footprint(world, np.frombuffer(faces, np.int32).reshape(-1, 3))
            out.append((shape.id, world.tobytes(), faces, face_colours, plan.wkb))
        if not it.next():
            break


# ------------------------------------------------------------------ parent side


def _chunks(units: list[tuple[list[int], int]], n: int) -> list[list[int]]:
    """Longest-processing-time-first: n chunks of similar total cost."""
    bins: list[list[int]] = [[] for _ in range(max(1, n))]
    load = [0] * len(bins)
    for step_ids, c in sorted(units, key=lambda t: -t[1]):
        i = load.index(min(load))
        bins[i].extend(step_ids)
        load[i] += c
    return [b for b in bins if b]


def _reason(model, step_id: int, errors: list[str]) -> str:
    """The kernel's first error that mentions an entity of this product's representation."""
    product = model.by_id(step_id)
    ids = {f"#{e.id()}=" for e in model.traverse(product.Representation)}
    for err in errors:
        if any(i in err for i in ids):
            return "geometry failed: " + " ".join(err.split())[:300]
    return "geometry failed: the geometry kernel produced no shape for it"


class GeometryPool:
    """Child processes for meshing; kept between jobs so a worker pays their start once."""

    def __init__(self, processes: int | None = None) -> None:
        self.processes = max(1, processes or os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: the parent may hold threads (database pools, the job loop); forking
            # those can deadlock the child.
            self._pool = ProcessPoolExecutor(self.processes, mp_context=get_context("spawn"),
                                             initializer=_child_init)
        return self._pool

    def reset(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def warm(self) -> None:
        """Start the children and import ifcopenshell there."""
        futures = [self.executor().submit(_warm) for _ in range(self.processes)]
        for f in futures:
            f.result()

    def prefetch(self, path: str | Path) -> None:
        """Have the children parse the file now, while this process parses it too (a child
        that gets none of these tasks parses on its first chunk). Below a megabyte parsing
        takes a few milliseconds, less than the round trip to the children."""
        if os.path.getsize(path) < PREFETCH_MIN_BYTES:
            return
        try:
            ex = self.executor()
            for _ in range(self.processes):
                ex.submit(_prefetch, str(path))
        except BrokenProcessPool:
            self.reset()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _child_init() -> None:
    # Ctrl-C on `twinbase serve` reaches the whole process group; the parent stops the
    # children itself, without a traceback from each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a worker killed outright must not leave its geometry processes behind (spawned: the
    # worker is their parent)
    end_with_parent(signal.SIGKILL)
    parent = parent_process()
    if parent is not None and not alive(parent.pid):  # gone before the request was made
        os._exit(0)


def _prefetch(path: str) -> None:
    with contextlib.suppress(Exception):  # the parent reports what is wrong with the file
        _open_cached(path)


def _warm() -> bool:
    """Import ifcopenshell and run each kernel once on a one-box model: the first shape a
    kernel builds in a process pays the kernel's set-up, which belongs to the worker's start,
    not to the first job."""
    import ifcopenshell
    import ifcopenshell.geom

    f = ifcopenshell.file(schema="IFC4")
    origin = f.createIfcAxis2Placement3D(f.createIfcCartesianPoint((0.0, 0.0, 0.0)), None, None)
    context = f.createIfcGeometricRepresentationContext(None, "Model", 3, 1e-5, origin, None)
    box = f.createIfcExtrudedAreaSolid(
        f.createIfcRectangleProfileDef("AREA", None, None, 1.0, 1.0), origin,
        f.createIfcDirection((0.0, 0.0, 1.0)), 1.0)
    body = f.createIfcShapeRepresentation(context, "Body", "SweptSolid", [box])
    f.createIfcBuildingElementProxy(ifcopenshell.guid.new(), None, "warm-up", None, None,
                                    f.createIfcLocalPlacement(None, origin),
                                    f.createIfcProductDefinitionShape(None, None, [body]))
    for library in GEOMETRY_LIBRARIES:
        it = ifcopenshell.geom.iterator(ifcopenshell.geom.settings(), f, 1,
                                        geometry_library=library)
        if it.initialize():
            while it.next():
                pass
    return True


_SHARED: dict[int, GeometryPool] = {}


def shared_pool(processes: int | None = None) -> GeometryPool:
    n = max(1, processes or os.cpu_count() or 1)
    if n not in _SHARED:
        _SHARED[n] = GeometryPool(n)
    return _SHARED[n]


def mesh_products(model, path: str | Path, step_ids: Iterable[int], *,
                  pool: GeometryPool, progress: Progress | None = None,
                  while_waiting: Callable[[], None] | None = None,
                  library: str = DEFAULT_GEOMETRY_LIBRARY) -> GeometryResult:
    """Mesh the products; ``while_waiting`` runs in this process meanwhile (e.g. reading
    property sets), so the parent is not idle while the children work."""
    if library not in GEOMETRY_LIBRARIES:
        raise ValueError(f"geometry library must be one of {', '.join(GEOMETRY_LIBRARIES)}")
    ids = list(step_ids)
    merged = _Merged(len(ids), progress)
    # A few chunks per child balance the load; each chunk costs an iterator start, so a
    # small model gets fewer.
    n_chunks = max(1, min(pool.processes * 3, len(ids) // MIN_CHUNK_PRODUCTS))
    chunks = _chunks(work_units(model, (model.by_id(i) for i in ids)), n_chunks)
    crashed: set[int] = set()
    # A child that dies takes the chunks of its siblings down with it, so an element alone
    # in a broken chunk is only blamed after it broke again while running on its own.
    suspects: list[int] = []
    side = while_waiting
    while chunks or suspects:
        alone = not chunks
        batch = chunks or [[suspects.pop()]]
        chunks = []
        for chunk in _run_round(pool, str(path), batch, merged, side, library):
            if len(chunk) > 1:
                half = len(chunk) // 2
                chunks += [chunk[:half], chunk[half:]]
            elif alone:
                crashed.add(chunk[0])
            else:
                suspects.append(chunk[0])
        side = None
    if library != "opencascade":
        # the simple kernel is the less robust one: what crashed it gets OpenCASCADE alone
        for step_id in sorted(crashed):
            if not _run_round(pool, str(path), [[step_id]], merged, None, "opencascade"):
                crashed.discard(step_id)
    result = merged.result
    result.colours = list(merged.colour_index)
    for step_id in ids:
        if step_id in crashed:
            result.failures[step_id] = ("geometry kernel crashed on this element "
                                        "(the rest of the model loads without it)")
        elif step_id not in result.elements:
            result.failures[step_id] = _reason(model, step_id, merged.errors)
        elif not len(result.elements[step_id].faces):
            del result.elements[step_id]
            result.failures[step_id] = "geometry has no surfaces (curves or points only)"
    return result


class _Merged:
    """Results of all chunks, with the colours of each child mapped to one table."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.result = GeometryResult()
        self.colour_index: dict[RGBA, int] = {}
        self.errors: list[str] = []
        self.total, self.progress = total, progress

    def add(self, elements: list[tuple], colours: list[RGBA], errors: list[str]) -> None:
        remap = np.array([self.colour_index.setdefault(c, len(self.colour_index))
                          for c in colours] + [-1], np.int32)
        for step_id, vb, fb, cb, plan in elements:
            self.result.elements[step_id] = ElementGeometry(
                step_id, np.frombuffer(vb, np.float64).reshape(-1, 3),
                np.frombuffer(fb, np.int32).reshape(-1, 3), remap[np.frombuffer(cb, np.int32)],
                shapely.from_wkb(plan))
        self.errors.extend(errors)
        if self.progress is not None:
            self.progress(len(self.result.elements), self.total)


def _run_round(pool: GeometryPool, path: str, batch: list[list[int]], merged: _Merged,
               side: Callable[[], None] | None, library: str) -> list[list[int]]:
    """Run chunks in the children; return the chunks whose child died."""
    futures: dict[Future, list[int]] = {}
    broken: list[list[int]] = []
    try:
        ex = pool.executor()
        for chunk in batch:
            futures[ex.submit(mesh_chunk, path, chunk, library)] = chunk
    except BrokenProcessPool:
        pool.reset()
        return [c for c in batch if c not in futures.values()] + list(futures.values())
    if side is not None:
        side()
    remaining = set(futures)
    while remaining:
        done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
        for fut in done:
            try:
                merged.add(*fut.result())
            except BrokenProcessPool:
                broken.append(futures[fut])
    if broken:
        pool.reset()  # a child died: the executor is unusable now
    return broken
