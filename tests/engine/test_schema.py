"""The Alembic migrations build exactly the schema the models describe (tables, columns, indexes, keys)."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from engine.models import Base


def test_migrations_match_the_models(db):
    with db.read_engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diffs == [], "a model changed without a migration (or the reverse):\n" + "\n".join(map(str, diffs))
