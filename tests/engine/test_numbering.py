"""engine.numbering.allocate: gapless yearly sequences, idempotent per key."""
from __future__ import annotations

from sqlalchemy import select

from engine import numbering
from engine.models import NumberAllocation, NumberSequence


def allocate(db, name: str, year: int, key: str) -> int:
    with db.transaction() as s:
        return numbering.allocate(s, name, year, key)


def test_numbers_count_up_from_one(db):
    assert [allocate(db, "桂应急发", 2026, f"job-{i}") for i in range(5)] == [1, 2, 3, 4, 5]


def test_each_name_has_its_own_sequence(db):
    assert allocate(db, "桂应急发", 2026, "a") == 1
    assert allocate(db, "桂应急函", 2026, "b") == 1
    assert allocate(db, "桂应急发", 2026, "c") == 2
    assert allocate(db, "桂应急函", 2026, "d") == 2


def test_each_year_has_its_own_sequence(db):
    assert allocate(db, "桂应急发", 2026, "a") == 1
    assert allocate(db, "桂应急发", 2027, "b") == 1
    assert allocate(db, "桂应急发", 2026, "c") == 2


def test_the_same_key_gets_the_same_number(db):
    first = allocate(db, "桂应急发", 2026, "job-1")
    allocate(db, "桂应急发", 2026, "job-2")

    assert allocate(db, "桂应急发", 2026, "job-1") == first == 1
    assert allocate(db, "桂应急发", 2026, "job-3") == 3


def test_a_rolled_back_allocation_leaves_no_gap(db):
    try:
        with db.transaction() as s:
            assert numbering.allocate(s, "桂应急发", 2026, "lost") == 1
            raise RuntimeError("the caller failed after allocating")
    except RuntimeError:
        pass

    assert allocate(db, "桂应急发", 2026, "kept") == 1


def test_allocations_are_recorded(db):
    allocate(db, "桂应急发", 2026, "job-1")
    allocate(db, "桂应急发", 2026, "job-2")

    with db.session() as s:
        rows = s.execute(select(NumberAllocation.value, NumberAllocation.key).order_by(NumberAllocation.value)).all()
        last = s.scalar(select(NumberSequence.last_value).where(NumberSequence.name == "桂应急发",
                                                                 NumberSequence.year == 2026))
    assert [tuple(r) for r in rows] == [(1, "job-1"), (2, "job-2")]
    assert last == 2


def test_several_allocations_in_one_transaction(db):
    with db.transaction() as s:
        values = [numbering.allocate(s, "桂应急发", 2026, f"k{i}") for i in range(3)]
    assert values == [1, 2, 3]
