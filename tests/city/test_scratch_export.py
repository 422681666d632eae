import json
import httpx
from helpers_city import DATA
from helpers_tus import upload
from cityjson_check import validate_cityjson, validate_cityjsonseq
from service.jobs.execute import run_job

FILES = [("rotterdam_subset.json", {"crs": "EPSG:7415"}), ("DH_01_subs.city.json", {"crs": "EPSG:7415"}),
         ("multi_lod.json", {"crs": "EPSG:7415"}), ("3dfier_testarea_lod1.json", {}),
         ("citygml4j_lod2_buildings_v2.city.json", {}), ("lod3_building_v2.gml", {}),
         ("citygml4j_lod4_building_v2.gml", {})]

def test_scratch(live_server, auth, db_url, settings):
    op = auth("operator")
    for name, meta in FILES:
        path = DATA / name
        ds, job_id = upload(live_server, op, path.read_bytes(), filename=path.name, **meta)
        st = run_job(job_id, db_url, settings)
        crs = httpx.get(f"{live_server.url}/datasets/{ds}").json()["crs"]
        print(name, st, crs)
        for f in ("cityjson", "cityjsonseq"):
            r = httpx.get(f"{live_server.url}/city/export", params={"dataset": ds, "crs": crs if crs != "EPSG:4326" else "EPSG:32632", "f": f}, timeout=120)
            print(f, r.status_code, r.headers.get("content-type"), len(r.content))
            if r.status_code != 200:
                print(r.text[:1000]); continue
            out = f"/tmp/exp/{name}.{f}"
            open(out, "wb").write(r.content)
            rep = validate_cityjson(r.json()) if f == "cityjson" else validate_cityjsonseq(r.text.splitlines())
            print(" errors", len(rep.errors), rep.errors[:5]); print(" warnings", rep.warnings[:5])
            if f == "cityjson":
                doc = r.json()
                from collections import Counter
                print(" ", Counter(g["type"] + ":" + g["lod"] for o in doc["CityObjects"].values() for g in o.get("geometry", [])))
                print(" ", doc["metadata"])
    r = httpx.get(f"{live_server.url}/city/export")
    print(r.status_code, r.text[:600])
