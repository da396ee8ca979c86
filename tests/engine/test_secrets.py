"""engine.secrets: encrypted at rest, rotatable, referenced by name, never listed or leaked."""
from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet

from engine import secrets
from engine.errors import Conflict, Misconfigured, NotFound, ValidationFailed
from engine.models import ConnectorConfig, Secret


def test_a_secret_is_stored_encrypted_and_read_back(db, config):
    with db.transaction() as s:
        secrets.put(s, config, "oa.token", "令牌-abc-123")
    with db.session() as s:
        row = s.get(Secret, "oa.token")
        assert b"abc-123" not in row.ciphertext and "令牌".encode() not in row.ciphertext
        assert secrets.get(s, config, "oa.token") == "令牌-abc-123"
        assert [name for name, _ in secrets.names(s)] == ["oa.token"]


def test_the_embedded_default_keeps_its_key_in_a_private_file(db, config):
    with db.transaction() as s:
        secrets.put(s, config, "sms_key", "value-1")
    key_file = config.instance_path / "secrets_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_production_without_a_key_refuses_instead_of_inventing_one(db, config):
    production = config.with_(redis_url="redis://127.0.0.1:6379/15")
    with db.transaction() as s, pytest.raises(Misconfigured, match="EMFLOW_SECRETS_KEY is not set"):
        secrets.put(s, production, "x_key", "value")


def test_keys_rotate_and_a_wrong_key_is_a_clear_error(db, config):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with db.transaction() as s:
        secrets.put(s, config.with_(secrets_key=old), "ministry_password", "pa55word")
    with db.session() as s:
        assert secrets.get(s, config.with_(secrets_key=f"{new},{old}"), "ministry_password") == "pa55word"
        with pytest.raises(Misconfigured, match="cannot be decrypted"):
            secrets.get(s, config.with_(secrets_key=new), "ministry_password")
        with pytest.raises(Misconfigured, match="not a valid Fernet key"):
            secrets.get(s, config.with_(secrets_key="not-a-key"), "ministry_password")


def test_bad_names_and_values_are_refused(db, config):
    with db.transaction() as s:
        for name, value in (("1abc", "v"), ("has space", "v"), ("ok_name", ""), ("ok_name", "x" * 8193)):
            with pytest.raises(ValidationFailed):
                secrets.put(s, config, name, value)
        with pytest.raises(NotFound):
            secrets.get(s, config, "missing")


def test_references_resolve_and_redact(db, config):
    with db.transaction() as s:
        secrets.put(s, config, "token", "tok-123456")
        found: list[str] = []
        plain = secrets.resolve(s, config, {"auth": {"token": {"$secret": "token"}}, "hosts": ["a"]}, found)
    assert plain == {"auth": {"token": "tok-123456"}, "hosts": ["a"]}
    assert secrets.references({"a": [{"$secret": "x"}], "b": {"$secret": "y"}}) == {"x", "y"}
    assert secrets.redact("sent tok-123456 to tok-123456!", found) == "sent ****** to ******!"


def test_a_secret_in_use_cannot_be_deleted(db, config):
    with db.transaction() as s:
        secrets.put(s, config, "token", "tok-123456")
        s.add(ConnectorConfig(name="http", config={"auth": {"token": {"$secret": "token"}}}))
        s.flush()
        with pytest.raises(Conflict, match="used by http"):
            secrets.delete(s, "token")
        s.get(ConnectorConfig, "http").config = {}
        s.flush()
        secrets.delete(s, "token")
        with pytest.raises(NotFound):
            secrets.delete(s, "token")
