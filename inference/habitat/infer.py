"""Pl@ntBERT inference: per cell over whole meta-tiles, and on Pl@ntBERT ``Observations`` TSVs.

Meta-tile (:func:`classify_metatile`): from probabilities ``[S, H, W]`` (the deep-SDM's, numpy or
torch), each cell's list is its species at or above an optional threshold (the conformal
assemblage), in decreasing probability, cut to the first ``top_n``. Neighbouring cells often share
the same list (same environment, same assemblage), so the token matrix is deduplicated (``np.unique``
on its rows), the model runs once per distinct list, in batches of similar length, and the results
are scattered back to the cells. Cells whose list is empty (every species below the threshold) get
class -1 and probability 0. The result is the level-3 class index ``[H, W]`` (into the model's
label list) and its softmax probability; :meth:`HabitatMap.codes` maps to level-3/2/1 codes.

TSV (:func:`classify_tsv`): the ``Observations`` column of the Pl@ntBERT input format, species names
in decreasing cover; names outside the vocabulary become ``[UNK]`` and are reported per line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference.data.readers import read_plantbert_observations

from .corpus import probability_tokens
from .plantbert import PAD, PROB_LOG10_RANGE, PlantBert, level_codes, lists_to_matrix, probability_types


@dataclass
class HabitatMap:
    index: np.ndarray  # int16 [H, W]: level-3 class index into ``labels``, -1 = no list
    probability: np.ndarray  # float32 [H, W]: softmax probability of that class (0 where -1)
    labels: list[str]
    stats: dict = field(default_factory=dict)
    evaluated: np.ndarray | None = None  # bool [H, W]: cells the model ran on (None: all with a list)
    top_index: np.ndarray | None = None  # int16 [k, H, W]: the k most probable classes (-1: none), top_k > 1
    top_probability: np.ndarray | None = None  # float32 [k, H, W]: their probabilities (0 where -1)

    def codes(self, level: int = 3) -> np.ndarray:
        """EUNIS codes at ``level`` (object array [H, W], ``''`` where there is no list)."""
        table = np.array(level_codes(self.labels, level) + [""], dtype=object)
        idx = self.index.astype(np.int64)
        return table[np.where(idx < 0, len(self.labels), idx)]

    def suitability(self) -> np.ndarray:
        """float32 [C, H, W]: the probability of every level-3 class (``labels`` order) where it is
        among the cell's ``top_k`` most probable, 0 elsewhere (there it is at most the k-th
        probability). Needs ``classify_metatile(top_k > 1)``."""
        if self.top_index is None or self.top_probability is None:
            raise ValueError("this habitat map keeps only the first class: classify with top_k > 1")
        k, H, W = self.top_index.shape
        out = np.zeros((len(self.labels), H * W), np.float32)
        ti = self.top_index.reshape(k, -1).astype(np.int64)
        tp = self.top_probability.reshape(k, -1)
        cells = np.arange(H * W)
        for j in range(k):
            ok = ti[j] >= 0
            out[ti[j][ok], cells[ok]] = tp[j][ok]
        return out.reshape(len(self.labels), H, W)

    def level_index(self, level: int) -> tuple[np.ndarray, list[str]]:
        """Class index at ``level`` [H, W] (-1 = no list) and the codes it indexes (sorted)."""
        return level_index(self.index, self.labels, level)


def level_index(index: np.ndarray, labels: Sequence[str], level: int) -> tuple[np.ndarray, list[str]]:
    """Level-3 class indices -> indices into the sorted distinct codes at ``level`` (-1 kept)."""
    codes = level_codes(labels, level)
    uniq = sorted(set(codes))
    lut = np.array([uniq.index(c) for c in codes] + [-1], np.int16)
    idx = np.asarray(index).astype(np.int64)
    return lut[np.where(idx < 0, len(labels), idx)], uniq


def metatile_tokens(probs, top_n: int, threshold: float | None = None, species_tokens: np.ndarray | None = None,
                    chunk_cells: int = 16_384, length: str = "top_n", prob_bins: int = 0):
    """Token matrix [H * W, top_n] (cells row-major) of probabilities [S, H, W]; ``length``: see
    :func:`inference.habitat.corpus.probability_tokens`. With ``prob_bins`` > 0 also the token
    types of the listed species' probabilities (:func:`probability_types`), int8 [H * W, top_n]."""
    if probs.ndim != 3:
        raise ValueError(f"expected probabilities [S, H, W], got shape {tuple(probs.shape)}")
    S, H, W = probs.shape
    if species_tokens is not None and len(species_tokens) != S:
        raise ValueError(f"{S} species planes but {len(species_tokens)} species tokens")
    rows = max(1, chunk_cells // max(W, 1))
    out = np.empty((H * W, min(top_n, S)), np.int32)
    types = np.zeros(out.shape, np.int8) if prob_bins else None
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        chunk = probs[:, r0:r1].reshape(S, -1).T  # [cells, S]
        if types is None:
            out[r0 * W:r1 * W] = probability_tokens(chunk, top_n, threshold, species_tokens, length)
        else:
            tok, val = probability_tokens(chunk, top_n, threshold, species_tokens, length, return_values=True)
            out[r0 * W:r1 * W] = tok
            types[r0 * W:r1 * W] = probability_types(val, tok, prob_bins)
    return out if types is None else (out, types)


def unique_rows(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a token matrix and, per row, the index of its distinct row."""
    t = np.ascontiguousarray(tokens.astype(np.int16 if tokens.max(initial=0) < 32_768 else np.int32))
    if t.shape[1] == 0:
        return tokens[:1], np.zeros(len(tokens), np.int64)
    v = t.view(np.dtype((np.void, t.dtype.itemsize * t.shape[1]))).ravel()
    _, first, inverse = np.unique(v, return_index=True, return_inverse=True)
    return tokens[first], inverse.ravel()


def classify_tokens(pb: PlantBert, tokens: np.ndarray, dedup: bool = True, batch_size: int = 512,
                    amp: bool = False, top_k: int = 1, types: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Class index and probability per row of a token matrix; empty rows get -1 and 0. With
    ``top_k`` > 1 the ``top_k`` most probable classes per row, most probable first: int16 [n, k]
    and float32 [n, k] (rows of fewer classes than k and empty rows padded with -1 and 0).
    ``types``: the probability token types of a model with probability inputs (rows are then
    distinct by species and types)."""
    t0 = time.perf_counter()
    n = len(tokens)
    k = max(1, int(top_k))
    idx = np.full((n, k), -1, np.int16)
    prob = np.zeros((n, k), np.float32)
    has = (tokens != PAD).any(1) if tokens.shape[1] else np.zeros(n, bool)
    rows = np.flatnonzero(has)
    width = tokens.shape[1]
    # with probability types, a list is its species and their types side by side
    work = tokens[rows] if types is None else np.hstack([tokens[rows], types[rows].astype(tokens.dtype)])
    stats = {"cells": n, "cells_with_list": int(len(rows))}
    if dedup and len(work):
        uniq, inverse = unique_rows(work)
        stats["dedup_seconds"] = round(time.perf_counter() - t0, 3)
    else:
        uniq, inverse = work, None
    stats["model_lists"] = int(len(uniq))
    stats["dedup_ratio"] = float(len(work) / max(len(uniq), 1))
    t1 = time.perf_counter()
    if len(uniq):
        toks_u, vals_u = _split_types(uniq, width, types is not None, pb.prob_bins)
        ui, up = pb.predict_top(toks_u, k, batch_size, amp, values=vals_u)
        if inverse is not None:
            ui, up = ui[inverse], up[inverse]
        idx[rows, :ui.shape[1]] = ui
        prob[rows, :up.shape[1]] = up
    stats["model_seconds"] = round(time.perf_counter() - t1, 3)
    if top_k == 1:
        return idx[:, 0], prob[:, 0], stats
    return idx, prob, stats


def _split_types(work: np.ndarray, width: int, has_types: bool, bins: int):
    """(tokens, values) for ``PlantBert.predict_top`` from rows of tokens [and types]: a type t
    becomes a probability inside bin t (the model bins it back to t)."""
    if not has_types:
        return work, None
    tokens, types = work[:, :width], work[:, width:].astype(np.float64)
    lo, hi = PROB_LOG10_RANGE
    centre = np.where(types > 0, 10.0 ** (lo + (types - 0.5) / max(bins, 1) * (hi - lo)), np.nan)
    return np.ascontiguousarray(tokens), centre.astype(np.float32)


def _lattice(n: int, step: int) -> np.ndarray:
    """Coarse lattice positions along an axis of ``n`` cells: every ``step``-th cell and the last."""
    return np.unique(np.r_[np.arange(0, n, step), n - 1])


def _fill_top(idx: np.ndarray, prob: np.ndarray, b0: int, a0: int, b1: int, a1: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k classes [h, w, k] of a block whose four corners share their first class: each class's
    probability interpolated bilinearly between the corners (0 at a corner where it is not in the
    top k), then the k largest. The corners' common first class stays first everywhere: it is the
    largest at every corner, and bilinear weights are the same for every class."""
    k = idx.shape[2]
    ci = np.stack([idx[b0, a0], idx[b0, a1], idx[b1, a0], idx[b1, a1]])  # [4, k]
    cp = np.stack([prob[b0, a0], prob[b0, a1], prob[b1, a0], prob[b1, a1]])
    classes = np.unique(ci[ci >= 0])
    dense = np.zeros((4, len(classes)), np.float32)
    for corner in range(4):
        ok = ci[corner] >= 0
        dense[corner, np.searchsorted(classes, ci[corner][ok])] = cp[corner][ok]
    ty = np.linspace(0.0, 1.0, b1 - b0 + 1, dtype=np.float32)[:, None, None]
    tx = np.linspace(0.0, 1.0, a1 - a0 + 1, dtype=np.float32)[None, :, None]
    v = ((1 - ty) * ((1 - tx) * dense[0] + tx * dense[1]) + ty * ((1 - tx) * dense[2] + tx * dense[3]))  # [h, w, U]
    order = np.argsort(-v, axis=2, kind="stable")[:, :, :k]
    top_p = np.take_along_axis(v, order, 2)
    top_i = classes[order].astype(np.int16)
    if top_i.shape[2] < k:  # fewer distinct classes than k over the corners
        pad = k - top_i.shape[2]
        top_i = np.concatenate([top_i, np.full(top_i.shape[:2] + (pad,), -1, np.int16)], 2)
        top_p = np.concatenate([top_p, np.zeros(top_p.shape[:2] + (pad,), np.float32)], 2)
    top_i[top_p <= 0] = -1
    return top_i, top_p


def refine_classify(evaluate, has: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Quadtree refinement of a per-cell classification over a grid ``[H, W]``.

    ``evaluate(flat_cells)`` returns the class index and probability of those cells (row-major
    indices): [n] arrays, or the top k classes as [n, k] arrays (most probable first; then the
    result is [H, W, k]); ``has`` marks the cells that have a list (the others get -1 and 0
    without a call). The model runs on a lattice every ``step`` cells; a block whose four corners
    got the same (first) class is filled with it (probabilities interpolated bilinearly between
    the corners, class by class for the top k: :func:`_fill_top`); any other block is split in
    two along each side longer than one cell and its new corner cells are evaluated, down to
    single cells. So every class boundary that crosses a block edge is traced at full resolution,
    and only features smaller than a block that touch none of its corners can be missed. ``step``
    1 evaluates every cell (exact). Returns class index, probability, the mask of evaluated cells
    and statistics.
    """
    H, W = has.shape
    idx: np.ndarray | None = None  # [H, W, k], allocated at the first call (k from its result)
    prob: np.ndarray | None = None
    flat_result = True
    done = ~has  # cells whose value is final (evaluated, or without a list)
    stats = {"evaluated": 0, "rounds": 0}
    evaluated = np.zeros((H, W), bool)

    def run(rr: np.ndarray, cc: np.ndarray) -> None:
        nonlocal idx, prob, flat_result
        sel = ~done[rr, cc]
        rr, cc = rr[sel], cc[sel]
        if len(rr) == 0:
            return
        flat = np.unique(rr * W + cc)
        i, p = evaluate(flat)
        i, p = np.asarray(i), np.asarray(p)
        if idx is None:
            flat_result = i.ndim == 1
            k = 1 if flat_result else i.shape[1]
            idx = np.full((H, W, k), -1, np.int16)
            prob = np.zeros((H, W, k), np.float32)
        r, c = np.divmod(flat, W)
        idx[r, c] = i.reshape(len(flat), -1)
        prob[r, c] = p.reshape(len(flat), -1)
        done[r, c] = evaluated[r, c] = True
        stats["evaluated"] += int(len(flat))

    if H < 2 or W < 2:
        step = 1  # a single row or column: no blocks to fill
    rows, cols = _lattice(H, max(1, step)), _lattice(W, max(1, step))
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    run(rr.ravel(), cc.ravel())
    if idx is None:  # no cell with a list
        idx, prob = np.full((H, W, 1), -1, np.int16), np.zeros((H, W, 1), np.float32)
    # blocks: corners (r0, c0) - (r1, c1), inclusive
    r0, c0 = np.meshgrid(rows[:-1], cols[:-1], indexing="ij")
    r1, c1 = np.meshgrid(rows[1:], cols[1:], indexing="ij")
    blocks = np.stack([r0.ravel(), c0.ravel(), r1.ravel(), c1.ravel()], 1)  # none for a single row or column
    fills = []
    while len(blocks):
        stats["rounds"] += 1
        b0, a0, b1, a1 = blocks.T
        first = idx[..., 0]
        corners = np.stack([first[b0, a0], first[b0, a1], first[b1, a0], first[b1, a1]], 1)
        same = (corners == corners[:, :1]).all(1) & (corners[:, 0] >= 0)
        small = (b1 - b0 <= 1) & (a1 - a0 <= 1)
        fills.append(blocks[same & ~small])
        split = blocks[~same & ~small]
        if not len(split):
            break
        b0, a0, b1, a1 = split.T
        bm = np.where(b1 - b0 > 1, (b0 + b1) // 2, b0)
        am = np.where(a1 - a0 > 1, (a0 + a1) // 2, a0)
        # the new corner cells: the 3 x 3 points of each split block (known ones are skipped)
        pr = np.stack([b0, bm, b1], 1)[:, :, None].repeat(3, 2)
        pc = np.stack([a0, am, a1], 1)[:, None, :].repeat(3, 1)
        run(pr.ravel(), pc.ravel())
        children = [np.stack([b0, a0, bm, am], 1), np.stack([b0, am, bm, a1], 1),
                    np.stack([bm, a0, b1, am], 1), np.stack([bm, am, b1, a1], 1)]
        blocks = np.concatenate(children)
        blocks = blocks[(blocks[:, 2] > blocks[:, 0]) & (blocks[:, 3] > blocks[:, 1])]  # drop unsplit sides
    filled = 0
    for b0, a0, b1, a1 in (np.concatenate(fills) if fills else np.empty((0, 4), int)):
        win = ~done[b0:b1 + 1, a0:a1 + 1]
        if not win.any():
            continue
        ti, tp = _fill_top(idx, prob, b0, a0, b1, a1)
        idx[b0:b1 + 1, a0:a1 + 1][win] = ti[win]
        prob[b0:b1 + 1, a0:a1 + 1][win] = tp[win]
        done[b0:b1 + 1, a0:a1 + 1] = True  # edges shared with a neighbour block: filled once
        filled += int(win.sum())
    stats["filled"] = filled
    if flat_result:
        return idx[..., 0], prob[..., 0], evaluated, stats
    return idx, prob, evaluated, stats


def classify_metatile(pb: PlantBert, probs, threshold: float | None = None, top_n: int | None = None,
                      species_ids: Sequence[int] | None = None, dedup: bool = True, batch_size: int = 512,
                      amp: bool = False, step: int = 1, top_k: int = 1) -> HabitatMap:
    """Habitat of every cell of probabilities ``[S, H, W]`` (torch or numpy, float).

    ``species_ids`` gives the species of each plane when they are not the model's vocabulary order
    (e.g. an SDM checkpoint's ``species_ids``); species outside the vocabulary become ``[UNK]``.
    ``amp``: bfloat16 autocast (faster; probabilities differ slightly from float32).
    ``step``: 1 runs the model on every cell; larger values run it on a lattice every ``step``
    cells and refine where neighbouring classes differ (:func:`refine_classify`).
    ``top_k`` > 1 also keeps the ``top_k`` most probable classes of every cell
    (:attr:`HabitatMap.top_index`, :meth:`HabitatMap.suitability`).
    """
    t0 = time.perf_counter()
    top_n = int(top_n or pb.top_n)
    if top_n > pb.max_len:
        raise ValueError(f"top_n {top_n} exceeds the model's longest list ({pb.max_len})")
    if probs.ndim != 3:
        raise ValueError(f"expected probabilities [S, H, W], got shape {tuple(probs.shape)}")
    if int(step) < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    if int(top_k) < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    S, H, W = probs.shape
    if species_ids is None:
        if S != pb.vocab.n_species:
            raise ValueError(f"{S} species planes but the model knows {pb.vocab.n_species} species: pass species_ids")
        st = None
    else:
        st = pb.vocab.tokens_for_ids(species_ids)
    tokens = metatile_tokens(probs, top_n, threshold, st, length=pb.list_length, prob_bins=pb.prob_bins)
    types = None
    if pb.prob_bins:
        tokens, types = tokens
    t_tok = time.perf_counter() - t0
    evaluated = None
    k = int(top_k)
    if step == 1:
        idx, prob, stats = classify_tokens(pb, tokens, dedup=dedup, batch_size=batch_size, amp=amp, top_k=k, types=types)
        stats.update(evaluated=stats["cells_with_list"], filled=0)
    else:
        calls: list[dict] = []

        def evaluate(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            i, p, st_ = classify_tokens(pb, tokens[flat], dedup=dedup, batch_size=batch_size, amp=amp, top_k=k,
                                        types=None if types is None else types[flat])
            calls.append(st_)
            return i, p

        has = (tokens != PAD).any(1).reshape(H, W) if tokens.shape[1] else np.zeros((H, W), bool)
        idx, prob, evaluated, stats = refine_classify(evaluate, has, int(step))
        idx, prob = idx.reshape(H * W, -1), prob.reshape(H * W, -1)
        stats.update({"cells": H * W, "cells_with_list": int(has.sum()),
                      "model_lists": sum(c["model_lists"] for c in calls),
                      "model_seconds": round(sum(c["model_seconds"] for c in calls), 3)})
    top_index = top_probability = None
    if k > 1:  # [H * W, k] -> the first class, and the top k as [k, H, W]
        top_index = np.ascontiguousarray(idx.T.reshape(k, H, W))
        top_probability = np.ascontiguousarray(prob.T.reshape(k, H, W))
        idx, prob = idx[:, 0], prob[:, 0]
    idx, prob = idx.reshape(-1), prob.reshape(-1)
    total = time.perf_counter() - t0
    stats.update({"top_n": top_n, "top_k": k, "threshold": threshold, "dedup": dedup, "amp": amp, "step": int(step),
                  "evaluated_share": stats["evaluated"] / max(stats["cells_with_list"], 1),
                  "token_seconds": round(t_tok, 3), "seconds": round(total, 3),
                  "cells_per_s": H * W / max(total, 1e-9),
                  "mean_list_length": float((tokens != PAD).sum(1).mean()) if len(tokens) else 0.0})
    return HabitatMap(idx.reshape(H, W), prob.reshape(H, W), pb.labels, stats, evaluated, top_index, top_probability)


# ---------------------------------------------------------------------------------------------
# species names (Pl@ntBERT TSV)

def classify_names(pb: PlantBert, lists: Sequence[Sequence[str]], top_n: int | None = None) -> list[dict]:
    """Level-3/2/1 codes, probability and unknown names of each list of species names (in
    decreasing cover); the first ``top_n`` names (default: the model's) are used."""
    top_n = int(top_n or pb.top_n)
    toks, unknown = [], []
    for i, names in enumerate(lists):
        if isinstance(names, str) or len(names) == 0:
            raise ValueError(f"list {i + 1}: expected a non-empty list of species names")
        t, unk = pb.vocab.encode_names(list(names)[:top_n])
        toks.append(t)
        unknown.append(unk)
    if not toks:
        return []
    idx, prob = pb.predict(lists_to_matrix(toks, top_n))
    c3, c2, c1 = (pb.codes(idx, lvl) for lvl in (3, 2, 1))
    return [{"level3": c3[i], "level2": c2[i], "level1": c1[i], "probability": float(prob[i]),
             "n_species": int(min(len(lists[i]), top_n)), "unknown": unknown[i]} for i in range(len(toks))]


def classify_tsv(pb: PlantBert, path, top_n: int | None = None) -> list[dict]:
    """Classify every row of a Pl@ntBERT ``Observations`` TSV (see :func:`classify_names`)."""
    return classify_names(pb, read_plantbert_observations(Path(path)), top_n)
