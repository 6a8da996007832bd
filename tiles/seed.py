"""Seed the MapProxy file caches of the live run at low zooms (``geoflora seed``)."""

from __future__ import annotations

import math

from mapproxy.seed.config import SeedingConfiguration
from mapproxy.seed.seeder import seed
from mapproxy.seed.util import ProgressLog

from backend.core.errors import InvalidInput
from backend.core.layers import LiveSnapshot
from backend.core.settings import Settings
from tiles.mapproxy_app import CACHE_GRIDS, layer_bounds_wgs84, load_mapproxy, mapproxy_config, write_config

# Ground metres per map unit at 50 degrees N (the middle of Europe), to compare grid resolutions.
_METRES_PER_UNIT = {"EPSG:3857": math.cos(math.radians(50.0)), "EPSG:4326": 111_320.0, "EPSG:3035": 1.0}
WEB_MERCATOR_Z0 = 2 * math.pi * 6378137.0 / 256


def seed_levels(grid, max_zoom: int) -> int:
    """The last level of ``grid`` (a MapProxy TileGrid) not finer than Web Mercator zoom ``max_zoom``."""
    target = WEB_MERCATOR_Z0 / 2**max_zoom * _METRES_PER_UNIT["EPSG:3857"]
    per_unit = _METRES_PER_UNIT[grid.srs.srs_code]
    last = 0
    for level in range(grid.levels):
        if grid.resolution(level) * per_unit >= target * 0.999:
            last = level
    return last


def seed_low_zooms(settings: Settings, snapshot: LiveSnapshot, layer_ids: list[str] | None = None,
                   max_zoom: int = 10, concurrency: int = 2, grids: list[str] | None = None) -> dict:
    """Render and store every cache tile of ``layer_ids`` (default: all layers) over each layer's
    extent, in ``grids`` (default: all three), down to the level matching Web Mercator
    ``max_zoom``. Returns the levels seeded per grid."""

    layer_ids = layer_ids or sorted(snapshot.layers)
    unknown = [i for i in layer_ids if i not in snapshot.layers]
    if unknown:
        raise InvalidInput(f"unknown layers {', '.join(unknown)}; see GET /api/layers")
    grids = grids or CACHE_GRIDS
    path = write_config(settings.data_dir / "mapproxy" / f"{snapshot.run_id}.yaml", mapproxy_config(snapshot, settings))
    conf = load_mapproxy(path, snapshot)
    tile_grids = {name: grid_conf.tile_grid() for name, grid_conf in conf.grids.items()}
    levels = {name: seed_levels(tile_grids[name], max_zoom) for name in grids}
    seeds, coverages = {}, {}
    for layer_id in layer_ids:
        coverages[layer_id] = {"bbox": layer_bounds_wgs84(snapshot.layers[layer_id].path), "srs": "EPSG:4326"}
        for grid in grids:
            seeds[f"{layer_id}@{grid}"] = {"caches": [f"{layer_id}_cache"], "grids": [grid],
                                           "coverages": [layer_id], "levels": {"to": levels[grid]}}
    seeding = SeedingConfiguration({"seeds": seeds, "coverages": coverages}, mapproxy_conf=conf)
    seed(seeding.seeds(), concurrency=concurrency, progress_logger=ProgressLog(silent=True, verbose=False))
    return levels
