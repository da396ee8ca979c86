"""The Alembic migrations build exactly the schema the models describe (tables, columns, indexes, keys)."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from engine.models import Base, ProcessInstance


def test_migrations_match_the_models(db):
    with db.read_engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diffs == [], "a model changed without a migration (or the reverse):\n" + "\n".join(map(str, diffs))


def test_instance_rows_leave_room_on_their_page_for_hot_updates(db):
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no fillfactor")
    with db.read_engine.connect() as connection:
        options = connection.scalar(text("SELECT reloptions FROM pg_class WHERE relname = 'process_instance'"))
    fillfactor = ProcessInstance.__table__.dialect_options["postgresql"]["with"]["fillfactor"]
    assert options == [f"fillfactor={fillfactor}"]
