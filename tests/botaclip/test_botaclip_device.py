"""BotaCLIP training on the given device (``resolve_device(device)``) with the shared best state
(``inference.training.BestState``, frozen encoder filtered out), and the key filter itself: checked
on the CPU, no GPU needed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inference.botaclip import train as T
from inference.botaclip.model import load_botaclip, load_frozen_encoder
from inference.data.region import load_region
from inference.training import BestState
from tests.botaclip.test_botaclip import TINY_CNN, tiny_config


def test_best_state_key_filter():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))  # keys 0.weight, 0.bias (filtered out), 1.weight, 1.bias
    best = BestState(patience=2, keep=lambda name: not name.startswith("0."))
    assert best.update(0.5, net, 1)
    assert set(best.state) == {"1.weight", "1.bias"}  # the filtered keys are not copied
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    assert not best.update(0.4, net, 2)  # worse: the stored state is a copy, unchanged
    assert torch.equal(best.state["1.weight"], saved["1.weight"])
    assert not best.stop
    best.restore(net)
    assert torch.equal(net[1].weight, saved["1.weight"]) and torch.equal(net[1].bias, saved["1.bias"])
    assert torch.equal(net[0].weight, saved["0.weight"] + 1)  # filtered-out keys are left as they are
    assert not best.update(0.3, net, 3) and best.stop and best.epoch == 1 and best.score == 0.5

    # a kept key missing from the state, or a key the model lacks, does not fit
    d = best.to_dict()
    missing = BestState(keep=best.keep)
    missing.load({**d, "state": {k: v for k, v in d["state"].items() if k != "1.bias"}})
    with pytest.raises(RuntimeError, match=r"1\.bias"):
        missing.restore(net)
    unexpected = BestState(keep=best.keep)
    unexpected.load({**d, "state": {**d["state"], "2.weight": torch.zeros(1)}})
    with pytest.raises(RuntimeError, match=r"2\.weight"):
        unexpected.restore(net)

    # no filter: every key, strict loading (the behaviour before the filter)
    plain = BestState()
    assert plain.update(1.0, net)
    assert set(plain.state) == set(net.state_dict())
    del plain.state["0.bias"]
    with pytest.raises(RuntimeError, match=r"0\.bias"):
        plain.restore(net)


def test_training_runs_on_the_resolved_device_and_ends_on_the_cpu(tiny_region, tmp_path, monkeypatch):
    region = load_region(tiny_region)
    pairs = T.survey_pairs(region, seed=0, patch_size=TINY_CNN.patch_size)
    # the demo CellCNN path: briefly self-supervised, saved, frozen; early stop after 3 epochs without gain
    config = tiny_config(epochs=40, patience=3, ssl_steps=2, ssl_patches=64, ssl_batch=16, pca_cells=100)
    asked = []

    def fake_resolve(setting: str) -> str:
        asked.append(setting)
        return "cpu"

    monkeypatch.setattr(T, "resolve_device", fake_resolve)
    quiet = lambda *_: None  # noqa: E731
    rep = T.train_botaclip(region, tmp_path / "a" / "bc.pt", config, pairs=pairs, log=quiet, device="cuda")
    assert asked == ["cuda"]
    assert rep["ssl"]["steps"] == 2 and rep["frozen_encoder_unchanged"]

    # BestState with patience: stopped `patience` epochs after the best, and the best state restored
    hist = rep["history"]
    scores = [r["cal_mean@10"] for r in hist]
    assert rep["best_epoch"] == scores.index(max(scores)) + 1
    assert len(hist) == config.epochs or len(hist) == rep["best_epoch"] + config.patience
    assert rep["calibration"]["mean@10"] == hist[rep["best_epoch"] - 1]["cal_mean@10"]

    # the checkpoint and the demo encoder hold CPU tensors
    ck = torch.load(tmp_path / "a" / "bc.pt", weights_only=False)
    assert ck["state_dict"] and all(v.device.type == "cpu" for v in ck["state_dict"].values())
    assert not any(k.startswith("encoder.") for k in ck["state_dict"])
    enc = torch.load(tmp_path / "a" / "eo_encoder.pt", weights_only=False)
    assert all(v.device.type == "cpu" for v in enc["state_dict"].values())
    assert load_frozen_encoder(tmp_path / "a" / "eo_encoder.pt").normalizer is not None
    load_botaclip(tmp_path / "a" / "bc.pt")

    # an explicit CPU run is the same run
    monkeypatch.undo()
    rep_cpu = T.train_botaclip(region, tmp_path / "b" / "bc.pt", config, pairs=pairs, log=quiet, device="cpu")
    assert rep_cpu["history"] == hist and rep_cpu["calibration"] == rep["calibration"]


def test_the_cli_passes_the_settings_device(cli_data_dir, monkeypatch):
    from click.testing import CliRunner

    from backend.cli import main
    from backend.core.settings import get_settings

    seen = {}

    def fake_train(region, out, config, encoder_path=None, log=print, device="auto"):
        seen["device"] = device
        return {}

    monkeypatch.setattr(T, "train_botaclip", fake_train)
    monkeypatch.setenv("GEOFLORA_DEVICE", "cpu")
    get_settings.cache_clear()
    r = CliRunner().invoke(main, ["train", "botaclip", "--region", "tiny", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert seen == {"device": "cpu"}
