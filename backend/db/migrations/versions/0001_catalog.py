"""Catalog: runs, meta-tiles, layers, species, habitats.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from geoalchemy2 import alembic_helpers  # noqa: F401  (registers the geospatial operations)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("region", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("is_live", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
    )
    op.create_geospatial_table(
        "metatiles",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tile_id", sa.String(16), nullable=False),
        sa.Column(
            "footprint",
            geoalchemy2.Geometry("POLYGON", srid=3035, spatial_index=False),
            nullable=False,
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.UniqueConstraint("run_id", "tile_id"),
    )
    op.create_index("ix_metatiles_run_id", "metatiles", ["run_id"])
    op.create_geospatial_index(
        "idx_metatiles_footprint", "metatiles", ["footprint"],
        unique=False, postgresql_using="gist", postgresql_ops={},
    )
    op.create_table(
        "layers",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("title", sa.String(256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("units", sa.String(64), nullable=True),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("band", sa.Integer(), nullable=False),
        sa.Column("colormap", sa.String(64), nullable=True),
        sa.Column("rescale_min", sa.Float(), nullable=True),
        sa.Column("rescale_max", sa.Float(), nullable=True),
        sa.Column("legend", sa.JSON(), nullable=False),
        sa.Column("species_id", sa.Integer(), nullable=True),
    )
    op.create_index("ix_layers_kind", "layers", ["kind"])
    op.create_index("ix_layers_species_id", "layers", ["species_id"])
    op.create_table(
        "species",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("family", sa.String(128), nullable=True),
        sa.Column("genus", sa.String(128), nullable=True),
        sa.Column("iucn", sa.String(4), nullable=True),
        sa.Column("eu_directive", sa.Boolean(), nullable=False),
        sa.Column("invasive", sa.Boolean(), nullable=False),
        sa.Column("woody", sa.Boolean(), nullable=False),
        sa.Column("tree", sa.Boolean(), nullable=False),
        sa.Column("endemic", sa.Boolean(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
    )
    op.create_index("ix_species_name", "species", ["name"])
    op.create_table(
        "habitats",
        sa.Column("code", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("parent", sa.String(16), sa.ForeignKey("habitats.code"), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("habitats")
    op.drop_index("ix_species_name", table_name="species")
    op.drop_table("species")
    op.drop_index("ix_layers_species_id", table_name="layers")
    op.drop_index("ix_layers_kind", table_name="layers")
    op.drop_table("layers")
    op.drop_geospatial_index("idx_metatiles_footprint", table_name="metatiles", column_name="footprint")
    op.drop_index("ix_metatiles_run_id", table_name="metatiles")
    op.drop_geospatial_table("metatiles")
    op.drop_table("runs")
