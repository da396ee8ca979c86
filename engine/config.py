"""Engine configuration: a frozen object built from the environment, passed explicitly."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

_TOP = Path(__file__).resolve().parent.parent


def _data_dir(name: str) -> Path:
    """Locate processes/ or forms/: the source tree first, then the installed share/emflow copy."""
    here = _TOP / name
    if here.is_dir():
        return here
    import sys

    return Path(sys.prefix) / "share" / "emflow" / name


@dataclass(frozen=True)
class Config:
    """Everything engine/ needs to know about its surroundings."""

    database_url: str
    instance_path: Path
    redis_url: str | None = None
    secret_key: str = ""
    secrets_key: str = ""  # Fernet key(s) for stored secrets, comma-separated (the first encrypts)
    processes_dir: Path = field(default_factory=lambda: _data_dir("processes"))
    forms_dir: Path = field(default_factory=lambda: _data_dir("forms"))
    upload_dir: Path | None = None
    max_upload_bytes: int = 20 * 1024 * 1024  # one file
    max_request_bytes: int = 100 * 1024 * 1024  # one request: a form with all its files
    allowed_upload_types: tuple[str, ...] = (
        "application/pdf",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/ofd",
        "image/png",
        "image/jpeg",
        "text/plain",
        "application/zip",
    )
    script_time_limit: float = 2.0
    lockout_attempts: int = 5
    lockout_minutes: int = 15
    session_idle_minutes: int = 30
    token_ttl_seconds: int = 8 * 3600
    token_revocation_poll_seconds: float = 2.0
    job_max_attempts: int = 5
    job_backoff_seconds: float = 2.0
    job_lease_seconds: int = 300
    scheduler_interval: float = 0.5
    embedded_workers: int = 2
    timezone: str = "Asia/Shanghai"
    public_url: str = "http://127.0.0.1:5000"  # how outside systems reach us (callback URLs)

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: relay, workers and scheduler run as threads."""
        return not self.redis_url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def uploads(self) -> Path:
        return self.upload_dir or (self.instance_path / "uploads")

    def with_(self, **changes) -> Config:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides) -> Config:
        """Build from EMFLOW_* environment variables; unset values get embedded defaults."""
        env = os.environ if environ is None else environ
        instance = Path(env.get("EMFLOW_INSTANCE_PATH") or (Path.cwd() / "instance")).resolve()
        values = {
            "instance_path": instance,
            "database_url": env.get("EMFLOW_DATABASE_URL") or f"sqlite:///{instance / 'emflow.sqlite'}",
            "redis_url": env.get("EMFLOW_REDIS_URL") or None,
            "secret_key": env.get("EMFLOW_SECRET_KEY", ""),
            "secrets_key": env.get("EMFLOW_SECRETS_KEY", ""),
        }
        if env.get("EMFLOW_PUBLIC_URL"):
            values["public_url"] = env["EMFLOW_PUBLIC_URL"].rstrip("/")
        if env.get("EMFLOW_UPLOAD_DIR"):
            values["upload_dir"] = Path(env["EMFLOW_UPLOAD_DIR"])
        for name, key in (("EMFLOW_MAX_UPLOAD_MB", "max_upload_bytes"), ("EMFLOW_MAX_REQUEST_MB", "max_request_bytes")):
            if (env.get(name) or "").strip():
                values[key] = _megabytes(name, env[name])
        values.update(overrides)
        for key in ("instance_path", "processes_dir", "forms_dir", "upload_dir"):
            if isinstance(values.get(key), str):
                values[key] = Path(values[key])
        return cls(**values)


def _megabytes(name: str, text: str) -> int:
    try:
        mb = int(text)
    except ValueError:
        mb = 0
    if mb < 1:
        raise ValueError(f"{name} must be a whole number of megabytes (at least 1), not '{text}'")
    return mb * 1024 * 1024
