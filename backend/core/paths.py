"""The data layout: where every file GeoFlora reads or writes lives under the data dir.

The one home of these paths. Paths stored in the catalog are relative to the data dir, so a data
dir can be mounted elsewhere (a worker, an API host) and still resolve::

    <data_dir>/
      regions/<region>/                    a region (generated or real): region.json, rasters, tables
      models/<region>/<kind>.pt            trained checkpoints (sdm, plantbert, botaclip, traits)
      runs/<run>/metatiles/<tile>/         one meta-tile's COGs, species/, assemblages, manifest.json
      runs/<run>/mosaics/<name>.vrt        region mosaics (+ .vrt.ovr overviews)
      runs/<run>/report-index/             per-block aggregates of area reports
      mapproxy/<run>.yaml                  MapProxy configuration of a run
      cache/mapproxy/                      MapProxy's WMTS tile cache (or settings.tile_cache_dir)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.core.errors import NotFound

REPORT_INDEX_DIR = "report-index"
MANIFEST = "manifest.json"  # written last: a meta-tile is finished exactly when its manifest exists


@dataclass(frozen=True)
class DataLayout:
    data_dir: Path
    tile_cache_dir: Path | None = None  # MapProxy's cache when not under the data dir

    # regions and models
    @property
    def regions_dir(self) -> Path:
        return self.data_dir / "regions"

    def region_dir(self, region: str) -> Path:
        return self.regions_dir / region

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def checkpoint(self, region: str, kind: str) -> Path:
        """Where ``geoflora train <kind>`` writes the model of ``region`` by default (the kinds:
        ``inference.models.KINDS``)."""
        return self.models_dir / region / f"{kind}.pt"

    # runs
    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def metatile_dir(self, run_id: str, tile_id: str) -> Path:
        return self.run_dir(run_id) / "metatiles" / tile_id

    def metatile_cog(self, run_id: str, tile_id: str, name: str) -> Path:
        return self.metatile_dir(run_id, tile_id) / f"{name}.tif"

    def manifest(self, run_id: str, tile_id: str) -> Path:
        return self.metatile_dir(run_id, tile_id) / MANIFEST

    def mosaic_path(self, run_id: str, name: str) -> Path:
        return self.run_dir(run_id) / "mosaics" / f"{name}.vrt"

    def report_index_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / REPORT_INDEX_DIR

    # map services
    def mapproxy_config(self, run_id: str) -> Path:
        return self.data_dir / "mapproxy" / f"{run_id}.yaml"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def mapproxy_cache_dir(self) -> Path:
        return self.tile_cache_dir or self.cache_dir / "mapproxy"

    # catalog paths
    def relative(self, path: Path) -> str:
        """``path`` as the catalog stores it: relative to the data dir."""
        return str(path.resolve().relative_to(self.data_dir.resolve()))

    def resolve(self, relative: str) -> Path:
        """A catalog path made absolute; refused (NotFound) when it points outside the data dir."""
        root = self.data_dir.resolve()
        path = (root / relative).resolve()
        if root not in path.parents:
            raise NotFound(f"layer file {relative!r} lies outside the data directory")
        return path
