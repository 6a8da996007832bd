"""Species search and detail, the habitat tree, the indicators list; reports stored on both databases."""

from __future__ import annotations

import numpy as np
import pytest

from inference.pipeline.assemblage import read_assemblage
from tests.reports_data import rclient, synth  # noqa: F401 (fixtures)


def _names(client, q, **params):
    r = client.get("/api/species", params={"q": q, **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_species_search_prefix_first_then_typos(rclient, synth):
    from tests.reports_data import species_names

    names = species_names(60, 3)
    target = names[17]
    genus, epithet = target.split()
    hits = _names(rclient, genus[:4].lower())
    assert hits and all(h["name"].lower().startswith(genus[:4].lower()) for h in hits if h["match"] == "prefix")
    assert hits[0]["match"] == "prefix"
    # the epithet alone: a word-prefix match
    hits = _names(rclient, epithet[:5])
    assert any(h["name"] == target and h["match"] == "word-prefix" for h in hits)
    # one typo (a letter swapped) and one transposition still find it, as fuzzy matches
    typo = target[:3] + ("x" if target[3] != "x" else "y") + target[4:]
    hits = _names(rclient, typo)
    assert any(h["name"] == target and h["match"] == "fuzzy" and h["distance"] == 1 for h in hits), hits[:3]
    swapped = target[:5] + target[6] + target[5] + target[7:]
    assert any(h["name"] == target for h in _names(rclient, swapped))
    # nothing close: nothing
    assert _names(rclient, "zzzzqqqq") == []
    assert len(_names(rclient, genus[0], limit=3)) <= 3
    assert rclient.get("/api/species", params={"q": ""}).status_code == 422


def test_species_detail_says_where_it_is_predicted(rclient, synth):
    sid = int(synth.species_ids[5])
    body = rclient.get(f"/api/species/{sid}").json()
    assert body["id"] == sid and body["run"] == synth.run_id
    assert body["iucn"] in (None, "LC", "NT", "VU", "EN", "CR", "DD") and "eu_directive" in body
    assert body["threatened"] == (body["iucn"] in ("VU", "EN", "CR"))
    expected = {}
    for tile in synth.tiles:
        a = read_assemblage(synth.data_dir / "runs" / synth.run_id / "metatiles" / tile.id / "assemblage.bin")
        n = int((a.species == 5).sum())
        if n:
            expected[tile.id] = (n, a.codes[a.species == 5].astype(np.int64).sum() / n / 250)
    got = {p["tile_id"]: p for p in body["predicted_in"]}
    assert set(got) == set(expected)
    for tid, (n, mean_p) in expected.items():
        assert got[tid]["cells"] == n and got[tid]["mean_probability"] == pytest.approx(mean_p)
        w, s, e, nn = got[tid]["bounds"]
        assert 0.2 < e - w < 0.6 and 34 < s < nn < 72
    assert body["cells"] == sum(n for n, _ in expected.values())
    assert body["layers"] == []  # the synthetic run registers no species layers
    r = rclient.get("/api/species/999999")
    assert r.status_code == 404 and "unknown species 999999" in r.json()["detail"]


def test_habitat_tree_and_detail(rclient, synth):
    tree = rclient.get("/api/habitats").json()
    codes = {n["code"] for n in tree}
    assert {"Q", "R", "S", "T"} <= codes and all(n["level"] == 1 for n in tree)
    (r_node,) = [n for n in tree if n["code"] == "R"]
    r2 = [c for c in r_node["children"] if c["code"] == "R2"][0]
    assert r2["level"] == 2 and {c["code"] for c in r2["children"]} >= {"R21", "R22"}
    assert r_node["mapped"] and r2["mapped"] and [c for c in r2["children"] if c["code"] == "R22"][0]["mapped"]
    assert not [c for c in r2["children"] if c["code"] == "R23"][0]["mapped"]
    mapped = rclient.get("/api/habitats", params={"mapped_only": True}).json()
    assert {n["code"] for n in mapped} == {"Q", "R", "S", "T"}
    shallow = rclient.get("/api/habitats", params={"depth": 1}).json()
    assert all(n["children"] == [] for n in shallow)
    detail = rclient.get("/api/habitats/r2").json()
    assert detail["code"] == "R2" and detail["parent"] == "R" and detail["children"]
    r = rclient.get("/api/habitats/Z9")
    assert r.status_code == 404 and "unknown habitat" in r.json()["detail"]


def test_indicators_list_pairs_uncertainty_layers(rclient):
    body = {i["id"]: i for i in rclient.get("/api/indicators").json()}
    assert body["indicator.richness"]["uncertainty_layer"] == "indicator.richness.ci"
    assert body["trait.height"]["uncertainty_layer"] == "trait.height.sd"
    assert body["indicator.richness"]["tiles_url"].startswith("/tiles/indicator.richness/")
    assert "indicator.richness.ci" not in body


def _store_a_report(url: str) -> None:
    from geoalchemy2.shape import from_shape
    from shapely.geometry import MultiPolygon, box
    from sqlalchemy import func, select

    from backend.db.engine import make_engine, make_sessionmaker, migrate
    from backend.db.models import Report, Run

    migrate(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    area = MultiPolygon([box(10.0, 50.0, 10.1, 50.1)])
    with sessions.begin() as s:
        s.add(Run(id="r1", region="t", status="complete", is_live=True, config={}))
        s.flush()
        s.add(Report(id="a" * 32, run_id="r1", status="done", area_km2=80.0, geometry={"type": "MultiPolygon"},
                     footprint=from_shape(area, srid=4326), result={"species": {"total": 3}}))
    with sessions() as s:
        row = s.get(Report, "a" * 32)
        assert row.result == {"species": {"total": 3}} and row.status == "done"
        hit = s.scalars(select(Report.id).where(func.ST_Intersects(
            Report.footprint, func.ST_GeomFromText("POINT(10.05 50.05)", 4326)))).all()
        assert hit == ["a" * 32]
    with sessions.begin() as s:  # reports go with their run
        s.delete(s.get(Run, "r1"))
    with sessions() as s:
        assert s.get(Report, "a" * 32) is None
    engine.dispose()


def test_reports_table_on_spatialite(tmp_path):
    _store_a_report(f"sqlite:///{tmp_path / 'c.sqlite'}")


@pytest.mark.postgis
def test_reports_table_on_postgis(postgis_url):
    _store_a_report(postgis_url)
