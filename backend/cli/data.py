"""``geoflora migrate``, ``generate`` and ``habitat classify``: the catalog, regions and species lists."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from backend.cli.base import main, region_option
from backend.core.errors import DataFormatError
from backend.core.settings import Settings, get_settings
from backend.db.engine import migrate as do_migrate


@main.command()
def migrate() -> None:
    """Create or upgrade the catalog database (SpatiaLite or PostGIS) with Alembic."""
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
@click.option("--export-rasters", "export_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the region's inputs in the real layouts (UTM Sentinel-2 tiles, CHELSA monthly "
                   "files, Landsat composites, a land/water raster, species lists) and a sources.yaml there.")
def generate(name, seed, size, n_species, x0, y0, force, export_dir) -> None:
    """Generate a virtual region whose true species distributions, habitats and traits are known."""
    settings = get_settings()
    name = name or settings.demo_region
    path = settings.layout.region_dir(name)
    if (path / "region.json").is_file() and not force:
        click.echo(f"region {name!r} exists at {path} (use --force to regenerate)")
    else:
        if force and path.exists():
            shutil.rmtree(path)
        generate_region_folder(settings, name, seed, size, n_species, x0, y0)
    if export_dir is not None:
        from inference.data.export import export_rasters  # torch: only for this command
        from inference.data.region import load_region  # torch: only for this command

        export_rasters(load_region(path), export_dir, log=click.echo)


def generate_region_folder(settings: Settings, name: str, seed=None, size=None, n_species=None, x0=None, y0=None) -> Path:
    """Generate the region ``name`` in its folder (settings ``demo_*`` for what is not given)."""
    from inference.data.region import generate_region  # torch: only for the commands that generate a region

    kwargs = {}
    if x0 is not None:
        kwargs["x0"] = x0
    if y0 is not None:
        kwargs["y0"] = y0
    size = size or settings.demo_size
    path = settings.layout.region_dir(name)
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



@main.group()
def habitat() -> None:
    """EUNIS habitats from species lists (Pl@ntBERT)."""


@habitat.command("classify")
@click.option("--tsv", "tsv_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="Pl@ntBERT input TSV: an `Observations` column of comma-separated species names.")
@region_option("Region whose Pl@ntBERT to use (default: demo).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Pl@ntBERT checkpoint (default: data/models/<region>/plantbert.pt).")
@click.option("--top-n", type=click.IntRange(1, 510), default=None, help="Species used per list (default: the model's).")
def habitat_classify_cmd(tsv_path, region, model_path, top_n) -> None:
    """Print the EUNIS level-3, level-2 and level-1 habitat of every species list of a TSV."""
    from inference.habitat.infer import classify_tsv  # torch: only for this command
    from inference.habitat.plantbert import load_plantbert  # torch: only for this command

    settings = get_settings()
    name = region.name
    model_path = model_path or settings.layout.checkpoint(name, "plantbert")
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
