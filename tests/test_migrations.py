"""Alembic migrations match the models and run both ways on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from catwalk.db.models import Base
from catwalk.db.session import alembic_config, dispose_engines, get_engine, script_heads
from sqlalchemy import create_engine, inspect

pytestmark = pytest.mark.both_dbs


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


def test_script_heads_read_from_the_files_are_alembics_heads() -> None:
    # get_engine skips Alembic when the database is stamped with these: they must be right.
    alembic_heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert script_heads() == frozenset(alembic_heads)


def test_get_engine_migrates_a_database_behind_head(settings) -> None:
    url = settings.effective_database_url
    dispose_engines()
    command.downgrade(alembic_config(url), "0002")
    engine = create_engine(url)
    try:
        assert "signin_throttle" not in inspect(engine).get_table_names()
        get_engine(settings)  # a stamp that is not the head: Alembic runs
        assert "signin_throttle" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
