"""The engine handles one app needs: database, configuration, connectors, background runner."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask, current_app

from engine import clock
from engine.bus import RateLimiter
from engine.config import Config
from engine.connectors import Registry
from engine.db import Database
from engine.jobs import EmbeddedRunner
from engine.org import PrincipalCache, RevocationWatch


class Platform:
    def __init__(self, config: Config, registry: Registry | None = None):
        clock.install()
        self.config = config
        self.db = Database(config)
        self.registry = registry or Registry.discover()
        self.runner = EmbeddedRunner(self.db, config, self.registry) if config.embedded else None
        self.principals = PrincipalCache()
        self.usernames: dict[int, str] = {}  # usernames never change: remembered for the response bodies
        self.revocations = RevocationWatch(config.token_ttl_seconds, config.token_revocation_poll_seconds)
        self.bus_limiter = RateLimiter(config.redis_url)

    def start_background(self) -> None:
        """Embedded mode: run the job workers and the timer scheduler as threads of this process."""
        if self.runner is not None:
            self.runner.start()

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        self.db.dispose()


def platform() -> Platform:
    return current_app.extensions["emflow"]


def init_app(app: Flask, platform_: Platform) -> None:
    app.extensions["emflow"] = platform_


def load_or_create_secret(instance_path: Path) -> str:
    """The embedded default keeps a random secret key in the instance folder (mode 600)."""
    path = instance_path / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key
