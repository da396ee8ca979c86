"""Alembic environment: the URL comes from emflow's Config, the metadata from engine.models."""
from alembic import context

from engine.config import Config
from engine.db import Database
from engine.models import Base

url = context.config.attributes.get("database_url")
db = Database(Config.from_env(database_url=url) if url else Config.from_env())

with db.write_engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        connection.commit()
db.dispose()
