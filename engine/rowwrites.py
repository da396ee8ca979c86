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


@cache
def _insert_statement(mapper):
    return insert(mapper.local_table)


def _default(column):
    default = column.default
    if default is None:
        return None
    return default.arg({}) if default.is_callable else default.arg


def insert_new(session: Session, rows: list) -> None:
    """INSERT transient objects of one mapped class in one statement, then attach them as persistent."""
    if not rows:
        return
    columns = _columns(inspect(rows[0]).mapper)
    params = []
    for row in rows:
        values = row.__dict__
        for key, column in columns:  # what a flush would fill in: column defaults for what was never set
            if key not in values:
                setattr(row, key, _default(column))
        params.append({key: values[key] for key, _ in columns})
    session.connection().execute(_insert_statement(inspect(rows[0]).mapper), params)
    for row in rows:
        make_transient_to_detached(row)
        session.add(row)


def update_changed(session: Session, obj) -> None:
    """UPDATE the changed columns of a persistent object (checking and bumping its version column, if it
    has one) and mark it clean; no statement if nothing changed. 409 if the version is stale."""
    state = inspect(obj)
    if not state.persistent or not state.modified:
        return
    mapper = state.mapper
    values = state.dict
    changed = {key: values[key] for key in state.committed_state if key in values}
    if not changed or not changed.keys() <= _keys(mapper):
        return  # nothing to write, or something only the ORM knows how to (it flushes it)
    version = mapper.version_id_col
    if version is not None:
        current = values[version.key]
        changed[version.key] = current + 1
    params = {**changed, "w_pk": state.identity[0]}
    if version is not None:
        params["w_version"] = current
    result = session.connection().execute(_update_statement(mapper), params)
    if result.rowcount != 1:
        raise Conflict(f"{mapper.class_.__name__} {state.identity[0]} was changed by someone else",
                       code="stale")
    if version is not None:
        values[version.key] = current + 1
    # What a flush does after its UPDATE: the written values become the committed state (SQLAlchemy's own
    # bookkeeping call; there is no public one that also clears the session's "modified" mark).
    state._commit_all(values, session.identity_map)
