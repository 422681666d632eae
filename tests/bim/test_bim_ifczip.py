"""Zipped IFC models (.ifczip): uploaded through tus they load like the .ifc inside them,
the unpacked copy is gone afterwards, and archives that are not one IFC model are refused
with the reason."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from helpers_bim import FZK, HOUSE, element_ids, run_ingest
from helpers_tus import upload_file
from sqlalchemy import text

from service.core.db import sync_engine
from service.datasets.kinds import kind_for
from service.jobs.execute import run_job

ANCHOR = {"lon": 114.25, "lat": 22.72, "height": 40.0}


def _zip(dest: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return dest


def test_ifczip_upload_loads_like_the_ifc_inside(live_server, auth, db_url, settings,
                                                 tmp_path, ingested):
    archive = _zip(tmp_path / "AC20-FZK-Haus.ifczip", {"AC20-FZK-Haus.ifc": FZK.read_bytes()})
    assert archive.stat().st_size < FZK.stat().st_size / 4  # what the upload saves
    dataset_id, job_id = upload_file(live_server, auth("operator"), archive)
    assert run_job(job_id, db_url, settings) == "succeeded"

    plain = ingested(FZK)
    assert element_ids(db_url, dataset_id) == element_ids(db_url, plain.dataset_id)
    with sync_engine(db_url).connect() as conn:
        zipped, unzipped = (conn.execute(text(
            "SELECT stats, source_path FROM datasets WHERE id = :d"), {"d": d}).one()
            for d in (dataset_id, plain.dataset_id))
    assert zipped.stats["triangles"] == unzipped.stats["triangles"] > 0
    assert zipped.stats["georeference"] == unzipped.stats["georeference"]
    assert zipped.source_path.endswith(".ifczip")  # the archive stays the source
    assert list((settings.data_dir / "unpacked").iterdir()) == []  # the copy is gone


def test_ifczip_is_an_ifc_upload_whatever_the_case():
    assert kind_for("Modell.IFCZIP") == kind_for("model.ifc") == "ifc"


@pytest.mark.parametrize("members, reason", [
    ({"a.ifc": b"x", "b.ifc": b"y"}, "holds 2 IFC files (a.ifc, b.ifc)"),
    ({"model.ifcxml": b"<ifcXML/>"}, "holds ifcXML"),
    ({"readme.txt": b"hello"}, "holds no .ifc file (it holds readme.txt)"),
], ids=["two-models", "ifcxml", "no-model"])
def test_archives_that_are_not_one_model_are_refused(db_url, bim_settings, tmp_path,
                                                     members, reason):
    run = run_ingest(db_url, bim_settings, _zip(tmp_path / "bad.ifczip", members))
    assert run.status == "failed" and reason in run.job.error, run.job.error


def test_truncated_archive_is_refused_and_nothing_is_left(db_url, bim_settings, tmp_path):
    whole = _zip(tmp_path / "whole.ifczip", {"house.ifc": HOUSE.read_bytes()})
    cut = tmp_path / "cut.ifczip"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    run = run_ingest(db_url, bim_settings, cut, anchor=ANCHOR)
    assert run.status == "failed" and "damaged or truncated" in run.job.error, run.job.error
    assert not any((bim_settings.data_dir / "unpacked").iterdir())


def test_a_bad_model_inside_an_archive_gets_the_reader_s_reason(db_url, bim_settings,
                                                                tmp_path):
    data = HOUSE.read_bytes()
    archive = _zip(tmp_path / "cut-model.ifczip", {"house.ifc": data[: len(data) // 2]})
    run = run_ingest(db_url, bim_settings, archive, anchor=ANCHOR)
    assert run.status == "failed" and "the file is truncated" in run.job.error, run.job.error
