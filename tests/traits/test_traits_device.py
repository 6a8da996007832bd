"""PlantTraitNet training on the configured device (``resolve_device(TraitTrainConfig.device)``) and
predictions from a net wherever it is: checked on the CPU, no GPU needed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.traits import train as T
from inference.traits.data import block_split, load_photos, photo_features
from inference.traits.model import FrozenEncoders
from inference.traits.predictor import Features, predict_z

CFG = T.TraitTrainConfig(size="tiny", epochs=3, batch_size=32, lr=2e-3, seed=0, residual_fractions=(0.0, 0.05),
                         compare_without_cleaning=False)


@pytest.fixture(scope="module")
def data(tiny_region, tmp_path_factory):
    photos = load_photos(Path(tiny_region) / "photos" / "planttraitnet.csv")
    photos = photos.subset(np.arange(400))
    feats = Features.build(photo_features(FrozenEncoders(CFG.model_config()), photos,
                                          tmp_path_factory.mktemp("cache")), photos)
    is_ref = block_split(photos.x, photos.y, 0.25, seed=0, block_m=5_000)
    return photos, feats, np.flatnonzero(~is_ref), np.flatnonzero(is_ref)


def test_fit_model_trains_on_the_resolved_device_and_returns_cpu_nets(data, monkeypatch):
    photos, feats, train, ref = data
    asked = []

    def fake_resolve(setting: str) -> str:
        asked.append(setting)
        return "cpu"

    monkeypatch.setattr(T, "resolve_device", fake_resolve)
    cfg = dataclasses.replace(CFG, device="cuda")
    rng_before = torch.get_rng_state()
    net, scaler, rec, screen = T.fit_model(photos, feats, train, ref, cfg, cfg.model_config(), True,
                                           log=lambda *_: None)
    # every fit of the cleaning loop (step 1, step 2, the 5 % candidate) asks for the configured device
    assert asked == ["cuda"] * 3
    assert torch.equal(torch.get_rng_state(), rng_before)  # the fits seed locally, the global RNG is untouched
    assert all(p.device.type == "cpu" for p in net.parameters())
    assert all(p.device.type == "cpu" for p in screen.net.parameters())
    zm, zv = predict_z(net, feats, ref)
    assert isinstance(zm, np.ndarray) and zm.dtype == np.float64 and zm.shape == (len(ref), 4)
    assert np.isfinite(zm).all() and (zv > 0).all()

    # an explicit CPU run is the same run: same cleaning, same predictions
    monkeypatch.undo()
    net2, _, rec2, _ = T.fit_model(photos, feats, train, ref, dataclasses.replace(CFG, device="cpu"),
                                   CFG.model_config(), True, log=lambda *_: None)
    assert rec2["step1"]["dropped_index"] == rec["step1"]["dropped_index"]
    assert rec2["step2"]["curve"] == rec["step2"]["curve"]
    np.testing.assert_array_equal(predict_z(net2, feats, ref)[0], zm)


def test_features_take_moves_a_batch_to_the_device(data):
    _, feats, train, _ = data
    b = feats.take(train[:5], "cpu")
    assert b["image"].device.type == "cpu" and torch.equal(b["image"], feats.image[torch.as_tensor(train[:5])])
    assert b["depth"] is None and torch.equal(b["geo"], feats.take(train[:5])["geo"])


def test_the_cli_passes_the_settings_device(cli_data_dir, monkeypatch):
    from click.testing import CliRunner

    from backend.cli import main
    from backend.core.settings import get_settings

    seen = {}

    def fake_train(photos, out, cfg, **kw):
        seen["device"] = cfg.device
        return {"train_seconds": 0.0}

    monkeypatch.setattr(T, "train_traits", fake_train)
    monkeypatch.setenv("GEOFLORA_DEVICE", "cpu")
    get_settings.cache_clear()
    r = CliRunner().invoke(main, ["train", "traits", "--region", "tiny", "--size", "tiny", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert seen == {"device": "cpu"}
