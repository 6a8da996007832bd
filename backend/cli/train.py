"""``geoflora train``: the models of the cascade."""

from __future__ import annotations

import json
from pathlib import Path

import click

from backend.cli.base import main, region_option
from backend.core.settings import get_settings


@main.group()
def train() -> None:
    """Train the models of the cascade."""


@train.command("sdm")
@region_option("Generated region to train on (default: demo).")
@click.option("--geoplant", "geoplant_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="Train on a GeoPlant (GLC24/GLC25) presence-absence data folder instead.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint path (default: data/models/<region>/sdm.pt).")
@click.option("--size", type=click.Choice(["demo", "paper"]), default="demo", help="Model configuration.")
@click.option("--epochs", type=click.IntRange(1, 1000), default=None)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=None)
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw")
@click.option("--lr", type=float, default=None, help="Learning rate (default per optimizer).")
@click.option("--seed", type=int, default=0, help="Seed of the split, initialisation and sampling.")
@click.option("--no-po", is_flag=True, help="Ignore presence-only records (generated regions).")
@click.option("--resume", is_flag=True, help="Continue an interrupted training from its last checkpoint.")
def train_sdm_cmd(region, geoplant_dir, out, size, epochs, batch_size, optimizer, lr, seed, no_po, resume) -> None:
    """Train the multimodal deep-SDM, calibrate its thresholds and report held-out metrics."""

    from inference.sdm.train import TrainConfig, train_sdm  # torch: only for this command

    settings = get_settings()
    config = TrainConfig(size=size, optimizer=optimizer, lr=lr, seed=seed, alpha=settings.alpha, device=settings.device)
    if epochs:
        config.epochs = epochs
    if batch_size:
        config.batch_size = batch_size
    s2_size = config.model_config(1).patch_size
    if geoplant_dir is not None:
        from inference.sdm.geoplant import GeoPlantLayout, geoplant_samples  # torch: only for this command

        data = geoplant_samples(GeoPlantLayout.discover(geoplant_dir), seed=seed, s2_size=s2_size)
        out = out or settings.layout.checkpoint(geoplant_dir.name, "sdm")
    else:
        from inference.sdm.dataset import region_samples  # torch: only for this command

        name = region.name
        region = region.load()
        click.echo(f"reading samples of region {name!r}...")
        data = region_samples(region, seed=seed, use_po=not no_po, s2_size=s2_size)
        out = out or settings.layout.checkpoint(name, "sdm")
    report = train_sdm(data, out, config, resume=resume, log=click.echo)
    click.echo(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2, default=float))
    click.echo(f"checkpoint: {out}")


@train.command("botaclip")
@region_option("Generated region to train on (default: demo).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint path (default: data/models/<region>/botaclip.pt).")
@click.option("--encoder", "encoder_path", type=click.Path(path_type=Path), default=None,
              help="Frozen EO encoder weights (default: GEOFLORA_EO_ENCODER_PATH, else the demo CNN).")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=None)
@click.option("--ssl-steps", type=click.IntRange(0, 100_000), default=None,
              help="SimCLR steps of the demo encoder before it is frozen (0: random-init frozen).")
@click.option("--reg-weight", type=click.FloatRange(0), default=None,
              help="Weight of the regulariser towards the frozen embedding (default: GEOFLORA_BOTACLIP_REG_WEIGHT).")
@click.option("--seed", type=int, default=0, help="Must be the deep-SDM's seed (same split).")
def train_botaclip_cmd(region, out, encoder_path, epochs, ssl_steps, reg_weight, seed) -> None:
    """BotaCLIP: a frozen EO encoder + adapter aligned contrastively with PA survey species lists."""

    from inference.botaclip.model import BotaCLIPConfig  # torch: only for this command
    from inference.botaclip.train import train_botaclip  # torch: only for this command

    settings = get_settings()
    name = region.name
    region = region.load()
    config = BotaCLIPConfig(seed=seed, reg_weight=settings.botaclip_reg_weight if reg_weight is None else reg_weight)
    if epochs:
        config.epochs = epochs
    if ssl_steps is not None:
        config.ssl_steps = ssl_steps
    out = out or settings.layout.checkpoint(name, "botaclip")
    try:
        report = train_botaclip(region, out, config, encoder_path=encoder_path or settings.eo_encoder_path,
                                log=click.echo, device=settings.device)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    keep = ("n_train", "n_cal", "n_test", "ssl", "train_seconds", "total_seconds", "best_epoch", "calibration", "test")
    click.echo(json.dumps({k: report[k] for k in keep if k in report}, indent=2, default=float))
    click.echo(f"checkpoint: {out}")


@train.command("traits")
@region_option("Generated region whose photos to train on (default: demo).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Train on a PlantTraitNet CSV instead (image paths relative to its folder).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint path (default: data/models/<region>/traits.pt).")
@click.option("--size", type=click.Choice(["tiny", "demo", "paper"]), default="demo", help="Model configuration.")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=None)
@click.option("--no-clean", is_flag=True, help="Train without the uncertainty-guided cleaning loop.")
@click.option("--reference", type=click.Choice(["auto", "truth", "labels"]), default="auto",
              help="Target of the cleaning loop's reference set: measured traits (truth) or species labels.")
@click.option("--seed", type=int, default=0)
def train_traits_cmd(region, csv_path, out, size, epochs, no_clean, reference, seed) -> None:
    """PlantTraitNet: traits from geotagged photos, with uncertainty-guided cleaning."""
    from inference.traits.data import load_photos  # torch: only for this command
    from inference.traits.train import TraitTrainConfig, train_traits  # torch: only for this command

    settings = get_settings()
    if csv_path is None:

        name = region.name
        csv_path = region.load().photos_csv
    else:
        name = region.given or csv_path.resolve().parent.name
    config = TraitTrainConfig(size=size, clean=not no_clean, reference=reference, seed=seed, device=settings.device)
    if epochs:
        config.epochs = epochs
    out = out or settings.layout.checkpoint(name, "traits")
    try:
        photos = load_photos(csv_path)
        report = train_traits(photos, out, config, dinov2_path=settings.dinov2_path,
                              depth_path=settings.depth_anything_path, climplicit_path=settings.climplicit_path,
                              cache_dir=settings.layout.cache_dir / "traits", log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for key, title in (("reference_metrics", "model"), ("reference_metrics_without_cleaning", "without cleaning")):
        for target, per in report.get(key, {}).items():
            click.echo(f"{title:>16} {target:>27}: " + "  ".join(
                f"{t} R2 {m['r2']:.3f} (mean {m['baseline_r2']:.3f})" for t, m in per.items()))
    click.echo(f"trained in {report['train_seconds']:.0f} s; checkpoint: {out}")


@train.command("plantbert")
@region_option("Generated region to train on (default: demo).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint path (default: data/models/<region>/plantbert.pt).")
@click.option("--size", type=click.Choice(["small", "demo", "paper"]), default="demo",
              help="small: 2 layers, hidden 128 (what `make run` trains); demo: 4 layers, hidden 128; "
              "paper: bert-base (12 layers, hidden 768).")
@click.option("--epochs", type=click.IntRange(1, 1000), default=None, help="Stage-2 (classification) epochs.")
@click.option("--mlm-epochs", type=click.IntRange(0, 1000), default=None, help="Stage-1 (masked species) epochs.")
@click.option("--plots", "n_plots", type=click.IntRange(100, 10_000_000), default=None,
              help="Truth-sampled training plots (TRAIN blocks).")
@click.option("--sdm-lists", type=click.IntRange(0, 10_000_000), default=None,
              help="Deep-SDM predicted lists (TRAIN blocks) mixed into training (default: 5000 when the "
                   "SDM checkpoint exists, else 0).")
@click.option("--sdm", "sdm_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SDM checkpoint for --sdm-lists (default: data/models/<region>/sdm.pt).")
@click.option("--true-lists", type=click.IntRange(0, 10_000_000), default=None,
              help="Lists ordered by true probability (a perfect SDM, TRAIN blocks) mixed into training.")
@click.option("--finetune-epochs", type=click.IntRange(0, 1000), default=None,
              help="Stage 2b epochs over the predicted lists (default 1).")
@click.option("--top-n", type=click.IntRange(1, 510), default=None, help="Longest species list (default 100).")
@click.option("--lr", type=float, default=None, help="Learning rate (default per size).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=None)
@click.option("--seed", type=int, default=0, help="Must be the deep-SDM's seed (same block split).")
def train_plantbert_cmd(region, out, size, epochs, mlm_epochs, n_plots, sdm_lists, sdm_path, true_lists,
                        finetune_epochs, top_n, lr, batch_size, seed) -> None:
    """Pl@ntBERT: masked-species pretraining, then EUNIS level-3 classification of species lists."""

    from inference.habitat.train import PlantBertConfig, train_plantbert  # torch: only for this command

    settings = get_settings()
    name = region.name
    region = region.load()
    config = PlantBertConfig(size=size, seed=seed, lr=lr, device=settings.device)
    for key, value in (("cls_epochs", epochs), ("mlm_epochs", mlm_epochs), ("n_plots", n_plots),
                       ("sdm_lists", sdm_lists), ("true_lists", true_lists), ("finetune_epochs", finetune_epochs),
                       ("top_n", top_n), ("batch_size", batch_size)):
        if value is not None:
            setattr(config, key, value)
    sdm_path = sdm_path or settings.layout.checkpoint(name, "sdm")
    if sdm_lists is None:
        config.sdm_lists = 5000 if sdm_path.is_file() else 0
        if not config.sdm_lists:
            click.echo(f"no SDM checkpoint at {sdm_path}: training on truth-sampled plots only", err=True)
    if config.sdm_lists and not sdm_path.is_file():
        raise click.ClickException(f"--sdm-lists needs an SDM checkpoint, none at {sdm_path}")
    out = out or settings.layout.checkpoint(name, "plantbert")
    report = train_plantbert(region, out, config, sdm_checkpoint=sdm_path if config.sdm_lists else None,
                             log=click.echo)
    click.echo(json.dumps({k: v for k, v in report.items() if k not in ("history", "label_counts")}, indent=2,
                          default=float))
    click.echo(f"checkpoint: {out}")
