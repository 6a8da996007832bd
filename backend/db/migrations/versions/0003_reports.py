"""Area reports: geometry, run, state and stored result.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from geoalchemy2 import alembic_helpers  # noqa: F401  (registers the geospatial operations)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_geospatial_table(
        "reports",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("area_km2", sa.Float(), nullable=False),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("footprint", geoalchemy2.Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
    )
    op.create_index("ix_reports_run_id", "reports", ["run_id"])
    op.create_geospatial_index(
        "idx_reports_footprint", "reports", ["footprint"],
        unique=False, postgresql_using="gist", postgresql_ops={},
    )


def downgrade() -> None:
    op.drop_geospatial_index("idx_reports_footprint", table_name="reports", column_name="footprint")
    op.drop_index("ix_reports_run_id", table_name="reports")
    op.drop_geospatial_table("reports")
