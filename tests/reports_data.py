"""A synthetic finished run for report tests and bench/reports.py: assemblage stores (written with the
pipeline's writer), indicator / trait / habitat / status COGs with their mosaics, catalog rows.

Assemblages are generated sparsely (per 50 x 50 chunk, a local pool of species whose probabilities
vary smoothly in space), so 10,000 species over many meta-tiles take seconds, not a dense
[species, 500, 500] array. With ``keep_truth`` the run also keeps, per layer and tile, the array written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from inference.grid import CELL_M, CELLS_PER_METATILE, MetaTile
from inference.pipeline.assemblage import CHUNK, AssemblageChunks, assemblage_arrays, write_assemblage

N = CELLS_PER_METATILE
SCALE = 250.0
L3_CODES = ["Q11", "Q22", "Q24", "R1A", "R21", "R22", "R35", "T11", "T12", "S32"]
STATUSES = [None, "LC", "LC", "LC", "NT", "VU", "EN", "CR", "DD"]
TO_WGS = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)


def wgs_ring(points_3035):
    """A closed GeoJSON ring (WGS84) through EPSG:3035 points."""
    ring = [list(TO_WGS.transform(x, y)) for x, y in points_3035]
    return ring + [ring[0]]


def polygon(*rings_3035) -> dict:
    """A GeoJSON Polygon (WGS84) from rings of EPSG:3035 points: the body of POST /api/reports."""
    return {"type": "Polygon", "coordinates": [wgs_ring(r) for r in rings_3035]}


def cell_mask(tile: MetaTile, geom) -> np.ndarray:
    """[N, N] mask of the cells of ``tile`` whose centre lies inside ``geom`` (EPSG:3035): a
    report's cells, computed the obvious way."""
    left, _, _, top = tile.bounds
    xs = left + CELL_M / 2 + CELL_M * np.arange(N)
    ys = top - CELL_M / 2 - CELL_M * np.arange(N)
    return shapely.contains_xy(geom, xs[None, :].repeat(N, 0), ys[:, None].repeat(N, 1))


@dataclass
class SyntheticRun:
    run_id: str
    data_dir: Path
    tiles: list[MetaTile]
    threshold: float
    species_ids: np.ndarray
    layers: dict[str, dict] = field(default_factory=dict)  # layer id -> {tile id: array}, and "_meta"
    nodata: dict[str, float] = field(default_factory=dict)


def _smooth(rng, shape, scale=60.0):
    """A smooth random field in [0, 1] (sum of a few random sinusoids)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    f = np.zeros(shape, np.float32)
    for _ in range(4):
        kx, ky = rng.normal(0, 1 / scale, 2)
        f += np.sin(kx * xx + ky * yy + rng.uniform(0, 6.3)).astype(np.float32)
    return (f - f.min()) / max(float(f.max() - f.min()), 1e-6)


def species_names(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    syl = ["ca", "lo", "ra", "mi", "te", "vu", "sa", "ne", "po", "li", "ru", "fa", "ge", "di", "xo", "be"]
    genera = sorted({"".join(rng.choice(syl, 3)).capitalize() + "ia" for _ in range(max(4, n // 12))})
    names = set()
    while len(names) < n:
        names.add(f"{rng.choice(genera)} {''.join(rng.choice(syl, rng.integers(2, 4)))}{rng.choice(['us', 'a', 'um', 'is'])}")
    return sorted(names)


def tile_assemblages(rng, tile_index: int, n_species: int, threshold: float, pool: int, water: np.ndarray):
    """Assemblage chunks of one tile and the dense CSR of all its cells (row-major)."""
    parts = []
    for r0 in range(0, N, CHUNK):
        for c0 in range(0, N, CHUNK):
            # the local pool drifts with position, so neighbouring chunks share most species
            centre = (tile_index * 97 + r0 * 3 + c0 * 5) % max(1, n_species - pool + 1)
            members = np.sort(rng.choice(np.arange(centre, centre + pool) % n_species, size=min(pool, n_species),
                                         replace=False))
            base = rng.beta(0.6, 2.0, (len(members), 1, 1)).astype(np.float32)
            grad = rng.normal(0, 0.25, (len(members), 1, 1)).astype(np.float32)
            yy = np.linspace(0, 1, CHUNK, dtype=np.float32)[None, :, None]
            p = np.clip(base + grad * (yy - 0.5) + rng.normal(0, 0.08, (len(members), CHUNK, CHUNK)).astype(np.float32),
                        0, 1)
            p[:, water[r0:r0 + CHUNK, c0:c0 + CHUNK]] = 0.0
            counts, sp, codes = assemblage_arrays(p, threshold, SCALE)
            parts.append((counts, members[sp].astype(np.int32), codes))
    return AssemblageChunks(N, N, CHUNK, threshold, SCALE, parts)


def make_synthetic_run(data_dir: Path, tile_ids: list[str], n_species: int = 60, pool: int = 60, seed: int = 0,
                       run_id: str = "synthetic-run", keep_truth: bool = True) -> SyntheticRun:
    from backend.core.settings import Settings
    from backend.db.engine import make_engine, make_sessionmaker, migrate
    from backend.db.models import Habitat, Layer, MetaTileRecord, Run, Species
    from inference.data import eunis
    from tiles.cog import write_cog
    from tiles.colormaps import continuous_legend
    from tiles.mosaic import build_vrt

    rng = np.random.default_rng(seed)
    settings = Settings(data_dir=data_dir, _env_file=None)
    layout = settings.layout
    migrate(settings.db_url)
    sessions = make_sessionmaker(make_engine(settings.db_url))
    threshold = 0.3
    tiles = [MetaTile.from_id(t) for t in tile_ids]
    species_ids = np.arange(1000, 1000 + n_species)
    out = SyntheticRun(run_id, data_dir, tiles, threshold, species_ids)
    codes = {3: L3_CODES, 2: sorted({eunis.at_level(c, 2) for c in L3_CODES}),
             1: sorted({eunis.at_level(c, 1) for c in L3_CODES})}
    files = {"indicator.richness": ([("indicator.richness", "indicator"), ("indicator.richness.ci", "indicator-uncertainty")], -1.0),
             "trait.height": ([("trait.height", "trait"), ("trait.height.sd", "trait-uncertainty")], -1.0),
             "habitat.l3.probability": ([("habitat.l3.probability", "habitat-probability")], -1.0),
             "habitat.l3": ([("habitat.l3", "habitat")], 0), "habitat.l2": ([("habitat.l2", "habitat")], 0),
             "habitat.l1": ([("habitat.l1", "habitat")], 0), "indicator.status.most": ([("indicator.status.most", "indicator")], 255)}
    for k, tile in enumerate(tiles):
        water = _smooth(rng, (N, N), 40) > 0.93  # a lake: no assemblage, nodata in every layer
        chunks = tile_assemblages(rng, k, n_species, threshold, pool, water)
        write_assemblage(layout.metatile_dir(run_id, tile.id) / "assemblage.bin", chunks, species_ids, tile.id)
        counts = np.zeros((N, N), np.float32)
        per_row = N // CHUNK
        for j, (cnt, _, _) in enumerate(chunks.parts):
            r0, c0 = (j // per_row) * CHUNK, (j % per_row) * CHUNK
            counts[r0:r0 + CHUNK, c0:c0 + CHUNK] = cnt.reshape(CHUNK, CHUNK)
        richness = np.where(water, -1, counts * 0.6).astype(np.float32)
        ci = np.where(water, -1, 2 * np.sqrt(counts * 0.2)).astype(np.float32)
        height = np.where(water | (_smooth(rng, (N, N), 30) > 0.97), -1, 0.5 + 20 * _smooth(rng, (N, N))).astype(np.float32)
        hsd = np.where(height < 0, -1, 0.1 + _smooth(rng, (N, N))).astype(np.float32)
        l3 = np.where(water, 0, 1 + np.minimum((_smooth(rng, (N, N), 50) * len(L3_CODES)).astype(int), len(L3_CODES) - 1))
        l2 = np.array([0] + [1 + codes[2].index(eunis.at_level(c, 2)) for c in L3_CODES])[l3]
        l1 = np.array([0] + [1 + codes[1].index(eunis.at_level(c, 1)) for c in L3_CODES])[l3]
        prob = np.where(l3 > 0, 0.2 + 0.8 * _smooth(rng, (N, N)), -1).astype(np.float32)
        most = np.where(water, 255, rng.integers(0, 6, (N, N))).astype(np.uint8)
        arrays = {"indicator.richness": np.stack([richness, ci]), "trait.height": np.stack([height, hsd]),
                  "habitat.l3.probability": prob[None], "habitat.l3": l3[None].astype(np.uint8),
                  "habitat.l2": l2[None].astype(np.uint8), "habitat.l1": l1[None].astype(np.uint8),
                  "indicator.status.most": most[None]}
        for name, data in arrays.items():
            write_cog(layout.metatile_cog(run_id, tile.id, name), data, transform=tile.transform(),
                      nodata=files[name][1], resampling="nearest")
            if keep_truth:
                for band, (lid, _) in enumerate(files[name][0]):
                    out.layers.setdefault(lid, {})[tile.id] = data[band]
    with sessions.begin() as s:
        s.add(Run(id=run_id, region="synthetic", status="complete", is_live=True,
                  config={"profile": {"threshold": threshold}}))
        for tile in tiles:
            s.add(MetaTileRecord(run_id=run_id, tile_id=tile.id, footprint=f"SRID=3035;{tile.polygon_wkt()}",
                                 status="done"))
        for name, (bands, nodata) in files.items():
            vrt = build_vrt(layout.mosaic_path(run_id, name), [layout.metatile_cog(run_id, t.id, name) for t in tiles])
            for band, (lid, kind) in enumerate(bands, start=1):
                out.nodata[lid] = nodata
                if kind == "habitat":
                    level = int(lid[-1])
                    legend = {"type": "categorical", "items": [
                        {"value": i + 1, "code": c, "label": f"{c} {eunis.habitat(c).name}", "color": "#00aa00"}
                        for i, c in enumerate(codes[level])]}
                elif lid == "indicator.status.most":
                    legend = {"type": "categorical", "items": [{"value": v, "label": lab, "color": "#aa0000"}
                              for v, lab in enumerate(["none assessed", "LC", "NT", "VU", "EN", "CR"])]}
                else:
                    legend = continuous_legend("viridis", 0, 1, None)
                s.add(Layer(run_id=run_id, id=lid, kind=kind, title=lid.replace(".", " "), description="", units=None,
                            path=layout.relative(vrt), band=band, legend=legend))
        names = species_names(n_species, seed)
        for i, sid in enumerate(species_ids):
            s.merge(Species(id=int(sid), name=names[i], family=f"{names[i].split()[0][:4]}aceae",
                            genus=names[i].split()[0], iucn=STATUSES[i % len(STATUSES)], eu_directive=i % 7 == 0,
                            invasive=i % 11 == 3, woody=i % 5 == 0, tree=i % 10 == 0, endemic=i % 13 == 4,
                            attributes={}))
        for hab in sorted(eunis.all_types(), key=lambda h: h.level):
            s.merge(Habitat(code=hab.code, name=hab.name, level=hab.level, parent=hab.parent))
    return out


TILES = ["E4200N2800", "E4225N2800"]


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> SyntheticRun:
    """Two side-by-side meta-tiles, 60 species, every report layer (tests import this fixture)."""
    return make_synthetic_run(tmp_path_factory.mktemp("reports"), TILES, n_species=60, pool=60, seed=3)


@pytest.fixture(scope="session")
def rclient(synth):
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from tests.conftest import make_settings

    with TestClient(create_app(make_settings(synth.data_dir))) as c:
        yield c
