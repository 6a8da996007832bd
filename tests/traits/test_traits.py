"""PlantTraitNet (photos -> traits, cleaning loop) and trait maps (CWM at 50 m, photo grids)."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.traits.data import (
    block_split,
    load_images,
    load_photos,
    lognormal_params,
    photo_features,
    stratified_batches,
)
from inference.traits.maps import CWMAccumulator, block_mean, cwm, grid_aggregate
from inference.traits.model import (
    TRAITS,
    FrozenEncoders,
    GeoEncoder,
    TraitNet,
    WeightsNotFoundError,
    gaussian_nll,
    laplace_nll,
    make_config,
    trait_nll,
)
from inference.traits.predictor import Features, LabelScaler, load_traits, predict_z
from inference.traits.train import (
    TraitTrainConfig,
    fit,
    new_net,
    per_trait_metrics,
    train_traits,
    train_with_cleaning,
)

torch.set_num_threads(1)
TINY = TraitTrainConfig(size="tiny", epochs=25, batch_size=32, lr=2e-3, seed=0)


@pytest.fixture(scope="module")
def photos(tiny_region):
    return load_photos(Path(tiny_region) / "photos" / "planttraitnet.csv")


@pytest.fixture(scope="module")
def feats(photos, tmp_path_factory):
    enc = FrozenEncoders(TINY.model_config())
    return Features.build(photo_features(enc, photos, tmp_path_factory.mktemp("cache")), photos)


@pytest.fixture(scope="module")
def split(photos):
    is_ref = block_split(photos.x, photos.y, 0.25, seed=0, block_m=5_000)
    return np.flatnonzero(~is_ref), np.flatnonzero(is_ref)


# ----------------------------------------------------------------------------------------------
# losses


def test_gaussian_and_laplace_nll_hand_computed():
    y, m = torch.tensor([1.0]), torch.tensor([0.5])
    # Gaussian, variance 0.25: 0.5 (log 2 pi + log 0.25 + 0.5^2 / 0.25)
    g = gaussian_nll(y, m, torch.log(torch.tensor([0.25])))
    assert g.item() == pytest.approx(0.5 * (math.log(2 * math.pi) + math.log(0.25) + 1.0), abs=1e-6)
    assert g.item() == pytest.approx(0.7257913526, abs=1e-6)
    # Laplace, variance 2 -> scale b = 1: log(2 b) + |y - m| / b
    lp = laplace_nll(y, m, torch.log(torch.tensor([2.0])))
    assert lp.item() == pytest.approx(math.log(2) + 0.5, abs=1e-6)
    # against torch.distributions on random values
    g_ = torch.Generator().manual_seed(0)
    y, m, lv = (torch.randn(50, generator=g_) for _ in range(3))
    ref_g = -torch.distributions.Normal(m, torch.exp(0.5 * lv)).log_prob(y)
    ref_l = -torch.distributions.Laplace(m, torch.sqrt(torch.exp(lv) / 2)).log_prob(y)
    torch.testing.assert_close(gaussian_nll(y, m, lv), ref_g, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(laplace_nll(y, m, lv), ref_l, atol=1e-5, rtol=1e-5)


def test_trait_nll_laplace_for_leaf_area_and_masks():
    y = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, float("nan"), 0.0, 0.0]])
    mean = torch.zeros(2, 4)
    logvar = torch.zeros(2, 4)  # variance 1
    laplace = torch.tensor([t == "LeafArea" for t in TRAITS])
    valid = torch.isfinite(y)
    out = trait_nll(y, mean, logvar, laplace, valid)
    gauss = lambda r: 0.5 * (math.log(2 * math.pi) + r * r)  # noqa: E731
    lap = lambda r: math.log(2 / math.sqrt(2)) + abs(r) * math.sqrt(2)  # noqa: E731  b = sqrt(1/2)
    expected = [(gauss(1) + gauss(0)) / 2, lap(1), (gauss(1) + gauss(0)) / 2, (gauss(1) + gauss(0)) / 2]
    torch.testing.assert_close(out, torch.tensor(expected), atol=1e-5, rtol=1e-5)
    # the model routes LeafArea (and only it) to the Laplace loss
    net = TraitNet(make_config("tiny"), image_channels=8)
    assert net.laplace.tolist() == [False, True, False, False]


# ----------------------------------------------------------------------------------------------
# community-weighted means and grids


def test_cwm_hand_computed():
    mu = np.array([[0.0, 1.0, 2.0, 3.0],
                   [2.0, 1.0, 0.0, -1.0],
                   [4.0, 4.0, 4.0, 4.0]])
    # 3 species x 1 x 3 cells: a mixed cell, a cell with no species, a cell with equal probabilities
    prob = np.array([[[0.6, 0.0, 0.3]], [[0.2, 0.0, 0.3]], [[0.05, 0.0, 0.3]]], np.float32)
    mean, sd = cwm(prob, mu)
    assert mean.shape == sd.shape == (4, 1, 3)
    w = np.array([0.6, 0.2, 0.05])
    m0 = (w[:, None] * mu).sum(0) / w.sum()
    s0 = np.sqrt((w[:, None] * (mu - m0) ** 2).sum(0) / w.sum())
    np.testing.assert_allclose(mean[:, 0, 0], m0, rtol=1e-5)
    np.testing.assert_allclose(sd[:, 0, 0], s0, rtol=1e-5)
    assert np.isnan(mean[:, 0, 1]).all() and np.isnan(sd[:, 0, 1]).all()       # empty assemblage
    np.testing.assert_allclose(mean[:, 0, 2], mu.mean(0), rtol=1e-5)            # equal weights
    np.testing.assert_allclose(sd[:, 0, 2], mu.std(0), rtol=1e-5)
    # threshold: the assemblage is p >= 0.2 (species 3 leaves the first cell), weights stay p
    mean_t, _ = cwm(prob, mu, threshold=0.2)
    np.testing.assert_allclose(mean_t[:, 0, 0], (0.6 * mu[0] + 0.2 * mu[1]) / 0.8, rtol=1e-5)
    mean_t, _ = cwm(prob, mu, threshold=0.5)
    np.testing.assert_allclose(mean_t[:, 0, 0], mu[0], rtol=1e-5)
    assert np.isnan(mean_t[:, 0, 2]).all()                                       # nobody reaches 0.5
    # intraspecific sds add to the variance; torch in, torch out; chunking changes nothing
    sd_in = np.full_like(mu, 0.5)
    _, sd2 = cwm(torch.from_numpy(prob), mu, log_trait_sds=sd_in, chunk=1)
    assert torch.is_tensor(sd2)
    np.testing.assert_allclose(sd2[:, 0, 2].numpy(), np.sqrt(mu.std(0) ** 2 + 0.25), rtol=1e-5)


def test_cwm_streaming_matches_and_chunks(tmp_path):
    rng = np.random.default_rng(1)
    S = 300
    prob = rng.uniform(0, 0.3, (S, 40, 50)).astype(np.float32)
    mu = rng.normal(0, 2, (S, 4))
    m1, s1 = cwm(prob, mu, threshold=0.1, chunk=64)
    acc = CWMAccumulator(mu, (40, 50), threshold=0.1)
    for s0 in range(0, S, 100):
        acc.add(slice(s0, s0 + 100), prob[s0:s0 + 100])
    m2, s2 = acc.result()
    np.testing.assert_allclose(m1, m2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-5)
    w = np.where(prob >= 0.1, prob, 0).reshape(S, -1)
    ref = (mu.T @ w) / w.sum(0)
    np.testing.assert_allclose(m1.reshape(4, -1), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="species"):
        cwm(prob, mu[:10])


def test_grid_aggregate_needs_twenty_photos():
    rng = np.random.default_rng(0)
    bounds = (0, 0, 3000, 1000)  # three 1 km cells in a row
    counts = {0: 25, 1: 19, 2: 20}
    x = np.concatenate([rng.uniform(c * 1000, c * 1000 + 1000, n) for c, n in counts.items()])
    y = rng.uniform(0, 1000, len(x))
    mean = rng.normal(0, 1, (len(x), 4))
    var = rng.uniform(0.1, 0.5, (len(x), 4))
    g = grid_aggregate(x, y, mean, var, bounds, 1000, min_count=20)
    assert g.mean.shape == (4, 1, 3) and g.count.tolist() == [[25, 19, 20]]
    assert g.valid.tolist() == [[True, False, True]]
    assert np.isnan(g.mean[:, 0, 1]).all() and np.isnan(g.se[:, 0, 1]).all() and np.isnan(g.pred_var[:, 0, 1]).all()
    sel = slice(44, 64)  # the 20 photos of the third cell
    np.testing.assert_allclose(g.mean[:, 0, 2], mean[sel].mean(0), rtol=1e-5)
    np.testing.assert_allclose(g.se[:, 0, 2], mean[sel].std(0, ddof=1) / np.sqrt(20), rtol=1e-4)
    np.testing.assert_allclose(g.pred_var[:, 0, 2], var[sel].mean(0), rtol=1e-5)
    # NaN predictions (screened photos) do not count towards the 20
    mean2 = mean.copy()
    mean2[44] = np.nan
    assert not grid_aggregate(x, y, mean2, var, bounds, 1000, min_count=20).valid[0, 2]
    # NaN-aware block means of the truth, with valid-cell counts as area weights
    a = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    a[0, 0, 0] = np.nan
    m, n = block_mean(a, 2)
    assert n.tolist() == [[3, 4], [4, 4]] and m[0, 0, 0] == pytest.approx((1 + 4 + 5) / 3)
    m, n = block_mean(a, 3)  # edge blocks keep the cells they have
    assert n.tolist() == [[8, 3], [3, 1]] and m[0, 1, 1] == pytest.approx(15)


def test_weighted_metrics_hand_computed():
    from inference.traits.evaluate import weighted_metrics

    t = np.array([0.0, 1.0, 2.0, 3.0, np.nan])
    m = weighted_metrics(t, t)
    assert m["r2"] == pytest.approx(1) and m["nmae"] == 0 and m["r"] == pytest.approx(1) and m["n"] == 4
    m = weighted_metrics(t + 0.3, t)  # an offset: perfect correlation, R^2 = 1 - 0.09 / 1.25
    assert m["r"] == pytest.approx(1) and m["bias"] == pytest.approx(0.3)
    assert m["r2"] == pytest.approx(1 - 0.09 / 1.25) and m["nmae"] == pytest.approx(0.3 / 3)
    # area weights: a cell of weight 0 does not count, weight 2 counts twice
    p = np.array([0.0, 1.0, 2.0, 5.0, 9.0])
    w = np.array([1.0, 2.0, 1.0, 0.0, 1.0])
    m = weighted_metrics(p, np.array([0.0, 1.0, 2.0, 3.0, 9.0]), w)
    assert m["r2"] == pytest.approx(1) and m["n"] == 4


# ----------------------------------------------------------------------------------------------
# data


def test_lognormal_params_recover_the_generator():
    from inference.data.synth.flora import trait_summary

    rng = np.random.default_rng(0)
    sp = {"trait_logmean": rng.normal(2, 1, (50, 4)), "trait_logsd": rng.uniform(0.1, 0.5, (50, 4))}
    ts = trait_summary(sp)
    get = lambda k: np.stack([ts[f"{t}_{k}"] for t in TRAITS], 1)  # noqa: E731
    mu, sig = lognormal_params(get("median"), get("sd"), get("lowerbound"), get("upperbound"))
    np.testing.assert_allclose(mu, sp["trait_logmean"], atol=1e-9)
    np.testing.assert_allclose(sig, sp["trait_logsd"], atol=1e-9)
    nan = np.full_like(mu, np.nan)
    mu_b, sig_b = lognormal_params(get("median"), nan, get("lowerbound"), get("upperbound"))  # from the bounds
    np.testing.assert_allclose(sig_b, sp["trait_logsd"], atol=1e-9)
    mu_c, sig_c = lognormal_params(nan, nan, get("lowerbound"), get("upperbound"))  # no median either
    np.testing.assert_allclose(mu_c, sp["trait_logmean"], atol=1e-9)
    mu_d, sig_d = lognormal_params(nan, nan, nan, nan)  # nothing: no label
    assert np.isnan(mu_d).all()


def test_batches_are_stratified_by_pft():
    rng = np.random.default_rng(0)
    pft = np.array(["herb"] * 300 + ["tree"] * 60 + ["grass"] * 40)
    batches = stratified_batches(rng, pft, 40)
    assert sorted(np.concatenate(batches).tolist()) == list(range(400))
    for b in batches:
        shares = {p: np.mean(pft[b] == p) for p in ("herb", "tree", "grass")}
        assert abs(shares["herb"] - 0.75) < 0.06 and abs(shares["tree"] - 0.15) < 0.06


def test_photos_load_with_truth(photos):
    assert len(photos) >= 300
    assert photos.log_median.shape == (len(photos), 4) and np.isfinite(photos.log_median).all()
    assert photos.truth is not None and (~photos.truth["is_plant"]).sum() > 0
    img = load_images(photos.paths()[:3])
    assert img.shape == (3, 64, 64, 3) and img.dtype == np.uint8


# ----------------------------------------------------------------------------------------------
# the model


def test_model_learns_on_tiny_data(photos, feats, split):
    train, held = split
    cfg = TINY
    mcfg = cfg.model_config()
    scaler = LabelScaler.fit(photos.log_median[train])
    net = new_net(mcfg, feats, seed=0)
    hist = fit(net, feats, photos, train, scaler, cfg, cfg.epochs, seed=0)
    assert hist[-1] < hist[0] - 0.3, hist  # the training NLL falls
    zm, zv = predict_z(net, feats, held)
    pred, var = scaler.to_log(zm, zv)
    assert (var > 0).all()
    plant = photos.truth["is_plant"][held]
    for target in (photos.log_median[held], photos.truth["log_traits"][held]):
        m = per_trait_metrics(pred[plant], target[plant], scaler.mean, TRAITS)
        for t in TRAITS:  # beats predicting the training mean on every trait
            assert m[t]["mae"] < m[t]["baseline_mae"], (t, m[t])
            assert m[t]["r2"] > m[t]["baseline_r2"], (t, m[t])
        assert m["Height"]["r2"] > 0.7 and np.mean([m[t]["r2"] for t in TRAITS]) > 0.5, m


def test_cleaning_loop_removes_injected_noise(photos, feats, split):
    train, ref = split
    rng = np.random.default_rng(3)
    noisy = photos.subset(np.arange(len(photos)))
    # injected label noise: 10 % of the training photos get the labels of a photo of another PFT
    swapped = rng.choice(train, int(0.1 * len(train)), replace=False)
    for i in swapped:
        donor = rng.choice(np.flatnonzero(noisy.pft != noisy.pft[i]))
        noisy.log_median[i], noisy.log_sd[i] = photos.log_median[donor], photos.log_sd[donor]
    non_plant = ~photos.truth["is_plant"]
    cfg = TraitTrainConfig(size="tiny", epochs=20, batch_size=32, lr=2e-3, residual_fractions=(0.0, 0.1))
    scaler = LabelScaler.fit(noisy.log_median[train])
    net, rec, screen = train_with_cleaning(feats, noisy, train, ref, photos.truth["log_traits"][ref], scaler,
                                           cfg.model_config(), cfg, log=lambda *_: None)
    drop1 = np.array(rec["step1"]["dropped_index"])
    kept1 = np.setdiff1d(train, drop1)
    assert len(drop1) == round(0.05 * len(train))
    # step 1 (uncertainty) finds the photos without a plant
    assert non_plant[drop1].mean() > 3 * non_plant[kept1].mean(), (non_plant[drop1].mean(), non_plant[kept1].mean())
    # step 2 (residuals) ranks the swapped labels first
    ranked = np.array(rec["step2"]["ranked_index"])
    is_swapped = np.isin(np.arange(len(photos)), swapped)
    assert is_swapped[ranked].mean() > 3 * is_swapped[np.setdiff1d(kept1, ranked)].mean()
    # the curve scores every candidate, and the turning point is the smallest fraction within the
    # tolerance of the best reference score (the rule), with that many photos dropped
    curve = rec["step2"]["curve"]
    assert [c["fraction"] for c in curve] == [0.0, 0.1]
    assert [c["dropped"] for c in curve] == [0, round(0.1 * len(kept1))]
    best = max(c["reference_r2"] for c in curve)
    rule = min(c["fraction"] for c in curve if c["reference_r2"] >= best - cfg.turning_tolerance)
    assert rec["step2"]["turning_point"] == rule
    assert rec["step2"]["dropped"] == round(rule * len(kept1)) == len(rec["step2"]["dropped_index"])
    # the screen flags the photos without a plant everywhere, not only in training
    keep = screen.keep(feats)
    assert (~keep[non_plant]).mean() > 3 * (~keep[~non_plant]).mean() and (~keep[~non_plant]).mean() < 0.1


def test_depth_encoder_tiny_and_geo_inputs(photos):
    mcfg = make_config("tiny", use_depth=True, depth_pool=16, depth_out=32)
    enc = FrozenEncoders(mcfg)
    imgs = load_images(photos.paths()[:4])
    f = enc.encode(imgs)
    assert f["image"].shape == (4, enc.image_channels, mcfg.image_pool)
    assert f["depth"].shape == (4, enc.depth_channels, 16)
    assert all(not p.requires_grad for p in enc.parameters())
    net = TraitNet(mcfg, enc.image_channels, enc.depth_channels).eval()
    geo = GeoEncoder.inputs(photos.lon[:4], photos.lat[:4], [1, 6, np.nan, 12])
    assert geo.shape == (4, 4) and geo[2, 2:].tolist() == [0.0, 0.0]  # unknown month
    mean, logvar = net(f["image"], geo, f["depth"])
    assert mean.shape == logvar.shape == (4, 4) and torch.isfinite(mean).all()
    # the random stand-in is reproducible from its seed
    f2 = FrozenEncoders(mcfg).encode(imgs)
    torch.testing.assert_close(f["image"], f2["image"])


def test_checkpoint_round_trip(photos, tmp_path):
    sub = photos.subset(np.arange(200))
    cfg = TraitTrainConfig(size="tiny", epochs=3, batch_size=32, residual_fractions=(0.0, 0.05))
    out = tmp_path / "traits.pt"
    report = train_traits(sub, out, cfg, cache_dir=tmp_path / "cache", log=lambda *_: None)
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert report["cleaning"]["step1"]["dropped"] > 0 and "reference_metrics_without_cleaning" in report
    model = load_traits(out)
    mean, var = model.predict_photos(sub, screen=False)
    assert mean.shape == (200, 4) and np.isfinite(mean).all() and (var > 0).all()
    screened, _ = model.predict_photos(sub)
    assert np.isnan(screened).any(axis=1).sum() > 0  # the screen travels with the checkpoint
    m2, _ = model.predict_files(sub.paths()[:5], sub.lon[:5], sub.lat[:5], screen=False)
    np.testing.assert_allclose(m2, mean[:5], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# bad inputs


def _copy_photos(src: Path, dst: Path, n: int = 5) -> Path:
    dst.mkdir(parents=True)
    with open(src / "planttraitnet.csv", newline="") as fh:
        rows = list(csv.reader(fh))[: n + 1]
    for r in rows[1:]:
        (dst / r[0]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / r[0], dst / r[0])
    with open(dst / "planttraitnet.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return dst / "planttraitnet.csv"


def test_bad_inputs_give_clear_errors(tiny_region, tmp_path):
    from inference.data.readers import DataFormatError

    src = Path(tiny_region) / "photos"
    good = _copy_photos(src, tmp_path / "p")
    assert len(load_photos(good)) == 5
    # a missing image file
    with open(good, newline="") as fh:
        first = list(csv.reader(fh))[1][0]
    (good.parent / first).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 5 images .* missing.*" + first.replace(".", r"\.")):
        load_photos(good)
    with pytest.raises(FileNotFoundError, match="image file not found"):
        load_images([good.parent / first])
    # wrong CSV columns
    bad = tmp_path / "bad.csv"
    bad.write_text("Image,Longitude,Latitude,PFT,Height_median\nimages/a.jpg,8.5,48.5,herb,0.3\n")
    with pytest.raises(DataFormatError, match="Height_sd"):
        load_photos(bad)
    # a file that is not an image
    (tmp_path / "not.jpg").write_text("hello")
    with pytest.raises(ValueError, match="cannot read image"):
        load_images([tmp_path / "not.jpg"])
    # missing local weights
    mcfg = make_config("tiny", use_depth=True)
    with pytest.raises(WeightsNotFoundError, match="DINOV2_PATH"):
        FrozenEncoders(mcfg, dinov2_path=tmp_path / "no-dinov2")
    with pytest.raises(WeightsNotFoundError, match="DEPTH_ANYTHING_PATH"):
        FrozenEncoders(mcfg, depth_path=tmp_path / "no-depth")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="config.json"):
        FrozenEncoders(mcfg, dinov2_path=tmp_path / "empty")
    with pytest.raises(WeightsNotFoundError, match="CLIMPLICIT_PATH"):
        TraitNet(mcfg, 8, 8).geo.load_embedding(tmp_path / "no-climplicit.pt")
    with pytest.raises(FileNotFoundError, match="no trait model"):
        load_traits(tmp_path / "missing.pt")


def test_pretrained_folders_load_locally(tmp_path):
    """A transformers save_pretrained folder is read with local_files_only (no hub access)."""
    from transformers import Dinov2Config, Dinov2Model

    from inference.traits.model import TINY_VIT

    folder = tmp_path / "dinov2"
    Dinov2Model(Dinov2Config(**TINY_VIT)).save_pretrained(folder)
    mcfg = make_config("tiny")
    enc = FrozenEncoders(mcfg, dinov2_path=folder)
    assert enc.sources["image"] == {"kind": "pretrained", "path": str(folder)}
    assert enc.random_state() is None
    f = enc.encode(np.zeros((2, 64, 64, 3), np.uint8))
    assert f["image"].shape == (2, TINY_VIT["hidden_size"], mcfg.image_pool)
    # a Climplicit-style SIREN state dict is loaded and frozen
    net = TraitNet(mcfg, 8)
    path = tmp_path / "siren.pt"
    torch.save(net.geo.siren.state_dict(), path)
    net2 = TraitNet(mcfg, 8)
    net2.geo.load_embedding(path)
    assert net2.geo.pretrained and not any(p.requires_grad for p in net2.geo.siren.parameters())


# ----------------------------------------------------------------------------------------------
# command line


def test_cli_trains_traits(cli_data_dir, monkeypatch):
    from click.testing import CliRunner

    from backend.cli import main
    from backend.core.settings import get_settings

    runner = CliRunner()
    monkeypatch.setenv("GEOFLORA_DINOV2_PATH", str(cli_data_dir / "missing"))
    get_settings.cache_clear()
    r = runner.invoke(main, ["train", "traits", "--region", "tiny", "--size", "tiny", "--epochs", "2"])
    assert r.exit_code != 0 and "not found" in r.output
    monkeypatch.delenv("GEOFLORA_DINOV2_PATH")
    get_settings.cache_clear()
    r = runner.invoke(main, ["train", "traits", "--region", "tiny", "--size", "tiny", "--epochs", "2",
                             "--no-clean"])
    assert r.exit_code == 0, r.output
    assert (cli_data_dir / "models" / "tiny" / "traits.pt").is_file()
    assert (cli_data_dir / "models" / "tiny" / "traits.json").is_file()


@pytest.mark.slow
def test_evaluate_traits_table(tiny_region, tmp_path):
    from inference.data.region import load_region
    from inference.traits.evaluate import evaluate_traits, format_table

    region = load_region(tiny_region)
    cfg = TraitTrainConfig(size="tiny", epochs=8, batch_size=32, lr=2e-3, residual_fractions=(0.0, 0.05))
    rep = evaluate_traits(region, cfg, grid_m=5_000, min_count=20, folds=2, cache_dir=tmp_path,
                          log=lambda *_: None)
    maps = {r["map"] for r in rep["rows"]}
    assert "photos, model without cleaning, all photos" in maps
    assert "photos, model with cleaning, screened photos" in maps
    assert any(m.startswith("CWM, TRUE probabilities") for m in maps)
    assert rep["cwm_source"].startswith("true probabilities")
    for r in rep["rows"]:
        assert r["cells"] > 0
        if r["map"].startswith("photos"):
            assert r["resolution_m"] in (5_000, 10_000)
    # the species-label photo map and the thresholded true CWM track the truth
    lab = [r for r in rep["rows"] if r["map"].startswith("photos, species labels") and r["resolution_m"] == 5_000]
    assert np.mean([r["r"] for r in lab]) > 0.3
    cw = [r for r in rep["rows"] if r["map"].startswith("CWM") and r["resolution_m"] == 50]
    assert np.mean([r["r2"] for r in cw]) > 0.5
    table = format_table(rep["rows"])
    assert table.count("\n") >= 6 and "Height R² / nMAE / r" in table
