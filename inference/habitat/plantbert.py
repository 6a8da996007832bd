"""Pl@ntBERT: a BERT whose vocabulary has one token per species, classifying a species list into a
EUNIS level-3 habitat.

Vocabulary: the special tokens ``[PAD] [CLS] [SEP] [MASK] [UNK]`` (ids 0-4), then one token per
species of the region's species table (species index ``s`` -> token ``s + 5``). A species list,
ordered by decreasing cover (a plot) or probability (a predicted assemblage), becomes
``[CLS] s1 s2 ... sN [SEP]`` with its first ``top_n`` species. Internally lists travel as *token
matrices*: int32 ``[n, L]`` of species tokens, left-aligned and padded with ``[PAD]`` (0).

Three sizes (``SIZES``): ``paper`` = bert-base (12 layers, hidden 768, 12 heads, FFN 3072) as in
the Pl@ntBERT paper; ``demo`` = 4 layers, hidden 128, 4 heads, FFN 512 (CPU-trainable in minutes);
``small`` = ``demo`` with 2 layers, the one ``make run`` trains (with lists cut to 50 species) so
that a meta-tile's habitats take about 35 s on 2 CPU cores instead of 129 s.
Models are always built from a ``BertConfig``, never downloaded.

Labels are EUNIS level-3 codes (``R22``, ``T1E``, ``C1.3``); levels 2 and 1 follow from the code
hierarchy (:func:`inference.data.eunis.at_level`): ``R22 -> R2 -> R``.

A checkpoint (``plantbert.pt``) is a ``torch.save`` dict tagged ``format: geoflora-plantbert``
holding the BERT keyword arguments, the state dict, the species ids and names (the vocabulary),
the label list, ``top_n``, the training configuration and its report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

from inference.checkpoint import load_checkpoint, save_torch
from inference.data import eunis

CHECKPOINT_FORMAT = "geoflora-plantbert"
CHECKPOINT_VERSION = 1

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")
PAD, CLS, SEP, MASK, UNK = range(5)
N_SPECIAL = len(SPECIAL_TOKENS)

SIZES: dict[str, dict] = {
    "small": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512),
    "demo": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
    "paper": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}


def normalise_name(name: str) -> str:
    """Species name key: whitespace collapsed, case-folded (``' Rumex  acetosa'`` -> ``'rumex acetosa'``)."""
    return " ".join(str(name).split()).casefold()


@dataclass(frozen=True)
class Vocab:
    """Species tokens: token ``i + N_SPECIAL`` is species ``i`` of ``species_ids`` / ``names``."""

    species_ids: tuple[int, ...]
    names: tuple[str, ...]
    _by_name: dict = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    _by_id: dict = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if len(self.species_ids) != len(self.names):
            raise ValueError("vocabulary: as many species ids as names are needed")
        if not self.species_ids:
            raise ValueError("vocabulary: at least one species is needed")
        object.__setattr__(self, "_by_name", {normalise_name(n): i + N_SPECIAL for i, n in enumerate(self.names)})
        object.__setattr__(self, "_by_id", {int(s): i + N_SPECIAL for i, s in enumerate(self.species_ids)})

    @classmethod
    def from_region(cls, region) -> Vocab:
        return cls(tuple(int(s) for s in region.species_ids), tuple(s.name for s in region.species))

    def __len__(self) -> int:
        return N_SPECIAL + len(self.species_ids)

    @property
    def n_species(self) -> int:
        return len(self.species_ids)

    def token(self, name: str) -> int:
        """Token of a species name (``UNK`` if the name is not in the vocabulary)."""
        return self._by_name.get(normalise_name(name), UNK)

    def encode_names(self, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Tokens of a list of names and the names that were not known (mapped to ``[UNK]``)."""
        toks = np.array([self.token(n) for n in names], np.int32)
        unknown = [n for n, t in zip(names, toks) if t == UNK]
        return toks, unknown

    def tokens_for_ids(self, species_ids: Iterable[int]) -> np.ndarray:
        """Token of each species id (``UNK`` for ids outside the vocabulary): maps another model's
        species order (an SDM checkpoint's) onto this vocabulary."""
        return np.array([self._by_id.get(int(s), UNK) for s in species_ids], np.int32)

    def decode(self, tokens: Iterable[int]) -> list[str]:
        return [SPECIAL_TOKENS[t] if t < N_SPECIAL else self.names[t - N_SPECIAL] for t in map(int, tokens) if t != PAD]


def bert_kwargs(size: str, vocab_size: int, max_len: int, n_labels: int, **overrides) -> dict:
    """Keyword arguments of the ``BertConfig`` of a Pl@ntBERT of ``size`` (demo | paper)."""
    if size not in SIZES:
        raise ValueError(f"unknown Pl@ntBERT size {size!r}: use one of {sorted(SIZES)}")
    kw = dict(SIZES[size], vocab_size=int(vocab_size), max_position_embeddings=int(max_len) + 2,
              num_labels=int(n_labels), type_vocab_size=1, pad_token_id=PAD,
              hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    kw.update(overrides)
    return kw


def bert_config(kwargs: dict):
    return BertConfig(**kwargs)


def build_mlm(kwargs: dict):
    """Stage 1 model: ``BertForMaskedLM`` over the species vocabulary."""
    return BertForMaskedLM(bert_config(kwargs))


def build_classifier(kwargs: dict, encoder_from=None):
    """Stage 2 model: ``BertForSequenceClassification``, its encoder (embeddings and layers)
    copied from a stage-1 ``BertForMaskedLM`` when given (the pooler starts fresh)."""
    model = BertForSequenceClassification(bert_config(kwargs))
    if encoder_from is not None:
        missing, unexpected = model.bert.load_state_dict(encoder_from.bert.state_dict(), strict=False)
        if unexpected or any(not k.startswith("pooler.") for k in missing):
            raise RuntimeError(f"stage-1 encoder does not fit: missing {missing}, unexpected {unexpected}")
    return model


# ---------------------------------------------------------------------------------------------
# token matrices

def lists_to_matrix(lists: Sequence[Sequence[int]], top_n: int | None = None) -> np.ndarray:
    """Token lists -> left-aligned int32 matrix [n, max length] padded with PAD (first ``top_n`` kept)."""
    lens = [len(t) if top_n is None else min(len(t), top_n) for t in lists]
    out = np.full((len(lists), max(lens, default=0)), PAD, np.int32)
    for i, (t, n) in enumerate(zip(lists, lens)):
        out[i, :n] = np.asarray(t[:n], np.int32)
    return out


def truncate(tokens: np.ndarray, top_n: int) -> np.ndarray:
    """The first ``top_n`` species of each row (columns beyond the longest row dropped)."""
    t = tokens[:, :top_n]
    n = int((t != PAD).sum(1).max(initial=0))
    return np.ascontiguousarray(t[:, :n])


def model_inputs(tokens: np.ndarray, separator: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``[CLS] species... [SEP]`` input ids and attention mask for a token matrix (rows padded
    to the longest row of this batch); with ``separator`` (a token id), ``[CLS] s1 , s2 , ... [SEP]``
    as the published Pl@ntBERT was trained on comma-separated lists."""
    lengths = (tokens != PAD).sum(1)
    L = int(lengths.max(initial=0))
    if separator is not None and L > 1:
        n = len(tokens)
        ids = np.full((n, 2 * L + 1), PAD, np.int64)
        ids[:, 0] = CLS
        ids[:, 1:2 * L:2] = tokens[:, :L]
        ids[:, 2:2 * L - 1:2] = np.where(np.arange(L - 1)[None, :] < (lengths - 1)[:, None], separator, PAD)
        ids[np.arange(n), np.maximum(2 * lengths, 1)] = SEP
        return torch.from_numpy(ids), torch.from_numpy((ids != PAD).astype(np.int64))
    ids = np.full((len(tokens), L + 2), PAD, np.int64)
    ids[:, 0] = CLS
    ids[:, 1:L + 1] = tokens[:, :L]
    ids[np.arange(len(tokens)), lengths + 1] = SEP
    mask = (ids != PAD).astype(np.int64)
    return torch.from_numpy(ids), torch.from_numpy(mask)


# Probability inputs (the cascade paper feeds the deep-SDM's probabilities, not only their order):
# each listed species' token type is 1 + the bin of its log10 probability over [-3, 0] in
# ``prob_bins`` equal steps (below 0.001: bin 1); type 0 is "no probability" (plots, typed lists,
# [CLS], [SEP], padding). A model without probability inputs has one token type.
PROB_LOG10_RANGE = (-3.0, 0.0)


def probability_types(values: np.ndarray | None, tokens: np.ndarray, bins: int) -> np.ndarray:
    """int64 [n, L] token types of the listed species of ``tokens`` [n, L] from their probabilities
    ``values`` [n, >= L] (NaN or None: no probability, type 0)."""
    out = np.zeros(tokens.shape, np.int64)
    if values is None or bins <= 0 or not tokens.size:
        return out
    v = np.asarray(values, np.float32)[:, :tokens.shape[1]]
    ok = (tokens != PAD) & np.isfinite(v) & (v > 0)
    lo, hi = PROB_LOG10_RANGE
    b = np.floor((np.log10(np.where(ok, v, 1.0)) - lo) / (hi - lo) * bins)
    out[ok] = np.clip(b, 0, bins - 1).astype(np.int64)[ok] + 1
    return out


def type_inputs(types: np.ndarray, tokens: np.ndarray) -> torch.Tensor:
    """``token_type_ids`` aligned with :func:`model_inputs` (``[CLS] species... [SEP]``, no separator)."""
    L = int((tokens != PAD).sum(1).max(initial=0))
    out = np.zeros((len(tokens), L + 2), np.int64)
    out[:, 1:L + 1] = types[:, :L]
    return torch.from_numpy(out)


# ---------------------------------------------------------------------------------------------
# the classifier

def level_codes(labels: Sequence[str], level: int) -> list[str]:
    """The code at ``level`` (1, 2 or 3) of every level-3 label, from the EUNIS code hierarchy."""
    return [eunis.at_level(c, level) for c in labels]


class PlantBert:
    """A trained Pl@ntBERT classifier: model, vocabulary, level-3 label list and ``top_n``."""

    def __init__(self, model, vocab: Vocab, labels: Sequence[str], top_n: int, size: str = "demo",
                 kwargs: dict | None = None, meta: dict | None = None) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.labels = list(labels)
        for c in self.labels:
            if eunis.level(c) != 3:
                raise ValueError(f"Pl@ntBERT labels must be EUNIS level-3 codes, got {c!r}")
        self.top_n = int(top_n)
        self.size = size
        self.kwargs = kwargs or {}
        self.meta = meta or {}

    @property
    def max_len(self) -> int:
        return self.model.config.max_position_embeddings - 2

    @property
    def prob_bins(self) -> int:
        """Probability bins of the token types (0: the model reads species order only). Set by the
        trainer in ``meta``, not read from the BERT configuration: a published BERT has two token
        types that mean something else."""
        return int(self.meta.get("prob_bins", 0))

    @property
    def list_length(self) -> str:
        """How predicted lists are cut: ``top_n`` (the first ``top_n`` species) or ``expected``
        (the first round(sum of probabilities) species, a plot's expected richness, at most ``top_n``)."""
        return str(self.meta.get("list_length", "top_n"))

    def codes(self, index: np.ndarray, level: int = 3) -> np.ndarray:
        """Codes (object array) at ``level`` of class indices (``''`` where the index is -1)."""
        table = np.array(level_codes(self.labels, level) + [""], dtype=object)
        idx = np.asarray(index).astype(np.int64)
        return table[np.where(idx < 0, len(self.labels), idx)]

    def _check(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"expected a token matrix [n, L], got shape {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= len(self.vocab)):
            raise ValueError(f"token ids must lie in [0, {len(self.vocab)})")
        if len(tokens) and ((tokens != PAD).sum(1) == 0).any():
            raise ValueError("empty species list: every list needs at least one species")
        if tokens.shape[1] > self.max_len:
            tokens = truncate(tokens, self.max_len)
        return tokens.astype(np.int32, copy=False)

    @torch.inference_mode()
    def logits(self, tokens: np.ndarray, batch_size: int = 512, amp: bool = False,
               values: np.ndarray | None = None) -> torch.Tensor:
        """float32 logits [n, C]. Lists are batched by length (each batch padded to its longest
        list only) and scattered back to the input order. ``amp``: bfloat16 autocast (about 2x
        faster on CPUs with AVX512-BF16 and on GPUs; results differ slightly from float32).
        ``values`` [n, L]: the listed species' probabilities, read by a model with probability
        inputs (:attr:`prob_bins`); without them every species has type 0, as in a plot."""
        tokens = self._check(tokens)
        bins = self.prob_bins
        n = len(tokens)
        out = torch.empty((n, len(self.labels)), dtype=torch.float32)
        if n == 0:
            return out
        lengths = (tokens != PAD).sum(1)
        order = np.argsort(lengths, kind="stable")
        device = next(self.model.parameters()).device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            for i in range(0, n, batch_size):
                sel = order[i:i + batch_size]
                ids, mask = model_inputs(tokens[sel], self.meta.get("separator_token"))
                kw = {}
                if bins:
                    types = probability_types(None if values is None else values[sel], tokens[sel], bins)
                    kw["token_type_ids"] = type_inputs(types, tokens[sel]).to(device)
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device), **kw).logits
                out[torch.from_numpy(sel)] = logits.float().cpu()
        return out

    def predict_proba(self, tokens: np.ndarray, batch_size: int = 512, amp: bool = False,
                      values: np.ndarray | None = None) -> np.ndarray:
        """Level-3 class probabilities [n, C] (softmax)."""
        return torch.softmax(self.logits(tokens, batch_size, amp, values), 1).numpy()

    def predict(self, tokens: np.ndarray, batch_size: int = 512, amp: bool = False,
                values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Level-3 class index [n] (into ``labels``) and its probability [n]."""
        idx, prob = self.predict_top(tokens, 1, batch_size, amp, values)
        return idx[:, 0], prob[:, 0]

    def predict_top(self, tokens: np.ndarray, k: int, batch_size: int = 512, amp: bool = False,
                    values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most probable level-3 classes per list, most probable first: int64 [n, k']
        indices and float32 [n, k'] probabilities, k' = min(k, number of classes)."""
        p = torch.softmax(self.logits(tokens, batch_size, amp, values), 1)
        prob, idx = torch.topk(p, min(int(k), p.shape[1]), dim=1, sorted=True)
        return idx.numpy().astype(np.int64), prob.numpy()

    def to(self, device) -> PlantBert:
        self.model.to(device)
        return self

    def save(self, path, train_config: dict | None = None, report: dict | None = None) -> Path:
        """Write the checkpoint atomically (temporary file, then rename)."""
        path = Path(path)
        save_torch(path, {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "size": self.size,
            "bert_kwargs": self.kwargs, "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "species_ids": list(self.vocab.species_ids), "species_names": list(self.vocab.names),
            "labels": self.labels, "top_n": self.top_n, "train_config": train_config or {}, "report": report or {},
            "meta": self.meta,
            # the labels' habitat names down from level 1, so a model of real EUNIS codes loads
            # where its EUNIS list is not loaded
            "habitats": {c: eunis.habitat(c).name for label in self.labels
                         for c in [label, *eunis.ancestors(label)]},
        })
        return path


def load_plantbert(path, map_location: str = "cpu") -> PlantBert:
    """A Pl@ntBERT from its checkpoint; a clear error for a missing file or another kind of file."""
    ck = load_checkpoint(path, CHECKPOINT_FORMAT, (CHECKPOINT_VERSION,), "plantbert", map_location)

    known = eunis.table()
    new = [eunis.HabitatType(code, name, eunis.code_level(code), eunis.code_parent(code), source=Path(path).name)
           for code, name in (ck.get("habitats") or {}).items() if code not in known]
    if new:
        known.add(new)
    model = BertForSequenceClassification(bert_config(ck["bert_kwargs"]))
    model.load_state_dict(ck["state_dict"])
    vocab = Vocab(tuple(ck["species_ids"]), tuple(ck["species_names"]))
    pb = PlantBert(model, vocab, ck["labels"], ck["top_n"], ck.get("size", "demo"), ck["bert_kwargs"], ck.get("meta"))
    pb.train_config = ck.get("train_config", {})
    pb.report = ck.get("report", {})
    return pb
