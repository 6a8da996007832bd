"""A published Pl@ntBERT (a Hugging Face folder) -> a GeoFlora Pl@ntBERT checkpoint
(``geoflora models import-plantbert``).

The public Pl@ntBERT (github.com/cesar-leblanc/plantbert; weights on the Hugging Face hub as
``CesarLeblanc/plantbert_text_classification_model``, cloned with git-lfs into a local folder) is a
``BertForSequenceClassification`` fine-tuned from ``bert-base-uncased`` whose tokenizer got one
*added token* per species name (``tokenizer.add_tokens(names)``: lower-case GBIF binomials such as
``abies alba``), with ``id2label`` in ``config.json`` the EUNIS level-3 codes. The folder, as
``save_pretrained`` writes it, holds:

* ``config.json`` (``model_type: bert``, ``architectures: [BertForSequenceClassification]``,
  ``id2label``) and the weights (``model.safetensors`` or ``pytorch_model.bin``, or their sharded
  index), read by ``BertForSequenceClassification.from_pretrained(folder, local_files_only=True)``;
* the tokenizer: ``tokenizer.json`` (its ``added_tokens`` and WordPiece ``model.vocab``), or
  ``vocab.txt`` + ``added_tokens.json`` (+ ``special_tokens_map.json``), the files older
  ``transformers`` write; ``tokenizer_config.json``'s ``added_tokens_decoder`` is read as well.
  These are read directly (no tokenizer backend needed).

The conversion builds the GeoFlora vocabulary (:class:`~inference.habitat.plantbert.Vocab`) from
the species table: every added (non-special) token whose name matches a table species by
:func:`~inference.data.species_table.name_key` becomes that species' token (table order, canonical
name); the word-embedding matrix keeps, in GeoFlora's order, the rows of ``[PAD] [CLS] [SEP]
[MASK] [UNK]``, of the matched species and last of the separator ``,`` (see below); everything else (position and
type embeddings, the encoder, the pooler, the classifier) is copied unchanged, except the classifier
rows of labels GeoFlora's EUNIS table does not know, which are dropped (their probability mass goes
to the others; ``strict_labels`` refuses instead). Names of the model no table species matches and
dropped labels are reported.

Input convention: Pl@ntBERT was trained on text ``"abies alba, picea abies, ..."``, i.e.
``[CLS] abies-alba , picea-abies , ... [SEP]`` with a comma token between species. The comma's
embedding is kept as the last vocabulary row (``meta.separator_token``), and a converted model is
fed the same way (:func:`inference.habitat.plantbert.model_inputs` puts the separator between the
species): it computes exactly what the published model computes on the comma-separated list it was
trained on (checked on every import: ``check.max_abs_logit_diff``, ``check.argmax_agreement``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import BertForSequenceClassification

from backend.core.errors import CheckpointError
from inference.data import eunis
from inference.data.species_table import name_key, read_table_species
from inference.habitat.plantbert import (
    N_SPECIAL,
    SIZES,
    SPECIAL_TOKENS,
    PlantBert,
    Vocab,
    bert_config,
)

#: BertConfig fields copied from the published config.json
_CONFIG_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
                "layer_norm_eps", "initializer_range", "position_embedding_type", "classifier_dropout")
_DEFAULT_SPECIAL = {"[PAD]": "pad_token", "[CLS]": "cls_token", "[SEP]": "sep_token", "[MASK]": "mask_token",
                    "[UNK]": "unk_token"}
SEPARATOR = ","
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")


@dataclass
class HFVocab:
    """The tokenizer files of a folder: base vocabulary, added tokens, special tokens."""

    base: dict[str, int]
    added: dict[str, int]  # every added token -> id (specials included)
    special: dict[str, int]  # GeoFlora special token name ([PAD] ...) -> id in this tokenizer
    special_added: set[str] = field(default_factory=set)  # added tokens flagged special
    source: str = ""

    def id_of(self, token: str) -> int | None:
        return self.added.get(token, self.base.get(token))

    @property
    def species_tokens(self) -> dict[str, int]:
        """Added, non-special tokens (the species names) -> id, in id order."""
        special_ids = set(self.special.values())
        items = [(t, i) for t, i in self.added.items() if t not in self.special_added and i not in special_ids
                 and t not in self.base]
        return dict(sorted(items, key=lambda ti: ti[1]))


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc})") from exc


def read_hf_vocab(folder: str | Path) -> HFVocab:
    """The tokenizer of a ``save_pretrained`` folder, from ``tokenizer.json`` or ``vocab.txt`` +
    ``added_tokens.json`` (module docstring)."""
    folder = Path(folder)
    base: dict[str, int] = {}
    added: dict[str, int] = {}
    special_added: set[str] = set()
    sources = []
    tj = folder / "tokenizer.json"
    if tj.is_file():
        d = _json(tj)
        base = dict(d.get("model", {}).get("vocab") or {})
        for t in d.get("added_tokens", []):
            added[t["content"]] = int(t["id"])
            if t.get("special"):
                special_added.add(t["content"])
        sources.append("tokenizer.json")
    vt = folder / "vocab.txt"
    if not base and vt.is_file():
        base = {line.rstrip("\n"): i for i, line in enumerate(vt.read_text(encoding="utf-8").splitlines())}
        sources.append("vocab.txt")
    at = folder / "added_tokens.json"
    if at.is_file():
        added.update({str(k): int(v) for k, v in _json(at).items()})
        sources.append("added_tokens.json")
    tc = folder / "tokenizer_config.json"
    cfg = _json(tc) if tc.is_file() else {}
    stm = folder / "special_tokens_map.json"
    smap = _json(stm) if stm.is_file() else {}
    for k, v in cfg.get("added_tokens_decoder", {}).items():
        added.setdefault(v["content"], int(k))
        if v.get("special"):
            special_added.add(v["content"])
    if not base and not added:
        raise CheckpointError(f"{folder}: no tokenizer files (tokenizer.json, or vocab.txt and added_tokens.json)")
    special: dict[str, int] = {}
    for ours, key in _DEFAULT_SPECIAL.items():
        value = smap.get(key, cfg.get(key, ours))
        if isinstance(value, dict):
            value = value.get("content", ours)
        tid = added.get(value, base.get(value))
        if tid is None:
            raise CheckpointError(f"{folder}: the tokenizer has no {key} ({value!r})")
        special[ours] = int(tid)
    return HFVocab(base, added, special, special_added, "+".join(sources))


def _label_list(config: dict, path: Path) -> list[str]:
    id2label = config.get("id2label") or {}
    if not id2label:
        raise CheckpointError(f"{path}: no id2label: the classes' EUNIS level-3 codes are needed")
    n = len(id2label)
    try:
        return [str(id2label[str(i)] if str(i) in id2label else id2label[i]) for i in range(n)]
    except KeyError:
        raise CheckpointError(f"{path}: id2label must name every class 0..{n - 1}") from None


def _known_level3(code: str) -> bool:
    try:
        return eunis.level(code) == 3
    except KeyError:
        return False


@torch.no_grad()
def _check(hf_model, pb: PlantBert, hf_ids: np.ndarray, keep_labels: np.ndarray, cls: int, sep: int,
           comma: int | None, seed: int = 0, n_lists: int = 16) -> dict:
    """The published and the converted model on random species lists of the mapped species."""
    rng = np.random.default_rng(seed)
    n = len(hf_ids)
    lists = [rng.choice(n, size=int(rng.integers(1, min(n, 20) + 1)), replace=False) for _ in range(n_lists)]
    hf_model.eval()
    diffs, agree = [], 0
    for li in lists:
        seq = [cls]  # what the published model saw: species separated by its comma token, if it has one
        for j, t in enumerate(hf_ids[li].tolist()):
            seq += [t] if j == 0 or comma is None else [comma, t]
        seq = torch.tensor([seq + [sep]])
        ref = hf_model(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[0, keep_labels]
        got = pb.logits(np.asarray([li + N_SPECIAL], np.int32))[0]
        diffs.append(float((ref - got).abs().max()))
        agree += int(ref.argmax() == got.argmax())
    return {"lists": n_lists, "max_abs_logit_diff": max(diffs), "argmax_agreement": agree / n_lists,
            "input": "comma-separated" if comma is not None else "plain"}


def import_plantbert(hf_dir: str | Path, species_table: str | Path, out: str | Path, *, top_n: int | None = None,
                     strict_labels: bool = False, check: bool = True, seed: int = 0) -> dict:
    """Convert the Hugging Face Pl@ntBERT folder ``hf_dir`` onto the species of ``species_table``
    (a species table CSV: ``speciesId`` / ``id`` and ``scientificName`` / ``name`` columns, as
    :func:`~inference.data.species_table.read_table_species` reads it, e.g. the GeoFlora species
    table) and write the GeoFlora Pl@ntBERT checkpoint ``out``.

    ``top_n``: the longest list fed (default 100, at most the model's positions - 2).
    ``strict_labels``: refuse labels that are not EUNIS level-3 codes of GeoFlora's table instead
    of dropping them. Returns the import report (also stored in the checkpoint's ``report``).
    """
    hf_dir, out = Path(hf_dir), Path(out)
    cfg_path = hf_dir / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{hf_dir}: no config.json (expected a transformers save_pretrained folder)")
    config = _json(cfg_path)
    if config.get("model_type") != "bert":
        raise CheckpointError(f"{cfg_path}: model_type {config.get('model_type')!r}; Pl@ntBERT is a BERT ('bert')")
    archs = config.get("architectures") or []
    if archs and "BertForSequenceClassification" not in archs:
        raise CheckpointError(f"{cfg_path}: architectures {archs}; the habitat classifier is a "
                              "BertForSequenceClassification (the fill-mask model does not classify habitats)")
    if not any((hf_dir / f).is_file() for f in _WEIGHT_FILES):
        raise CheckpointError(f"{hf_dir}: no weights ({', '.join(_WEIGHT_FILES)}); a git clone without git-lfs "
                              "leaves pointer files only")
    labels = _label_list(config, cfg_path)
    vocab = read_hf_vocab(hf_dir)

    hf_model, info = BertForSequenceClassification.from_pretrained(str(hf_dir), local_files_only=True,
                                                                   output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("position_ids")]
    if missing:
        raise CheckpointError(f"{hf_dir}: the weights lack {', '.join(sorted(missing)[:8])}: not a fine-tuned "
                              "sequence classifier")
    hf_model.eval()
    emb = hf_model.bert.embeddings.word_embeddings.weight.detach()
    if max(vocab.added.values(), default=-1) >= emb.shape[0] or max(vocab.base.values(), default=-1) >= emb.shape[0]:
        raise CheckpointError(f"{hf_dir}: the tokenizer has ids up to "
                              f"{max([*vocab.added.values(), *vocab.base.values()])} but the model "
                              f"only {emb.shape[0]} embeddings")

    # species: the model's names -> the table's species
    table = read_table_species(species_table)
    by_key: dict[str, int] = {}
    for i, s in enumerate(table):
        by_key.setdefault(name_key(s.canonical or s.name), i)
    matched: dict[int, int] = {}  # table row -> HF token id
    unknown, duplicate = [], []
    for token, tid in vocab.species_tokens.items():
        row = by_key.get(name_key(token))
        if row is None:
            unknown.append(token)
        elif row in matched:
            duplicate.append(token)
        else:
            matched[row] = tid
    if not matched:
        raise CheckpointError(f"no species name of {hf_dir} ({len(vocab.species_tokens)} added tokens, e.g. "
                              f"{', '.join(list(vocab.species_tokens)[:5]) or 'none'}) matches a species of "
                              f"{species_table}")
    rows = sorted(matched)
    hf_ids = np.array([matched[r] for r in rows], np.int64)
    comma = vocab.id_of(SEPARATOR)

    # labels: the EUNIS level-3 codes GeoFlora knows
    keep = [j for j, c in enumerate(labels) if _known_level3(c)]
    dropped_labels = [c for c in labels if not _known_level3(c)]
    if not keep:
        raise CheckpointError(f"{cfg_path}: none of the {len(labels)} labels ({', '.join(labels[:6])}...) is a EUNIS "
                              "level-3 code of GeoFlora's table (inference/data/eunis.py)")
    if dropped_labels and strict_labels:
        raise CheckpointError(f"{cfg_path}: labels not in GeoFlora's EUNIS level-3 table: {', '.join(dropped_labels)}")

    # the GeoFlora model: specials, matched species, separator
    order = [vocab.special[t] for t in SPECIAL_TOKENS] + hf_ids.tolist() + ([comma] if comma is not None else [])
    kwargs = {k: config[k] for k in _CONFIG_KEYS if config.get(k) is not None}
    kwargs.update(vocab_size=len(order), num_labels=len(keep), pad_token_id=0)
    model = BertForSequenceClassification(bert_config(kwargs))
    sd = {k: v.detach().clone() for k, v in hf_model.state_dict().items()}
    sd["bert.embeddings.word_embeddings.weight"] = emb[torch.as_tensor(order)].clone()
    keep_t = torch.as_tensor(keep)
    sd["classifier.weight"] = sd["classifier.weight"][keep_t].clone()
    sd["classifier.bias"] = sd["classifier.bias"][keep_t].clone()
    model.load_state_dict(sd, strict=True)
    model.eval()

    max_len = int(kwargs["max_position_embeddings"]) - 2
    top_n = min(int(top_n or 100), max_len)
    paper = all(kwargs.get(k) == v for k, v in SIZES["paper"].items())
    # canonical names: a Pl@ntBERT list ("abies alba") and the table's "Abies alba Mill." both find the token
    gv = Vocab(tuple(table[r].id for r in rows), tuple(table[r].canonical or table[r].name for r in rows))
    meta = {"source": "huggingface", "hf_dir": str(hf_dir), "separator": SEPARATOR if comma is not None else None,
            "separator_token": len(order) - 1 if comma is not None else None,
            "input": "[CLS] s1 s2 ... [SEP] (the published model was trained on [CLS] s1 , s2 , ... [SEP])"}
    pb = PlantBert(model, gv, [labels[j] for j in keep], top_n, "paper" if paper else "published", kwargs, meta)
    report = {
        "source": {"hf_dir": str(hf_dir), "tokenizer": vocab.source, "species_tokens": len(vocab.species_tokens),
                   "labels": len(labels)},
        "species": {"matched": len(rows), "table": len(table), "table_not_in_model": len(table) - len(rows),
                    "unknown_names": unknown, "duplicate_names": duplicate},
        "labels": {"kept": len(keep), "dropped": dropped_labels},
        "top_n": top_n,
    }
    if check:
        report["check"] = _check(hf_model, pb, hf_ids, keep_t, vocab.special["[CLS]"], vocab.special["[SEP]"],
                                 comma, seed)
    pb.save(out, train_config={"imported_from": str(hf_dir), "species_table": str(species_table),
                               "strict_labels": strict_labels}, report=report)
    return report


def hf_input_ids(vocab: HFVocab, names: Sequence[str], separator: bool = True) -> list[int]:
    """The published tokenizer's ids of a species list (``"a, b, c"``), built from the vocabulary
    (each name one added token): ``[CLS] a , b , c [SEP]``, or without the commas."""
    toks = []
    for j, n in enumerate(names):
        tid = vocab.added.get(n.casefold(), vocab.added.get(n))
        if tid is None:
            raise KeyError(f"{n!r} is not a token of the vocabulary")
        if separator and j:
            toks.append(vocab.id_of(SEPARATOR))
        toks.append(tid)
    return [vocab.special["[CLS]"], *toks, vocab.special["[SEP]"]]

