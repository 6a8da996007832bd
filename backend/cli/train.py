"""``geoflora train``: the models of the cascade."""

from __future__ import annotations

import json
from pathlib import Path

import click

from backend.cli.base import main, region_option
from backend.core.errors import GeoFloraError
from backend.core.settings import get_settings
from inference.data import eunis


@main.group()
def train() -> None:
    """Train the models of the cascade."""


@train.command("sdm")
@region_option("Generated region to train on (default: demo).")
@click.option("--geoplant", "geoplant_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="Train on a GeoPlant (GLC24/GLC25) data folder instead: its presence-absence "
              "surveys and, when it has them, its presence-only records.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint path (default: data/models/<region>/sdm.pt).")
@click.option("--size", type=click.Choice(["demo", "paper"]), default="demo", help="Model configuration.")
@click.option("--epochs", type=click.IntRange(1, 1000), default=None)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=None)
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw")
@click.option("--lr", type=float, default=None, help="Learning rate (default per optimizer).")
@click.option("--seed", type=int, default=0, help="Seed of the split, initialisation and sampling.")
@click.option("--no-po", is_flag=True, help="Ignore presence-only records (generated region or GeoPlant folder).")
@click.option("--po-limit", type=click.IntRange(1), default=None,
              help="GeoPlant: read at most N presence-only samples (50 m cells with all their records), drawn "
                   "with --seed (default: every cell of the PO file).")
@click.option("--resume", is_flag=True, help="Continue an interrupted training from its last checkpoint.")
def train_sdm_cmd(region, geoplant_dir, out, size, epochs, batch_size, optimizer, lr, seed, no_po, po_limit,
                  resume) -> None:
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

        try:
            layout = GeoPlantLayout.discover(geoplant_dir, po=not no_po)
            if not no_po and layout.po_csv is None:
                click.echo(f"no presence-only file ([GLCxx_]PO_metadata_train.csv) under {geoplant_dir}: "
                           "training on the presence-absence surveys only", err=True)
            data = geoplant_samples(layout, seed=seed, s2_size=s2_size, use_po=not no_po, po_limit=po_limit)
        except (FileNotFoundError, ValueError) as exc:  # a DataFormatError's text names the file and line
            raise click.ClickException(str(exc)) from exc
        s = data.summary
        click.echo(f"GeoPlant {geoplant_dir}: {s.surveys_read} presence-absence surveys "
                   f"({s.n_dropped} dropped for missing files), {s.po_records_read} presence-only records in "
                   f"{s.po_samples} samples (50 m cells; {s.po_dropped} dropped), {s.n_species} species")
        click.echo("surveys per split: " + ", ".join(f"{k} {v}" for k, v in s.surveys_per_split.items())
                   + "; all samples: " + ", ".join(f"{k} {v}" for k, v in s.samples_per_split.items()))
        out = out or settings.layout.checkpoint(geoplant_dir.name, "sdm")
    else:
        if po_limit is not None:
            raise click.UsageError("--po-limit applies to --geoplant (a generated region's records are all read)")
        from inference.sdm.dataset import region_samples  # torch: only for this command

        name = region.name
        region = region.load(needs="survey plots or presence-only records (train on GeoPlant with --geoplant DIR)")
        click.echo(f"reading samples of region {name!r}...")
        data = region_samples(region, seed=seed, use_po=not no_po, s2_size=s2_size)
        out = out or settings.layout.checkpoint(name, "sdm")
    report = train_sdm(data, out, config, resume=resume, log=click.echo)
    click.echo(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2, default=float))
    test = report.get("test")
    if test:
        names = {"macro_auc": "macro AUC", "sample_f1": "sample F1 (F1-optimal t)", "recall@50": "Recall@50",
                 "recall@250": "Recall@250", "auc_vs_truth": "AUC vs truth",
                 "omission_at_conformal": "omission at conformal t", "mean_set_size_at_conformal": "mean set size"}
        click.echo(f"\nheld-out test surveys ({report['n_test']}, whole 10 km blocks):\n\n| metric | value |\n|---|---|")
        for key, title in names.items():
            if key in test:
                click.echo(f"| {title} | {test[key]:.3f} |")
    else:
        click.echo("no held-out test surveys (no presence-absence survey in the test blocks)")
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
    region = region.load(needs="survey plots (BotaCLIP pairs each plot's species list with its image)")
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
        csv_path = region.load(needs="photos (give a PlantTraitNet CSV with --csv)").photos_csv
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


def _plots_value(ctx, param, value):
    """``--plots``: a number of truth-sampled plots, or a folder of EVA tables."""
    if value is None or value.isdigit():
        n = None if value is None else int(value)
        if n is not None and not 100 <= n <= 10_000_000:
            raise click.BadParameter(f"{n} plots: use 100 to 10000000 (or a folder of EVA tables)")
        return n
    path = Path(value)
    if not path.is_dir():
        raise click.BadParameter(f"{value!r} is neither a number of plots nor a folder of EVA header and species "
                                 "tables")
    return path


@train.command("plantbert")
@region_option("Generated region to train on (default: demo); with --plots DIR, the region whose species "
               "table is the vocabulary and whose SDM lists are mixed in.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint path (default: data/models/<region>/plantbert.pt).")
@click.option("--size", type=click.Choice(["small", "demo", "paper"]), default="demo",
              help="small: 2 layers, hidden 128 (what `make run` trains); demo: 4 layers, hidden 128; "
              "paper: bert-base (12 layers, hidden 768).")
@click.option("--epochs", type=click.IntRange(1, 1000), default=None, help="Stage-2 (classification) epochs.")
@click.option("--mlm-epochs", type=click.IntRange(0, 1000), default=None, help="Stage-1 (masked species) epochs.")
@click.option("--plots", "n_plots", callback=_plots_value, metavar="N|DIR", default=None,
              help="N: truth-sampled training plots (TRAIN blocks). DIR: a folder holding an EVA export (a header "
              "table header.csv/.tsv/.txt or *header*, a species table species.csv/.tsv/.txt or *species*): train on "
              "those plots instead, labelled with their EUNIS codes, and report on their TEST blocks.")
@click.option("--eunis", "eunis_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="EUNIS list (Code,Name CSV, e.g. eunis2021_habitats.csv) to load first: plot codes outside the "
              "built-in list need it.")
@click.option("--sdm-lists", type=click.IntRange(0, 10_000_000), default=None,
              help="Deep-SDM predicted lists (TRAIN blocks; with --plots DIR at TRAIN plots, labelled with the "
                   "plot's habitat) mixed into training (default: 5000 when the SDM checkpoint exists, else 0).")
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
def train_plantbert_cmd(region, out, size, epochs, mlm_epochs, n_plots, eunis_path, sdm_lists, sdm_path, true_lists,
                        finetune_epochs, top_n, lr, batch_size, seed) -> None:
    """Pl@ntBERT: masked-species pretraining, then EUNIS level-3 classification of species lists."""

    from inference.habitat.train import PlantBertConfig, train_plantbert  # torch: only for this command

    plots_dir = n_plots if isinstance(n_plots, Path) else None
    n_plots = None if plots_dir is not None else n_plots
    if eunis_path is not None:
        click.echo(f"EUNIS list {eunis_path}: {len(eunis.load_list(eunis_path))} codes")
    settings = get_settings()
    name = region.name
    region = region.load(needs=None if plots_dir is not None else "vegetation plots (give EVA plots with --plots DIR)")
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
            click.echo(f"no SDM checkpoint at {sdm_path}: training on "
                       f"{'the EVA' if plots_dir else 'truth-sampled'} plots only", err=True)
    if config.sdm_lists and not sdm_path.is_file():
        raise click.ClickException(f"--sdm-lists needs an SDM checkpoint, none at {sdm_path}")
    plots = None
    if plots_dir is not None:
        from inference.habitat.eva import read_eva_folder  # torch: only for this command
        from inference.habitat.plantbert import Vocab  # torch: only for this command

        try:
            plots = read_eva_folder(plots_dir, Vocab.from_region(region), max_len=config.top_n)
        except FileNotFoundError as exc:  # a DataFormatError names the file and line on its own
            raise click.ClickException(str(exc)) from exc
        click.echo(plots.report.format())
        if len(plots) == 0:
            raise click.ClickException(f"no plot of {plots_dir} is left to train on (see the report above)")
    out = out or settings.layout.checkpoint(name, "plantbert")
    sdm_checkpoint = sdm_path if config.sdm_lists else None
    try:
        report = train_plantbert(region, out, config, sdm_checkpoint=sdm_checkpoint, log=click.echo,
                                 **({"plots": plots} if plots is not None else {}))
    except ValueError as exc:
        if plots is None or isinstance(exc, GeoFloraError):
            raise
        raise click.ClickException(str(exc)) from exc  # too few plots in TRAIN or CAL blocks
    click.echo(json.dumps({k: v for k, v in report.items() if k not in ("history", "label_counts", "plots")},
                          indent=2, default=float))
    if plots is not None:
        from inference.habitat.evaluate import evaluate_plots, format_table  # torch: only for this command

        result = evaluate_plots(region, out, plots, sdm_checkpoint, log=click.echo)
        click.echo(f"\nheld-out EVA plots ({result['n_test_plots']} in TEST blocks), accuracy in % at EUNIS levels "
                   f"1, 2 and 3:\n\n{format_table(result['rows'])}")
    click.echo(f"checkpoint: {out}")
