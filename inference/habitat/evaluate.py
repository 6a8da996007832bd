"""Evaluate Pl@ntBERT against an MLP and a rule baseline on held-out TEST-block cells.

Test cells are drawn at random from the TEST blocks (the deep-SDM's TEST blocks too, see
:mod:`inference.habitat.corpus`). At those cells three kinds of input lists are built:

* ``truth plots``: plots sampled from the true probabilities as in training (what the paper
  evaluates: vegetation plots);
* ``SDM lists``: the deep-SDM's species in decreasing predicted probability (the real use case of
  the maps), when an SDM checkpoint is given;
* ``true-p lists``: the species in decreasing *true* probability (a perfect SDM, a reference).

Each list is cut to its first 50 or 100 species and classified by Pl@ntBERT, by the MLP on the
rank-weighted multi-hot vector (trained on Pl@ntBERT's own training corpus, rebuilt from the
checkpoint's configuration) and by the dominant-species rule; the majority class is the floor.
Accuracy at EUNIS levels 1, 2 and 3: level-2 and level-1 predictions are the parents of the
level-3 prediction.

On real plots (:func:`evaluate_plots`, an EVA export read by :mod:`inference.habitat.eva`): the
plots of TEST blocks (:func:`inference.habitat.corpus.plot_splits`) and, with an SDM checkpoint,
the deep-SDM's lists at those plots inside the region, each with its plot's habitat; the same
models and the same table.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from backend.core.atomic import write_text
from inference.splits import TEST

from . import corpus as C
from .baselines import DominantSpeciesRule, MajorityBaseline, MLPBaseline
from .eva import EvaPlots
from .plantbert import level_codes, load_plantbert
from .train import PlantBertConfig, training_corpus


def level_accuracy(labels: list[str], y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy at levels 1, 2, 3 of level-3 class indices (into ``labels``)."""
    out = {}
    for lvl in (1, 2, 3):
        codes = np.array(level_codes(labels, lvl), dtype=object)
        out[f"level{lvl}"] = float((codes[y_true] == codes[y_pred]).mean()) if len(y_true) else float("nan")
    return out


def fit_baselines(train: C.Lists, val: C.Lists, vocab_size: int, n_labels: int, top_n: int, seed: int = 0,
                  epochs: int = 12, log=None) -> dict:
    """The MLP (left out when ``epochs`` is 0), the dominant-species rule and the majority class."""
    t0 = time.perf_counter()
    models = {}
    if epochs > 0:
        models["MLP"] = MLPBaseline(vocab_size, n_labels, top_n=top_n, seed=seed).fit(
            train.tokens, train.label, val.tokens, val.label, epochs=epochs, log=log)
    mlp_s = round(time.perf_counter() - t0, 1)
    models["rule"] = DominantSpeciesRule().fit(train.tokens, train.label, vocab_size, n_labels)
    models["majority"] = MajorityBaseline().fit(train.label, n_labels)
    return {"models": models, "mlp_seconds": mlp_s}


def table_rows(pb, inputs: dict[str, C.Lists], top_ns, baselines: dict) -> tuple[list[dict], list[float]]:
    """Accuracy rows (input kind x top N x model: Pl@ntBERT, then the baselines) and Pl@ntBERT's
    lists per second of each (kind, top N)."""
    rows, speed = [], []
    for kind, lists in inputs.items():
        for n in top_ns:
            cut = lists.truncated(n)
            toks = cut.tokens
            t0 = time.perf_counter()
            pred, _ = pb.predict(toks, values=cut.values)
            speed.append(len(toks) / max(time.perf_counter() - t0, 1e-9))
            preds = {"Pl@ntBERT": pred, **{k: m.predict(toks) for k, m in baselines.items()}}
            for model, p in preds.items():
                rows.append({"inputs": kind, "top_n": n, "model": model, "n": len(toks),
                             **level_accuracy(pb.labels, lists.label, p)})
    return rows, speed


def evaluate_plantbert(region, checkpoint, sdm_checkpoint=None, n_test: int = 5000, top_ns=(50, 100),
                       seed: int | None = None, mlp_epochs: int = 12, log=print) -> dict:
    """Accuracy table rows (one per input kind x top N x model) plus timings."""
    pb = load_plantbert(checkpoint)
    cfg = PlantBertConfig.from_dict(pb.train_config)
    seed = cfg.seed if seed is None else seed
    labels = pb.labels
    if labels != list(region.meta["habitat_codes"]):
        raise ValueError(f"{checkpoint} was trained on another label list than the region's habitats")
    cells = C.RegionCells(region, seed)
    sdm = C.load_sdm_runner(sdm_checkpoint) if sdm_checkpoint else None
    if sdm is not None and not C.sdm_split_matches(region, seed):
        log("warning: the SDM's blocks split differently; its TEST blocks may overlap Pl@ntBERT's")
    log("rebuilding the training corpus for the baselines...")
    train, val = training_corpus(region, cfg, sdm if cfg.sdm_lists else None, log, cells)
    base = fit_baselines(train, val, len(pb.vocab), len(labels), max(top_ns), cfg.seed, mlp_epochs)

    x, y, lab = C.sample_cells(region, n_test, TEST, seed, cells, "test-cells")
    rng = C._rng(seed, TEST, "test-plots")
    plots = C.plots_at(region, x, y, lab, rng, area_m2=cfg.area_m2, cover_sigma=cfg.cover_sigma, max_len=max(top_ns))
    inputs = {"truth plots": plots.subset(plots.lengths > 0)}
    if sdm is not None:
        log(f"deep-SDM lists at {n_test} TEST cells...")
        inputs["SDM lists"] = C.sdm_lists(region, sdm, pb.vocab, x, y, lab, max(top_ns), length=cfg.list_length)
    inputs["true-p lists"] = C.true_lists(region, x, y, lab, max(top_ns), length=cfg.list_length)

    rows, speed = table_rows(pb, inputs, top_ns, base["models"])
    return {"rows": rows, "n_test_cells": n_test, "n_train": len(train),
            "plantbert_train_seconds": pb.report.get("train_seconds"), "mlp_seconds": base["mlp_seconds"],
            "plantbert_lists_per_s": float(np.median(speed)),
            "mlp_history": base["models"]["MLP"].history}


def evaluate_plots(region, checkpoint, plots: EvaPlots, sdm_checkpoint=None, top_ns=None, mlp_epochs: int = 12,
                   log=print) -> dict:
    """Accuracy table rows of a Pl@ntBERT trained on real ``plots`` (:func:`train_plantbert`
    with ``plots``) on their TEST-block plots ("EVA plots") and, with ``sdm_checkpoint``, the
    deep-SDM's lists at those plots inside the region ("SDM lists"), against the baselines
    trained on the model's own corpus (rebuilt from its configuration). ``top_ns``: default 50
    and the model's ``top_n`` (the one alone when it is 50 or less). TEST plots whose habitat is
    not one of the model's labels are left out (counted over all splits: ``n_unlabelled``)."""
    pb = load_plantbert(checkpoint)
    cfg = PlantBertConfig.from_dict(pb.train_config)
    top_ns = tuple(top_ns or sorted({min(50, cfg.top_n), cfg.top_n}))
    sdm = C.load_sdm_runner(sdm_checkpoint) if sdm_checkpoint else None
    ours = plots.relabel(pb.labels)  # the same plots when the model was trained on them
    log("rebuilding the training corpus for the baselines...")
    train, val = training_corpus(region, cfg, sdm if cfg.sdm_lists else None, log, plots=ours)
    base = fit_baselines(train, val, len(pb.vocab), len(pb.labels), max(top_ns), cfg.seed, mlp_epochs)
    split = C.plot_splits(region, ours.lists.x, ours.lists.y, cfg.seed)
    test = ours.lists.subset(split == TEST)
    inputs = {"EVA plots": test}
    if sdm is not None:
        at = np.flatnonzero(C.in_region(region, test.x, test.y))
        if len(at):
            log(f"deep-SDM lists at {len(at)} TEST plots...")
            inputs["SDM lists"] = C.sdm_lists(region, sdm, pb.vocab, test.x[at], test.y[at], test.label[at],
                                              max(top_ns), length=cfg.list_length)
    rows, speed = table_rows(pb, inputs, top_ns, base["models"])
    return {"rows": rows, "n_test_plots": len(test), "n_unlabelled": len(plots) - len(ours),
            "n_train": len(train), "plantbert_train_seconds": pb.report.get("train_seconds"),
            "mlp_seconds": base["mlp_seconds"], "plantbert_lists_per_s": float(np.median(speed)) if speed else 0.0}


def format_table(rows: list[dict]) -> str:
    """Markdown table: one row per input kind x top N x model, accuracy in % at levels 1 / 2 / 3."""
    head = "| inputs | top N | model | level 1 | level 2 | level 3 | lists |\n|---|---:|---|---:|---:|---:|---:|"
    lines = [head]
    for r in rows:
        lines.append(f"| {r['inputs']} | {r['top_n']} | {r['model']} | {100 * r['level1']:.1f} | "
                     f"{100 * r['level2']:.1f} | {100 * r['level3']:.1f} | {r['n']} |")
    return "\n".join(lines)


def write_report(result: dict, path: Path) -> None:
    path = Path(path)
    write_text(path, format_table(result["rows"]) + "\n")
