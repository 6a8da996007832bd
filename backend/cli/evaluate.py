"""``geoflora evaluate``: the models against baselines and the generated truth."""

from __future__ import annotations

from pathlib import Path

import click

from backend.cli.base import main, region_option
from backend.core.atomic import write_json, write_text
from backend.core.settings import get_settings


@main.group()
def evaluate() -> None:
    """Evaluate models against baselines and the truth."""


@evaluate.command("plantbert")
@region_option("Generated region (default: demo).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Pl@ntBERT checkpoint (default: data/models/<region>/plantbert.pt).")
@click.option("--sdm", "sdm_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Deep-SDM checkpoint for the SDM-list rows (default: data/models/<region>/sdm.pt if present).")
@click.option("--no-sdm", is_flag=True, help="Skip the SDM-list rows.")
@click.option("--n-test", type=click.IntRange(10, 1_000_000), default=5000, help="Held-out TEST-block cells.")
def evaluate_plantbert_cmd(region, model_path, sdm_path, no_sdm, n_test) -> None:
    """Pl@ntBERT vs MLP vs dominant-species rule: accuracy at EUNIS levels 1/2/3, top 50 and 100."""
    from inference.habitat.evaluate import evaluate_plantbert, format_table  # torch: only for this command

    settings = get_settings()
    name = region.name
    model_path = region.checkpoint("plantbert", model_path)
    region = region.load(needs="truth to evaluate against")
    if not no_sdm:
        sdm_path = sdm_path or settings.layout.checkpoint(name, "sdm")
        if not sdm_path.is_file():
            click.echo(f"no SDM checkpoint at {sdm_path}: SDM-list rows skipped", err=True)
            sdm_path = None
    result = evaluate_plantbert(region, model_path, None if no_sdm else sdm_path, n_test=n_test, log=click.echo)
    table = format_table(result["rows"])
    write_text(model_path.parent / "plantbert_comparison.md", table + "\n")
    click.echo(table)
    click.echo(f"Pl@ntBERT training {result['plantbert_train_seconds']} s, MLP training {result['mlp_seconds']} s, "
               f"Pl@ntBERT {result['plantbert_lists_per_s']:.0f} lists/s")


@evaluate.command("sdm")
@region_option("Generated region (default: demo).")
@click.option("--sdm", "sdm_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Deep-SDM checkpoint (default: data/models/<region>/sdm.pt).")
@click.option("--seed", type=int, default=0, help="Must be the seed the SDM was trained with (same split).")
def evaluate_sdm_cmd(region, sdm_path, seed) -> None:
    """Deep-SDM vs MaxEnt vs random forest on the same held-out blocks: one table."""
    from inference.sdm.compare import compare_sdm, format_table  # torch: only for this command

    sdm_path = region.checkpoint("sdm", sdm_path)
    region = region.load(needs="truth to evaluate against")
    rows = compare_sdm(region, sdm_path, seed=seed, log=click.echo)
    table = format_table(rows)
    write_text(sdm_path.parent / "comparison.md", table + "\n")
    click.echo(table)


@evaluate.command("botaclip")
@region_option("Generated region (default: demo).")
@click.option("--sdm", "sdm_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Deep-SDM checkpoint (default: data/models/<region>/sdm.pt).")
@click.option("--botaclip", "botaclip_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="BotaCLIP checkpoint (default: data/models/<region>/botaclip.pt).")
@click.option("--seed", type=int, default=0, help="Must be the seed both models were trained with (same split).")
def evaluate_botaclip_cmd(region, sdm_path, botaclip_path, seed) -> None:
    """Deep-SDM features with / without BotaCLIP embeddings (same linear head), and one meta-tile's timing."""

    from inference.botaclip.evaluate import (  # torch: only for this command
        PROTOCOLS,
        compare_with_embeddings,
        format_table,
        time_metatile,
    )
    from inference.botaclip.model import load_botaclip  # torch: only for this command

    settings = get_settings()
    sdm_path = region.checkpoint("sdm", sdm_path)
    botaclip_path = region.checkpoint("botaclip", botaclip_path)
    region = region.load(needs="truth to evaluate against")
    model = load_botaclip(botaclip_path, settings.eo_encoder_path)
    tables = compare_with_embeddings(region, sdm_path, model, seed=seed, log=click.echo)
    timing = time_metatile(region, model)
    text = "\n\n".join(f"{PROTOCOLS[p]}:\n\n{format_table(rows)}" for p, rows in tables.items())
    write_text(botaclip_path.parent / "botaclip_comparison.md", text + "\n")
    write_json(botaclip_path.parent / "botaclip_comparison.json", {"tables": tables, "metatile": timing}, indent=2,
               default=float)
    click.echo(text)
    click.echo(f"meta-tile embeddings: {timing}")


@evaluate.command("traits")
@region_option("Generated region (default: demo).")
@click.option("--sdm", "sdm_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Deep-SDM checkpoint for the CWM maps (default: data/models/<region>/sdm.pt; "
              "without one, true probabilities cut at a threshold).")
@click.option("--grid-m", type=click.FloatRange(min=100), default=None,
              help="Photo-map cell size in metres (default: GEOFLORA_TRAIT_GRID_M); also scored at twice it.")
@click.option("--min-photos", type=click.IntRange(1), default=None, help="Fewest photos per grid cell.")
@click.option("--folds", type=click.IntRange(2, 10), default=2, help="Spatial cross-fitting folds (10 km blocks).")
@click.option("--size", type=click.Choice(["tiny", "demo", "paper"]), default="demo", help="Model configuration.")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=None)
@click.option("--seed", type=int, default=0)
def evaluate_traits_cmd(region, sdm_path, grid_m, min_photos, folds, size, epochs, seed) -> None:
    """Trait maps vs the truth: photo maps with / without cleaning, CWM maps from the SDM."""
    from inference.traits.evaluate import evaluate_traits, format_table, save_report  # torch: only for this command
    from inference.traits.train import TraitTrainConfig  # torch: only for this command

    settings = get_settings()
    name = region.name
    region = region.load(needs="truth to evaluate against")
    config = TraitTrainConfig(size=size, seed=seed, device=settings.device)
    if epochs:
        config.epochs = epochs
    sdm_path = sdm_path or settings.layout.checkpoint(name, "sdm")
    try:
        report = evaluate_traits(region, config, grid_m=grid_m or settings.trait_grid_m,
                                 min_count=min_photos or settings.trait_min_photos, folds=folds, sdm_path=sdm_path,
                                 cache_dir=settings.layout.cache_dir / "traits", dinov2_path=settings.dinov2_path,
                                 depth_path=settings.depth_anything_path, climplicit_path=settings.climplicit_path,
                                 log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    js, md = save_report(report, settings.layout.models_dir / name)
    click.echo(format_table(report["rows"]))
    for key, per in report["per_photo_vs_true_traits"].items():
        click.echo(f"per photo (out of fold) vs true traits, {key}: " + "  ".join(
            f"{t} R2 {m['r2']:.3f}" for t, m in per.items()))
    click.echo(f"CWM maps from {report['cwm_source']}; timings {report['timings']}; report {js}")
