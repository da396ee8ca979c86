"""Secrets for connectors: encrypted at rest, referenced by name, never shown, logged or recorded.

The key comes from ``EMFLOW_SECRETS_KEY`` (Fernet keys, comma-separated: the first encrypts, all decrypt,
so a key can be rotated). The embedded default creates one in the instance folder (mode 600) on first
use; with Redis configured (production) a missing key is an error rather than a silent default.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import clock
from .config import Config
from .errors import Conflict, Misconfigured, NotFound, ValidationFailed
from .forms import FieldError
from .models import BusService, ConnectorConfig, Secret

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
REDACTED = "******"


def _keys(config: Config) -> MultiFernet:
    raw = config.secrets_key
    if not raw:
        if not config.embedded:
            raise Misconfigured("EMFLOW_SECRETS_KEY is not set; secrets cannot be stored or read",
                                code="secrets_key_missing")
        raw = _instance_key(config)
    try:
        return MultiFernet([Fernet(k.strip().encode()) for k in raw.split(",") if k.strip()])
    except ValueError as exc:
        raise Misconfigured("EMFLOW_SECRETS_KEY is not a valid Fernet key", code="secrets_key_invalid") from exc


_INSTANCE_KEYS: dict[str, str] = {}  # key file path -> key: read once per process, it never changes


def _instance_key(config: Config) -> str:
    path = config.instance_path / "secrets_key"
    cached = _INSTANCE_KEYS.get(str(path))
    if cached:
        return cached
    if not path.exists():
        config.instance_path.mkdir(parents=True, exist_ok=True)
        # Written to a private temporary file, then linked into place: a process starting at the same moment
        # sees either no file or the whole key, never an empty one.
        fd, temporary = tempfile.mkstemp(dir=config.instance_path, prefix=".secrets_key.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(Fernet.generate_key().decode())
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won; use its key
        finally:
            os.unlink(temporary)
    key = _INSTANCE_KEYS[str(path)] = path.read_text().strip()
    return key


def signing_keys(config: Config, purpose: str) -> list[bytes]:
    """Keys for signing tokens (e.g. callback URLs), derived from the secrets keys so every process agrees;
    the first signs, all verify."""
    raw = config.secrets_key or (_instance_key(config) if config.embedded else "")
    if not raw:
        raise Misconfigured("EMFLOW_SECRETS_KEY is not set", code="secrets_key_missing")
    return [hashlib.sha256(f"{purpose}:{k.strip()}".encode()).digest() for k in raw.split(",") if k.strip()]


def put(session: Session, config: Config, name: str, value: str, user=None) -> Secret:
    """Store or replace a secret."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ValidationFailed("a secret name is a letter followed by letters, digits, _ . -",
                               errors={"name": [FieldError("pattern").as_dict()]})
    if not isinstance(value, str) or not value or len(value) > 8192:
        raise ValidationFailed("a secret is 1 to 8192 characters", errors={"value": [FieldError("maxLength", 8192)
                                                                                     .as_dict()]})
    token = _keys(config).encrypt(value.encode())
    row = session.get(Secret, name) or Secret(name=name)
    row.ciphertext, row.updated_at, row.updated_by_id = token, clock.now(), getattr(user, "id", None)
    session.add(row)
    session.flush()
    return row


def get(session: Session, config: Config, name: str) -> str:
    """The plain value of a secret (for a connector call only)."""
    row = session.get(Secret, name)
    if row is None:
        raise NotFound(f"secret '{name}' does not exist")
    try:
        return _keys(config).decrypt(row.ciphertext).decode()
    except InvalidToken as exc:
        raise Misconfigured(f"secret '{name}' cannot be decrypted with the configured key",
                            code="secret_undecryptable") from exc


def names(session: Session) -> list[tuple[str, Any]]:
    """(name, updated_at) of every secret; values are never listed."""
    return list(session.execute(select(Secret.name, Secret.updated_at).order_by(Secret.name)).all())


def delete(session: Session, name: str) -> None:
    """Delete a secret that no connector configuration refers to."""
    in_use = sorted([c.name for c in session.scalars(select(ConnectorConfig)) if name in references(c.config)]
                    + [f"service {b.key}" for b in session.scalars(select(BusService))
                       if name in references(b.definition)])
    if in_use:
        raise Conflict(f"secret '{name}' is used by {', '.join(in_use)}", code="secret_in_use")
    row = session.get(Secret, name)
    if row is None:
        raise NotFound(f"secret '{name}' does not exist")
    session.delete(row)
    session.flush()


def references(value) -> set[str]:
    """Names of the secrets a configuration refers to as {"$secret": "name"}."""
    if isinstance(value, dict):
        if set(value) == {"$secret"}:
            return {str(value["$secret"])}
        return set().union(*(references(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(references(v) for v in value)) if value else set()
    return set()


def resolve(session: Session, config: Config, value, found: list[str]):
    """The configuration with each secret reference replaced by its value; the values go into ``found``
    so the caller can redact them from anything it writes."""
    if isinstance(value, dict):
        if set(value) == {"$secret"}:
            plain = get(session, config, str(value["$secret"]))
            found.append(plain)
            return plain
        return {k: resolve(session, config, v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(session, config, v, found) for v in value]
    return value


def redact(text: str, values: list[str]) -> str:
    """``text`` with every secret value replaced (longest first, so no value leaks in part)."""
    for value in sorted({v for v in values if v and len(v) >= 3}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text
