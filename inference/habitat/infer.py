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
from .plantbert import PAD, PlantBert, level_codes, lists_to_matrix


@dataclass
class HabitatMap:
    index: np.ndarray  # int16 [H, W]: level-3 class index into ``labels``, -1 = no list
    probability: np.ndarray  # float32 [H, W]: softmax probability of that class (0 where -1)
    labels: list[str]
    stats: dict = field(default_factory=dict)
    evaluated: np.ndarray | None = None  # bool [H, W]: cells the model ran on (None: all with a list)

    def codes(self, level: int = 3) -> np.ndarray:
        """EUNIS codes at ``level`` (object array [H, W], ``''`` where there is no list)."""
        table = np.array(level_codes(self.labels, level) + [""], dtype=object)
        idx = self.index.astype(np.int64)
        return table[np.where(idx < 0, len(self.labels), idx)]

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
                    chunk_cells: int = 16_384) -> np.ndarray:
    """Token matrix [H * W, top_n] (cells row-major) of probabilities [S, H, W]."""
    if probs.ndim != 3:
        raise ValueError(f"expected probabilities [S, H, W], got shape {tuple(probs.shape)}")
    S, H, W = probs.shape
    if species_tokens is not None and len(species_tokens) != S:
        raise ValueError(f"{S} species planes but {len(species_tokens)} species tokens")
    rows = max(1, chunk_cells // max(W, 1))
    out = np.empty((H * W, min(top_n, S)), np.int32)
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        chunk = probs[:, r0:r1].reshape(S, -1).T  # [cells, S]
        out[r0 * W:r1 * W] = probability_tokens(chunk, top_n, threshold, species_tokens)
    return out


def unique_rows(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a token matrix and, per row, the index of its distinct row."""
    t = np.ascontiguousarray(tokens.astype(np.int16 if tokens.max(initial=0) < 32_768 else np.int32))
    if t.shape[1] == 0:
        return tokens[:1], np.zeros(len(tokens), np.int64)
    v = t.view(np.dtype((np.void, t.dtype.itemsize * t.shape[1]))).ravel()
    _, first, inverse = np.unique(v, return_index=True, return_inverse=True)
    return tokens[first], inverse.ravel()


def classify_tokens(pb: PlantBert, tokens: np.ndarray, dedup: bool = True, batch_size: int = 512,
                    amp: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """Class index and probability per row of a token matrix; empty rows get -1 and 0."""
    t0 = time.perf_counter()
    n = len(tokens)
    idx = np.full(n, -1, np.int16)
    prob = np.zeros(n, np.float32)
    has = (tokens != PAD).any(1) if tokens.shape[1] else np.zeros(n, bool)
    rows = np.flatnonzero(has)
    work = tokens[rows]
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
        ui, up = pb.predict(uniq, batch_size, amp)
        if inverse is not None:
            ui, up = ui[inverse], up[inverse]
        idx[rows] = ui
        prob[rows] = up
    stats["model_seconds"] = round(time.perf_counter() - t1, 3)
    return idx, prob, stats


def _lattice(n: int, step: int) -> np.ndarray:
    """Coarse lattice positions along an axis of ``n`` cells: every ``step``-th cell and the last."""
    return np.unique(np.r_[np.arange(0, n, step), n - 1])


def refine_classify(evaluate, has: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Quadtree refinement of a per-cell classification over a grid ``[H, W]``.

    ``evaluate(flat_cells)`` returns the class index and probability of those cells (row-major
    indices); ``has`` marks the cells that have a list (the others get -1 and 0 without a call).
    The model runs on a lattice every ``step`` cells; a block whose four corners got the same
    class is filled with it (probability interpolated bilinearly between the corners); any other
    block is split in two along each side longer than one cell and its new corner cells are
    evaluated, down to single cells. So every class boundary that crosses a block edge is traced
    at full resolution, and only features smaller than a block that touch none of its corners can
    be missed. ``step`` 1 evaluates every cell (exact). Returns class index, probability, the
    mask of evaluated cells and statistics.
    """
    H, W = has.shape
    idx = np.full((H, W), -1, np.int16)
    prob = np.zeros((H, W), np.float32)
    done = ~has  # cells whose value is final (evaluated, or without a list)
    stats = {"evaluated": 0, "rounds": 0}
    evaluated = np.zeros((H, W), bool)

    def run(rr: np.ndarray, cc: np.ndarray) -> None:
        sel = ~done[rr, cc]
        rr, cc = rr[sel], cc[sel]
        if len(rr) == 0:
            return
        flat = np.unique(rr * W + cc)
        i, p = evaluate(flat)
        r, c = np.divmod(flat, W)
        idx[r, c], prob[r, c] = i, p
        done[r, c] = evaluated[r, c] = True
        stats["evaluated"] += int(len(flat))

    if H < 2 or W < 2:
        step = 1  # a single row or column: no blocks to fill
    rows, cols = _lattice(H, max(1, step)), _lattice(W, max(1, step))
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    run(rr.ravel(), cc.ravel())
    # blocks: corners (r0, c0) - (r1, c1), inclusive
    r0, c0 = np.meshgrid(rows[:-1], cols[:-1], indexing="ij")
    r1, c1 = np.meshgrid(rows[1:], cols[1:], indexing="ij")
    blocks = np.stack([r0.ravel(), c0.ravel(), r1.ravel(), c1.ravel()], 1)  # none for a single row or column
    fills = []
    while len(blocks):
        stats["rounds"] += 1
        b0, a0, b1, a1 = blocks.T
        corners = np.stack([idx[b0, a0], idx[b0, a1], idx[b1, a0], idx[b1, a1]], 1)
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
        ty = np.linspace(0.0, 1.0, b1 - b0 + 1, dtype=np.float32)[:, None]
        tx = np.linspace(0.0, 1.0, a1 - a0 + 1, dtype=np.float32)[None, :]
        p = ((1 - ty) * ((1 - tx) * prob[b0, a0] + tx * prob[b0, a1])
             + ty * ((1 - tx) * prob[b1, a0] + tx * prob[b1, a1]))
        idx[b0:b1 + 1, a0:a1 + 1][win] = idx[b0, a0]
        prob[b0:b1 + 1, a0:a1 + 1][win] = p[win]
        done[b0:b1 + 1, a0:a1 + 1] = True  # edges shared with a neighbour block: filled once
        filled += int(win.sum())
    stats["filled"] = filled
    return idx, prob, evaluated, stats


def classify_metatile(pb: PlantBert, probs, threshold: float | None = None, top_n: int | None = None,
                      species_ids: Sequence[int] | None = None, dedup: bool = True, batch_size: int = 512,
                      amp: bool = False, step: int = 1) -> HabitatMap:
    """Habitat of every cell of probabilities ``[S, H, W]`` (torch or numpy, float).

    ``species_ids`` gives the species of each plane when they are not the model's vocabulary order
    (e.g. an SDM checkpoint's ``species_ids``); species outside the vocabulary become ``[UNK]``.
    ``amp``: bfloat16 autocast (faster; probabilities differ slightly from float32).
    ``step``: 1 runs the model on every cell; larger values run it on a lattice every ``step``
    cells and refine where neighbouring classes differ (:func:`refine_classify`).
    """
    t0 = time.perf_counter()
    top_n = int(top_n or pb.top_n)
    if top_n > pb.max_len:
        raise ValueError(f"top_n {top_n} exceeds the model's longest list ({pb.max_len})")
    if probs.ndim != 3:
        raise ValueError(f"expected probabilities [S, H, W], got shape {tuple(probs.shape)}")
    if int(step) < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    S, H, W = probs.shape
    if species_ids is None:
        if S != pb.vocab.n_species:
            raise ValueError(f"{S} species planes but the model knows {pb.vocab.n_species} species: pass species_ids")
        st = None
    else:
        st = pb.vocab.tokens_for_ids(species_ids)
    tokens = metatile_tokens(probs, top_n, threshold, st)
    t_tok = time.perf_counter() - t0
    evaluated = None
    if step == 1:
        idx, prob, stats = classify_tokens(pb, tokens, dedup=dedup, batch_size=batch_size, amp=amp)
        stats.update(evaluated=stats["cells_with_list"], filled=0)
    else:
        calls: list[dict] = []

        def evaluate(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            i, p, st_ = classify_tokens(pb, tokens[flat], dedup=dedup, batch_size=batch_size, amp=amp)
            calls.append(st_)
            return i, p

        has = (tokens != PAD).any(1).reshape(H, W) if tokens.shape[1] else np.zeros((H, W), bool)
        idx, prob, evaluated, stats = refine_classify(evaluate, has, int(step))
        idx, prob = idx.ravel(), prob.ravel()
        stats.update({"cells": H * W, "cells_with_list": int(has.sum()),
                      "model_lists": sum(c["model_lists"] for c in calls),
                      "model_seconds": round(sum(c["model_seconds"] for c in calls), 3)})
    total = time.perf_counter() - t0
    stats.update({"top_n": top_n, "threshold": threshold, "dedup": dedup, "amp": amp, "step": int(step),
                  "evaluated_share": stats["evaluated"] / max(stats["cells_with_list"], 1),
                  "token_seconds": round(t_tok, 3), "seconds": round(total, 3),
                  "cells_per_s": H * W / max(total, 1e-9),
                  "mean_list_length": float((tokens != PAD).sum(1).mean()) if len(tokens) else 0.0})
    return HabitatMap(idx.reshape(H, W), prob.reshape(H, W), pb.labels, stats, evaluated)


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
