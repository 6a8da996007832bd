"""Area reports against a direct computation from the rasters and the assemblage stores, for
hand-drawn areas on a synthetic two-meta-tile run; storage, paging, exports, comparison, async."""

from __future__ import annotations

import csv
import io
import time

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from shapely.geometry import Polygon

from inference.grid import MetaTile
from inference.pipeline.assemblage import read_assemblage
from tests.conftest import make_settings
from tests.reports_data import TILES, cell_mask, polygon, rclient, synth  # noqa: F401 (fixtures)

TO_GRID = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)


# Hand-drawn areas (EPSG:3035 metres; odd offsets keep cell centres off the edges).
PARK = [(4212013, 2811007), (4216511, 2810513), (4218023, 2813991), (4214487, 2816029), (4211509, 2814003)]
RIVERBANK = [(4219007, 2805013), (4236011, 2806989), (4236993, 2808507), (4218511, 2807003)]
# a protected area across the border of the two meta-tiles, with a hole (a village)
RESERVE = [(4205017, 2801013), (4244987, 2803011), (4241013, 2822987), (4207003, 2819011)]
VILLAGE = [(4220011, 2808013), (4226987, 2808511), (4224013, 2813987)]


def _direct(synth, doc: dict) -> dict:
    """Every report number the slow, obvious way: cell centres in the polygon, values from the COGs,
    species from the stores read whole through the pipeline's reader."""
    rings = [np.array([TO_GRID.transform(x, y) for x, y in ring]) for ring in doc["coordinates"]]
    geom = Polygon(rings[0], rings[1:])
    S = len(synth.species_ids)
    out = {"cells": 0, "sp_cells": np.zeros(S, np.int64), "sp_codes": np.zeros(S, np.int64), "values": {}}
    for tile in synth.tiles:
        mask = cell_mask(tile, geom)
        if not mask.any():
            continue
        out["cells"] += int(mask.sum())
        a = read_assemblage(synth.data_dir / "runs" / synth.run_id / "metatiles" / tile.id / "assemblage.bin")
        take = np.repeat(mask.ravel(), a.counts)
        out["sp_cells"] += np.bincount(a.species[take], minlength=S)
        out["sp_codes"] += np.bincount(a.species[take], weights=a.codes[take], minlength=S).astype(np.int64)
        for name, band in (("indicator.richness", 1), ("indicator.richness", 2), ("trait.height", 1),
                           ("trait.height", 2), ("habitat.l1", 1), ("habitat.l2", 1), ("habitat.l3", 1),
                           ("habitat.l3.probability", 1), ("indicator.status.most", 1)):
            with rasterio.open(synth.data_dir / "runs" / synth.run_id / "metatiles" / tile.id / f"{name}.tif") as src:
                v = src.read(band)[mask]
                v = v[v != src.nodata]
            out["values"].setdefault((name, band), []).append(v)
    out["values"] = {k: np.concatenate(v) for k, v in out["values"].items()}
    return out


def _check_report(synth, report: dict, doc: dict, exact_quantiles: bool) -> None:
    d = _direct(synth, doc)
    assert report["area"]["cells"] == d["cells"] > 0
    assert report["area"]["cells_km2"] == pytest.approx(d["cells"] * 0.0025, rel=1e-5)
    # species: coverage and mean probability of every species present
    present = np.flatnonzero(d["sp_cells"])
    got = {s["id"]: s for s in report["species"]["items"]}
    assert report["species"]["total"] == len(present) == len(got)
    for k in present:
        s = got[int(synth.species_ids[k])]
        assert s["cells"] == d["sp_cells"][k]
        assert s["coverage"] == pytest.approx(d["sp_cells"][k] / d["cells"], rel=1e-5)
        assert s["mean_probability"] == pytest.approx(d["sp_codes"][k] / d["sp_cells"][k] / 250, rel=1e-5)
    covs = [s["coverage"] for s in report["species"]["items"]]
    assert covs == sorted(covs, reverse=True)
    # indicators and traits: mean, min, max, quantiles, mean 2-sigma / spread
    (rich,) = [e for e in report["indicators"]["items"] if e["id"] == "indicator.richness"]
    (height,) = report["traits"]["items"]
    for entry, key, second in ((rich, ("indicator.richness", 1), "ci_mean"), (height, ("trait.height", 1), "spread_mean")):
        v = d["values"][key].astype(np.float64)
        assert entry["cells"] == len(v)
        assert entry["mean"] == pytest.approx(v.mean(), rel=1e-5)
        assert entry["min"] == pytest.approx(v.min(), rel=1e-5) and entry["max"] == pytest.approx(v.max(), rel=1e-5)
        expected_q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
        got_q = [entry["quantiles"][k] for k in ("p05", "p25", "p50", "p75", "p95")]
        if exact_quantiles:
            assert entry["quantile_error"] == 0
            np.testing.assert_allclose(got_q, expected_q, rtol=1e-5)
        else:
            assert 0 < entry["quantile_error"] < (v.max() - v.min()) / 20
            assert np.abs(np.array(got_q) - expected_q).max() <= entry["quantile_error"] + 1e-9
        w = d["values"][(key[0], 2)].astype(np.float64)
        assert entry[second] == pytest.approx(w.mean(), rel=1e-5)
    # habitats at three levels: cells and coverage of every class
    for level in (1, 2, 3):
        v = d["values"][(f"habitat.l{level}", 1)]
        values, counts = np.unique(v, return_counts=True)
        got_h = {h["value"]: h for h in report["habitats"]["levels"][str(level)]}
        assert set(got_h) == set(values.tolist())
        for val, n in zip(values, counts):
            assert got_h[val]["cells"] == n
            assert got_h[val]["coverage"] == pytest.approx(n / d["cells"], rel=1e-5)
            assert got_h[val]["code"] and len(got_h[val]["code"].replace(".", "")) <= level + 1
        assert report["habitats"]["unclassified_cells"][str(level)] == d["cells"] - len(v)
    p = d["values"][("habitat.l3.probability", 1)]
    assert report["habitats"]["class_probability"]["mean"] == pytest.approx(p.mean(), rel=1e-5)
    status = d["values"][("indicator.status.most", 1)]
    got_s = {c["value"]: c["cells"] for c in report["indicators"]["most_threatened_status"]}
    assert got_s == {int(v): int(n) for v, n in zip(*np.unique(status, return_counts=True))}
    # home: counts of flagged species present, most common = top of the species list
    home = report["home"]
    assert home["species_present"] == len(present)
    items = report["species"]["items"]
    for flag in ("eu_directive", "threatened", "invasive", "endemic", "tree"):
        assert home["counts"][flag] == sum(s[flag] for s in items)
    assert [s["id"] for s in home["most_common"]] == [s["id"] for s in items[:10]]
    ranks = {"CR": 5, "EN": 4, "VU": 3, "NT": 2}
    relevant = home["most_relevant"]
    assert relevant and all(ranks.get(s["iucn"], 0) >= 2 or s["eu_directive"] or s["endemic"] for s in relevant)
    assert [ranks.get(s["iucn"], 0) for s in relevant] == sorted((ranks.get(s["iucn"], 0) for s in relevant), reverse=True)
    assert home["dominant_habitats"]["3"][0]["cells"] == max(h["cells"] for h in report["habitats"]["levels"]["3"])
    assert home["scores"]["richness"]["mean"] == rich["mean"]


def _full(client, doc, **params) -> dict:
    r = client.post("/api/reports", json=doc, params={"species_limit": 1000, **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_small_hand_drawn_area_matches_direct_computation_with_exact_quantiles(rclient, synth):
    doc = polygon(PARK)
    report = _full(rclient, doc)
    assert report["indicators"]["quantiles"] == "exact"
    _check_report(synth, report, doc, exact_quantiles=True)
    assert report["area"]["km2"] == pytest.approx(Polygon(PARK).area / 1e6, rel=1e-4)
    assert report["area"]["mapped_share"] == pytest.approx(1.0, abs=0.02)


def test_large_area_across_metatiles_with_a_hole_matches_direct_computation(rclient, synth):
    doc = polygon(RESERVE, VILLAGE)
    report = _full(rclient, doc)
    assert report["area"]["cells"] > 200_000 and report["area"]["metatiles"] == TILES
    _check_report(synth, report, doc, exact_quantiles=False)


def test_thin_riverbank_matches_direct_computation(rclient, synth):
    doc = polygon(RIVERBANK)
    _check_report(synth, _full(rclient, doc), doc, exact_quantiles=True)


def test_whole_metatile_comes_from_block_aggregates_and_matches(rclient, synth):
    left, bottom, right, top = MetaTile.from_id(TILES[1]).bounds
    doc = polygon([(left, bottom), (right, bottom), (right, top), (left, top)])
    report = _full(rclient, doc)
    assert report["area"]["cells"] == 250_000 and report["area"]["metatiles"] == [TILES[1]]
    _check_report(synth, report, doc, exact_quantiles=False)


def test_multipolygon_and_feature_are_accepted(rclient, synth):
    a, b = polygon(PARK), polygon(RIVERBANK)
    multi = {"type": "MultiPolygon", "coordinates": [a["coordinates"], b["coordinates"]]}
    r = _full(rclient, {"type": "Feature", "properties": {"name": "two sites"}, "geometry": multi})
    assert r["area"]["cells"] == _full(rclient, a)["area"]["cells"] + _full(rclient, b)["area"]["cells"]


def test_repeated_request_is_answered_from_the_store(rclient, synth):
    from sqlalchemy import func, select

    from backend.db.models import Report

    doc = polygon(PARK)
    first = rclient.post("/api/reports", json=doc)
    # the same ring from another start and the other way round: the same area, the same report
    ring = doc["coordinates"][0][:-1]
    ring = ring[2:] + ring[:2]
    again = rclient.post("/api/reports", json={"type": "Polygon", "coordinates": [(ring + [ring[0]])[::-1]]})
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["seconds"] == again.json()["seconds"]  # not recomputed
    assert first.headers["Location"] == f"/api/reports/{first.json()['id']}"
    got = rclient.get(f"/api/reports/{first.json()['id']}")
    assert got.status_code == 200 and got.json() == first.json()
    sessions = rclient.app.state.sessions
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Report).where(Report.id == first.json()["id"])) == 1
    assert rclient.get(f"/api/reports/{first.json()['id']}/status").json()["status"] == "done"


def test_species_pages_filters_and_sorts(rclient):
    report = _full(rclient, polygon(RESERVE, VILLAGE))
    rid, everything = report["id"], report["species"]["items"]
    short = rclient.post("/api/reports", json=polygon(RESERVE, VILLAGE), params={"species_limit": 5}).json()
    assert [s["id"] for s in short["species"]["items"]] == [s["id"] for s in everything[:5]]
    assert short["species"]["next"] == f"/api/reports/{rid}/species?offset=5&limit=5"
    page = rclient.get(f"/api/reports/{rid}/species", params={"offset": 5, "limit": 7}).json()
    assert page["total"] == len(everything) and [s["id"] for s in page["items"]] == [s["id"] for s in everything[5:12]]
    threatened = rclient.get(f"/api/reports/{rid}/species", params={"flag": "threatened", "limit": 1000}).json()
    assert threatened["total"] == sum(s["iucn"] in ("VU", "EN", "CR") for s in everything) > 0
    assert all(s["threatened"] for s in threatened["items"])
    by_name = rclient.get(f"/api/reports/{rid}/species", params={"sort": "name", "order": "asc", "limit": 1000}).json()
    names = [s["name"] for s in by_name["items"]]
    assert names == sorted(names, key=str.lower)
    by_p = rclient.get(f"/api/reports/{rid}/species", params={"sort": "mean_probability", "limit": 1000}).json()
    probs = [s["mean_probability"] for s in by_p["items"]]
    assert probs == sorted(probs, reverse=True)
    fam = everything[0]["family"]
    fams = rclient.get(f"/api/reports/{rid}/species", params={"family": fam, "limit": 1000}).json()
    assert fams["total"] == sum(s["family"] == fam for s in everything)


def test_habitats_filter_and_sort(rclient):
    rid = _full(rclient, polygon(RESERVE, VILLAGE))["id"]
    l3 = rclient.get(f"/api/reports/{rid}/habitats", params={"level": 3}).json()
    assert {h["level"] for h in l3["items"]} == {3}
    cov = [h["coverage"] for h in l3["items"]]
    assert cov == sorted(cov, reverse=True) and sum(cov) <= 1.0001
    big = rclient.get(f"/api/reports/{rid}/habitats", params={"min_coverage": 0.2}).json()
    assert big["items"] and all(h["coverage"] >= 0.2 for h in big["items"])
    by_code = rclient.get(f"/api/reports/{rid}/habitats", params={"level": 2, "sort": "code", "order": "asc"}).json()
    assert [h["code"] for h in by_code["items"]] == sorted(h["code"] for h in by_code["items"])
    grass = rclient.get(f"/api/reports/{rid}/habitats", params={"q": "grassland"}).json()
    assert grass["items"] and all("grassland" in h["name"].lower() for h in grass["items"])


def test_exports_csv_geojson_json(rclient):
    report = _full(rclient, polygon(PARK))
    rid = report["id"]
    r = rclient.get(f"/api/reports/{rid}/export", params={"format": "csv", "module": "species"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == report["species"]["total"]
    assert int(rows[0]["id"]) == report["species"]["items"][0]["id"]
    assert float(rows[0]["coverage"]) == pytest.approx(report["species"]["items"][0]["coverage"])
    hab = list(csv.DictReader(io.StringIO(rclient.get(f"/api/reports/{rid}/export",
                                                      params={"format": "csv", "module": "habitats"}).text)))
    assert sum(int(h["cells"]) for h in hab if h["level"] == "1") + \
        report["habitats"]["unclassified_cells"]["1"] == report["area"]["cells"]
    ind = list(csv.DictReader(io.StringIO(rclient.get(f"/api/reports/{rid}/export",
                                                      params={"format": "csv", "module": "indicators"}).text)))
    assert float(ind[0]["mean"]) == pytest.approx(report["indicators"]["items"][0]["mean"])
    tr = rclient.get(f"/api/reports/{rid}/export", params={"format": "csv", "module": "traits"}).text
    assert tr.startswith("id,title,units,cells,mean") and "trait.height" in tr
    gj = rclient.get(f"/api/reports/{rid}/export", params={"format": "geojson"})
    assert gj.headers["content-type"] == "application/geo+json"
    (feature,) = gj.json()["features"]
    assert shapely.geometry.shape(feature["geometry"]).equals(shapely.geometry.shape(report["geometry"]))
    assert feature["properties"]["species_present"] == report["home"]["species_present"]
    full = rclient.get(f"/api/reports/{rid}/export").json()
    assert full["id"] == rid and len(full["species"]["items"]) == report["species"]["total"]
    r = rclient.get(f"/api/reports/{rid}/export", params={"format": "csv"})
    assert r.status_code == 422 and "module=" in r.json()["detail"]


def test_comparison_of_areas(rclient):
    a, b = _full(rclient, polygon(PARK)), _full(rclient, polygon(RIVERBANK))
    c = _full(rclient, polygon(RESERVE, VILLAGE))
    r = rclient.get("/api/reports/compare", params=[("ids", a["id"]), ("ids", b["id"]), ("ids", c["id"])])
    assert r.status_code == 200, r.text
    body = r.json()
    sets = [{s["id"] for s in x["species"]["items"]} for x in (a, b, c)]
    assert body["species"]["shared_by_all"] == len(sets[0] & sets[1] & sets[2])
    assert body["species"]["jaccard"][0][1] == pytest.approx(len(sets[0] & sets[1]) / len(sets[0] | sets[1]), abs=1e-4)
    assert body["species"]["unique"][0] == len(sets[0] - sets[1] - sets[2])
    assert [x["area_km2"] for x in body["areas"]] == [a["area"]["km2"], b["area"]["km2"], c["area"]["km2"]]
    (rich,) = [i for i in body["indicators"] if i["id"] == "indicator.richness"]
    assert rich["mean"][2] == [e for e in c["indicators"]["items"] if e["id"] == "indicator.richness"][0]["mean"]
    r = rclient.get("/api/reports/compare", params=[("ids", a["id"])])
    assert r.status_code == 422
    r = rclient.get("/api/reports/compare", params=[("ids", a["id"]), ("ids", "0" * 32)])
    assert r.status_code == 404 and "unknown report" in r.json()["detail"]


def test_large_areas_run_in_the_background(synth, tmp_path):
    from fastapi.testclient import TestClient

    from backend.app import create_app

    settings = make_settings(synth.data_dir, report_async_km2=100.0, report_retry_after_s=1)
    doc = polygon([(4226013, 2801013), (4243987, 2801511), (4244513, 2812987), (4227011, 2811013)])
    with TestClient(create_app(settings)) as c:
        r = c.post("/api/reports", json=doc)  # an area no other test posts
        assert r.status_code == 202, r.text
        assert r.headers["Retry-After"] == "1" and r.headers["Location"] == f"/api/reports/{r.json()['id']}"
        assert r.json()["status"] in ("pending", "running", "done")
        deadline = time.monotonic() + 60
        while True:
            got = c.get(r.headers["Location"])
            if got.status_code == 200:
                break
            assert got.status_code == 202 and got.headers["Retry-After"] == "1"
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert c.get(f"/api/reports/{got.json()['id']}/status").json()["status"] == "done"
        report = c.get(r.headers["Location"], params={"species_limit": 1000}).json()
    _check_report(synth, report, doc, exact_quantiles=False)  # 80,000 cells: above report_exact_cells


def test_celery_task_computes_a_stored_report(synth, monkeypatch):
    """The production path: the API stores a pending report and a Celery task computes it (run eagerly)."""
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from backend.core.settings import get_settings
    from backend.jobs.celery_app import celery_for

    monkeypatch.setenv("GEOFLORA_DATA_DIR", str(synth.data_dir))
    get_settings.cache_clear()
    settings = make_settings(synth.data_dir, report_async_km2=10.0, report_executor="celery")
    celery_app = celery_for(settings)  # the app the server sends its report tasks to
    celery_app.conf.task_always_eager = True
    doc = polygon([(4230013, 2815011), (4238987, 2815513), (4237011, 2821989)])
    try:
        with TestClient(create_app(settings)) as c:
            r = c.post("/api/reports", json=doc)
            assert r.status_code == 202
            got = c.get(r.headers["Location"], params={"species_limit": 1000})
            assert got.status_code == 200, got.text
    finally:
        celery_app.conf.task_always_eager = False
        get_settings.cache_clear()
    _check_report(synth, got.json(), doc, exact_quantiles=True)
