"""``geoflora region create``: a region from real rasters and tables."""

from __future__ import annotations

from pathlib import Path

import click
from pyproj import Transformer

from backend.cli.base import main
from backend.core.settings import get_settings


@main.group()
def region() -> None:
    """Regions built from real rasters, species tables and lists."""


def _bbox(value: str) -> tuple[float, float, float, float]:
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4:
        raise click.BadParameter(f"expected xmin,ymin,xmax,ymax (four numbers), got {value!r}")
    return parts


@region.command("create")
@click.argument("name")
@click.option("--bbox", required=True, help="xmin,ymin,xmax,ymax: EPSG:3035 metres (or --bbox-crs), snapped "
                                            "outwards to whole 25 km meta-tiles.")
@click.option("--bbox-crs", default="EPSG:3035", show_default=True,
              help="CRS of --bbox, e.g. EPSG:4326 for lon/lat degrees.")
@click.option("--sources", "sources_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The sources file (YAML): Sentinel-2, CHELSA, Landsat, land mask, species table.")
@click.option("--force", is_flag=True, help="Replace the region if it exists.")
def create(name, bbox, bbox_crs, sources_file, force) -> None:
    """Check every source against the bounding box, report each input's coverage per meta-tile and
    write the region (the rasters stay where they are)."""
    from inference.data.raster_region import create_raster_region  # torch: only for this command

    settings = get_settings()
    box = _bbox(bbox)
    if bbox_crs.upper() != "EPSG:3035":
        t = Transformer.from_crs(bbox_crs, "EPSG:3035", always_xy=True)
        xs, ys = t.transform([box[0], box[0], box[2], box[2]], [box[1], box[3], box[1], box[3]])
        box = (min(xs), min(ys), max(xs), max(ys))
    path = settings.layout.region_dir(name)
    if (path / "region.json").is_file() and not force:
        raise click.ClickException(f"region {name!r} exists at {path} (use --force to replace it)")
    region = create_raster_region(path, name, box, sources_file, settings.s2_scale, settings.s2_offset,
                                  log=click.echo)
    click.echo(f"region {name!r}: {len(region.meta['metatiles'])} meta-tile(s), {len(region.species)} species, "
               f"at {path}")
