"""Schema management through Alembic: create or upgrade the database (``emflow init``)."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig

from .config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(config: Config) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = config.database_url
    return cfg


def upgrade(config: Config, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(config), revision)


def downgrade(config: Config, revision: str) -> None:
    command.downgrade(alembic_config(config), revision)
