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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from inference.data.readers import read_plantbert_observations

from .corpus import probability_tokens
from .plantbert import PAD, PlantBert, level_codes, lists_to_matrix


@dataclass
class HabitatMap:
    index: np.ndarray  # int16 [H, W]: level-3 class index into ``labels``, -1 = no list
    probability: np.ndarray  # float32 [H, W]: softmax probability of that class (0 where -1)
    labels: list[str]
    stats: dict = field(default_factory=dict)

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


def classify_metatile(pb: PlantBert, probs, threshold: float | None = None, top_n: int | None = None,
                      species_ids: Sequence[int] | None = None, dedup: bool = True, batch_size: int = 512,
                      amp: bool = False) -> HabitatMap:
    """Habitat of every cell of probabilities ``[S, H, W]`` (torch or numpy, float).

    ``species_ids`` gives the species of each plane when they are not the model's vocabulary order
    (e.g. an SDM checkpoint's ``species_ids``); species outside the vocabulary become ``[UNK]``.
    ``amp``: bfloat16 autocast (faster; probabilities differ slightly from float32).
    """
    t0 = time.perf_counter()
    top_n = int(top_n or pb.top_n)
    if top_n > pb.max_len:
        raise ValueError(f"top_n {top_n} exceeds the model's longest list ({pb.max_len})")
    if probs.ndim != 3:
        raise ValueError(f"expected probabilities [S, H, W], got shape {tuple(probs.shape)}")
    S, H, W = probs.shape
    if species_ids is None:
        if S != pb.vocab.n_species:
            raise ValueError(f"{S} species planes but the model knows {pb.vocab.n_species} species: pass species_ids")
        st = None
    else:
        st = pb.vocab.tokens_for_ids(species_ids)
    tokens = metatile_tokens(probs, top_n, threshold, st)
    t_tok = time.perf_counter() - t0
    idx, prob, stats = classify_tokens(pb, tokens, dedup=dedup, batch_size=batch_size, amp=amp)
    total = time.perf_counter() - t0
    stats.update({"top_n": top_n, "threshold": threshold, "dedup": dedup, "amp": amp, "token_seconds": round(t_tok, 3),
                  "seconds": round(total, 3), "cells_per_s": H * W / max(total, 1e-9),
                  "mean_list_length": float((tokens != PAD).sum(1).mean()) if len(tokens) else 0.0})
    return HabitatMap(idx.reshape(H, W), prob.reshape(H, W), pb.labels, stats)


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
