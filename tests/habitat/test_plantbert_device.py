"""Pl@ntBERT training on the configured device (``resolve_device(config.device)``) with the shared
best-state bookkeeping (``inference.training.BestState``): checked on the CPU, no GPU needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.habitat import train as T
from inference.habitat.plantbert import Vocab
from tests.habitat.test_plantbert import TINY_BERT


@pytest.fixture(scope="module")
def region(tiny_region):
    from inference.data.region import load_region

    return load_region(tiny_region)


def _config(device: str) -> T.PlantBertConfig:
    return T.PlantBertConfig(n_plots=400, n_val=150, mlm_epochs=1, cls_epochs=3, top_n=30, lr=5e-3, batch_size=32,
                             area_m2=(1000, 5000), model_overrides=TINY_BERT, device=device)


def test_training_runs_on_the_resolved_device_and_returns_the_best_model_on_the_cpu(region, monkeypatch):
    quiet = lambda *_: None  # noqa: E731
    vocab, labels = Vocab.from_region(region), list(region.meta["habitat_codes"])
    train, val = T.training_corpus(region, _config("cpu"), log=quiet)

    asked = []

    def fake_resolve(setting: str) -> str:
        asked.append(setting)
        return "cpu"

    monkeypatch.setattr(T, "resolve_device", fake_resolve)
    pb, rep = T.train_stages(train, val, vocab, labels, _config("cuda"), log=quiet)
    assert asked == ["cuda"]  # the configured device goes through resolve_device, once
    assert all(p.device.type == "cpu" for p in pb.model.parameters())
    assert not pb.model.training

    # BestState: the best CAL epoch is named, scored and restored
    hist = rep["history"]["cls"]
    accs = [r["val_accuracy"] for r in hist]
    k = int(np.argmax(accs))
    assert rep["val_accuracy"] == accs[k] == max(accs)
    assert rep["best_epoch"] == f"{hist[k]['phase']} {hist[k]['epoch']}"
    assert T.accuracy(pb, val) == rep["val_accuracy"]

    # an explicit CPU run is the same run: same seed, same weights
    monkeypatch.undo()
    pb_cpu, rep_cpu = T.train_stages(train, val, vocab, labels, _config("cpu"), log=quiet)
    assert rep_cpu["best_epoch"] == rep["best_epoch"] and rep_cpu["val_accuracy"] == rep["val_accuracy"]
    a, b = pb.model.state_dict(), pb_cpu.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_cli_passes_the_settings_device(cli_data_dir, monkeypatch):
    from click.testing import CliRunner

    from backend.cli import main
    from backend.core.settings import get_settings

    seen = {}

    def fake_train(region, out, config, sdm_checkpoint=None, log=print):
        seen["device"] = config.device
        return {"history": {}}

    monkeypatch.setattr(T, "train_plantbert", fake_train)
    monkeypatch.setenv("GEOFLORA_DEVICE", "cpu")
    get_settings.cache_clear()
    r = CliRunner().invoke(main, ["train", "plantbert", "--region", "tiny", "--sdm-lists", "0", "--plots", "100"])
    assert r.exit_code == 0, r.output
    assert seen == {"device": "cpu"}
