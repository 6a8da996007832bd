"""A Pl@ntBERT trained on codes of a loaded EUNIS list carries their names: it loads, and names its
classes, in a process that has not loaded that list."""

from __future__ import annotations

import pytest
import torch

from inference.data import eunis


def test_a_checkpoint_brings_the_habitats_of_its_labels(tmp_path, monkeypatch, tiny_region):
    from inference.data.region import load_region
    from inference.habitat.plantbert import PlantBert, Vocab, bert_kwargs, build_classifier, load_plantbert
    from tests.habitat.test_plantbert import TINY_BERT

    base = eunis.table().copy()
    with_list = base.copy()
    monkeypatch.setattr(eunis, "_TABLE", with_list)
    (tmp_path / "eunis.csv").write_text("Code,Name\nR2Z,A made-up mesic type\n")
    eunis.load_list(tmp_path / "eunis.csv")
    region = load_region(tiny_region)
    torch.manual_seed(0)
    labels = ["R2Z", "R22"]
    kw = bert_kwargs("demo", len(Vocab.from_region(region)), 30, len(labels), **TINY_BERT)
    path = PlantBert(build_classifier(kw), Vocab.from_region(region), labels, top_n=30, kwargs=kw).save(
        tmp_path / "pb.pt")

    monkeypatch.setattr(eunis, "_TABLE", base.copy())  # a process without that list
    with pytest.raises(KeyError):
        eunis.habitat("R2Z")
    pb = load_plantbert(path)
    assert pb.labels == labels
    assert eunis.habitat("R2Z").name == "A made-up mesic type" and eunis.at_level("R2Z", 2) == "R2"
