"""Where a run's files live under the data dir. Paths stored in the catalog are relative to it."""

from __future__ import annotations

from pathlib import Path


def run_dir(data_dir: Path, run_id: str) -> Path:
    return data_dir / "runs" / run_id


def metatile_dir(data_dir: Path, run_id: str, tile_id: str) -> Path:
    return run_dir(data_dir, run_id) / "metatiles" / tile_id


def metatile_cog(data_dir: Path, run_id: str, tile_id: str, name: str) -> Path:
    return metatile_dir(data_dir, run_id, tile_id) / f"{name}.tif"


def mosaic_path(data_dir: Path, run_id: str, name: str) -> Path:
    return run_dir(data_dir, run_id) / "mosaics" / f"{name}.vrt"


def relative(data_dir: Path, path: Path) -> str:
    return str(path.resolve().relative_to(data_dir.resolve()))
