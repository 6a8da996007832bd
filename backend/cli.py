"""The ``geoflora`` command line: migrate, generate, compute, seed, serve, demo, worker."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from backend.settings import Settings, get_settings


def _sessions(settings: Settings):
    from backend.db.engine import make_engine, make_sessionmaker, migrate

    migrate(settings.db_url)
    return make_sessionmaker(make_engine(settings.db_url))


def _region_path(settings: Settings, name: str) -> Path:
    return settings.regions_dir / name


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def main(verbose: bool) -> None:
    """GeoFlora: plant species, habitats, indicators and traits at 50 m."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command()
def migrate() -> None:
    """Create or upgrade the catalog database (SpatiaLite or PostGIS) with Alembic."""
    from backend.db.engine import migrate as do_migrate

    settings = get_settings()
    do_migrate(settings.db_url)
    click.echo(f"catalog at revision head: {settings.db_url.split('@')[-1]}")


@main.command()
@click.option("--name", default=None, help="Region name (directory under data/regions). Default: demo.")
@click.option("--seed", type=int, default=None, help="Random seed (same seed, same region).")
@click.option("--size", type=click.IntRange(1, 40), default=None, help="Edge in 25 km meta-tiles.")
@click.option("--species", "n_species", type=click.IntRange(10, 20_000), default=None, help="Number of species.")
@click.option("--x0", type=float, default=None, help="Lower-left easting, EPSG:3035 metres.")
@click.option("--y0", type=float, default=None, help="Lower-left northing, EPSG:3035 metres.")
@click.option("--force", is_flag=True, help="Regenerate even if the region exists.")
def generate(name, seed, size, n_species, x0, y0, force) -> None:
    """Generate a virtual region whose true species distributions, habitats and traits are known."""
    settings = get_settings()
    name = name or settings.demo_region
    path = _region_path(settings, name)
    if (path / "region.json").is_file() and not force:
        click.echo(f"region {name!r} exists at {path} (use --force to regenerate)")
        return
    if force and path.exists():
        import shutil

        shutil.rmtree(path)
    _generate(settings, name, seed, size, n_species, x0, y0)


def _generate(settings: Settings, name: str, seed=None, size=None, n_species=None, x0=None, y0=None) -> Path:
    import time

    from inference.data.region import generate_region

    kwargs = {}
    if x0 is not None:
        kwargs["x0"] = x0
    if y0 is not None:
        kwargs["y0"] = y0
    size = size or settings.demo_size
    path = _region_path(settings, name)
    start = time.perf_counter()
    region = generate_region(
        path,
        seed=settings.demo_seed if seed is None else seed,
        nx=size,
        ny=size,
        n_species=n_species or settings.demo_species,
        progress=lambda stage, frac: click.echo(f"  [{frac:4.0%}] {stage}", err=True),
        **kwargs,
    )
    m = region.meta
    click.echo(
        f"generated region {name!r}: meta-tiles {', '.join(m['metatiles'])}, {m['n_species']} species, "
        f"{m['counts']['pa']['surveys']} PA surveys, {m['counts']['po']['records']} presence-only records, "
        f"{m['counts']['photos']['photos']} photos in {time.perf_counter() - start:.1f} s: {path}"
    )
    return path


def _existing_region(settings: Settings, name: str) -> Path:
    path = _region_path(settings, name)
    if not (path / "region.json").is_file():
        raise click.ClickException(f"region {name!r} does not exist at {path}: run `geoflora generate --name {name}`")
    return path


@main.command()
@click.option("--region", "region_name", default=None, help="Region name (default: the demo region).")
@click.option("--sdm", "sdm_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SDM checkpoint (default: data/models/<region>/sdm.pt).")
@click.option("--executor", type=click.Choice(["local", "celery"]), default="local",
              help="local: compute in this process; celery: send meta-tiles to the workers.")
def compute(region_name, sdm_path, executor) -> None:
    """Compute every layer of a region as a new run and make it live."""
    from inference.pipeline.run import run_local

    settings = get_settings()
    name = region_name or settings.demo_region
    path = _existing_region(settings, name)
    sdm_path = sdm_path or settings.sdm_checkpoint(name)
    if not sdm_path.is_file():
        raise click.ClickException(f"no SDM checkpoint at {sdm_path}: run `geoflora train sdm --region {name}`")
    sessions = _sessions(settings)
    if executor == "celery":
        from inference.celery_app import run_with_celery

        run_id = run_with_celery(settings, sessions, name, path, sdm_path, **settings.cascade_checkpoints(name))
    else:
        run_id = run_local(settings, sessions, name, path, sdm_path, **settings.cascade_checkpoints(name))
    click.echo(f"run {run_id} is live")


main.add_command(compute, name="run")  # `geoflora run`: the same, by the name the pipeline docs use


@main.group()
def train() -> None:
    """Train the models of the cascade."""


@train.command("sdm")
@click.option("--region", "region_name", default=None, help="Generated region to train on (default: demo).")
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
def train_sdm_cmd(region_name, geoplant_dir, out, size, epochs, batch_size, optimizer, lr, seed, no_po, resume) -> None:
    """Train the multimodal deep-SDM, calibrate its thresholds and report held-out metrics."""
    import json

    from inference.sdm.train import TrainConfig, train_sdm

    settings = get_settings()
    config = TrainConfig(size=size, optimizer=optimizer, lr=lr, seed=seed, alpha=settings.alpha)
    if epochs:
        config.epochs = epochs
    if batch_size:
        config.batch_size = batch_size
    s2_size = config.model_config(1).patch_size
    if geoplant_dir is not None:
        from inference.sdm.geoplant import GeoPlantLayout, geoplant_samples

        data = geoplant_samples(GeoPlantLayout.discover(geoplant_dir), seed=seed, s2_size=s2_size)
        out = out or settings.models_dir / geoplant_dir.name / "sdm.pt"
    else:
        from inference.data.region import load_region
        from inference.sdm.dataset import region_samples

        name = region_name or settings.demo_region
        region = load_region(_existing_region(settings, name))
        click.echo(f"reading samples of region {name!r}...")
        data = region_samples(region, seed=seed, use_po=not no_po, s2_size=s2_size)
        out = out or settings.sdm_checkpoint(name)
    report = train_sdm(data, out, config, resume=resume, log=click.echo)
    click.echo(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2, default=float))
    click.echo(f"checkpoint: {out}")


@train.command("botaclip")
@click.option("--region", "region_name", default=None, help="Generated region to train on (default: demo).")
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
def train_botaclip_cmd(region_name, out, encoder_path, epochs, ssl_steps, reg_weight, seed) -> None:
    """BotaCLIP: a frozen EO encoder + adapter aligned contrastively with PA survey species lists."""
    import json

    from inference.botaclip.model import BotaCLIPConfig
    from inference.botaclip.train import train_botaclip
    from inference.data.region import load_region

    settings = get_settings()
    name = region_name or settings.demo_region
    region = load_region(_existing_region(settings, name))
    config = BotaCLIPConfig(seed=seed, reg_weight=settings.botaclip_reg_weight if reg_weight is None else reg_weight)
    if epochs:
        config.epochs = epochs
    if ssl_steps is not None:
        config.ssl_steps = ssl_steps
    out = out or settings.models_dir / name / "botaclip.pt"
    try:
        report = train_botaclip(region, out, config, encoder_path=encoder_path or settings.eo_encoder_path,
                                log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    keep = ("n_train", "n_cal", "n_test", "ssl", "train_seconds", "total_seconds", "best_epoch", "calibration", "test")
    click.echo(json.dumps({k: report[k] for k in keep if k in report}, indent=2, default=float))
    click.echo(f"checkpoint: {out}")


@train.command("traits")
@click.option("--region", "region_name", default=None, help="Generated region whose photos to train on (default: demo).")
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
def train_traits_cmd(region_name, csv_path, out, size, epochs, no_clean, reference, seed) -> None:
    """PlantTraitNet: traits from geotagged photos, with uncertainty-guided cleaning."""
    from inference.traits.data import load_photos
    from inference.traits.train import TraitTrainConfig, train_traits

    settings = get_settings()
    if csv_path is None:
        from inference.data.region import load_region

        name = region_name or settings.demo_region
        csv_path = load_region(_existing_region(settings, name)).photos_csv
    else:
        name = region_name or csv_path.resolve().parent.name
    config = TraitTrainConfig(size=size, clean=not no_clean, reference=reference, seed=seed)
    if epochs:
        config.epochs = epochs
    out = out or settings.models_dir / name / "traits.pt"
    try:
        photos = load_photos(csv_path)
        report = train_traits(photos, out, config, dinov2_path=settings.dinov2_path,
                              depth_path=settings.depth_anything_path, climplicit_path=settings.climplicit_path,
                              cache_dir=settings.cache_dir / "traits", log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for key, title in (("reference_metrics", "model"), ("reference_metrics_without_cleaning", "without cleaning")):
        for target, per in report.get(key, {}).items():
            click.echo(f"{title:>16} {target:>27}: " + "  ".join(
                f"{t} R2 {m['r2']:.3f} (mean {m['baseline_r2']:.3f})" for t, m in per.items()))
    click.echo(f"trained in {report['train_seconds']:.0f} s; checkpoint: {out}")


@train.command("plantbert")
@click.option("--region", "region_name", default=None, help="Generated region to train on (default: demo).")
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
def train_plantbert_cmd(region_name, out, size, epochs, mlm_epochs, n_plots, sdm_lists, sdm_path, true_lists,
                        finetune_epochs, top_n, lr, batch_size, seed) -> None:
    """Pl@ntBERT: masked-species pretraining, then EUNIS level-3 classification of species lists."""
    import json

    from inference.data.region import load_region
    from inference.habitat.train import PlantBertConfig, train_plantbert

    settings = get_settings()
    name = region_name or settings.demo_region
    region = load_region(_existing_region(settings, name))
    config = PlantBertConfig(size=size, seed=seed, lr=lr)
    for key, value in (("cls_epochs", epochs), ("mlm_epochs", mlm_epochs), ("n_plots", n_plots),
                       ("sdm_lists", sdm_lists), ("true_lists", true_lists), ("finetune_epochs", finetune_epochs),
                       ("top_n", top_n), ("batch_size", batch_size)):
        if value is not None:
            setattr(config, key, value)
    sdm_path = sdm_path or settings.sdm_checkpoint(name)
    if sdm_lists is None:
        config.sdm_lists = 5000 if sdm_path.is_file() else 0
        if not config.sdm_lists:
            click.echo(f"no SDM checkpoint at {sdm_path}: training on truth-sampled plots only", err=True)
    if config.sdm_lists and not sdm_path.is_file():
        raise click.ClickException(f"--sdm-lists needs an SDM checkpoint, none at {sdm_path}")
    out = out or settings.plantbert_checkpoint(name)
    report = train_plantbert(region, out, config, sdm_checkpoint=sdm_path if config.sdm_lists else None,
                             log=click.echo)
    click.echo(json.dumps({k: v for k, v in report.items() if k not in ("history", "label_counts")}, indent=2,
                          default=float))
    click.echo(f"checkpoint: {out}")


@main.group()
def evaluate() -> None:
    """Evaluate models against baselines and the truth."""


@evaluate.command("plantbert")
@click.option("--region", "region_name", default=None, help="Generated region (default: demo).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Pl@ntBERT checkpoint (default: data/models/<region>/plantbert.pt).")
@click.option("--sdm", "sdm_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Deep-SDM checkpoint for the SDM-list rows (default: data/models/<region>/sdm.pt if present).")
@click.option("--no-sdm", is_flag=True, help="Skip the SDM-list rows.")
@click.option("--n-test", type=click.IntRange(10, 1_000_000), default=5000, help="Held-out TEST-block cells.")
def evaluate_plantbert_cmd(region_name, model_path, sdm_path, no_sdm, n_test) -> None:
    """Pl@ntBERT vs MLP vs dominant-species rule: accuracy at EUNIS levels 1/2/3, top 50 and 100."""
    from inference.data.region import load_region
    from inference.habitat.evaluate import evaluate_plantbert, format_table

    settings = get_settings()
    name = region_name or settings.demo_region
    region = load_region(_existing_region(settings, name))
    model_path = model_path or settings.plantbert_checkpoint(name)
    if not model_path.is_file():
        raise click.ClickException(f"no Pl@ntBERT checkpoint at {model_path}: run `geoflora train plantbert --region {name}`")
    if not no_sdm:
        sdm_path = sdm_path or settings.sdm_checkpoint(name)
        if not sdm_path.is_file():
            click.echo(f"no SDM checkpoint at {sdm_path}: SDM-list rows skipped", err=True)
            sdm_path = None
    result = evaluate_plantbert(region, model_path, None if no_sdm else sdm_path, n_test=n_test, log=click.echo)
    table = format_table(result["rows"])
    (model_path.parent / "plantbert_comparison.md").write_text(table + "\n")
    click.echo(table)
    click.echo(f"Pl@ntBERT training {result['plantbert_train_seconds']} s, MLP training {result['mlp_seconds']} s, "
               f"Pl@ntBERT {result['plantbert_lists_per_s']:.0f} lists/s")


@evaluate.command("sdm")
@click.option("--region", "region_name", default=None, help="Generated region (default: demo).")
@click.option("--sdm", "sdm_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Deep-SDM checkpoint (default: data/models/<region>/sdm.pt).")
@click.option("--seed", type=int, default=0, help="Must be the seed the SDM was trained with (same split).")
def evaluate_sdm_cmd(region_name, sdm_path, seed) -> None:
    """Deep-SDM vs MaxEnt vs random forest on the same held-out blocks: one table."""
    from inference.data.region import load_region
    from inference.sdm.compare import compare_sdm, format_table

    settings = get_settings()
    name = region_name or settings.demo_region
    region = load_region(_existing_region(settings, name))
    sdm_path = sdm_path or settings.sdm_checkpoint(name)
    if not sdm_path.is_file():
        raise click.ClickException(f"no SDM checkpoint at {sdm_path}: run `geoflora train sdm --region {name}`")
    rows = compare_sdm(region, sdm_path, seed=seed, log=click.echo)
    table = format_table(rows)
    (sdm_path.parent / "comparison.md").write_text(table + "\n")
    click.echo(table)


@evaluate.command("botaclip")
@click.option("--region", "region_name", default=None, help="Generated region (default: demo).")
@click.option("--sdm", "sdm_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Deep-SDM checkpoint (default: data/models/<region>/sdm.pt).")
@click.option("--botaclip", "botaclip_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="BotaCLIP checkpoint (default: data/models/<region>/botaclip.pt).")
@click.option("--seed", type=int, default=0, help="Must be the seed both models were trained with (same split).")
def evaluate_botaclip_cmd(region_name, sdm_path, botaclip_path, seed) -> None:
    """Deep-SDM features with / without BotaCLIP embeddings (same linear head), and one meta-tile's timing."""
    import json

    from inference.botaclip.evaluate import PROTOCOLS, compare_with_embeddings, format_table, time_metatile
    from inference.botaclip.train import load_botaclip
    from inference.data.region import load_region

    settings = get_settings()
    name = region_name or settings.demo_region
    region = load_region(_existing_region(settings, name))
    sdm_path = sdm_path or settings.sdm_checkpoint(name)
    botaclip_path = botaclip_path or settings.models_dir / name / "botaclip.pt"
    for p, cmd in ((sdm_path, "sdm"), (botaclip_path, "botaclip")):
        if not p.is_file():
            raise click.ClickException(f"no checkpoint at {p}: run `geoflora train {cmd} --region {name}`")
    model = load_botaclip(botaclip_path, settings.eo_encoder_path)
    tables = compare_with_embeddings(region, sdm_path, model, seed=seed, log=click.echo)
    timing = time_metatile(region, model)
    text = "\n\n".join(f"{PROTOCOLS[p]}:\n\n{format_table(rows)}" for p, rows in tables.items())
    (botaclip_path.parent / "botaclip_comparison.md").write_text(text + "\n")
    (botaclip_path.parent / "botaclip_comparison.json").write_text(
        json.dumps({"tables": tables, "metatile": timing}, indent=2, default=float))
    click.echo(text)
    click.echo(f"meta-tile embeddings: {timing}")


@evaluate.command("traits")
@click.option("--region", "region_name", default=None, help="Generated region (default: demo).")
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
def evaluate_traits_cmd(region_name, sdm_path, grid_m, min_photos, folds, size, epochs, seed) -> None:
    """Trait maps vs the truth: photo maps with / without cleaning, CWM maps from the SDM."""
    from inference.data.region import load_region
    from inference.traits.evaluate import evaluate_traits, format_table, save_report
    from inference.traits.train import TraitTrainConfig

    settings = get_settings()
    name = region_name or settings.demo_region
    region = load_region(_existing_region(settings, name))
    config = TraitTrainConfig(size=size, seed=seed)
    if epochs:
        config.epochs = epochs
    sdm_path = sdm_path or settings.sdm_checkpoint(name)
    try:
        report = evaluate_traits(region, config, grid_m=grid_m or settings.trait_grid_m,
                                 min_count=min_photos or settings.trait_min_photos, folds=folds, sdm_path=sdm_path,
                                 cache_dir=settings.cache_dir / "traits", dinov2_path=settings.dinov2_path,
                                 depth_path=settings.depth_anything_path, climplicit_path=settings.climplicit_path,
                                 log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    js, md = save_report(report, settings.models_dir / name)
    click.echo(format_table(report["rows"]))
    for key, per in report["per_photo_vs_true_traits"].items():
        click.echo(f"per photo (out of fold) vs true traits, {key}: " + "  ".join(
            f"{t} R2 {m['r2']:.3f}" for t, m in per.items()))
    click.echo(f"CWM maps from {report['cwm_source']}; timings {report['timings']}; report {js}")


@main.group()
def habitat() -> None:
    """EUNIS habitats from species lists (Pl@ntBERT)."""


@habitat.command("classify")
@click.option("--tsv", "tsv_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="Pl@ntBERT input TSV: an `Observations` column of comma-separated species names.")
@click.option("--region", "region_name", default=None, help="Region whose Pl@ntBERT to use (default: demo).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Pl@ntBERT checkpoint (default: data/models/<region>/plantbert.pt).")
@click.option("--top-n", type=click.IntRange(1, 510), default=None, help="Species used per list (default: the model's).")
def habitat_classify_cmd(tsv_path, region_name, model_path, top_n) -> None:
    """Print the EUNIS level-3, level-2 and level-1 habitat of every species list of a TSV."""
    from inference.data.readers import DataFormatError
    from inference.habitat.infer import classify_tsv
    from inference.habitat.plantbert import load_plantbert

    settings = get_settings()
    name = region_name or settings.demo_region
    model_path = model_path or settings.plantbert_checkpoint(name)
    try:
        pb = load_plantbert(model_path)
        results = classify_tsv(pb, tsv_path, top_n)
    except (FileNotFoundError, ValueError, DataFormatError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("line\tlevel3\tlevel2\tlevel1\tprobability\tunknown_species")
    n_unknown = 0
    for i, r in enumerate(results, 1):
        n_unknown += len(r["unknown"])
        click.echo(f"{i}\t{r['level3']}\t{r['level2']}\t{r['level1']}\t{r['probability']:.3f}\t{', '.join(r['unknown'])}")
    if n_unknown:
        click.echo(f"{n_unknown} species name(s) not in the model's vocabulary were read as [UNK]", err=True)


def _print_urls(settings: Settings) -> None:
    base = f"http://{settings.host}:{settings.port}"
    click.echo("\nGeoFlora is running:")
    click.echo(f"  map              {base}/")
    click.echo(f"  API docs         {base}/docs")
    click.echo(f"  WMS capabilities {base}/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0")
    click.echo(f"  WMTS capabilities {base}/wmts/1.0.0/WMTSCapabilities.xml\n")


@main.command()
@click.option("--layer", "layer_ids", multiple=True, help="Layer id to seed (repeatable; default: every layer).")
@click.option("--max-zoom", type=click.IntRange(0, 16), default=10, show_default=True,
              help="Deepest Web Mercator zoom; the LAEA and WGS84 grids go to the matching resolution.")
@click.option("--grid", "grids", multiple=True, type=click.Choice(["GLOBAL_WEBMERCATOR", "LAEA_EUROPE", "WGS84"]),
              help="Tile grid to seed (repeatable; default: all three).")
@click.option("--concurrency", type=int, default=2, show_default=True, help="Parallel seeding processes.")
def seed(layer_ids, max_zoom, grids, concurrency) -> None:
    """Fill the WMTS file caches of the live run at low zooms (the caches of a run are dropped
    when another run goes live)."""
    from backend.catalog import LiveCatalog
    from tiles.seed import seed_low_zooms

    settings = get_settings()
    snap = LiveCatalog(_sessions(settings), settings.data_dir).snapshot()
    if snap is None:
        raise click.ClickException("no run is live yet: compute a region first (geoflora run)")
    try:
        levels = seed_low_zooms(settings, snap, list(layer_ids) or None, max_zoom, concurrency, list(grids) or None)
    except Exception as exc:  # unknown layer ids and the like
        raise click.ClickException(str(exc)) from exc
    click.echo(f"seeded run {snap.run_id}: " + ", ".join(f"{g} to level {n}" for g, n in levels.items()))


@main.command()
@click.option("--host", default=None, help="Bind address (default from settings).")
@click.option("--port", type=int, default=None, help="Port (default from settings).")
@click.option("--workers", type=int, default=None,
              help="Server processes (default GEOFLORA_WEB_WORKERS), supervised by gunicorn.")
def serve(host, port, workers) -> None:
    """Serve the map, the API, XYZ tiles, WMS and WMTS."""
    settings = get_settings()
    _serve(settings, host, port, workers)


def _serve(settings: Settings, host=None, port=None, workers: int | None = None) -> None:
    """gunicorn with uvicorn workers: each process serves everything; a process whose event loop
    stops answering for GEOFLORA_WORKER_TIMEOUT_S is killed and replaced."""
    from gunicorn.app.base import BaseApplication

    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.web_workers
    _print_urls(get_settings().model_copy(update={"host": host, "port": port}))
    click.echo(f"{workers} server process(es) under gunicorn, each restarted after "
               f"{settings.worker_timeout_s} s without a heartbeat")

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{host}:{port}", "workers": workers, "worker_class": "uvicorn_worker.UvicornWorker",
                "timeout": settings.worker_timeout_s, "graceful_timeout": 10, "keepalive": 5,
                "loglevel": "warning", "accesslog": None,
                # the heartbeat starts at the fork, not when the server loop first ticks: a process
                # that hangs while it starts up is replaced too (gunicorn alone never times it out)
                "post_fork": _heartbeat_at_fork,
            }.items():
                self.cfg.set(key, value)

        def load(self):
            from backend.main import app  # in each worker process: nothing is shared across the fork

            return app

    # The libraries load here, once, before the fork (the app itself, its engine and connections are
    # made in each process): a new or replacement process starts serving in about a second.
    import backend.app  # noqa: F401

    Server().run()


def _heartbeat_at_fork(_server, worker) -> None:
    worker.notify()


# `make run` trains the small Pl@ntBERT (2 layers) on lists cut to 50 species, on half the plots for
# half the classification epochs of the `geoflora train plantbert` defaults: about 11 CPU-minutes, and
# a meta-tile's habitats in about 35 s on 2 cores (the 4-layer, 100-species model: 129 s) with the
# same accuracy on deep-SDM lists (52.5 % at level 3 against 52.3 %; see the README).
DEMO_PLANTBERT = {"size": "small", "top_n": 50, "n_plots": 15_000, "epochs": 2}


@main.command()
@click.pass_context
def demo(ctx) -> None:
    """Migrate; generate the demo region, train its models and compute it, each only if missing; serve."""
    from inference.pipeline.run import live_run_for, run_local

    from inference.data.region import load_region
    from inference.sdm.dataset import region_samples
    from inference.sdm.train import TrainConfig, train_sdm

    settings = get_settings()
    sessions = _sessions(settings)
    name = settings.demo_region
    path = _region_path(settings, name)
    if not (path / "region.json").is_file():
        _generate(settings, name)
    sdm_path = settings.sdm_checkpoint(name)
    if not sdm_path.is_file():
        click.echo("training the demo deep-SDM (a few minutes on 2 cores)...")
        config = TrainConfig(alpha=settings.alpha)
        data = region_samples(load_region(path), s2_size=config.model_config(1).patch_size)
        report = train_sdm(data, sdm_path, config, resume=True, log=click.echo)
        click.echo(f"deep-SDM held-out macro AUC {report['test']['macro_auc']:.3f}")
        del data
    # The rest of the cascade: Pl@ntBERT (habitat layers) and BotaCLIP (embedding layer).
    if not settings.plantbert_checkpoint(name).is_file():
        click.echo("training the demo Pl@ntBERT (a lighter schedule than `geoflora train plantbert`'s)...")
        ctx.invoke(train_plantbert_cmd, region_name=name, **DEMO_PLANTBERT)
    if not settings.botaclip_checkpoint(name).is_file():
        click.echo("training the demo BotaCLIP...")
        ctx.invoke(train_botaclip_cmd, region_name=name)
    run_id = live_run_for(sessions, name)
    if run_id is None:
        run_id = run_local(settings, sessions, name, path, sdm_path, **settings.cascade_checkpoints(name))
        click.echo(f"run {run_id} is live")
    else:
        click.echo(f"reusing live run {run_id}")
    _serve(settings)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def worker(ctx) -> None:
    """Start a Celery worker (extra arguments go to `celery worker`)."""
    from inference.celery_app import celery_app

    celery_app.worker_main(["worker", *ctx.args])


if __name__ == "__main__":
    sys.exit(main())
