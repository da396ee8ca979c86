"""Statements of a step's hot path sent through psycopg's RawCursor, past SQLAlchemy's execution (PostgreSQL).

SQLAlchemy's execution and result handling cost more than the round trip for the few statements every
completion sends (tests/bench/README.md §3): each builds an execution context, asks psycopg for a
description of every column, and runs the ORM's loading for the rows. The text and the result processors
here are SQLAlchemy's own, built once per statement; values always go as parameters. The cost: engine events
and echo logging do not see these statements.
"""
from __future__ import annotations

from functools import cache
from typing import NamedTuple

import psycopg
from sqlalchemy import exc
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.orm import Session, make_transient_to_detached

# Written for psycopg, the one PostgreSQL driver emflow uses (engine.db); $n placeholders, as RawCursor takes them.
DIALECT = PGDialect_psycopg(paramstyle="numeric_dollar")


def usable(session: Session) -> bool:
    """Does the session's database take these statements?"""
    dialect = session.get_bind().dialect
    return (dialect.name, dialect.driver) == ("postgresql", "psycopg")


class Query(NamedTuple):
    """A SELECT compiled once: its text, its parameters' names in order (with the values fixed in the
    statement), and the result columns that need a processor, with it."""

    sql: str
    names: tuple[str, ...]
    fixed: dict
    processors: tuple[tuple[int, object], ...]


def compile_select(stmt) -> Query:
    """Compile a SELECT for ``fetchone`` (an ORM one gives its entities' columns in their mappers' order)."""
    compiled = stmt.compile(dialect=DIALECT)
    processors = tuple((i, p) for i, column in enumerate(compiled._result_columns)
                       if (p := column[3]._cached_result_processor(DIALECT, None)) is not None)
    return Query(str(compiled), tuple(compiled.positiontup), dict(compiled.params), processors)


def execute(session: Session, sql: str, params: list):
    """Run a statement that answers rows in the session's transaction; its first row, or None. Database
    errors come out as SQLAlchemy's, with the parameters hidden."""
    connection = session.connection()
    driver = connection.connection.driver_connection
    with psycopg.RawCursor(driver) as cursor:
        try:
            return cursor.execute(sql, params).fetchone()
        except psycopg.Error as error:
            lost = driver.closed or driver.broken
            if lost:  # as SQLAlchemy does on a disconnect: the pool discards the connection, the rollback is quiet
                connection.invalidate(error)
            raise exc.DBAPIError.instance(sql, params, error, psycopg.Error, hide_parameters=True,
                                          connection_invalidated=lost, dialect=DIALECT) from error


def fetchone(session: Session, query: Query, **params) -> tuple | None:
    """The first row of a compiled SELECT, its values as SQLAlchemy would give them."""
    values = {**query.fixed, **params}
    row = execute(session, query.sql, [values[name] for name in query.names])
    if row is None or not query.processors:
        return row
    row = list(row)
    for i, processor in query.processors:
        row[i] = processor(row[i])
    return tuple(row)


@cache
def columns(mapper) -> tuple[tuple[str, object], ...]:
    """(attribute key, column) of every column attribute, in the mapper's order; the attribute keys are the
    column keys in emflow's models."""
    pairs = tuple((prop.key, prop.columns[0]) for prop in mapper.column_attrs)
    assert all(key == column.key for key, column in pairs), mapper
    return pairs


@cache
def _keys(mapper) -> tuple[str, ...]:
    return tuple(key for key, _ in columns(mapper))


def loaded(session: Session, mapper, values) -> object:
    """A persistent object of ``mapper`` with the values of its columns (in the mapper's column order) as read
    from the database: what an ORM query would have put in the session. The caller makes sure that the
    session holds no object of that identity yet."""
    obj = mapper.class_manager.new_instance()  # as the ORM's own loading makes one: no __init__, no events
    obj.__dict__.update(zip(_keys(mapper), values, strict=True))
    make_transient_to_detached(obj)
    session.add(obj)
    return obj

