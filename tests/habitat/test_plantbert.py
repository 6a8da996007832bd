"""Pl@ntBERT (inference.habitat) on the tiny generated region: hierarchy, learning, meta-tile
inference with deduplication, TSV input, checkpoints and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.data import eunis
from inference.data.readers import write_plantbert_observations
from inference.habitat import corpus as C
from inference.habitat.infer import classify_metatile, classify_tsv, level_index, unique_rows
from inference.habitat.plantbert import (
    PAD,
    UNK,
    PlantBert,
    Vocab,
    bert_kwargs,
    build_classifier,
    level_codes,
    load_plantbert,
)
from inference.habitat.train import PlantBertConfig, train_plantbert

TINY_BERT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def region(tiny_region):
    from inference.data.region import load_region

    return load_region(tiny_region)


@pytest.fixture(scope="module")
def random_bert(region) -> PlantBert:
    """An untrained Pl@ntBERT over the region's vocabulary and habitats (for plumbing tests)."""
    torch.manual_seed(0)
    vocab = Vocab.from_region(region)
    labels = list(region.meta["habitat_codes"])
    kw = bert_kwargs("demo", len(vocab), 30, len(labels), **TINY_BERT)
    return PlantBert(build_classifier(kw), vocab, labels, top_n=30, kwargs=kw)


@pytest.fixture(scope="module")
def window_probs(region):
    tile = next(region.grid.metatiles())
    return region.true_probability(tile)[:, 200:260, 180:240]  # [S, 60, 60]


def test_label_hierarchy(region, random_bert):
    labels = random_bert.labels
    assert labels == [h.code for h in region.habitat_types]
    for lvl in (1, 2, 3):
        assert level_codes(labels, lvl) == [eunis.at_level(c, lvl) for c in labels]
    for c in labels:
        assert eunis.code_level(c) == 3
        assert eunis.ancestors(c) == [eunis.at_level(c, 2), eunis.at_level(c, 1)]
    idx = np.array([[0, 5], [-1, len(labels) - 1]])
    for lvl in (1, 2, 3):
        codes = random_bert.codes(idx, lvl)
        assert codes[1, 0] == ""
        assert codes[0, 1] == eunis.at_level(labels[5], lvl)
        li, table = level_index(idx, labels, lvl)
        assert li[1, 0] == -1 and table[li[0, 1]] == codes[0, 1]
    with pytest.raises(ValueError, match="level-3"):
        PlantBert(random_bert.model, random_bert.vocab, ["R2"], 10)


def test_plots_come_from_train_blocks(region):
    cells = C.RegionCells(region, seed=0)
    pl = C.sample_plots(region, 300, C.TRAIN, seed=0, cells=cells)
    assert len(pl) == 300 and (pl.lengths > 0).all()
    splits = C.block_splits(region, 0)
    from inference.splits import spatial_blocks

    assert all(splits[int(b)] == C.TRAIN for b in spatial_blocks(pl.x, pl.y))
    # species ordered by a cover proxy: no duplicates, PAD only at the end
    for row in pl.tokens[:50]:
        n = int((row != PAD).sum())
        assert (row[:n] != PAD).all() and len(set(row[:n].tolist())) == n
    again = C.sample_plots(region, 300, C.TRAIN, seed=0, cells=cells)
    assert np.array_equal(pl.tokens, again.tokens)  # deterministic


def test_dedup_equals_no_dedup(random_bert, window_probs):
    for threshold in (None, 0.2):
        a = classify_metatile(random_bert, window_probs, threshold=threshold, dedup=True, batch_size=256)
        b = classify_metatile(random_bert, torch.from_numpy(window_probs), threshold=threshold, dedup=False,
                              batch_size=256)
        assert a.index.shape == (60, 60)
        assert np.array_equal(a.index, b.index)
        np.testing.assert_allclose(a.probability, b.probability, rtol=0, atol=1e-6)  # bitwise equal here
        assert b.stats["model_lists"] == b.stats["cells_with_list"]
    assert a.stats["dedup_ratio"] > 1.5  # thresholded assemblages repeat between neighbours
    assert a.stats["model_lists"] < b.stats["model_lists"]
    # the threshold is applied: every listed species is at or above it
    toks = C.probability_tokens(window_probs.reshape(window_probs.shape[0], -1).T, 30, 0.2)
    u, inv = unique_rows(toks)
    assert np.array_equal(u[inv], toks)


def test_metatile_input_errors(random_bert, window_probs):
    with pytest.raises(ValueError, match=r"\[S, H, W\]"):
        classify_metatile(random_bert, window_probs[0])
    with pytest.raises(ValueError, match="species_ids"):
        classify_metatile(random_bert, window_probs[:5])
    with pytest.raises(ValueError, match="top_n"):
        classify_metatile(random_bert, window_probs, top_n=500)
    # planes in another species order, mapped by id: same answer as the vocabulary order
    perm = np.random.default_rng(0).permutation(window_probs.shape[0])
    ids = np.asarray(random_bert.vocab.species_ids)[perm]
    a = classify_metatile(random_bert, window_probs[:, :10, :10])
    b = classify_metatile(random_bert, window_probs[perm, :10, :10], species_ids=ids)
    assert np.array_equal(a.index, b.index)
    # everything below the threshold: no list, class -1
    empty = classify_metatile(random_bert, window_probs[:, :4, :4], threshold=2.0)
    assert (empty.index == -1).all() and (empty.probability == 0).all() and (empty.codes(1) == "").all()


def test_metatile_refinement_with_a_model(random_bert, window_probs):
    dense = classify_metatile(random_bert, window_probs, threshold=0.2, step=1)
    coarse = classify_metatile(random_bert, window_probs, threshold=0.2, step=4)
    s = coarse.stats
    assert s["evaluated"] + s["filled"] == s["cells_with_list"] and s["evaluated"] < s["cells_with_list"]
    assert coarse.evaluated.sum() == s["evaluated"]
    ev = coarse.evaluated
    # a cell the model ran on has the dense answer; the no-list cells are the same
    assert np.array_equal(coarse.index[ev], dense.index[ev])
    np.testing.assert_allclose(coarse.probability[ev], dense.probability[ev], atol=1e-6)
    assert np.array_equal(coarse.index == -1, dense.index == -1)
    with pytest.raises(ValueError, match="step"):
        classify_metatile(random_bert, window_probs, step=0)


def test_tsv_known_and_unknown_names(tmp_path, random_bert):
    names = list(random_bert.vocab.names)
    path = tmp_path / "obs.tsv"
    write_plantbert_observations(path, [names[:5], [names[3], "Nonexistia fantastica", names[7].upper()], names[10:11]])
    res = classify_tsv(random_bert, path)
    assert len(res) == 3
    assert res[0]["unknown"] == [] and res[2]["unknown"] == []
    assert res[1]["unknown"] == ["Nonexistia fantastica"]  # case and spacing do not matter for known names
    toks, unk = random_bert.vocab.encode_names([names[3], "Nonexistia fantastica"])
    assert toks[1] == UNK and unk == ["Nonexistia fantastica"]
    for r in res:
        assert r["level3"] in random_bert.labels
        assert r["level2"] == eunis.at_level(r["level3"], 2) and r["level1"] == eunis.at_level(r["level3"], 1)
        assert 0 < r["probability"] <= 1


def test_errors(tmp_path, random_bert):
    with pytest.raises(ValueError, match="empty species list"):
        random_bert.predict(np.array([[7, 8, PAD], [PAD, PAD, PAD]], np.int32))
    from inference.habitat.infer import classify_names

    with pytest.raises(ValueError, match="non-empty"):
        classify_names(random_bert, [["a"], []])
    with pytest.raises(FileNotFoundError):
        load_plantbert(tmp_path / "missing.pt")
    other = tmp_path / "sdm.pt"
    torch.save({"format": "geoflora-sdm", "state_dict": {}}, other)
    with pytest.raises(ValueError, match="not a Pl@ntBERT checkpoint"):
        load_plantbert(other)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a Pl@ntBERT checkpoint"):
        load_plantbert(text)
    with pytest.raises(ValueError, match="size"):
        PlantBertConfig(size="huge")


def test_sizes_and_the_make_run_configuration():
    """small (make run) < demo < paper; the make-run schedule names a known size and cuts lists to 50."""
    from backend.cli.runs import DEMO_PLANTBERT
    from inference.habitat.plantbert import SIZES, bert_kwargs, build_classifier

    params = {}
    for size, layers in (("small", 2), ("demo", 4), ("paper", 12)):
        kw = bert_kwargs(size, 305, 50, 53)
        assert kw["num_hidden_layers"] == layers
        assert PlantBertConfig(size=size).learning_rate > 0
        if size != "paper":
            params[size] = sum(p.numel() for p in build_classifier(kw).parameters())
    assert params["small"] < params["demo"]
    assert DEMO_PLANTBERT["size"] in SIZES and DEMO_PLANTBERT["top_n"] == 50


def test_checkpoint_round_trip(tmp_path, random_bert, window_probs):
    path = random_bert.save(tmp_path / "pb.pt", {"seed": 0})
    loaded = load_plantbert(path)
    assert loaded.labels == random_bert.labels and loaded.vocab == random_bert.vocab and loaded.top_n == 30
    toks = C.probability_tokens(window_probs[:, :20, :20].reshape(window_probs.shape[0], -1).T, 30)
    assert torch.equal(random_bert.logits(toks), loaded.logits(toks))
    a = classify_metatile(random_bert, window_probs[:, :20, :20])
    b = classify_metatile(loaded, window_probs[:, :20, :20])
    assert np.array_equal(a.index, b.index) and np.array_equal(a.probability, b.probability)


@pytest.mark.slow
def test_plantbert_learns(tmp_path, region):
    """Trained on tiny data, held-out (TEST blocks) level-3 accuracy clearly beats the majority class."""
    torch.manual_seed(0)
    # 24 species of low prevalence: large plots (1000-5000 m2) so that lists hold a few species.
    config = PlantBertConfig(n_plots=3000, n_val=300, mlm_epochs=1, cls_epochs=8, top_n=30, lr=5e-3,
                             batch_size=32, area_m2=(1000, 5000), model_overrides=TINY_BERT)
    out = tmp_path / "plantbert.pt"
    report = train_plantbert(region, out, config, log=lambda *_: None)
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert report["history"]["mlm"] and len(report["history"]["cls"]) == 8
    pb = load_plantbert(out)
    test = C.sample_plots(region, 1000, C.TEST, seed=0, stream="test", max_len=30, area_m2=config.area_m2)
    idx, prob = pb.predict(test.tokens)
    acc = float((idx == test.label).mean())
    majority = np.bincount(test.label).max() / len(test)
    top = max(report["label_counts"], key=report["label_counts"].get)
    train_majority = float((test.label == pb.labels.index(top)).mean())
    assert acc > max(majority, train_majority) + 0.15, (acc, majority)
    assert ((prob > 0) & (prob <= 1)).all()


def test_cli_classify_tsv(tmp_path, random_bert):
    from click.testing import CliRunner

    from backend.cli import main

    model = random_bert.save(tmp_path / "plantbert.pt")
    names = list(random_bert.vocab.names)
    tsv = tmp_path / "obs.tsv"
    write_plantbert_observations(tsv, [names[:4], ["Nonexistia fantastica", names[2]]])
    res = CliRunner().invoke(main, ["habitat", "classify", "--tsv", str(tsv), "--model", str(model)])
    assert res.exit_code == 0, res.output
    lines = [line.split("\t") for line in res.stdout.strip().splitlines()]
    assert lines[0][:4] == ["line", "level3", "level2", "level1"] and len(lines) == 3
    assert lines[2][5] == "Nonexistia fantastica"
    for row in lines[1:]:
        assert row[2] == eunis.at_level(row[1], 2) and row[3] == eunis.at_level(row[1], 1)
    bad = CliRunner().invoke(main, ["habitat", "classify", "--tsv", str(tsv), "--model", str(tsv)])
    assert bad.exit_code != 0 and "not a Pl@ntBERT checkpoint" in bad.output


def test_evaluation_table(tmp_path, region, random_bert):
    from dataclasses import asdict

    from inference.habitat.evaluate import evaluate_plantbert, format_table

    cfg = PlantBertConfig(n_plots=300, n_val=100, top_n=30)
    path = random_bert.save(tmp_path / "pb.pt", asdict(cfg))
    res = evaluate_plantbert(region, path, None, n_test=200, top_ns=(10, 30), mlp_epochs=2, log=lambda *_: None)
    rows = res["rows"]
    assert len(rows) == 2 * 2 * 4  # (truth plots, true-p lists) x (top 10, top 30) x 4 models
    for r in rows:
        # a right level-3 habitat is right at levels 2 and 1
        assert 0 <= r["level3"] <= r["level2"] <= r["level1"] <= 1
    table = format_table(rows)
    assert "| truth plots | 10 | Pl@ntBERT |" in table and "| true-p lists | 30 | MLP |" in table


def test_probability_types_bin_log10_probabilities():
    from inference.habitat.plantbert import probability_types

    tokens = np.array([[7, 8, 9, 10, 11, PAD]], np.int32)
    values = np.array([[1.0, 0.5, 0.0011, 0.0005, np.nan, 0.9]], np.float32)
    # 3 bins over log10 p in [-3, 0]: [0.001, 0.01), [0.01, 0.1), [0.1, 1]; below 0.001 in the first;
    # no probability (NaN) and padding are type 0
    assert probability_types(values, tokens, 3).tolist() == [[3, 3, 1, 1, 0, 0]]
    assert probability_types(None, tokens, 3).tolist() == [[0] * 6]
    assert probability_types(values, tokens, 0).tolist() == [[0] * 6]


def test_lists_cut_to_their_expected_plot_richness():
    p = np.array([[0.9, 0.8, 0.5, 0.2, 0.0],  # sum 2.4: the first 2 species
                  [0.1, 0.05, 0.03, 0.02, 0.0],  # sum 0.2: at least 1
                  [1.0, 1.0, 1.0, 1.0, 1.0]], np.float32)  # sum 5: at most top_n
    tok, val = C.probability_tokens(p, 4, None, length="expected", return_values=True)
    assert (tok != PAD).sum(1).tolist() == [2, 1, 4]
    assert tok[0, :2].tolist() == [5, 6] and np.allclose(val[0, :2], [0.9, 0.8]) and np.isnan(val[0, 2:]).all()
    assert (C.probability_tokens(p, 4) != PAD).sum(1).tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match="list length"):
        C.probability_tokens(p, 4, length="plots")


def _random_prob_bert(region, bins: int = 8) -> PlantBert:
    torch.manual_seed(1)
    vocab = Vocab.from_region(region)
    labels = list(region.meta["habitat_codes"])
    kw = bert_kwargs("demo", len(vocab), 30, len(labels), **TINY_BERT, type_vocab_size=bins + 1)
    model = build_classifier(kw)
    with torch.no_grad():  # types that matter (an untrained BERT's embeddings are all near 0)
        model.bert.embeddings.token_type_embeddings.weight.normal_(0.0, 1.0)
    return PlantBert(model, vocab, labels, top_n=30, kwargs=kw, meta={"prob_bins": bins})


def test_probability_inputs_reach_the_model_in_the_cascade(region, window_probs):
    pb = _random_prob_bert(region)
    S = window_probs.shape[0]
    cells = window_probs.reshape(S, -1).T
    tok, val = C.probability_tokens(cells, 30, 0.2, return_values=True)
    has = (tok != PAD).any(1)
    direct, _ = pb.predict(tok[has], values=val[has])
    a = classify_metatile(pb, window_probs, threshold=0.2, dedup=True)
    b = classify_metatile(pb, window_probs, threshold=0.2, dedup=False)
    assert np.array_equal(a.index, b.index)
    assert np.array_equal(a.index.ravel()[has], direct)  # the cascade feeds the probabilities' bins
    # the probabilities change the answer: without them (type 0, as a plot) the logits differ
    with_p = pb.logits(tok[has][:64], values=val[has][:64])
    without = pb.logits(tok[has][:64])
    assert (with_p - without).abs().max() > 0.02 * without.abs().max()
    # distinct lists are distinct by species and bins: never fewer than by species alone
    plain = classify_metatile(_random_prob_bert(region, 0), window_probs, threshold=0.2)
    assert a.stats["model_lists"] >= plain.stats["model_lists"]


def test_training_with_probability_inputs_and_plot_length_round_trips(tmp_path, region):
    config = PlantBertConfig(n_plots=300, n_val=60, true_lists=200, mlm_epochs=1, cls_epochs=1, top_n=30,
                             prob_bins=8, list_length="expected", model_overrides=TINY_BERT)
    out = tmp_path / "pb.pt"
    train_plantbert(region, out, config, log=lambda *_: None)
    pb = load_plantbert(out)
    assert pb.prob_bins == 8 and pb.list_length == "expected" and pb.model.config.type_vocab_size == 9
    lists = C.true_lists(region, *C.sample_cells(region, 50, C.TEST, 0), 30, length="expected")
    assert lists.values is not None and (lists.lengths <= 30).all()
    idx, _ = pb.predict(lists.tokens, values=lists.values)
    assert idx.shape == (50,)
    with pytest.raises(ValueError, match="list length"):
        PlantBertConfig(list_length="plots")
