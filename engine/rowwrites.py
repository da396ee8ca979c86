"""Core writes of the rows every step changes (the instance, the task acted on, new human tasks, their
candidates, the audit events).

The ORM unit of work costs more per completion than the statements it sends (history, dependency sort,
post-fetch, bookkeeping for three objects); these functions send the same INSERT/UPDATE with SQLAlchemy
Core and then leave the objects in the session exactly as a flush would: persistent and clean, so later
changes to them are flushed as usual. Everything else a step touches still goes through the ORM.

Inside ``batch(session)`` the writes wait for the end of the block. On PostgreSQL they then go as one
statement, each write a data-modifying WITH query; one round trip instead of four or five takes about a fifth
off a completion's CPU, in the app and in PostgreSQL alike (tests/bench/README.md §3). On SQLite, which has no
round trips to save, each write goes at once.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, lru_cache
from typing import NamedTuple

from sqlalchemy import bindparam, insert, inspect, update
from sqlalchemy.orm import Session, make_transient_to_detached

from . import rawsql
from .errors import Conflict

_BATCH = "rowwrites_batch"
# In a batch, an INSERT of up to this many rows is a VALUES list; a longer one takes one array per column (its text
# does not depend on the number of rows, and it never reaches the protocol's 65,535 parameters). Arrays cost
# psycopg more per value, so the usual one to three rows go as VALUES.
VALUES_ROWS = 10


@cache
def _keys(mapper) -> frozenset[str]:
    return frozenset(key for key, _ in rawsql.columns(mapper))


@cache
def _update_statement(mapper):
    """UPDATE by primary key (and version, when the mapper has one); the SET clause is whatever columns the
    parameters name, so one statement serves every set of changes."""
    table = mapper.local_table
    (pk,) = mapper.primary_key
    stmt = update(table).where(pk == bindparam("w_pk"))
    if mapper.version_id_col is not None:
        stmt = stmt.where(mapper.version_id_col == bindparam("w_version"))
    return stmt


def _default(column):
    default = column.default
    if default is None:
        return None
    return default.arg({}) if default.is_callable else default.arg


def _full_row(row, columns) -> dict:
    values = row.__dict__
    for key, column in columns:  # what a flush would fill in: column defaults for what was never set
        if key not in values:
            # Straight into the object's dict: the row is transient, and write_rows resets its history anyway.
            values[key] = _default(column)
    return {key: values[key] for key, _ in columns}


@cache
def _insert_statement(table, returning: bool):
    # RETURNING makes SQLAlchemy send several rows as one multi-row INSERT ("insertmanyvalues"); without it
    # they go as an executemany, which psycopg pipelines row by row: a dozen system calls more for two rows.
    stmt = insert(table)
    return stmt.returning(*table.primary_key.columns) if returning else stmt


def insert_rows(session: Session, table, rows: list[dict]) -> None:
    """INSERT rows that all name the same columns, as one statement (SQLAlchemy splits very long lists; a batch
    sends more than VALUES_ROWS rows as one array per column)."""
    pending = session.info.get(_BATCH)
    if pending is not None:
        if rows:
            pending.insert(table, rows)
    elif len(rows) == 1:
        session.connection().execute(_insert_statement(table, False), rows[0])
    elif rows:
        session.connection().execute(_insert_statement(table, True), rows)


def write_rows(session: Session, new: list, changed: list) -> None:
    """Write new (transient) objects of one mapped class in one INSERT and UPDATE the changed columns of
    persistent ones; the objects are left persistent and clean."""
    for obj in changed:
        update_changed(session, obj)
    if not new:
        return
    mapper = inspect(new[0]).mapper
    insert_rows(session, mapper.local_table, [_full_row(row, rawsql.columns(mapper)) for row in new])
    for row in new:
        make_transient_to_detached(row)
        session.add(row)


def update_changed(session: Session, obj) -> None:
    """UPDATE the changed columns of a persistent object (checking and bumping its version column, if it
    has one) and mark it clean; no statement if nothing changed. 409 if the version is stale (in a batch:
    when the batch is sent)."""
    state = inspect(obj)
    if not state.persistent or not state.modified:
        return
    mapper = state.mapper
    if not state.committed_state.keys() <= _keys(mapper):
        return  # a change only the ORM knows how to write: the flush does it all
    values = state.dict
    # committed_state holds the value each changed attribute had when loaded: skip those set to the same value.
    # Column order, so a batch sees few shapes of statement.
    old = state.committed_state
    changed = {key: values[key] for key, _ in rawsql.columns(mapper)
               if key in old and key in values and values[key] != old[key]}
    if changed:
        version = mapper.version_id_col
        where = {"w_pk": state.identity[0]}
        if version is not None:
            changed[version.key] = values[version.key] + 1
            where["w_version"] = values[version.key]
        pending = session.info.get(_BATCH)
        if pending is not None:
            pending.update(session, mapper, changed, where)
        elif session.connection().execute(_update_statement(mapper), {**changed, **where}).rowcount != 1:
            raise Conflict(_stale(mapper, state.identity[0]), code="stale")
        if version is not None:
            values[version.key] += 1
    # What a flush does after its UPDATE: the written values become the committed state (SQLAlchemy's own
    # bookkeeping call; there is no public one that also clears the session's "modified" mark).
    state._commit_all(values, session.identity_map)


def _stale(mapper, pk) -> str:
    return f"{mapper.class_.__name__} {pk} was changed by someone else"


class _Write(NamedTuple):
    """A write held back in a batch: its shape (on which the statement's text depends), its parameters, and for
    an UPDATE what to name should it find no row."""

    shape: tuple  # ("insert", table, columns, rows or 0 for arrays) or ("update", table, columns set, pk, version)
    params: list  # for arrays: one list of values per column
    stale: tuple | None = None  # (mapper, primary key)


class _Batch:
    """The writes held back by ``batch``, and the rows they write (a row written twice goes in two statements:
    the parts of one statement do not see each other's changes)."""

    def __init__(self):
        self.writes: list[_Write] = []
        self.rows: set = set()

    def insert(self, table, rows: list[dict]) -> None:
        columns = tuple(rows[0])
        if len(rows) <= VALUES_ROWS:
            self.writes.append(_Write(("insert", table, columns, len(rows)),
                                      [row[key] for row in rows for key in columns]))
        else:
            self.writes.append(_Write(("insert", table, columns, 0), [[row[key] for row in rows] for key in columns]))
        (pk,) = table.primary_key.columns
        if pk.key in rows[0]:  # rows keyed by the database's sequence cannot be written again by this batch
            self.rows.update((table, row[pk.key]) for row in rows)

    def update(self, session: Session, mapper, changed: dict, where: dict) -> None:
        table, pk = mapper.local_table, where["w_pk"]
        if (table, pk) in self.rows:
            self.send(session)
        self.rows.add((table, pk))
        version = mapper.version_id_col
        (pk_column,) = mapper.primary_key
        self.writes.append(_Write(("update", table, tuple(changed), pk_column.key,
                                   version.key if version is not None else None),
                                  [*changed.values(), *where.values()], (mapper, pk)))

    def send(self, session: Session) -> None:
        """One statement doing every write held back so far; a stale version is a 409."""
        writes, self.writes, self.rows = self.writes, [], set()
        if not writes:
            return
        sql = _statement(tuple(w.shape for w in writes))
        params = []
        for w in writes:
            arrays = w.shape[0] == "insert" and not w.shape[3]
            for p, value in zip(_processors(w.shape), w.params, strict=True):
                if p is not None:
                    value = [p(v) for v in value] if arrays else p(value)
                params.append(value)
        # Through RawCursor: psycopg's default cursor would parse a statement of more than 50 parameters again
        # on every call (about 0.3 ms here).
        counts = rawsql.execute(session, sql, params)
        updates = [w for w in writes if w.stale]
        for write, count in zip(updates, counts if updates else (), strict=True):
            if count != 1:
                raise Conflict(_stale(*write.stale), code="stale")


@contextmanager
def batch(session: Session) -> Iterator[None]:
    """Hold back the writes made in the block and send them together when it ends. If the block raises, they
    are dropped, though the objects look written: the caller must roll back (``db.transaction`` does)."""
    if _BATCH in session.info:
        raise RuntimeError("batches do not nest")
    # Elsewhere than on PostgreSQL the block's writes go at once (None in the session's info says so).
    pending = session.info[_BATCH] = _Batch() if rawsql.usable(session) else None
    try:
        yield
    finally:
        del session.info[_BATCH]
    if pending is not None:
        pending.send(session)


@cache
def _column_sql(table, key: str) -> tuple[str, object]:
    """The cast SQLAlchemy gives a parameter for this column (so a NULL keeps its type) and the column type's
    bind processor. Where SQLAlchemy casts nothing, the column's own type, without a length: a cast to
    varchar(n) would cut a longer value instead of refusing it."""
    column, dialect = table.c[key], rawsql.DIALECT
    rendered = str(bindparam("p", type_=column.type).compile(dialect=dialect))  # "$1" and SQLAlchemy's cast, if any
    cast = rendered.removeprefix("$1") or "::" + re.sub(r"\(.*\)", "", column.type.compile(dialect=dialect))
    return cast, column.type.dialect_impl(dialect).bind_processor(dialect)


@lru_cache(maxsize=256)
def _processors(shape: tuple) -> list:
    """The bind processor (or None) of each of a write's parameters."""
    kind, table, columns, *keys = shape
    processors = [_column_sql(table, key)[1] for key in columns]
    if kind == "insert":
        return processors * (keys[0] or 1)
    pk, version = keys
    return [*processors, _column_sql(table, pk)[1]] + ([None] if version else [])


@lru_cache(maxsize=256)
def _statement(shapes: tuple) -> str:
    """One statement doing every write of the shapes, answering the row count of each UPDATE in turn. Only table
    and column names from the models go into the text, quoted; every value is a parameter."""
    prepare = rawsql.DIALECT.identifier_preparer
    n = 0

    def param(table, key, array=""):
        nonlocal n
        n += 1
        return f"${n}{_column_sql(table, key)[0]}{array}"

    writes, counts = [], []
    for i, (kind, table, columns, *keys) in enumerate(shapes):
        names = [prepare.quote(table.c[key].name) for key in columns]
        if kind == "insert":
            (rows,) = keys
            if rows:
                values = "VALUES " + ", ".join(
                    "(" + ", ".join(param(table, key) for key in columns) + ")" for _ in range(rows))
            else:
                values = "SELECT * FROM unnest(" + ", ".join(param(table, key, "[]") for key in columns) + ")"  # noqa: S608
            writes.append(f"w{i} AS (INSERT INTO {prepare.format_table(table)} ({', '.join(names)}) {values})")  # noqa: S608
        else:
            pk, version = keys
            sets = ", ".join(f"{name} = {param(table, key)}" for name, key in zip(names, columns, strict=True))
            where = f"{prepare.quote(table.c[pk].name)} = {param(table, pk)}"
            if version:
                where += f" AND {prepare.quote(table.c[version].name)} = {param(table, version)}"
            writes.append(f"w{i} AS (UPDATE {prepare.format_table(table)} SET {sets} WHERE {where} "  # noqa: S608
                          "RETURNING 1)")
            counts.append(f"(SELECT count(*) FROM w{i})")  # noqa: S608
    return f"WITH {', '.join(writes)} SELECT {', '.join(counts) or 'NULL'}"
