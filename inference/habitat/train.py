"""Train Pl@ntBERT on a generated region: stage 1 masked-species pretraining, stage 2 EUNIS level-3
classification initialised from the stage-1 encoder.

Training corpus (:func:`training_corpus`, see :mod:`inference.habitat.corpus`): ``n_plots``
truth-sampled plots at TRAIN-block cells, plus optionally ``sdm_lists`` deep-SDM predicted lists
(top ``top_n`` by predicted probability) and ``true_lists`` true-probability lists at other
TRAIN-block cells, so that the classifier also sees the input it gets in production. Deterministic
for ``seed`` (up to torch's CPU kernels), so :mod:`inference.habitat.evaluate` rebuilds the same
corpus for the baselines.

From real plots (``plots``: an EVA export read by :mod:`inference.habitat.eva`,
:func:`plot_corpus`): the plots of TRAIN blocks train and those of CAL blocks select (blocks:
:func:`inference.habitat.corpus.plot_splits`), the labels are the level-3 codes the plots carry,
and ``sdm_lists`` / ``true_lists`` are taken at TRAIN plots inside the region (``n_val`` SDM lists
at CAL plots), each labelled with its plot's habitat: the paper's fine-tuning on deep-SDM
assemblages, by the same mechanism and stage 2b as on a generated region.

Stage 1 masks 15 % of the species tokens of each list (BERT's 80 / 10 / 10 rule: ``[MASK]``, a
random species, unchanged; at least one per list) and trains ``BertForMaskedLM`` to recover them.
Stage 2 copies its embeddings and layers into ``BertForSequenceClassification`` and trains with
cross-entropy on the level-3 labels. Stage 2b (when predicted lists are in the corpus,
``finetune_epochs``): one more pass over the predicted lists plus as many plots at a lower learning
rate. On the demo region (same corpus, same seed) it lifted the held-out level-3 accuracy on
top-100 deep-SDM lists from 34.8 % to 52.3 % (top 50: 40.7 to 43.6 %; truth plots 86.7 to 85.5 %):
the long probability-ordered lists are a minority of the corpus and the slowest part to learn. Model selection: the epoch (of stage 2 or 2b) with the
best accuracy on CAL-block lists (plots, and SDM lists when mixed in). Stage 1 batches group lists
of similar length (each padded to its longest list only); stage 2 batches are plain shuffled
batches, lengths mixed (:func:`random_batches`: the length of a list predicts its habitat, so
length-grouped batches carry skewed label mixes and stall the classifier). Small batches (32)
learn much faster per CPU second than large ones.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from inference.splits import CAL, TRAIN
from inference.training import BestState, resolve_device, seed_everything, write_report

from . import corpus as C
from .eva import EvaPlots
from .plantbert import (
    MASK,
    N_SPECIAL,
    PAD,
    PlantBert,
    Vocab,
    bert_kwargs,
    build_classifier,
    build_mlm,
    model_inputs,
    probability_types,
    truncate,
    type_inputs,
)

DEFAULT_LR = {"small": 1e-3, "demo": 1e-3, "paper": 1e-4}


@dataclass
class PlantBertConfig:
    size: str = "demo"  # small | demo | paper (inference.habitat.plantbert.SIZES)
    n_plots: int = 30_000  # truth-sampled training plots (TRAIN blocks)
    sdm_lists: int = 0  # deep-SDM predicted lists from TRAIN blocks mixed in (needs an SDM checkpoint)
    n_val: int = 2_000  # CAL-block plots for model selection (and as many SDM lists when mixed in)
    top_n: int = 100  # longest input list
    mlm_epochs: int = 1
    cls_epochs: int = 4
    lr: float | None = None  # default per size: 1e-3 demo, 1e-4 paper
    batch_size: int = 32  # small batches: many more updates per CPU second (demo: 0.44 vs 0.31 test
    # accuracy than 128 after the same 3 epochs on 5,000 plots); lr 2e-3 or more stalls at demo size
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of the steps of a stage with a linear warm-up
    mask_prob: float = 0.15
    true_lists: int = 0  # lists ordered by *true* probability (a perfect SDM) at TRAIN cells, mixed in
    finetune_epochs: int = 1  # stage 2b: epochs over the predicted lists (SDM, true-p) plus as many plots
    finetune_lr_factor: float = 0.3  # stage 2b learning rate = lr x this
    truncate_prob: float = 0.0  # stage 2: chance of cutting a training list to a random shorter length
    area_m2: tuple[float, float] = (50.0, 500.0)  # plot area range (log-uniform)
    cover_sigma: float = 0.5  # lognormal noise of the cover proxy
    prob_bins: int = 0  # > 0: probability inputs, token types from the probability's bin (plantbert.probability_types)
    list_length: str = "top_n"  # predicted lists cut to top_n, or to their expected plot richness ("expected")
    seed: int = 0
    device: str = "auto"  # auto: CUDA when present (settings ``device``); the saved model is on the CPU
    model_overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size not in DEFAULT_LR:
            raise ValueError(f"unknown Pl@ntBERT size {self.size!r}: use demo or paper")
        if self.top_n < 1 or self.n_plots < 1:
            raise ValueError("top_n and n_plots must be positive")
        if self.list_length not in C.LIST_LENGTHS:
            raise ValueError(f"unknown list length rule {self.list_length!r}: use one of {', '.join(C.LIST_LENGTHS)}")
        if not 0 <= self.prob_bins <= 64:
            raise ValueError("prob_bins must lie in 0..64")
        self.area_m2 = tuple(self.area_m2)

    @property
    def learning_rate(self) -> float:
        return self.lr or DEFAULT_LR[self.size]

    @classmethod
    def from_dict(cls, d: dict) -> PlantBertConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def training_corpus(region, config: PlantBertConfig, sdm=None, log=print, cells=None,
                    plots: EvaPlots | None = None) -> tuple[C.Lists, C.Lists]:
    """(train, validation) labelled lists; ``sdm`` is ``corpus.load_sdm_runner(path)`` or None;
    ``plots``: real plots instead of plots sampled from the region's truth (:func:`plot_corpus`)."""
    if plots is not None:
        return plot_corpus(region, config, plots, sdm, log)
    cells = cells or C.RegionCells(region, config.seed)
    kw = dict(area_m2=config.area_m2, cover_sigma=config.cover_sigma, max_len=config.top_n)
    train = C.sample_plots(region, config.n_plots, TRAIN, config.seed, cells, "train-plots", **kw)
    val = C.sample_plots(region, config.n_val, CAL, config.seed, cells, "val-plots", **kw)
    if config.sdm_lists:
        if sdm is None:
            raise ValueError("sdm_lists > 0 needs an SDM checkpoint")
        vocab = Vocab.from_region(region)
        log(f"deep-SDM lists at {config.sdm_lists} TRAIN and {config.n_val} CAL cells...")
        x, y, lab = C.sample_cells(region, config.sdm_lists, TRAIN, config.seed, cells, "train-sdm")
        train = C.concat([train, C.sdm_lists(region, sdm, vocab, x, y, lab, config.top_n, length=config.list_length)])
        x, y, lab = C.sample_cells(region, config.n_val, CAL, config.seed, cells, "val-sdm")
        val = C.concat([val, C.sdm_lists(region, sdm, vocab, x, y, lab, config.top_n, length=config.list_length)])
    if config.true_lists:
        x, y, lab = C.sample_cells(region, config.true_lists, TRAIN, config.seed, cells, "train-true")
        train = C.concat([train, C.true_lists(region, x, y, lab, config.top_n, length=config.list_length)])
    return train, val


def plot_corpus(region, config: PlantBertConfig, plots: EvaPlots, sdm=None, log=print) -> tuple[C.Lists, C.Lists]:
    """(train, validation) lists from real plots (labels index ``plots.labels``): the TRAIN-block
    plots and the CAL-block plots cut to ``top_n``, plus ``sdm_lists`` deep-SDM lists and
    ``true_lists`` true-probability lists at TRAIN plots inside the region and up to ``n_val``
    SDM lists at CAL plots, each labelled with its plot's habitat (at most one list per plot)."""
    pl = plots.lists
    split = C.plot_splits(region, pl.x, pl.y, config.seed)
    lists = C.Lists(pl.x, pl.y, pl.label, truncate(pl.tokens, config.top_n), "plots")
    train, val = lists.subset(split == TRAIN), lists.subset(split == CAL)
    if not len(train) or not len(val):
        raise ValueError(f"EVA plots: {len(train)} in TRAIN and {len(val)} in CAL blocks; both need plots "
                         "(plots over more 10 km blocks)")
    inside = C.in_region(region, pl.x, pl.y)

    def at(which: int, n: int, stream: str) -> np.ndarray:
        rows = np.flatnonzero((split == which) & inside)
        return np.sort(C._rng(config.seed, which, stream).choice(rows, min(n, len(rows)), replace=False))

    if config.sdm_lists:
        if sdm is None:
            raise ValueError("sdm_lists > 0 needs an SDM checkpoint")
        vocab = Vocab.from_region(region)
        tr, ca = at(TRAIN, config.sdm_lists, "train-sdm"), at(CAL, config.n_val, "val-sdm")
        log(f"deep-SDM lists at {len(tr)} TRAIN and {len(ca)} CAL plots (of {int(inside.sum())} plots in the "
            "region)...")
        if len(tr):
            train = C.concat([train, C.sdm_lists(region, sdm, vocab, pl.x[tr], pl.y[tr], pl.label[tr], config.top_n,
                                                 length=config.list_length)])
        if len(ca):
            val = C.concat([val, C.sdm_lists(region, sdm, vocab, pl.x[ca], pl.y[ca], pl.label[ca], config.top_n,
                                             length=config.list_length)])
    if config.true_lists:
        tr = at(TRAIN, config.true_lists, "train-true")
        if len(tr):
            train = C.concat([train, C.true_lists(region, pl.x[tr], pl.y[tr], pl.label[tr], config.top_n,
                                                  length=config.list_length)])
    return train, val


# ---------------------------------------------------------------------------------------------
# batching

def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 50) -> list[np.ndarray]:
    """Shuffled batches of lists of similar length: shuffle, sort within pools of ``pool`` batches,
    cut, shuffle the batches."""
    order = rng.permutation(len(lengths))
    batches = []
    span = batch_size * pool
    for i in range(0, len(order), span):
        chunk = order[i:i + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [batches[k] for k in rng.permutation(len(batches))]


def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of ``n`` rows, lengths mixed: the stage-2 (classification) batches.

    Not :func:`length_batches`: a list's length is its species richness, which depends on the
    habitat (on the tiny test region the mutual information of length and label is 0.36 nats of
    the label's 2.83), so length-sorted batches each hold a skewed set of habitats (mean KL of a
    batch's label mix to the corpus' 0.70 nats, against 0.45 for shuffled batches of 32) and
    the classifier chases each batch's label prior: held-out accuracy swung between epochs and
    some seeds stalled near the majority class (2 of 8 seeds below 0.37 on the tiny region,
    0.51 to 0.63 with these batches; batches grouped by label collapse to the majority class).
    The price is padding: about 1.9x the stage-2 CPU time on plots of 9 to 50 species."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def mask_tokens(ids: torch.Tensor, vocab_size: int, prob: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of the species tokens of ``ids`` [B, L]: (masked ids, labels with -100 elsewhere)."""
    species = ids >= N_SPECIAL
    sel = (torch.rand(ids.shape, generator=gen) < prob) & species
    # at least one masked species per list, so that every list teaches something
    none = ~sel.any(1) & species.any(1)
    if none.any():
        r = torch.rand(ids.shape, generator=gen).masked_fill(~species, -1.0)
        pick = r.argmax(1)
        rows = none.nonzero()[:, 0]
        sel[rows, pick[rows]] = True
    labels = torch.where(sel, ids, torch.full_like(ids, -100))
    u = torch.rand(ids.shape, generator=gen)
    out = ids.clone()
    out[sel & (u < 0.8)] = MASK
    rnd = sel & (u >= 0.8) & (u < 0.9)
    out[rnd] = torch.randint(N_SPECIAL, vocab_size, (int(rnd.sum()),), generator=gen)
    return out, labels


def _random_truncate(tokens: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    if prob <= 0:
        return tokens
    tokens = tokens.copy()
    lens = (tokens != PAD).sum(1)
    cut = rng.random(len(tokens)) < prob
    new = np.maximum(1, np.ceil(rng.random(len(tokens)) * lens)).astype(np.int64)
    cols = np.arange(tokens.shape[1])[None, :]
    tokens[cut[:, None] & (cols >= new[:, None])] = PAD
    return tokens


def _scheduler(opt, n_steps: int, warmup: float):
    w = max(1, int(warmup * n_steps))

    def factor(step: int) -> float:  # linear warm-up, then linear decay to 0
        if step < w:
            return (step + 1) / w
        return max(0.0, (n_steps - step) / max(1, n_steps - w))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _optimizer(model, config: PlantBertConfig, lr: float | None = None):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in n else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr or config.learning_rate)


def accuracy(pb: PlantBert, lists: C.Lists, batch_size: int = 512) -> float:
    if len(lists) == 0:
        return float("nan")
    idx, _ = pb.predict(lists.tokens, batch_size, values=lists.values)
    return float((idx == lists.label).mean())


# ---------------------------------------------------------------------------------------------
# training

def train_stages(train: C.Lists, val: C.Lists, vocab: Vocab, labels: list[str], config: PlantBertConfig,
                 log=print) -> tuple[PlantBert, dict]:
    """Stage 1 and stage 2 on given corpora; returns the best stage-2 model (on the CPU) and the
    history. Trains on ``resolve_device(config.device)``; masking draws from a CPU generator."""
    rng = seed_everything(config.seed)
    gen = torch.Generator().manual_seed(config.seed)  # the masking's own stream (CPU)
    device = torch.device(resolve_device(config.device))
    overrides = {"type_vocab_size": config.prob_bins + 1, **config.model_overrides}
    kw = bert_kwargs(config.size, len(vocab), config.top_n, len(labels), **overrides)
    tokens = train.tokens
    # token types: the bins of the listed species' probabilities (0 everywhere without them)
    types = probability_types(train.values, tokens, config.prob_bins)

    def inputs(toks: np.ndarray, rows: np.ndarray, device) -> dict:
        ids, mask = model_inputs(toks)
        out = {"input_ids": ids, "attention_mask": mask}
        if config.prob_bins:
            out["token_type_ids"] = type_inputs(types[rows], toks)
        return {k: v.to(device) for k, v in out.items()}
    lengths = (tokens != PAD).sum(1)
    if (lengths == 0).any():
        raise ValueError("the training corpus holds empty species lists")
    history: dict = {"mlm": [], "cls": []}
    timings: dict = {}

    # ---- stage 1: masked species
    t0 = time.perf_counter()
    mlm = build_mlm(kw).to(device)
    if config.mlm_epochs > 0:
        opt = _optimizer(mlm, config)
        n_steps = config.mlm_epochs * math.ceil(len(tokens) / config.batch_size)
        sched = _scheduler(opt, n_steps, config.warmup)
        for epoch in range(config.mlm_epochs):
            mlm.train()
            total, count, correct = 0.0, 0, 0
            for b in length_batches(lengths, config.batch_size, rng):
                x = inputs(tokens[b], b, "cpu")
                masked, lab = mask_tokens(x.pop("input_ids"), len(vocab), config.mask_prob, gen)
                masked, lab = masked.to(device), lab.to(device)
                out = mlm(input_ids=masked, **{k: v.to(device) for k, v in x.items()})
                loss = F.cross_entropy(out.logits.view(-1, out.logits.shape[-1]), lab.view(-1), ignore_index=-100)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(mlm.parameters(), 1.0)
                opt.step()
                sched.step()
                m = lab != -100
                n = int(m.sum())
                total += float(loss.detach()) * n
                count += n
                correct += int((out.logits.detach().argmax(-1)[m] == lab[m]).sum())
            rec = {"epoch": epoch + 1, "loss": total / max(count, 1), "masked_accuracy": correct / max(count, 1),
                   "seconds": round(time.perf_counter() - t0, 1)}
            history["mlm"].append(rec)
            log(f"stage 1 epoch {epoch + 1}/{config.mlm_epochs}: masked-species loss {rec['loss']:.3f}, "
                f"accuracy {rec['masked_accuracy']:.3f} ({rec['seconds']} s)")
    timings["stage1_seconds"] = round(time.perf_counter() - t0, 1)

    # ---- stage 2: level-3 classification from the stage-1 encoder
    t0 = time.perf_counter()
    clf = build_classifier(kw, encoder_from=mlm if config.mlm_epochs > 0 else None).to(device)
    del mlm
    pb = PlantBert(clf, vocab, labels, config.top_n, config.size, kw,
                   meta={"prob_bins": config.prob_bins, "list_length": config.list_length})
    y = torch.from_numpy(train.label.astype(np.int64))
    best = BestState()  # selection only, no early stop
    best_epoch = ""

    def run_phase(name: str, rows: np.ndarray, epochs: int, lr: float) -> None:
        nonlocal best_epoch
        opt = _optimizer(clf, config, lr)
        sched = _scheduler(opt, max(1, epochs * math.ceil(len(rows) / config.batch_size)), config.warmup)
        for epoch in range(epochs):
            clf.train()
            total, count, correct = 0.0, 0, 0
            toks = _random_truncate(tokens[rows], config.truncate_prob, rng)
            yr = y[torch.from_numpy(rows)]
            for b in random_batches(len(rows), config.batch_size, rng):
                target = yr[b].to(device)
                logits = clf(**inputs(toks[b], rows[b], device)).logits
                loss = F.cross_entropy(logits, target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(clf.parameters(), 1.0)
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(b)
                count += len(b)
                correct += int((logits.detach().argmax(1) == target).sum())
            clf.eval()
            val_acc = accuracy(pb, val)
            rec = {"phase": name, "epoch": epoch + 1, "loss": total / max(count, 1),
                   "train_accuracy": correct / max(count, 1), "val_accuracy": val_acc,
                   "seconds": round(time.perf_counter() - t0, 1)}
            for src in ("plots", "sdm", "true-p"):
                part = _part(val, src)
                if part is not None and val.source == "mix":
                    rec[f"val_accuracy_{src}"] = accuracy(pb, part)
            history["cls"].append(rec)
            log(f"{name} epoch {epoch + 1}/{epochs}: loss {rec['loss']:.3f}, train accuracy "
                f"{rec['train_accuracy']:.3f}, CAL accuracy {val_acc:.3f} ({rec['seconds']} s)")
            if best.update(val_acc, clf, len(history["cls"])):
                best_epoch = f"{name} {epoch + 1}"

    run_phase("stage 2", np.arange(len(tokens)), config.cls_epochs, config.learning_rate)
    # Stage 2b: predicted (long, probability-ordered) lists are a minority of the corpus and the
    # hardest part; one more pass over them, with as many plots, at a lower learning rate.
    long_rows = np.flatnonzero(train.origin != "plots")
    if config.finetune_epochs and len(long_rows):
        plot_rows = np.flatnonzero(train.origin == "plots")
        extra = rng.choice(plot_rows, min(len(plot_rows), len(long_rows)), replace=False)
        run_phase("stage 2b (predicted lists)", np.concatenate([long_rows, extra]), config.finetune_epochs,
                  config.learning_rate * config.finetune_lr_factor)
    best.restore(clf)
    clf.cpu().eval()  # loaders and the cascade expect a CPU model
    timings["stage2_seconds"] = round(time.perf_counter() - t0, 1)
    val_accuracy = best.score if best.state is not None else -1.0  # -1: no epoch scored
    return pb, {"history": history, "best_epoch": best_epoch, "val_accuracy": val_accuracy, **timings}


def _part(lists: C.Lists, source: str) -> C.Lists | None:
    m = lists.origin == source
    return lists.subset(m) if m.any() else None


def train_plantbert(region, out_path, config: PlantBertConfig | None = None, sdm_checkpoint=None,
                    log=print, plots: EvaPlots | None = None) -> dict:
    """Build the corpus, train both stages, save ``out_path`` (``plantbert.pt``) and its report
    (``plantbert.json``) atomically; returns the report. ``plots`` (an EVA export,
    :func:`inference.habitat.eva.read_eva`): train on those plots, labelled with their level-3
    codes, instead of plots sampled from a generated region (``n_plots`` is then unused)."""
    config = config or PlantBertConfig()
    out_path = Path(out_path)
    t_all = time.perf_counter()
    sdm = C.load_sdm_runner(sdm_checkpoint) if (sdm_checkpoint and config.sdm_lists) else None
    if config.sdm_lists and sdm is None:
        raise ValueError("sdm_lists > 0 needs an SDM checkpoint (sdm_checkpoint=...)")
    t0 = time.perf_counter()
    cells = C.RegionCells(region, config.seed) if plots is None else None
    train, val = training_corpus(region, config, sdm, log, cells, plots)
    corpus_s = round(time.perf_counter() - t0, 1)
    vocab = Vocab.from_region(region)
    labels = list(region.meta["habitat_codes"]) if plots is None else list(plots.labels)
    counts = np.bincount(train.label, minlength=len(labels))
    n_of = {src: int((train.origin == src).sum()) for src in ("plots", "sdm", "true-p")}
    log(f"corpus: {len(train)} training lists ({n_of['plots']} {'EVA ' if plots is not None else ''}plots + "
        f"{n_of['sdm']} SDM lists + {n_of['true-p']} true-p lists), "
        f"{len(val)} validation lists, {int((counts > 0).sum())}/{len(labels)} habitats seen, "
        f"median length {int(np.median(train.lengths))} ({corpus_s} s)")
    pb, rep = train_stages(train, val, vocab, labels, config, log)
    report = {
        "size": config.size, "n_train": len(train), "n_val": len(val), "n_species": vocab.n_species,
        "n_labels": len(labels), "labels_seen": int((counts > 0).sum()),
        "majority_val_accuracy": float((val.label == np.argmax(counts)).mean()),
        "median_list_length": float(np.median(train.lengths)), "corpus_seconds": corpus_s,
        "parameters": int(sum(p.numel() for p in pb.model.parameters())),
        **rep, "train_seconds": round(time.perf_counter() - t_all, 1),
        "sdm_checkpoint": str(sdm_checkpoint) if sdm_checkpoint else None,
        "label_counts": {c: int(n) for c, n in zip(labels, counts) if n},
    }
    pb.meta.update({"region": str(getattr(region, "path", "")), "seed": config.seed})
    if plots is not None:
        rep_plots = plots.report.to_dict()
        rep_plots["unknown_names"] = dict(list(rep_plots["unknown_names"].items())[:50])  # the most frequent
        report["plots"] = rep_plots
        pb.meta["plots"] = {"header": plots.report.header, "species": plots.report.species}
    pb.save(out_path, asdict(config), report)
    write_report(out_path.with_suffix(".json"), report)
    log(f"Pl@ntBERT saved to {out_path} (best CAL accuracy {rep['val_accuracy']:.3f}, "
        f"{report['train_seconds']} s)")
    return report
