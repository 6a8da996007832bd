"""``geoflora compute`` (also ``run``), ``worker`` and ``demo``: runs of the cascade."""

from __future__ import annotations

from pathlib import Path

import click

from backend.cli.base import main, region_option, sessions_for
from backend.cli.data import generate_region_folder
from backend.cli.serve import serve_forever
from backend.cli.train import train_botaclip_cmd, train_plantbert_cmd
from backend.core.settings import get_settings
from backend.db.queries import live_run_for
from inference.models import default_checkpoints


@main.command()
@region_option("Region name (default: the demo region).")
@click.option("--sdm", "sdm_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SDM checkpoint (default: data/models/<region>/sdm.pt).")
@click.option("--plantbert", "plantbert_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Pl@ntBERT checkpoint (default: data/models/<region>/plantbert.pt when it exists).")
@click.option("--botaclip", "botaclip_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="BotaCLIP checkpoint (default: data/models/<region>/botaclip.pt when it exists).")
@click.option("--models", "model_set", default=None,
              help="A named model set: the models under data/models/<SET>/ (default: the region's own). "
                   "--sdm, --plantbert and --botaclip override single models.")
@click.option("--executor", type=click.Choice(["local", "celery"]), default="local",
              help="local: compute in this process; celery: send meta-tiles to the workers.")
def compute(region, sdm_path, plantbert_path, botaclip_path, model_set, executor) -> None:
    """Compute every layer of a region as a new run and make it live."""
    from backend.jobs.runs import run_local  # torch: only for this command

    settings = get_settings()
    name = region.name
    path = region.require()
    model_set = model_set or name
    if sdm_path is None and model_set != name:
        sdm_path = settings.layout.checkpoint(model_set, "sdm")
    checkpoints = {**default_checkpoints(settings.layout, model_set), "sdm": region.checkpoint("sdm", sdm_path)}
    for kind, given in (("plantbert", plantbert_path), ("botaclip", botaclip_path)):
        if given is not None:
            checkpoints[kind] = region.checkpoint(kind, given)
    sessions = sessions_for(settings)
    if executor == "celery":
        from backend.jobs.celery_app import run_with_celery  # torch: only for this command

        run_id = run_with_celery(settings, sessions, name, path, checkpoints)
    else:
        run_id = run_local(settings, sessions, name, path, checkpoints)
    click.echo(f"run {run_id} is live")


main.add_command(compute, name="run")  # `geoflora run`: the same, by the name the pipeline docs use


# `make run` trains the small Pl@ntBERT (2 layers) on lists cut to 50 species, on half the plots for
# half the classification epochs of the `geoflora train plantbert` defaults: about 11 CPU-minutes, and
# a meta-tile's habitats in about 35 s on 2 cores (the 4-layer, 100-species model: 129 s) with the
# same accuracy on deep-SDM lists (52.5 % at level 3 against 52.3 %; see the README).
DEMO_PLANTBERT = {"size": "small", "top_n": 50, "n_plots": 15_000, "epochs": 2}


@main.command()
@click.pass_context
def demo(ctx) -> None:
    """Migrate; generate the demo region, train its models and compute it, each only if missing; serve."""
    from backend.jobs.runs import run_local  # torch: only for this command
    from inference.data.region import load_region  # torch: only for this command
    from inference.sdm.dataset import region_samples  # torch: only for this command
    from inference.sdm.train import TrainConfig, train_sdm  # torch: only for this command

    settings = get_settings()
    sessions = sessions_for(settings)
    name = settings.demo_region
    path = settings.layout.region_dir(name)
    if not (path / "region.json").is_file():
        generate_region_folder(settings, name)
    sdm_path = settings.layout.checkpoint(name, "sdm")
    if not sdm_path.is_file():
        click.echo("training the demo deep-SDM (a few minutes on 2 cores)...")
        config = TrainConfig(alpha=settings.alpha, device=settings.device)
        data = region_samples(load_region(path), s2_size=config.model_config(1).patch_size)
        report = train_sdm(data, sdm_path, config, resume=True, log=click.echo)
        click.echo(f"deep-SDM held-out macro AUC {report['test']['macro_auc']:.3f}")
        del data
    # The rest of the cascade: Pl@ntBERT (habitat layers) and BotaCLIP (embedding layer).
    if not settings.layout.checkpoint(name, "plantbert").is_file():
        click.echo("training the demo Pl@ntBERT (a lighter schedule than `geoflora train plantbert`'s)...")
        ctx.invoke(train_plantbert_cmd, region_name=name, **DEMO_PLANTBERT)
    if not settings.layout.checkpoint(name, "botaclip").is_file():
        click.echo("training the demo BotaCLIP...")
        ctx.invoke(train_botaclip_cmd, region_name=name)
    run_id = live_run_for(sessions, name)
    if run_id is None:
        run_id = run_local(settings, sessions, name, path, default_checkpoints(settings.layout, name))
        click.echo(f"run {run_id} is live")
    else:
        click.echo(f"reusing live run {run_id}")
    serve_forever(settings)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def worker(ctx) -> None:
    """Start a Celery worker (extra arguments go to `celery worker`)."""
    from backend.jobs.celery_app import make_celery  # torch: only for this command

    make_celery(get_settings()).worker_main(["worker", *ctx.args])
