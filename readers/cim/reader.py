"""Entry points: read a CityJSON / CityJSONSeq / CityGML file into checked city objects."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pyproj import CRS

from .build import InvalidPolicy, RawObject, finish_batch
from .citygml import CityGmlReader, citygml_version
from .cityjson import read_cityjson, read_cityjsonseq
from .crs import resolve_crs, transformer
from .errors import CityFileError, Problem
from .model import CityObject, CityParseResult, ParseReport

Progress = Callable[[int], None]  # called with the number of objects done so far


def sniff(path: Path) -> str:
    """"cityjson", "cityjsonseq" or "citygml", from the content (the suffix only breaks ties)."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{"):
        if path.name.endswith(".jsonl"):
            return "cityjsonseq"
        # A sequence's first line is a complete JSON document of its own.
        first = text.split(b"\n", 1)[0]
        if len(first) < len(text):
            try:
                json.loads(first)
                return "cityjsonseq"
            except json.JSONDecodeError:
                pass
        return "cityjson"
    if text.startswith(b"<"):
        return "citygml"
    if not text:
        raise CityFileError("the file is empty")
    raise CityFileError("not a CityJSON or CityGML file (it starts with neither '{' nor '<')")


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of small lists are built.

    A decoded CityJSON document is millions of acyclic lists; each collection walks all of them,
    which made a large parse several times slower (benchmarks/RESULTS.md).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _batched(raws: Iterable[RawObject], size: int) -> Iterator[list[RawObject]]:
    batch: list[RawObject] = []
    for raw in raws:
        batch.append(raw)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_city_objects(
    path: str | Path,
    crs: str | int | CRS | None = None,
    *,
    report: ParseReport | None = None,
    vertical: str | None = None,
    on_invalid: InvalidPolicy = "drop_surface",
    batch_size: int = 5000,
    progress: Progress | None = None,
) -> Iterator[CityObject]:
    """Stream the valid objects of a city file; problems and the CRS go into ``report``.

    ``crs`` (EPSG code, URN, URL or WKT) overrides the file's own; ``vertical`` forces heights to
    be taken as "ellipsoidal" or "orthometric" (default: orthometric when the CRS has a vertical
    part, corrected with EGM96). Raises :class:`CityFileError` for a file that cannot be read.
    """
    path = Path(path)
    report = report if report is not None else ParseReport()
    kind = sniff(path)
    gml: CityGmlReader | None = None
    if kind == "cityjson":
        with _gc_paused():
            header, raws = read_cityjson(path.read_bytes())
        report.format, report.version = "CityJSON", header.version
        declared: str | None = header.crs
    elif kind == "cityjsonseq":
        fh = open(path, "rb")  # noqa: SIM115 - closed in the finally below, after streaming
        header, raws = read_cityjsonseq(fh)
        report.format, report.version = "CityJSONSeq", header.version
        declared = header.crs
    else:
        report.format, report.version = "CityGML", citygml_version(path)
        gml = CityGmlReader(path)
        raws, declared = iter(gml), None

    to_wgs = None
    done = 0
    try:
        batches = _batched(raws, batch_size)
        while True:
            # The collector is paused while a batch is decoded and checked, not while the
            # caller consumes it.
            with _gc_paused():
                batch = next(batches, None)
                if batch is None:
                    break
                if to_wgs is None:
                    where = f"the {report.format} file"
                    source, origin = resolve_crs(crs, gml.srs_name if gml else declared, where)
                    to_wgs = transformer(source, vertical)
                    report.crs, report.crs_source = to_wgs.label, origin
                    report.source_crs = to_wgs.crs
                    report.height_note = to_wgs.policy.note
                objects = finish_batch(batch, to_wgs, report, on_invalid)
            yield from objects
            done += len(batch)
            if progress:
                progress(done)
    finally:
        if kind == "cityjsonseq":
            fh.close()
    if to_wgs is None:  # no objects at all: still say whether the CRS would have been usable
        where = f"the {report.format} file"
        source, origin = resolve_crs(crs, gml.srs_name if gml else declared, where)
        report.crs, report.crs_source = transformer(source, vertical).label, origin
    if gml is not None and gml.unresolved_links:
        note = (f"{gml.unresolved_links} xlink geometry references were not followed (the "
                "referenced polygons are read where they are defined)")
        report.problems.append(Problem("(file)", note))


def parse_city_file(
    path: str | Path,
    crs: str | int | CRS | None = None,
    *,
    vertical: str | None = None,
    on_invalid: InvalidPolicy = "drop_surface",
    progress: Progress | None = None,
) -> CityParseResult:
    """Read a whole city file: all valid objects (with and without geometry) and the report."""
    report = ParseReport()
    with _gc_paused():
        objects = list(iter_city_objects(path, crs, report=report, vertical=vertical,
                                         on_invalid=on_invalid, progress=progress))
    return CityParseResult(objects, report)
