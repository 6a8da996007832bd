"""The catalog schema on both backends: Alembic migrations, spatial footprints, hierarchy."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from backend.db.engine import is_sqlite, make_engine, make_sessionmaker, migrate
from backend.db.models import Habitat, Layer, MetaTileRecord, Run, Species
from inference.grid import MetaTile


def _exercise_catalog(url: str) -> None:
    migrate(url)
    migrate(url)  # a second upgrade is a no-op
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    tiles = [MetaTile.from_id("E4200N2800"), MetaTile.from_id("E4225N2800")]
    with sessions.begin() as s:
        s.add(Run(id="r1", region="t", status="running", is_live=False, config={"k": 1}))
        for t in tiles:
            s.add(MetaTileRecord(run_id="r1", tile_id=t.id, footprint=f"SRID=3035;{t.polygon_wkt()}", status="pending"))
        s.add(Layer(run_id="r1", id="indicator.richness", kind="indicator", title="Richness", description="",
                    path="runs/r1/x.vrt", band=1, legend={"type": "continuous"}))
        s.add(Species(id=5, name="Virtualia alba", family="Virtualaceae", genus="Virtualia", iucn="VU",
                      eu_directive=True, invasive=False, woody=False, tree=False, endemic=False, attributes={}))
        s.add(Habitat(code="R", name="Grasslands", level=1, parent=None))
        s.add(Habitat(code="R2", name="Mesic grasslands", level=2, parent="R"))
    with sessions() as s:
        # Footprints are real EPSG:3035 polygons: 625 km2 each, found by a spatial predicate.
        areas = s.execute(select(func.ST_Area(MetaTileRecord.footprint))).scalars().all()
        assert [round(a / 1e6) for a in areas] == [625, 625]
        srid = s.execute(select(func.ST_SRID(MetaTileRecord.footprint))).scalars().first()
        assert srid == 3035
        point = "SRID=3035;POINT(4230000 2810000)"
        hit = s.execute(
            select(MetaTileRecord.tile_id).where(
                func.ST_Intersects(MetaTileRecord.footprint, func.ST_GeomFromEWKT(point))
            )
        ).scalars().all()
        assert hit == ["E4225N2800"]
        assert s.get(Habitat, "R2").parent == "R"
        assert s.get(Species, 5).iucn == "VU"
        assert s.get(Run, "r1").config == {"k": 1}
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == "0003"
        if is_sqlite(url):
            idx = conn.execute(text(
                "SELECT spatial_index_enabled FROM geometry_columns WHERE f_table_name='metatiles'"
            )).scalar()
            assert idx == 1
        else:
            idx = conn.execute(text(
                "SELECT indexdef FROM pg_indexes WHERE tablename='metatiles' AND indexdef ILIKE '%gist%'"
            )).scalar()
            assert idx and "footprint" in idx
    # Deleting a run removes its meta-tiles and layers (cascade) on both backends.
    with sessions.begin() as s:
        s.delete(s.get(Run, "r1"))
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(MetaTileRecord)) == 0
        assert s.scalar(select(func.count()).select_from(Layer)) == 0
    engine.dispose()


def test_catalog_on_spatialite(tmp_path):
    _exercise_catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")


@pytest.mark.postgis
def test_catalog_on_postgis(postgis_url):
    _exercise_catalog(postgis_url)
