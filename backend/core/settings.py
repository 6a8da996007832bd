"""All of GeoFlora's configuration: one pydantic-settings class, environment prefix ``GEOFLORA_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.core.paths import DataLayout

REPO_ROOT = Path(__file__).resolve().parents[2]
#: the settings naming pretrained weights; relative values resolve against ``pretrained_dir``
PRETRAINED_PATH_FIELDS = ("dinov2_path", "depth_anything_path", "climplicit_path", "eo_encoder_path")


class Settings(BaseSettings):
    """GeoFlora settings. Every field can be set as ``GEOFLORA_<FIELD>`` (or in a ``.env`` file)."""

    model_config = SettingsConfigDict(env_prefix="GEOFLORA_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development", description="'production' refuses to start without an admin token."
    )
    data_dir: Path = Field(REPO_ROOT / "data", description="Regions, runs, COGs and caches live here.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL. Default: SQLite + SpatiaLite file in the data dir. "
        "Production: postgresql+psycopg://user:pass@host/db (PostGIS).",
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker. Default: an embedded SQLite broker in the data dir. "
        "Production: redis://host:6379/0.",
    )
    result_backend: str | None = Field(None, description="Celery result backend (default: beside the broker).")
    task_visibility_timeout: int = Field(
        3600, ge=1,
        description="Redis broker: seconds after which a task taken by a worker that died is given to another "
        "worker. Must exceed the longest meta-tile.",
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token for admin actions; admin endpoints are disabled when unset."
    )
    host: str = Field("127.0.0.1", description="Address `geoflora serve` and `make run` bind to.")
    port: int = Field(8000, description="Port `geoflora serve` and `make run` listen on.")
    frontend_dist: Path = Field(REPO_ROOT / "frontend" / "dist", description="Built single-page app.")
    tile_cache_dir: Path | None = Field(
        None, description="MapProxy's WMTS file cache and its lock files. Default: <data_dir>/cache/mapproxy. "
        "Production: a volume local to the API host (each host keeps its own cache and drops stale runs' tiles).",
    )

    # Demo region (``make run``)
    demo_region: str = Field("demo", description="Name of the demo region (`make run`), the default region of "
                             "the commands that take one.")
    demo_seed: int = Field(0, description="Random seed of the generated demo region (same seed, same region).")
    demo_size: int = Field(2, ge=1, le=8, description="Demo region edge in meta-tiles (25 km each).")
    demo_species: int = Field(300, ge=10, le=20_000, description="Number of species in the generated demo region.")

    # Models
    alpha: float = Field(
        0.1, gt=0, lt=1,
        description="Conformal level: the chance of omitting a truly present species is at most alpha.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where models run (auto: CUDA if present).")
    batch_s2_rows: int = Field(100, ge=1, le=500, description="Cascade: meta-tile cell rows per Sentinel-2 strip "
                               "(GPU memory grows with it).")
    batch_cubes: int = Field(4096, ge=1, description="Cascade: climate / Landsat cubes per encoder batch.")
    batch_lists: int = Field(512, ge=1, description="Cascade: Pl@ntBERT species lists per batch.")
    habitat_step: int = Field(
        8, ge=1, le=64, description="Cascade: Pl@ntBERT runs on a lattice every this many cells and refines "
        "wherever neighbouring classes differ, down to single cells (1: every cell; see docs/models/plantbert.md).")
    s2_scale: float = Field(
        1e-4, description="Sentinel-2 of a raster region: reflectance = DN x scale + offset, unless its sources "
                          "file says otherwise (L2A: 1/10,000).")
    s2_offset: float = Field(
        -0.1, description="Sentinel-2 of a raster region: the offset of that rule (L2A processing baseline "
                          "04.00 and later: -0.1, i.e. -1,000 DN; earlier products: 0).")
    pretrained_dir: Path | None = Field(
        None, description="Local folder of pretrained weights (DINOv2, Depth-Anything...), never a hub download: "
        "the base of every pretrained path setting (GEOFLORA_DINOV2_PATH, GEOFLORA_DEPTH_ANYTHING_PATH, "
        "GEOFLORA_CLIMPLICIT_PATH, GEOFLORA_EO_ENCODER_PATH), whose relative paths resolve against it (absolute "
        "ones stay as given). Itself relative: to the working directory.",
    )
    # PlantTraitNet (inference/traits)
    dinov2_path: Path | None = Field(
        None, description="Local DINOv2 ViT-B/14 folder (transformers save_pretrained) for PlantTraitNet's image "
        "encoder; unset: a small randomly initialised ViT. Relative: under GEOFLORA_PRETRAINED_DIR.",
    )
    depth_anything_path: Path | None = Field(
        None, description="Local Depth-Anything-V2 folder (DepthAnythingForDepthEstimation) for the depth encoder. "
        "Relative: under GEOFLORA_PRETRAINED_DIR.",
    )
    climplicit_path: Path | None = Field(
        None, description="Local state dict of the geo encoder's SIREN (Climplicit-style); unset: trained from scratch. "
        "Relative: under GEOFLORA_PRETRAINED_DIR.",
    )
    trait_grid_m: float = Field(5000.0, gt=0, description="Cell size of the photo-based trait maps, metres.")
    trait_min_photos: int = Field(20, ge=1, description="Fewest photo predictions for a trait-map grid cell.")
    eo_encoder_path: Path | None = Field(
        None,
        description="BotaCLIP's frozen Earth-observation encoder: a local transformers folder (DINOv2 / ViT), "
        "a GeoFlora eo-encoder .pt or a TorchScript file. Unset: the small demo CNN (self-supervised here). "
        "Relative: under GEOFLORA_PRETRAINED_DIR.",
    )
    botaclip_reg_weight: float = Field(
        1.0, ge=0, description="BotaCLIP: weight of the regulariser keeping adapted embeddings near the frozen ones."
    )

    # Limits
    max_image_px: int = Field(4096, ge=256, description="Largest WMS GetMap / GetFeatureInfo width or height.")
    max_tiles_per_request: int = Field(
        500, ge=1, description="Most cached tiles MapProxy may merge for one request (MapProxy max_tile_limit)."
    )
    tile_cache_mb: int = Field(
        64, ge=0, description="In-memory cache of rendered XYZ tiles per server process, MiB (0: off)."
    )
    max_body_bytes: int = Field(2_000_000, ge=1024, description="Largest request body accepted.")
    max_area_km2: float = Field(20_000.0, gt=0, description="Largest area a report may cover.")
    max_vertices: int = Field(10_000, ge=4, description="Most vertices in a report geometry.")
    report_async_km2: float = Field(
        2_500.0, ge=0, description="Reports of larger areas are computed in the background (202 + Location); "
        "smaller ones are answered at once.")
    report_executor: Literal["thread", "celery"] = Field(
        "thread", description="Where background reports run: 'thread' (inside the server, the embedded default) "
        "or 'celery' (a task on the Celery workers, production).")
    report_exact_cells: int = Field(
        40_000, ge=0, description="Areas with at most this many cells get exact quantiles; larger ones get "
        "quantiles from per-block histograms (error reported with each value).")
    report_retry_after_s: int = Field(2, ge=1, description="Retry-After of a report still being computed.")
    render_timeout_s: float = Field(
        10.0, gt=0, description="Time limit of one tile, WMS / WMTS image, point value or statistics request: past "
        "it the client gets 503 with Retry-After and the render stops at its next step.")
    report_timeout_s: float = Field(
        30.0, gt=0, description="Time limit of one report request: past it the client gets 503 with Retry-After; "
        "the report is still computed and stored, so the retry is answered from the store.")
    render_slots: int = Field(
        8, ge=1, description="Renders (tiles, WMS, TiTiler routes) running at once per server process; a render "
        "that finds no free slot before its time limit gets 503.")
    busy_retry_after_s: int = Field(5, ge=1, description="Retry-After of a 503 for a request past its time limit.")
    web_workers: int = Field(
        2, ge=1, le=64, description="Server processes of `geoflora serve` (and `make run`), supervised by gunicorn.")
    worker_timeout_s: int = Field(
        60, ge=2, description="Seconds without a heartbeat from a server process's event loop before gunicorn "
        "kills and replaces it (a hung worker never takes the service with it).")

    @model_validator(mode="after")
    def _production_needs_token(self) -> Settings:
        if self.environment == "production" and self.admin_token is None:
            raise ValueError("GEOFLORA_ADMIN_TOKEN must be set when GEOFLORA_ENVIRONMENT=production")
        return self

    @model_validator(mode="after")
    def _pretrained_paths_under_pretrained_dir(self) -> Settings:
        """Relative pretrained paths resolve against ``pretrained_dir`` (made absolute once, so that
        settings built again from these values resolve to the same files)."""
        if self.pretrained_dir is None:
            return self
        base = self.pretrained_dir.expanduser().absolute()
        self.pretrained_dir = base
        for name in PRETRAINED_PATH_FIELDS:
            p = getattr(self, name)
            if p is not None:
                p = p.expanduser()
                setattr(self, name, p if p.is_absolute() else base / p)
        return self

    # Derived values: computed, never stored twice.
    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'geoflora.sqlite'}"

    @property
    def celery_broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'celery-broker.sqlite'}"

    @property
    def celery_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        if self.broker_url and self.broker_url.startswith("redis"):
            return self.broker_url
        return f"db+sqlite:///{self.data_dir / 'celery-results.sqlite'}"

    @property
    def layout(self) -> DataLayout:
        """Where every file lives under the data dir (backend/core/paths.py, the one home of paths)."""
        return DataLayout(self.data_dir, self.tile_cache_dir)

@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
