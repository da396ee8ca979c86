"""Shared fixtures: a seeded database per test (SQLite by default, PostgreSQL when
EMFLOW_TEST_DATABASE_URL is set), the demo organisation, and the engine's clock."""
from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from engine import calendar, clock, schema
from engine.config import Config
from engine.connectors import Registry
from engine.db import Database
from engine.demo import deploy_all, load_org
from engine.models import User
from engine.org import invalidate_regions
from engine.versions import VERSIONS

DEMO_PASSWORD = "Demo2026x"
PG_URL = os.environ.get("EMFLOW_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("EMFLOW_TEST_REDIS_URL")
ARTIFACTS = Path(os.environ.get("EMFLOW_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))

clock.install()


def _worker() -> str:
    """Unique per test process, so parallel runs on one PostgreSQL server never drop each other's databases."""
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"


def _pg_exec(*statements: str) -> None:
    """Run statements on the server's maintenance database (CREATE/DROP DATABASE need autocommit)."""
    url = make_url(PG_URL).set(drivername="postgresql+psycopg", database="postgres")
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as c:
        for statement in statements:
            c.execute(text(statement))
    engine.dispose()


def _pg_url(name: str) -> str:
    return make_url(PG_URL).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def seed(tmp_path_factory):
    """A migrated database with the demo organisation and every process deployed, built once."""
    root = tmp_path_factory.mktemp("seed")
    if PG_URL:
        name = f"emflow_seed_{_worker()}"
        _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
        url = _pg_url(name)
    else:
        url = f"sqlite:///{root / 'seed.sqlite'}"
    config = Config.from_env({}, database_url=url, instance_path=root)
    schema.upgrade(config)
    db = Database(config)
    with db.transaction() as s:
        load_org(s, DEMO_PASSWORD)
        deploy_all(s, config, registry=Registry.discover())
    db.dispose()
    if not PG_URL:  # fold the WAL into the main file so a plain copy is complete
        conn = sqlite3.connect(make_url(url).database)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    yield url
    if PG_URL:
        _pg_exec(*(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in (f"emflow_test_{_worker()}", name)))


@pytest.fixture
def config(seed, tmp_path):
    """A fresh copy of the seeded database for this test."""
    if PG_URL:
        name = f"emflow_test_{_worker()}"
        seed_name = make_url(seed).database
        _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                 f'CREATE DATABASE "{name}" TEMPLATE "{seed_name}"')
        url = _pg_url(name)
    else:
        path = tmp_path / "emflow.sqlite"
        shutil.copyfile(make_url(seed).database, path)
        url = f"sqlite:///{path}"
    VERSIONS.clear()
    calendar.invalidate()
    invalidate_regions()
    return Config.from_env({}, database_url=url, instance_path=tmp_path, secret_key="test-secret-key",
                           job_backoff_seconds=0.01)


@pytest.fixture
def db(config):
    database = Database(config)
    yield database
    database.dispose()


@pytest.fixture
def registry():
    return Registry.discover()


@pytest.fixture(autouse=True)
def _real_clock():
    clock.reset()
    yield
    clock.reset()


@pytest.fixture
def user(db):
    """user('li.na') -> the User, loaded in a session that stays open for the test."""
    with db.session() as s:
        def get(username: str) -> User:
            found = s.scalar(select(User).where(User.username == username))
            assert found is not None, username
            return found
        yield get


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def pytest_report_header(config):
    return [f"emflow database: {'PostgreSQL ' + PG_URL if PG_URL else 'SQLite (embedded default)'}",
            f"emflow redis: {REDIS_URL or 'none (embedded mode)'}"]


@pytest.fixture
def fast_passwords(db, monkeypatch):
    """Cheap argon2 parameters, with every demo user's hash redone under them: login tests stay fast.
    Same algorithm and code paths; only the work factor differs from production."""
    from argon2 import PasswordHasher

    from engine import auth

    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(auth, "_hasher", hasher)
    monkeypatch.setattr(auth, "_DUMMY", hasher.hash("emflow-timing-equaliser"))
    with db.transaction() as s:
        for row in s.scalars(select(User)):
            row.password_hash = hasher.hash(DEMO_PASSWORD)
