"""Alembic migrations match the models and run both ways on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from catwalk.db.models import Base
from catwalk.db.session import alembic_config, dispose_engines, get_engine
from sqlalchemy import create_engine, inspect


def test_migrations_match_the_models_and_downgrade_cleanly(settings) -> None:
    url = settings.effective_database_url
    get_engine(settings)  # migrates to head
    dispose_engines()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"

        command.downgrade(alembic_config(url), "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(alembic_config(url), "head")
        assert {t.name for t in Base.metadata.sorted_tables} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()
