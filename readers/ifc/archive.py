"""Zipped IFC models (.ifczip: one IFC STEP file in a ZIP archive, as Revit, ArchiCAD and
ifcopenshell export them; a fifth to a tenth of the STEP file's size, so the upload a
drone operator or planner sends is much smaller). The model is unpacked next to the
archive for as long as it is read, then removed: the archive stays the dataset's source.

ifcopenshell opens .ifczip itself, but only in memory and only by the file name's suffix;
the geometry child processes and the header checks (reader.py) read the STEP file from
disk, so it is unpacked once here.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import IfcInputError

ZIP_MAGIC = b"PK\x03\x04"
# Disk kept free beyond the unpacked model: the tiles and the database need room too.
DISK_MARGIN = 1 << 30


def is_zip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == ZIP_MAGIC


@contextmanager
def unpacked_ifc(path: Path, work_dir: Path) -> Iterator[Path]:
    """The IFC STEP file to read: ``path`` itself, or the one .ifc file inside it when it
    is a ZIP archive, unpacked under ``work_dir`` while the block runs. An archive that
    holds no .ifc, several, or that cannot be read is refused with :class:`IfcInputError`."""
    if not is_zip(path):
        yield path
        return
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ifczip-", dir=work_dir) as tmp:
        target = Path(tmp) / "model.ifc"
        _unpack(path, target)
        yield target  # what the reader raises is not the archive's fault: not caught here


def _unpack(path: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            member = _the_model(archive)
            free = shutil.disk_usage(target.parent).free
            if member.file_size + DISK_MARGIN > free:
                raise IfcInputError(
                    f"the archive's {member.filename} unpacks to {member.file_size:,} bytes; "
                    f"the server has {free:,} bytes free: upload it when there is room")
            with archive.open(member) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise IfcInputError(f"the ZIP archive is damaged or truncated ({exc}): upload it "
                            "again, or the .ifc file inside it") from exc
    except (NotImplementedError, RuntimeError) as exc:  # encrypted, or an unknown method
        raise IfcInputError(f"the ZIP archive cannot be unpacked here ({exc}): zip the .ifc "
                            "file without a password, with the usual deflate method") from exc


def _the_model(archive: zipfile.ZipFile) -> zipfile.ZipInfo:
    files = [m for m in archive.infolist() if not m.is_dir()]
    models = [m for m in files if m.filename.lower().endswith(".ifc")]
    if len(models) == 1:
        return models[0]
    if models:
        raise IfcInputError(
            f"the archive holds {len(models)} IFC files ({', '.join(m.filename for m in models)}); "
            "a dataset is one model: upload them one by one")
    if any(m.filename.lower().endswith(".ifcxml") for m in files):
        raise IfcInputError("the archive holds ifcXML; only IFC STEP files (.ifc) are read")
    names = ", ".join(m.filename for m in files[:5]) or "nothing"
    raise IfcInputError(f"the archive holds no .ifc file (it holds {names})")
