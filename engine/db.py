"""Database access: engines, sessions and the write-transaction discipline for SQLite and PostgreSQL."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Integer, bindparam, create_engine, event, func
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from .config import Config


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's "begin" event decide how transactions start (pysqlite would otherwise defer).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock up front so two writers never deadlock on a lock upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """Holds the engines and hands out sessions; engine functions take the session explicitly."""

    def __init__(self, config: Config):
        self.config = config
        url = config.database_url
        if config.is_sqlite:
            if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
                from pathlib import Path

                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            self.read_engine = _sqlite_engine(url, immediate=False)
            self.write_engine = _sqlite_engine(url, immediate=True)
        else:
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://"):]
            # No pre-ping (a round trip per checkout): a connection broken by a server restart fails one
            # request, and SQLAlchemy then discards the whole pool. Reads run in autocommit, so a read
            # session costs no BEGIN/ROLLBACK round trips; writes use normal transactions.
            self.write_engine = create_engine(url, pool_size=10, max_overflow=20, pool_recycle=3600)
            self.read_engine = self.write_engine.execution_options(isolation_level="AUTOCOMMIT")
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session; anything it writes is discarded. Loaded objects stay readable afterwards."""
        s = self._read()
        try:
            yield s
        finally:
            s.close()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write session committed on success and rolled back on any exception."""
        s = self._write()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            self.write_engine.dispose()


def paginate(stmt, order):
    """``stmt`` as a page query for run_page: the total rides along as a window count over the filtered rows,
    and LIMIT/OFFSET are parameters, so a caller can build it once and run it for any page."""
    return (stmt.add_columns(func.count().over().label("total")).order_by(*order)
            .limit(bindparam("page_limit", type_=Integer)).offset(bindparam("page_offset", type_=Integer)))


def run_page(session: Session | Connection, paged, params: dict, page: int, per_page: int, entities: bool = True):
    """(items, total) of one page of a ``paginate`` query, run in a session (or, for plain columns, on a
    connection). Items are the first selected entity of each row, or (``entities=False``) the rows themselves."""
    rows = session.execute(paged, {**params, "page_limit": per_page, "page_offset": (page - 1) * per_page}).all()
    if rows:
        return ([row[0] for row in rows] if entities else rows), rows[0].total
    if page == 1:
        return [], 0
    first = session.execute(paged, {**params, "page_limit": 1, "page_offset": 0}).first()  # asked past the end
    return [], first.total if first is not None else 0


def page_of(session: Session | Connection, stmt, order, page: int, per_page: int, entities: bool = True):
    """(items, total) of one page of ``stmt`` in one query (see paginate)."""
    return run_page(session, paginate(stmt, order), {}, page, per_page, entities)
