"""A Hugging Face Pl@ntBERT folder -> a GeoFlora Pl@ntBERT checkpoint (inference/habitat/published.py).

The published folder is built here as Pl@ntBERT builds it: a BERT tokenizer with one added token
per species name (lower-case binomials), a ``BertForSequenceClassification`` with ``id2label``
EUNIS codes, both written with ``save_pretrained``; tiny, randomly initialised, nothing downloaded."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertTokenizer

from backend.core.errors import CheckpointError
from inference.habitat import published
from inference.habitat.plantbert import load_plantbert, model_inputs

BASE_VOCAB = ["[PAD]", "[unused0]", "[unused1]", "[unused2]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", "a", "##b",
              "the"]
SPECIES = ["abies alba", "picea abies", "fagus sylvatica", "quercus robur", "unknownia mystica"]
LABELS = {0: "R22", 1: "T1E", 2: "XX9", 3: "Q11"}  # XX9: not a EUNIS code GeoFlora knows
TABLE = [(101, "Abies alba Mill."), (102, "Picea abies (L.) H.Karst."), (103, "Fagus sylvatica L."),
         (104, "Quercus robur L."), (105, "Pinus sylvestris L.")]


def _hf_folder(root, labels=LABELS, cls=BertForSequenceClassification):
    root.mkdir(parents=True, exist_ok=True)
    (root / "base-vocab.txt").write_text("\n".join(BASE_VOCAB) + "\n")
    tok = BertTokenizer(str(root / "base-vocab.txt"))
    tok.add_tokens(SPECIES)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, initializer_range=0.5,
                     id2label=dict(labels), label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    model = cls(cfg).eval()
    out = root / "plantbert_text_classification_model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, model, tok


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    folder, model, tok = _hf_folder(root)
    table = root / "species.csv"
    table.write_text("speciesId,scientificName\n" + "".join(f'{i},"{n}"\n' for i, n in TABLE))
    return folder, model, tok, table


LISTS = [["abies alba", "picea abies"], ["fagus sylvatica"], ["quercus robur", "fagus sylvatica", "abies alba"],
         ["picea abies", "quercus robur", "abies alba", "fagus sylvatica"]]


def test_converted_model_classifies_as_the_hf_model(hf, tmp_path):
    folder, model, tok, table = hf
    report = published.import_plantbert(folder, table, tmp_path / "plantbert.pt")
    assert report["species"]["unknown_names"] == ["unknownia mystica"]
    assert report["species"]["matched"] == 4 and report["species"]["table_not_in_model"] == 1
    assert report["labels"]["dropped"] == ["XX9"]
    assert report["check"]["max_abs_logit_diff"] < 1e-4 and report["check"]["argmax_agreement"] == 1.0

    pb = load_plantbert(tmp_path / "plantbert.pt")
    assert pb.labels == ["R22", "T1E", "Q11"]
    assert pb.vocab.species_ids == (101, 102, 103, 104)
    keep = [0, 1, 3]  # the HF classes GeoFlora keeps
    assert pb.vocab.names == ("Abies alba", "Picea abies", "Fagus sylvatica", "Quercus robur")  # canonical
    for species in LISTS:
        # GeoFlora: Pl@ntBERT's own lower-case names -> tokens; HF: its tokenizer on the comma-separated
        # list it was trained on (the converted model puts its separator token between the species)
        tokens, unknown = pb.vocab.encode_names(species)
        assert not unknown
        idx, _ = pb.predict(tokens[None])
        enc = tok(", ".join(species), return_tensors="pt")
        with torch.no_grad():
            ref = model(**enc).logits[0, keep]
        assert pb.labels[int(idx[0])] == ["R22", "T1E", "Q11"][int(ref.argmax())]
        torch.testing.assert_close(pb.logits(tokens[None])[0], ref, atol=1e-4, rtol=1e-4)


def test_separator_row_reproduces_the_comma_separated_input(hf, tmp_path):
    folder, model, tok, table = hf
    published.import_plantbert(folder, table, tmp_path / "plantbert.pt", check=False)
    pb = load_plantbert(tmp_path / "plantbert.pt")
    sep = pb.meta["separator_token"]
    assert sep == len(pb.vocab)  # one row past the species, outside the species tokens
    vocab = published.read_hf_vocab(folder)
    for species in LISTS:
        enc = tok(", ".join(species), return_tensors="pt")  # what the published model saw
        assert enc["input_ids"][0].tolist() == published.hf_input_ids(vocab, species)
        toks = pb.vocab.tokens_for_ids([101 + SPECIES.index(s) for s in species])
        ids, mask = model_inputs(toks[None])
        inter = [ids[0, 0].item()]
        for j, t in enumerate(ids[0, 1:-1].tolist()):
            inter += [t] if j == 0 else [sep, t]
        inter = torch.tensor([inter + [ids[0, -1].item()]])
        sep_ids, sep_mask = model_inputs(toks[None], sep)  # what PlantBert.logits feeds
        assert sep_ids.tolist() == inter.tolist() and sep_mask.all()
        with torch.no_grad():
            got = pb.model(input_ids=inter, attention_mask=torch.ones_like(inter)).logits[0]
            ref = model(**enc).logits[0, [0, 1, 3]]
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_legacy_tokenizer_files(hf, tmp_path):
    """vocab.txt + added_tokens.json + special_tokens_map.json, as older transformers write them."""
    folder, _, tok, table = hf
    legacy = tmp_path / "legacy"
    shutil.copytree(folder, legacy)
    (legacy / "tokenizer.json").unlink()
    (legacy / "vocab.txt").write_text("\n".join(BASE_VOCAB) + "\n")
    (legacy / "added_tokens.json").write_text(json.dumps({s: len(BASE_VOCAB) + i for i, s in enumerate(SPECIES)}))
    (legacy / "special_tokens_map.json").write_text(json.dumps(
        {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]", "unk_token": "[UNK]"}))
    cfg = json.loads((legacy / "tokenizer_config.json").read_text())
    cfg.pop("added_tokens_decoder", None)
    (legacy / "tokenizer_config.json").write_text(json.dumps(cfg))
    vocab = published.read_hf_vocab(legacy)
    assert vocab.source == "vocab.txt+added_tokens.json"
    assert vocab.special == {"[PAD]": 0, "[CLS]": 5, "[SEP]": 6, "[MASK]": 7, "[UNK]": 4}
    assert list(vocab.species_tokens) == SPECIES
    report = published.import_plantbert(legacy, table, tmp_path / "pb.pt")
    assert report["check"]["max_abs_logit_diff"] < 1e-4
    assert report["species"]["matched"] == 4


def test_refuses_what_does_not_fit(hf, tmp_path):
    folder, _, _, table = hf
    with pytest.raises(CheckpointError, match="no config.json"):
        published.import_plantbert(tmp_path, table, tmp_path / "x.pt")
    mlm, _, _ = _hf_folder(tmp_path / "mlm", cls=BertForMaskedLM)
    with pytest.raises(CheckpointError, match="BertForSequenceClassification"):
        published.import_plantbert(mlm, table, tmp_path / "x.pt")
    other = tmp_path / "other.csv"
    other.write_text("speciesId,scientificName\n1,Bellis perennis\n")
    with pytest.raises(CheckpointError, match="matches a species"):
        published.import_plantbert(folder, other, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="labels not in GeoFlora's EUNIS level-3 table: XX9"):
        published.import_plantbert(folder, table, tmp_path / "x.pt", strict_labels=True)
    bad, _, _ = _hf_folder(tmp_path / "bad", labels={0: "MA221", 1: "X99"})
    with pytest.raises(CheckpointError, match="none of the 2 labels"):
        published.import_plantbert(bad, table, tmp_path / "x.pt")
    nolfs = tmp_path / "nolfs"
    shutil.copytree(folder, nolfs)
    for f in nolfs.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        published.import_plantbert(nolfs, table, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_cli_import_plantbert(hf, tmp_path):
    from click.testing import CliRunner

    from backend.cli import main

    folder, _, _, table = hf
    r = CliRunner().invoke(main, ["models", "import-plantbert", str(folder), "--species-table", str(table),
                                  "--out", str(tmp_path / "pb.pt"), "--top-n", "30"])
    assert r.exit_code == 0, r.output
    assert "4 species of 5 model names matched (1 table species are not in the model)" in r.output
    assert "model names not in the species table (1): unknownia mystica" in r.output
    assert "dropped (1): XX9" in r.output
    assert load_plantbert(tmp_path / "pb.pt").top_n == 30
    bad = CliRunner().invoke(main, ["models", "import-plantbert", str(folder), "--species-table", str(table),
                                    "--out", str(tmp_path / "x.pt"), "--strict-labels"])
    assert bad.exit_code == 1 and "XX9" in bad.output
