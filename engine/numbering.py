"""Gapless yearly number sequences; an allocation is keyed so that a retry gets the same number."""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import NumberAllocation, NumberSequence


def allocate(session: Session, name: str, year: int, key: str) -> int:
    """The next value of (name, year) for this idempotency key. The sequence row is updated in place,
    so concurrent callers queue on its row lock and get consecutive values."""
    existing = session.scalar(select(NumberAllocation.value).where(NumberAllocation.key == key))
    if existing is not None:
        return existing
    insert = (postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert)(NumberSequence)
    session.execute(insert.values(name=name, year=year, last_value=0).on_conflict_do_nothing())
    value = session.scalar(update(NumberSequence).where(NumberSequence.name == name, NumberSequence.year == year)
                           .values(last_value=NumberSequence.last_value + 1).returning(NumberSequence.last_value))
    session.add(NumberAllocation(name=name, year=year, value=value, key=key))
    session.flush()
    return value
