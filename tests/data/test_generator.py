"""Statistical checks of the Virtual Europe generator (inference.data.region) on a 1 x 1 region."""

from __future__ import annotations

import csv
import hashlib
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform as warp_transform

from inference.data import eunis
from inference.data.region import RegionError, generate_region, load_region
from inference.data.synth import flora
from inference.data.synth.habitats import HABITAT_CODES
from inference.data.synth.observations import PA_COLUMNS
from inference.data.synth.photos import PHOTO_COLUMNS
from inference.grid import MetaTile

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"   # ../shared/reference
KW = dict(seed=7, nx=1, ny=1, n_species=60, n_surveys=600, n_po=3000, n_photos=120)


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    return generate_region(tmp_path_factory.mktemp("ve") / "r", **KW)


@pytest.fixture(scope="module")
def tile(region):
    return next(region.grid.metatiles())


@pytest.fixture(scope="module")
def prob(region, tile):
    return region.true_probability(tile)


def _read_csv(path):
    with open(path, newline="") as fh:
        rd = csv.DictReader(fh)
        return rd.fieldnames, list(rd)


def _to_3035(lon, lat):
    x, y = warp_transform("EPSG:4326", "EPSG:3035", list(lon), list(lat))
    return np.asarray(x), np.asarray(y)


def _cell_index(region, x, y):
    left, _, _, top = region.grid.bounds
    return ((top - np.asarray(y)) // 50).astype(int), ((np.asarray(x) - left) // 50).astype(int)


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "region.json" and p.suffix in (".csv", ".npz"):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_file() and p.suffix == ".tif":
            with rasterio.open(p) as ds:
                a = ds.read(window=((0, min(ds.height, 300)), (0, min(ds.width, 300))))
            out[str(p.relative_to(root))] = hashlib.sha256(a.tobytes()).hexdigest()
    return out


# ---- format and files

def test_region_json_marks_finished_region(region, tmp_path):
    meta = json.loads((region.path / "region.json").read_text())
    assert meta["crs"] == "EPSG:3035" and meta["metatiles"] == [region.grid.origin.id]
    assert region.grid.origin == MetaTile(4_200_000, 2_800_000)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "species").mkdir()
    with pytest.raises(RegionError):
        load_region(tmp_path / "half")


def test_rasters_are_georeferenced_tiled_and_shaped(region):
    l, b, r, t = region.grid.bounds
    for key, path in region.paths.items():
        if path.suffix != ".tif":
            continue
        with rasterio.open(path) as ds:
            assert ds.crs.to_epsg() == 3035, key
            assert ds.profile.get("tiled") and ds.compression is not None, key
    with rasterio.open(region.s2_path) as ds:
        assert ds.count == 4 and ds.dtypes[0] == "uint16" and ds.res == (10.0, 10.0)
        assert ds.bounds.left <= l - 640 and ds.bounds.right >= r + 640
        assert ds.bounds.bottom <= b - 640 and ds.bounds.top >= t + 640
    with rasterio.open(region.climate_paths["tas"]) as ds:
        assert ds.count == 19 * 12
    with rasterio.open(region.landsat_path) as ds:
        assert ds.count == 6 * 4 * 21
    with rasterio.open(region.landcover_path) as ds:
        assert ds.shape == (500, 500) and ds.transform == region.grid.transform()


def test_extract_inputs_shapes_units_and_edges(region):
    l, b, r, t = region.grid.bounds
    x = np.array([l + 25, r - 25, l + 25, r - 25, (l + r) / 2])
    y = np.array([b + 25, b + 25, t - 25, t - 25, (b + t) / 2])
    d = region.extract_inputs(x, y)
    assert d["s2"].shape == (5, 4, 128, 128) and d["s2"].dtype == np.uint16
    assert d["climate"].shape == (5, 4, 19, 12) and d["landsat"].shape == (5, 6, 4, 21)
    pr, tas, tmax, tmin = (d["climate"][:, i] for i in range(4))
    assert (pr >= 0).all() and 2400 < tas.min() and tas.max() < 3150   # K x 10
    assert (tmax >= tas).all() and (tas >= tmin).all()
    summer, winter = tas[:, :, 6].mean(), tas[:, :, 0].mean()
    assert summer - winter > 100                                        # > 10 K seasonality
    assert 0 < d["landsat"].max() <= 255
    nir, red = d["landsat"][:, 3, 1].mean(), d["landsat"][:, 0, 1].mean()
    assert nir > red                                                    # vegetated, Q2
    # the patch is the raster around the point's pixel
    with rasterio.open(region.s2_path) as ds:
        row, col = ds.index(x[4], y[4])
        direct = ds.read(window=((row - 64, row + 64), (col - 64, col + 64)))
    np.testing.assert_array_equal(d["s2"][4], direct)


# ---- determinism

@pytest.mark.slow
def test_same_seed_same_region(region, tmp_path):
    again = generate_region(tmp_path / "again", **KW)
    assert _digest(region.path) == _digest(again.path)


def test_other_seed_other_landscape():
    from inference.data.synth.landscape import build_landscape
    from inference.grid import Region
    g = Region.from_corner(4_200_000, 2_800_000, 1, 1)
    a, b = build_landscape(g, 0), build_landscape(g, 1)
    assert not np.array_equal(a.landcover, b.landcover)


# ---- the flora and its truth

def test_true_probability_shape_and_consistency(region, tile, prob):
    assert prob.shape == (60, 500, 500) and prob.dtype == np.float32
    assert np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1
    xs, ys = region.cell_centres(tile)
    rr = np.array([3, 250, 499])
    cc = np.array([7, 100, 480])
    at = region.true_probability_at(xs[rr, cc], ys[rr, cc])
    np.testing.assert_allclose(at, prob[:, rr, cc].T, rtol=1e-4, atol=1e-6)
    parts = np.concatenate([p for _, p in region.iter_true_probability(tile, chunk=25)])
    np.testing.assert_allclose(parts, prob, rtol=1e-5, atol=1e-7)


def test_prevalence_range(region, prob):
    prev = prob.mean(axis=(1, 2))
    assert prev.min() > 1e-5 and prev.max() < 0.95
    assert 0.003 < np.median(prev) < 0.2
    richness = prob.sum(0)                                     # species per 100 m2 plot
    assert 0.02 * len(prev) < richness.mean() < 0.3 * len(prev)
    target = np.array([s.target_prevalence for s in region.species])
    def rank(a):
        return np.argsort(np.argsort(a))

    assert np.corrcoef(rank(prev), rank(target))[0, 1] > 0.8   # calibrated per species


def test_pa_csv_format_and_truth(region, prob):
    cols, rows = _read_csv(region.pa_csv)
    assert tuple(cols) == PA_COLUMNS
    ids = {s.id: s.index for s in region.species}
    surveys: dict[int, list] = {}
    for r in rows:
        surveys.setdefault(int(r["surveyId"]), []).append(r)
        assert int(r["speciesId"]) in ids
    assert len(surveys) > 0.6 * KW["n_surveys"] and len(rows) / len(surveys) > 2
    first = [v[0] for v in surveys.values()]
    lon = np.array([float(r["lon"]) for r in first])
    lat = np.array([float(r["lat"]) for r in first])
    area = np.array([float(r["areaInM2"]) for r in first])
    assert 1 <= area.min() and area.max() <= 1000 and np.median(area) == pytest.approx(100, rel=0.5)
    assert all(2017 <= int(r["year"]) <= 2021 for r in first)
    x, y = _to_3035(lon, lat)
    l, b, rgt, t = region.grid.bounds
    assert ((x > l) & (x < rgt) & (y > b) & (y < t)).all()
    row, col = _cell_index(region, x, y)
    p = prob[:, row, col].T                                    # [surveys, S]
    expected = 1 - (1 - p) ** (area[:, None] / 100.0)
    obs = np.zeros_like(expected)
    for k, v in enumerate(surveys.values()):
        for r in v:
            obs[k, ids[int(r["speciesId"])]] = 1
    # rows of surveys with no species are not written (as in GeoPlant): condition on >= 1
    any_p = 1 - np.prod(1 - expected, axis=1, keepdims=True)
    exp_c = expected / any_p
    assert obs.sum() == pytest.approx(exp_c.sum(), rel=0.08)
    freq_obs, freq_exp = obs.mean(0), exp_c.mean(0)
    assert np.corrcoef(freq_obs, freq_exp)[0, 1] > 0.9
    assert np.corrcoef(obs.sum(1), exp_c.sum(1))[0, 1] > 0.4


def test_presence_only_biased_to_roads_and_towns(region):
    cols, rows = _read_csv(region.po_csv)
    assert {"lon", "lat", "speciesId", "year", "geoUncertaintyInM"} <= set(cols)
    x, y = _to_3035([float(r["lon"]) for r in rows], [float(r["lat"]) for r in rows])
    row, col = _cell_index(region, x, y)
    with rasterio.open(region.predictors_path) as ds:
        names = list(ds.descriptions)
        d_road = ds.read(names.index("dist_road") + 1)
        d_urban = ds.read(names.index("dist_urban") + 1)
    rng = np.random.default_rng(0)
    rr, rc = rng.integers(0, 500, 20_000), rng.integers(0, 500, 20_000)
    assert np.median(d_road[row, col]) < 0.5 * np.median(d_road[rr, rc])
    assert np.median(d_urban[row, col]) < 0.6 * np.median(d_urban[rr, rc])
    # the species recorded still follow the truth: records fall where the species is likely
    sp = np.array([int(r["speciesId"]) for r in rows])
    ids = {s.id: s.index for s in region.species}
    p_at = region.true_probability_at(x, y)
    p_own = p_at[np.arange(len(sp)), [ids[i] for i in sp]]
    assert p_own.mean() > 2 * p_at.mean()


# ---- habitats

def test_habitats_spatially_coherent(region, tile):
    h = region.true_habitat(tile)
    assert (h != 255).all() and len(np.unique(h)) >= 15
    agree = np.mean(np.r_[(h[1:] == h[:-1]).ravel(), (h[:, 1:] == h[:, :-1]).ravel()])
    freq = np.bincount(h.ravel()) / h.size
    chance = float((freq ** 2).sum())
    assert agree > 0.6 and agree > 4 * chance
    codes = region.true_habitat_codes(tile)
    assert set(np.unique(codes)) <= set(HABITAT_CODES)
    assert {t.code for t in region.habitat_types} == set(HABITAT_CODES)


def test_habitats_have_characteristic_assemblages(region, tile, prob):
    h = region.true_habitat(tile).ravel()
    P = prob.reshape(prob.shape[0], -1).T
    rng = np.random.default_rng(1)
    idx = rng.choice(h.size, 6000, replace=False)
    train, test = idx[:3000], idx[3000:]
    labels = np.unique(h[train])
    cent = np.stack([P[train][h[train] == k].mean(0) for k in labels])
    d = ((P[test][:, None, :] - cent[None]) ** 2).sum(-1)
    acc = np.mean(labels[d.argmin(1)] == h[test])
    majority = np.bincount(h[test]).max() / test.size
    assert acc > 0.5 and acc > majority + 0.15


# ---- species attributes and traits

def test_species_attributes(region):
    sp = region.species
    assert len(sp) == 60 and len({s.name for s in sp}) == 60
    assert all(s.name.startswith("Virtu") and s.family.startswith("Virtu") and s.family.endswith("aceae")
               for s in sp)
    assert {s.iucn for s in sp} <= {"LC", "NT", "VU", "EN", "CR", "DD"}
    assert all(s.woody for s in sp if s.tree)
    big = flora.make_species(2000, 3)
    assert 0.6 < np.mean(big["iucn"] == "LC") < 0.9
    assert 0 < big["invasive"].sum() < 200 and 0 < big["eu_directive"].sum() < 200 and big["tree"].sum() > 20


def test_trait_ranges_and_correlations():
    sp = flora.make_species(3000, 11)
    lm = sp["trait_logmean"]
    h, la, sla, n = (np.exp(lm[:, i]) for i in range(4))
    assert 0.01 < h.min() and h.max() <= 60
    assert 1 < la.min() and la.max() < 1e5
    assert 2 < sla.min() and sla.max() < 80
    assert 5 < n.min() and n.max() < 60
    assert np.corrcoef(lm[:, 2], lm[:, 3])[0, 1] > 0.3          # leaf economics: SLA ~ leaf N
    gf = sp["growth_form"]
    assert np.median(h[gf == "tree"]) > 5 * np.median(h[gf == "herb"])
    assert np.median(sla[sp["conifer"]]) < np.median(sla[gf == "herb"])


def test_photo_csv_and_images(region):
    cols, rows = _read_csv(region.photos_csv)
    assert tuple(cols) == PHOTO_COLUMNS
    _, truth = _read_csv(region.file("photos_truth"))
    assert len(rows) == len(truth) == 120
    assert {r["PFT"] for r in rows} <= {"tree", "shrub", "herb", "grass"}
    for r in rows:
        for t in flora.TRAITS:
            lo, med, hi = (float(r[f"{t}_{k}"]) for k in ("lowerbound", "median", "upperbound"))
            assert 0 < lo < med < hi and float(r[f"{t}_sd"]) > 0
    from PIL import Image
    sky, ground = [], []
    for r, tr in zip(rows, truth):
        im = np.asarray(Image.open(region.path / "photos" / r["Image"]))
        assert im.shape == (64, 64, 3)
        if tr["is_plant"] == "1":
            blue_top = im[:16, :, 2].mean() - im[:16, :, 0].mean()
            (sky if r["PFT"] == "tree" else ground).append(blue_top)
    # a tree photo shows sky above the crown, a herb photo soil
    if sky:
        assert np.mean(sky) > np.mean(ground) + 30
    ind = np.log([[float(tr[t]) for t in flora.TRAITS] for tr in truth])
    med = np.log([[float(r[f"{t}_median"]) for t in flora.TRAITS] for r in rows])
    assert np.corrcoef(ind[:, 0], med[:, 0])[0, 1] > 0.7


def test_flora_scales_to_full_species_count():
    S = 11_255
    sp = flora.make_species(S, 0)
    assert len(set(sp["name"])) == S
    rng = np.random.default_rng(0)
    pred = np.stack([rng.uniform(*r, 2000) for r in
                     [(5, 11), (600, 1600), (0, 30), (-1, 1), (0, 1), (4, 8), (0, 3000), (0, 5000),
                      (0, 3000), (0, 500), (0, 1)]]).astype(np.float32)
    hab = rng.integers(0, len(HABITAT_CODES), 2000).astype(np.uint8)
    F = flora.design_matrix(pred, hab)
    b0 = flora.calibrate_intercepts(sp, F[:500], chunk=4096)
    W = flora.weights(sp, b0)
    p = flora.probability(F, W[:, :2048])
    assert p.shape == (2048, 2000) and np.isfinite(p).all()


# ---- EUNIS hierarchy

def _norm(s: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", s).split())


def test_eunis_builtin_hierarchy():
    assert eunis.ancestors("R22") == ["R2", "R"] and eunis.level("T1E") == 3 and eunis.parent("T1E") == "T1"
    assert eunis.at_level("C2.3", 1) == "C" and eunis.level("J1.2") == 3
    lvl3 = list(eunis.all_types(3))
    assert len(lvl3) >= 30
    assert {h.code[0] for h in lvl3} >= {"Q", "R", "S", "T", "U", "V", "C", "J"}
    for h in eunis.HABITAT_TYPES:
        assert h.level == (1 if h.parent is None else eunis.level(h.parent) + 1)
    for c in HABITAT_CODES:
        assert eunis.level(c) == 3


def test_eunis_matches_reference_list():
    ref_path = REFERENCE / "eunis2021_habitats.csv"
    if not ref_path.is_file():
        pytest.skip("reference EUNIS list not available")
    with open(ref_path, newline="", encoding="utf-8-sig") as fh:
        ref = {_norm(r["Code"]): _norm(r["Name"]) for r in csv.DictReader(fh)}
    for h in eunis.HABITAT_TYPES:
        if h.revision == 2021:
            assert h.code in ref, h.code
            assert _norm(h.name) == ref[h.code], h.code
        else:
            assert h.code not in ref          # 2012 codes are outside the 2021 list
