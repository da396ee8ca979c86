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

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, lru_cache
from typing import NamedTuple

from sqlalchemy import bindparam, exc, insert, inspect, update
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.orm import Session, make_transient_to_detached

from .errors import Conflict

_BATCH = "rowwrites_batch"
# PostgreSQL's protocol carries at most 65,535 parameters in one statement; a batch over this goes in parts.
MAX_PARAMS = 30_000
# Statements of up to this many parameters are kept, once built; longer ones (rare, and each of a shape of its
# own) are built for the call.
CACHED_PARAMS = 2_000
# Batched statements are written for psycopg, the one PostgreSQL driver emflow uses (engine.db).
_PG = PGDialect_psycopg()


@cache
def _columns(mapper) -> tuple[tuple[str, object], ...]:
    """(attribute key, column) of every column attribute; attribute keys are the column keys here."""
    pairs = tuple((prop.key, prop.columns[0]) for prop in mapper.column_attrs)
    assert all(key == column.key for key, column in pairs), mapper
    return pairs


@cache
def _keys(mapper) -> frozenset[str]:
    return frozenset(key for key, _ in _columns(mapper))


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
            setattr(row, key, _default(column))
    return {key: values[key] for key, _ in columns}


@cache
def _insert_statement(table, returning: bool):
    # RETURNING makes SQLAlchemy send several rows as one multi-row INSERT ("insertmanyvalues"); without it
    # they go as an executemany, which psycopg pipelines row by row: a dozen system calls more for two rows.
    stmt = insert(table)
    return stmt.returning(*table.primary_key.columns) if returning else stmt


def insert_rows(session: Session, table, rows: list[dict]) -> None:
    """INSERT rows that all name the same columns, as one statement (SQLAlchemy splits very long lists)."""
    pending = session.info.get(_BATCH)
    if pending is not None:
        if rows:
            pending.append(_Write(("insert", table, tuple(rows[0]), len(rows)),
                                  [row[key] for row in rows for key in rows[0]]))
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
    insert_rows(session, mapper.local_table, [_full_row(row, _columns(mapper)) for row in new])
    for row in new:
        make_transient_to_detached(row)
        session.add(row)


def update_changed(session: Session, obj) -> None:
    """UPDATE the changed columns of a persistent object (checking and bumping its version column, if it
    has one) and mark it clean; no statement if nothing changed. 409 if the version is stale."""
    state = inspect(obj)
    if not state.persistent or not state.modified:
        return
    mapper = state.mapper
    if not state.committed_state.keys() <= _keys(mapper):
        return  # a change only the ORM knows how to write: the flush does it all
    values = state.dict
    # committed_state holds the value each changed attribute had when loaded: skip those set to the same value.
    changed = {key: values[key] for key, old in state.committed_state.items() if key in values and values[key] != old}
    if changed:
        version = mapper.version_id_col
        where = {"w_pk": state.identity[0]}
        if version is not None:
            changed[version.key] = values[version.key] + 1
            where["w_version"] = values[version.key]
        stale = f"{mapper.class_.__name__} {state.identity[0]} was changed by someone else"
        pending = session.info.get(_BATCH)
        if pending is not None:
            keys = (mapper.primary_key[0].key, version.key if version is not None else None)
            pending.append(_Write(("update", mapper.local_table, tuple(changed), keys),
                                  [*changed.values(), *where.values()], stale))
        elif session.connection().execute(_update_statement(mapper), {**changed, **where}).rowcount != 1:
            raise Conflict(stale, code="stale")
        if version is not None:
            values[version.key] += 1
    # What a flush does after its UPDATE: the written values become the committed state (SQLAlchemy's own
    # bookkeeping call; there is no public one that also clears the session's "modified" mark).
    state._commit_all(values, session.identity_map)


class _Write(NamedTuple):
    """One write waiting in a batch: its shape (which the statement's text depends on) and its parameters."""

    shape: tuple  # ("insert", table, columns, rows) or ("update", table, columns set, (pk, version or None))
    params: list
    stale: str | None = None  # an UPDATE's message should it find no row


@contextmanager
def batch(session: Session) -> Iterator[None]:
    """Hold back the writes made in the block and send them together when it ends (not if it raises)."""
    if session.bind.dialect.name != "postgresql" or _BATCH in session.info:
        yield
        return
    pending = session.info[_BATCH] = []
    try:
        yield
    finally:
        del session.info[_BATCH]
    _send(session, pending)


def _send(session: Session, pending: list[_Write]) -> None:
    import psycopg

    if not pending:
        return
    # psycopg's RawCursor takes the statement as written ($1, $2 …); its default cursor would parse a statement
    # of more than 50 parameters again on every call (about 0.3 ms here).
    with psycopg.RawCursor(session.connection().connection.driver_connection) as cursor:
        for part in _parts(pending):
            params = [p(v) if p else v for w in part
                      for p, v in zip(_processors(w.shape), w.params, strict=True)]
            shapes = tuple(w.shape for w in part)
            sql = _statement(shapes) if len(params) <= CACHED_PARAMS else _statement.__wrapped__(shapes)
            try:
                counts = cursor.execute(sql, params).fetchone()
            except psycopg.Error as error:
                raise exc.DBAPIError.instance(sql, params, error, psycopg.Error, hide_parameters=True,
                                              dialect=_PG) from error
            updates = [w for w in part if w.stale]
            for write, count in zip(updates, counts if updates else (), strict=True):
                if count != 1:
                    raise Conflict(write.stale, code="stale")


def _parts(pending: list[_Write]) -> Iterator[list[_Write]]:
    """The writes in statements of at most MAX_PARAMS parameters; a long INSERT is split by rows."""
    part, size = [], 0
    for write in pending:
        kind, table, columns, rows = write.shape
        pieces = [write]
        if kind == "insert" and len(write.params) > MAX_PARAMS:
            per = MAX_PARAMS // len(columns)
            pieces = [_Write((kind, table, columns, min(per, rows - start)),
                             write.params[start * len(columns):(start + per) * len(columns)])
                      for start in range(0, rows, per)]
        for piece in pieces:
            if part and size + len(piece.params) > MAX_PARAMS:
                yield part
                part, size = [], 0
            part.append(piece)
            size += len(piece.params)
    if part:
        yield part


@cache
def _column_sql(table, key: str) -> tuple[str, object]:
    """The cast SQLAlchemy gives a parameter for this column (so NULLs in a multi-row VALUES keep their type)
    and the column type's bind processor."""
    column = table.c[key]
    rendered = str(bindparam("p", type_=column.type).compile(dialect=_PG))
    cast = rendered.split(")s", 1)[1] or "::" + column.type.compile(dialect=_PG)
    return cast, column.type.dialect_impl(_PG).bind_processor(_PG)


def _processors(shape: tuple) -> list:
    """The bind processor (or None) of each of a write's parameters."""
    kind, table, columns, extra = shape
    if kind == "insert":
        return _row_processors(table, columns) * extra
    pk, version = extra
    return [*_row_processors(table, columns), _column_sql(table, pk)[1]] + ([None] if version else [])


@lru_cache(maxsize=256)
def _row_processors(table, columns: tuple) -> list:
    return [_column_sql(table, key)[1] for key in columns]


@lru_cache(maxsize=256)
def _statement(shapes: tuple) -> str:
    """One statement doing every write of the shapes, answering the row count of each UPDATE in turn. Only
    table and column names from the models go into the text, quoted; every value is a parameter."""
    quote = _PG.identifier_preparer.quote
    n = 0

    def param(table, key):
        nonlocal n
        n += 1
        return f"${n}{_column_sql(table, key)[0]}"

    writes, counts = [], []
    for i, (kind, table, columns, extra) in enumerate(shapes):
        if kind == "insert":
            rows = ", ".join("(" + ", ".join(param(table, key) for key in columns) + ")" for _ in range(extra))
            writes.append(f"w{i} AS (INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) "  # noqa: S608
                          f"VALUES {rows})")
        else:
            pk, version = extra
            sets = ", ".join(f"{quote(key)} = {param(table, key)}" for key in columns)
            where = f"{quote(pk)} = {param(table, pk)}"
            if version:
                where += f" AND {quote(version)} = {param(table, version)}"
            writes.append(f"w{i} AS (UPDATE {quote(table.name)} SET {sets} WHERE {where} RETURNING 1)")  # noqa: S608
            counts.append(f"(SELECT count(*) FROM w{i})")  # noqa: S608
    return f"WITH {', '.join(writes)} SELECT {', '.join(counts) or 'NULL'}"
