"""BotaCLIP: contrastive training learns, the regulariser holds, the frozen encoder stays frozen,
meta-tile embeddings equal per-patch ones, PCA colours are region-wide, bad inputs fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.botaclip.embed import embed_points, metatile_embeddings, pca_rgb
from inference.botaclip.model import (
    BandError,
    BotaCLIPConfig,
    CellCNN,
    CellCNNConfig,
    HFImageEncoder,
    load_botaclip,
    load_frozen_encoder,
)
from inference.botaclip.train import retrieval, survey_pairs, train_botaclip
from inference.data.region import load_region

TINY_CNN = CellCNNConfig(patch_size=40, stem=8, widths=(16, 16))


def tiny_config(**kw) -> BotaCLIPConfig:
    base = dict(dim=16, adapter_hidden=32, species_dim=32, species_hidden=64, epochs=60, batch_size=128, n_views=4,
                cnn=TINY_CNN.to_dict(), ssl_steps=0, pca_cells=500, patience=60)
    return BotaCLIPConfig(**{**base, **kw})


def tiny_encoder(seed: int = 0) -> CellCNN:
    torch.manual_seed(seed)
    return CellCNN(TINY_CNN).eval()


@pytest.fixture(scope="module")
def region(tiny_region):
    return load_region(tiny_region)


@pytest.fixture(scope="module")
def pairs(region):
    return survey_pairs(region, seed=0, patch_size=TINY_CNN.patch_size)


@pytest.fixture(scope="module")
def trained(region, pairs, tmp_path_factory):
    enc = tiny_encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    out = tmp_path_factory.mktemp("botaclip") / "botaclip.pt"
    report = train_botaclip(region, out, tiny_config(), encoder=enc, pairs=pairs, log=lambda *_: None)
    return out, report, before, enc


def test_retrieval_metric_on_hand_made_cases():
    lists = [[0], [1], [2], [0]]  # surveys 0 and 3 share a releve: 3 distinct lists
    img = torch.eye(4)[:, :3]
    img[3] = torch.tensor([1.0, 0, 0])
    txt = torch.eye(3)[[0, 1, 2, 0]]
    r = retrieval(img, txt, lists, ks=(1, 2))
    assert r["distinct_releves"] == 3
    assert r["image_to_releve@1"] == 1.0 and r["releve_to_image@1"] == 1.0
    assert r["image_to_releve_chance@1"] == pytest.approx(1 / 3)
    # releve [0] has 2 of 4 images: chance of one in the top 1 is 1/2; the others 1/4
    assert r["releve_to_image_chance@1"] == pytest.approx((0.5 + 0.25 + 0.25) / 3)
    r = retrieval(img, -txt, lists, ks=(1,))
    assert r["image_to_releve@1"] == 0.0


def test_contrastive_training_learns_on_tiny_data(trained):
    out, report, _, _ = trained
    hist = report["history"]
    assert hist[-1]["infonce"] < 0.8 * hist[0]["infonce"]
    cal = report["calibration"]
    assert cal["mean@10"] > 1.5 * cal["chance_mean@10"], cal
    assert out.is_file() and out.with_suffix(".json").is_file()
    model = load_botaclip(out)
    assert model.dim == 16 and model.species_ids.shape == (24,)


def test_frozen_encoder_weights_are_unchanged(trained):
    out, report, before, enc = trained
    assert report["frozen_encoder_unchanged"]
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not any(p.requires_grad for p in enc.parameters())
    saved = load_botaclip(out).encoder.state_dict()
    for k, v in saved.items():
        assert torch.equal(v, before[k]), k


def test_regulariser_keeps_adapted_embeddings_near_the_frozen_ones(region, pairs, tmp_path):
    cos = {}
    for w in (0.0, 20.0):
        rep = train_botaclip(region, tmp_path / f"reg{w}.pt", tiny_config(reg_weight=w, epochs=30, patience=30),
                             encoder=tiny_encoder(), pairs=pairs, log=lambda *_: None)
        cos[w] = rep["history"][-1]["cal_cos_to_frozen"]  # same epoch for both, no selection
    assert cos[20.0] > cos[0.0] + 0.03, cos
    assert cos[20.0] > 0.99


def test_metatile_embeddings_equal_per_patch_embeddings(trained, region):
    model = load_botaclip(trained[0])
    tile = next(iter(region.grid.metatiles()))
    rows = slice(200, 230)
    emb = metatile_embeddings(region, tile, model, rows=rows)
    assert emb.shape == (16, 30, 500) and emb.dtype == np.float32
    x, y = region.cell_centres(tile)
    rng = np.random.default_rng(0)
    r, c = rng.integers(200, 230, 64), rng.integers(0, 500, 64)
    c[:2] = (0, 499)  # the tile's edge cells too
    ref = embed_points(region, model, x[r, c], y[r, c])
    np.testing.assert_allclose(emb[:, r - 200, c].T, ref, atol=1e-4)
    # the strided path is exact at the cells it computes, interpolated in between
    coarse = metatile_embeddings(region, tile, model, step=10, rows=rows)
    np.testing.assert_allclose(coarse[:, 0, ::10], emb[:, 0, ::10], atol=1e-4)
    assert np.allclose(np.linalg.norm(coarse, axis=0), 1, atol=1e-4)


def test_pca_rgb_gives_the_same_colours_for_the_same_embedding_on_every_tile(trained, region):
    model = load_botaclip(trained[0])
    tile = next(iter(region.grid.metatiles()))
    a = metatile_embeddings(region, tile, model, rows=slice(0, 20))
    b = metatile_embeddings(region, tile, model, rows=slice(300, 320))
    tile1 = a
    tile2 = np.concatenate([b[:, :, :250], a[:, :, 250:]], axis=2)  # shares its east half with tile1
    rgb1, rgb2 = pca_rgb(tile1, model.pca_colours), pca_rgb(tile2, model)
    assert rgb1.shape == (3, 20, 500) and rgb1.dtype == np.uint8
    assert np.array_equal(rgb1[:, :, 250:], rgb2[:, :, 250:])
    assert rgb1.std() > 5  # not a flat picture
    # a per-tile fit (components=None) would not guarantee that
    local1, local2 = pca_rgb(tile1), pca_rgb(tile2)
    assert local1.shape == (3, 20, 500)
    assert not np.array_equal(local1[:, :, 250:], local2[:, :, 250:])
    with pytest.raises(ValueError, match="-d"):
        pca_rgb(tile1[:8], model.pca_colours)
    with pytest.raises(ValueError, match=r"\[D, H, W\]"):
        pca_rgb(tile1[0], model.pca_colours)


def test_bad_inputs_give_clear_errors(tmp_path, region):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_frozen_encoder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="EO_ENCODER_PATH"):
        load_frozen_encoder(None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_frozen_encoder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="train botaclip"):
        load_botaclip(tmp_path / "botaclip.pt")
    enc = tiny_encoder()
    with pytest.raises(BandError, match="4"):
        enc(torch.zeros(2, 3, 40, 40))
    with pytest.raises(ValueError, match="40 x 40"):
        enc(torch.zeros(2, 4, 32, 32))
    with pytest.raises(ValueError, match="multiple of 5"):
        CellCNN(CellCNNConfig(patch_size=42))
    from inference.botaclip.model import encode

    with pytest.raises(BandError, match="R, G, B, NIR"):
        encode(enc, None, np.zeros((2, 3, 40, 40), np.uint16))
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       patch_size=8, image_size=32, num_channels=5)
    Dinov2Model(cfg).save_pretrained(tmp_path / "five_bands")
    with pytest.raises(BandError, match="5 input channels"):
        load_frozen_encoder(tmp_path / "five_bands")


def test_a_local_transformers_encoder_trains_and_embeds(region, pairs, tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       patch_size=10, image_size=40, num_channels=4)
    Dinov2Model(cfg).save_pretrained(tmp_path / "vit")
    enc = load_frozen_encoder(tmp_path / "vit", patch_size=40)
    assert isinstance(enc, HFImageEncoder) and enc.out_features == 32
    assert enc(torch.zeros(2, 4, 40, 40)).shape == (2, 32)
    assert not any(p.requires_grad for p in enc.parameters())
    out = tmp_path / "bc.pt"
    config = tiny_config(epochs=3, n_views=1, pca_cells=100, eo_patch_size=40)
    train_botaclip(region, out, config, encoder_path=tmp_path / "vit", pairs=pairs, log=lambda *_: None)
    model = load_botaclip(out)  # the checkpoint names the local weights, it does not copy them
    assert isinstance(model.encoder, HFImageEncoder)
    tile = next(iter(region.grid.metatiles()))
    emb = metatile_embeddings(region, tile, model, step=50, rows=slice(0, 51))
    assert emb.shape == (16, 51, 500)
    x, y = region.cell_centres(tile)
    ref = embed_points(region, model, x[50, ::50], y[50, ::50])
    np.testing.assert_allclose(emb[:, 50, ::50].T, ref, atol=1e-4)


def test_cli_trains_botaclip(cli_data_dir):
    from click.testing import CliRunner

    from backend.cli import main

    runner = CliRunner()
    r = runner.invoke(main, ["train", "botaclip", "--region", "tiny", "--encoder", str(cli_data_dir / "missing")])
    assert r.exit_code != 0 and "not found" in r.output
    r = runner.invoke(main, ["train", "botaclip", "--region", "tiny", "--epochs", "2", "--ssl-steps", "0"])
    assert r.exit_code == 0, r.output
    models = cli_data_dir / "models" / "tiny"
    assert (models / "botaclip.pt").is_file() and (models / "botaclip.json").is_file()
    assert (models / "eo_encoder.pt").is_file()  # the demo encoder, reusable as GEOFLORA_EO_ENCODER_PATH
    enc = load_frozen_encoder(models / "eo_encoder.pt")
    assert isinstance(enc, CellCNN) and enc.normalizer is not None


@pytest.mark.slow
def test_sdm_features_with_and_without_embeddings(trained, region, tiny_sdm):
    from inference.botaclip.evaluate import compare_with_embeddings, format_table

    tables = compare_with_embeddings(region, tiny_sdm, load_botaclip(trained[0]), log=lambda *_: None)
    assert set(tables) == {"train", "cal"}
    for rows in tables.values():
        names = [r["model"] for r in rows]
        assert "linear head: SDM features" in names and "linear head: SDM features + BotaCLIP" in names
        for r in rows:
            assert 0 <= r["macro_auc"] <= 1 and np.isfinite(r["auc_vs_truth"])
        assert rows[-1]["auc_vs_truth"] > max(r["auc_vs_truth"] for r in rows[:-1])  # the truth row
        with_emb = next(r for r in rows if r["model"] == "linear head: SDM features + BotaCLIP")
        d = with_emb["delta_vs_sdm_features"]
        assert d["lo"] <= d["delta"] <= d["hi"]
        assert "| features |" in format_table(rows)
