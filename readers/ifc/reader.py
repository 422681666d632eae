"""Open an IFC STEP file after checking what ifcopenshell does not say clearly.

ifcopenshell reads a truncated file without complaint (it simply has fewer entities) and
reports a wrong file as "Unable to parse IFC SPF header", so the header and the trailer are
checked first and every refusal names what is wrong. A damaged DATA section either stops it
("Syntax error during parse, check logs") or is skipped with only a line in its log; both
are refused with the line and entity where the damage is (see step_errors.py).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from .errors import IfcInputError
from .step_errors import ADVICE, locate_parse_error

_OPEN_LOCK = threading.Lock()
MAGIC = b"ISO-10303-21;"
TRAILER = b"END-ISO-10303-21;"
_SCHEMA = re.compile(rb"FILE_SCHEMA\s*\(\s*\(\s*'([^']*)'", re.I)
# Schema names as files write them -> the schema ifcopenshell reads them with.
SCHEMAS = {
    "IFC2X3": "IFC2X3",
    "IFC4": "IFC4",
    "IFC4X3": "IFC4X3_ADD2",
    "IFC4X3_ADD1": "IFC4X3_ADD2",
    "IFC4X3_ADD2": "IFC4X3_ADD2",
    "IFC4X3_TC1": "IFC4X3_ADD2",
}


def file_schema(path: Path) -> str:
    """The schema the header declares, after checking magic and trailer."""
    with path.open("rb") as fh:
        head = fh.read(65536)
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 4096))
        tail = fh.read()
    if size == 0:
        raise IfcInputError("the file is empty")
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(MAGIC):
        if head.lstrip()[:2] == b"PK":
            # the ingest unpacks .ifczip first (archive.py); this is a caller that did not
            raise IfcInputError("this is a ZIP archive (.ifczip?): unpack it first "
                                "(readers.ifc.archive.unpacked_ifc)")
        if head.lstrip()[:1] == b"<":
            raise IfcInputError("this is XML (ifcXML?): only IFC STEP files (.ifc, starting "
                                "with ISO-10303-21;) are read")
        raise IfcInputError("not an IFC file: an IFC STEP file starts with ISO-10303-21;")
    if TRAILER not in tail.rstrip()[-64:]:
        raise IfcInputError(f"the file is truncated: it ends after {size:,} bytes without "
                            "END-ISO-10303-21; upload the complete file")
    m = _SCHEMA.search(head)
    if not m:
        raise IfcInputError("the IFC header has no FILE_SCHEMA: the file is damaged")
    declared = m.group(1).decode("ascii", "replace").strip().upper()
    if declared not in SCHEMAS:
        raise IfcInputError(
            f"IFC schema {declared!r} is not supported; supported are IFC2X3, IFC4 and IFC4X3"
        )
    return declared


def open_ifc(path: str | Path):  # -> ifcopenshell.file
    """Check and open a file; raise :class:`IfcInputError` with the reason otherwise."""
    import ifcopenshell

    path = Path(path)
    if not path.is_file():
        raise IfcInputError(f"no file at {path}")
    file_schema(path)
    # ifcopenshell's log is one per process: opens are serialised so that the log read
    # after one holds that parse's lines only (reading it empties it).
    with _OPEN_LOCK:
        ifcopenshell.get_log()
        try:
            model = ifcopenshell.open(str(path))
        except Exception as exc:  # its own Error, RuntimeError, OverflowError for a huge #id
            raise IfcInputError(_parse_error(path, exc, ifcopenshell.get_log())) from exc
        log = ifcopenshell.get_log()
    if "[error]" in log:
        # ifcopenshell skips what it cannot read and carries on: an entity with a bad name
        # or an unclosed parenthesis (which swallows the rest of the file) is simply gone,
        # and the model would be published incomplete.
        raise IfcInputError(_damaged(path, log))
    if not model.by_type("IfcProject"):
        raise IfcInputError("the file has no IfcProject: it is not a complete IFC model")
    return model


def _parse_error(path: Path, exc: Exception, log: str) -> str:
    """ifcopenshell says "Syntax error during parse, check logs": say where, and what to do."""
    try:
        found = locate_parse_error(path, log)
    except (OSError, MemoryError):
        found = None
    if found is not None:
        return found.message()
    return f"the IFC file cannot be parsed: {exc}. {ADVICE}"


def _damaged(path: Path, log: str) -> str:
    errors = log.count("[error]")
    try:
        found = locate_parse_error(path, log, scan_first=True)
    except (OSError, MemoryError):
        found = None
    where = f"{found.where()}: {found.what} (the line reads {found.text!r})" if found \
        else log.split("\n", 1)[0][:300]
    return (f"the IFC file is damaged: {where}; reading it gave {errors} error(s), and "
            f"what could not be read would be missing from the model. {ADVICE}")
