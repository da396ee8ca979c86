"""Core writes of the rows every step changes (the instance, the task acted on, new human tasks).

The ORM unit of work costs more per completion than the statements it sends (history, dependency sort,
post-fetch, bookkeeping for three objects); these functions send the same INSERT/UPDATE with SQLAlchemy
Core and then leave the objects in the session exactly as a flush would: persistent and clean, so later
changes to them are flushed as usual. Everything else a step touches still goes through the ORM.
"""
from __future__ import annotations

from functools import cache

from sqlalchemy import bindparam, insert, inspect, update
from sqlalchemy.orm import Session, make_transient_to_detached

from .errors import Conflict


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
    if len(rows) == 1:
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
        params = {**changed, "w_pk": state.identity[0]}
        version = mapper.version_id_col
        if version is not None:
            params[version.key] = values[version.key] + 1
            params["w_version"] = values[version.key]
        if session.connection().execute(_update_statement(mapper), params).rowcount != 1:
            raise Conflict(f"{mapper.class_.__name__} {state.identity[0]} was changed by someone else",
                           code="stale")
        if version is not None:
            values[version.key] += 1
    # What a flush does after its UPDATE: the written values become the committed state (SQLAlchemy's own
    # bookkeeping call; there is no public one that also clears the session's "modified" mark).
    state._commit_all(values, session.identity_map)
