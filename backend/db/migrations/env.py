"""Alembic environment: the same migrations for SQLite + SpatiaLite and PostgreSQL + PostGIS."""

from alembic import context
from geoalchemy2 import alembic_helpers

from backend.db.engine import is_sqlite, make_engine
from backend.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    with engine.connect() as connection:
        if not is_sqlite(url):
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS postgis")
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=is_sqlite(url),
            include_object=alembic_helpers.include_object,
            process_revision_directives=alembic_helpers.writer,
            render_item=alembic_helpers.render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
