"""Catalog database: engine factory (SpatiaLite or PostGIS), tables, migrations."""

from backend.db.engine import make_engine, make_sessionmaker, migrate  # noqa: F401
