"""Catalog tables: runs, meta-tiles, layers, species and habitats."""

from __future__ import annotations

from datetime import UTC, datetime

from geoalchemy2 import Geometry
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

GRID_SRID = 3035


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Run(Base):
    """One execution of the pipeline over a region; its outputs never overwrite another run's."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    region: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|running|complete|failed
    is_live: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    config: Mapped[dict] = mapped_column(JSON, default=dict)

    metatiles: Mapped[list[MetaTileRecord]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="MetaTileRecord.tile_id"
    )
    layers: Mapped[list[Layer]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="Layer.id"
    )


class MetaTileRecord(Base):
    """A 25 x 25 km meta-tile of a run, with its footprint in EPSG:3035 and its processing state."""

    __tablename__ = "metatiles"
    __table_args__ = (UniqueConstraint("run_id", "tile_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    tile_id: Mapped[str] = mapped_column(String(16))
    footprint = mapped_column(Geometry("POLYGON", srid=GRID_SRID, spatial_index=True), nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|running|done|failed
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # processing starts
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)  # host:pid of the last attempt

    run: Mapped[Run] = relationship(back_populates="metatiles")


class Layer(Base):
    """A servable map layer of a run. ``id`` is stable across runs (e.g. ``indicator.richness``)."""

    __tablename__ = "layers"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    title: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    units: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Path of the file or mosaic (VRT) relative to the data dir: never a client-given value.
    path: Mapped[str] = mapped_column(String(512))
    band: Mapped[int] = mapped_column(Integer, default=1)
    colormap: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rescale_min: Mapped[float | None] = mapped_column(Float, nullable=True)
    rescale_max: Mapped[float | None] = mapped_column(Float, nullable=True)
    legend: Mapped[dict] = mapped_column(JSON, default=dict)
    species_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)

    run: Mapped[Run] = relationship(back_populates="layers")


class Species(Base):
    """A species of the flora a run maps."""

    __tablename__ = "species"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256), index=True)
    family: Mapped[str | None] = mapped_column(String(128), nullable=True)
    genus: Mapped[str | None] = mapped_column(String(128), nullable=True)
    iucn: Mapped[str | None] = mapped_column(String(4), nullable=True)  # LC NT VU EN CR DD or None
    eu_directive: Mapped[bool] = mapped_column(Boolean, default=False)
    invasive: Mapped[bool] = mapped_column(Boolean, default=False)
    woody: Mapped[bool] = mapped_column(Boolean, default=False)
    tree: Mapped[bool] = mapped_column(Boolean, default=False)
    endemic: Mapped[bool] = mapped_column(Boolean, default=False)
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)


class Habitat(Base):
    """A EUNIS 2021 habitat type; ``parent`` gives the hierarchy (R22 -> R2 -> R)."""

    __tablename__ = "habitats"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    level: Mapped[int] = mapped_column(Integer)
    parent: Mapped[str | None] = mapped_column(ForeignKey("habitats.code"), nullable=True)


class Report(Base):
    """An area report: id = hash of the normalised WGS84 geometry and the run; the result is stored."""

    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|running|done|failed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    area_km2: Mapped[float] = mapped_column(Float)
    geometry: Mapped[dict] = mapped_column(JSON)  # the normalised GeoJSON (WGS84) the report was made for
    footprint = mapped_column(Geometry("MULTIPOLYGON", srid=4326, spatial_index=True), nullable=False)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # computation time


__all__ = ["Base", "Run", "MetaTileRecord", "Layer", "Species", "Habitat", "Report", "GRID_SRID"]
