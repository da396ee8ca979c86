"""Login with lockout, and the password policy."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from engine import audit, auth, clock
from engine.errors import AuthenticationFailed, ValidationFailed
from engine.models import SystemEvent, User
from tests.conftest import DEMO_PASSWORD


@pytest.fixture(autouse=True)
def _cheap_hashes(request):
    """Tests that log in get the cheap argon2 work factor; the pure policy tests need no database."""
    if "db" in request.fixturenames:
        request.getfixturevalue("fast_passwords")


def fails(db, config, username, password) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        auth.login(db, config, username, password)
    assert caught.value.status == 401
    return caught.value


def stored(db, username) -> User:
    with db.session() as s:
        return s.scalar(select(User).where(User.username == username))


def last_system_event(db) -> SystemEvent:
    with db.session() as s:
        return s.scalars(select(SystemEvent).order_by(SystemEvent.seq.desc())).first()


def test_login_with_the_demo_password(db, config):
    logged_in = auth.login(db, config, "li.na", DEMO_PASSWORD, source="192.0.2.7")
    assert logged_in.username == "li.na"
    event = last_system_event(db)
    assert (event.kind, event.target, event.actor_id, event.detail) == ("login", "li.na", logged_in.id,
                                                                         {"source": "192.0.2.7"})


def test_wrong_password_is_bad_credentials(db, config):
    err = fails(db, config, "li.na", "Demo2026y")
    assert err.code == "bad_credentials"
    assert stored(db, "li.na").failed_logins == 1
    assert last_system_event(db).kind == "login_failed"


def test_unknown_user_fails_exactly_like_a_wrong_password(db, config):
    wrong = fails(db, config, "li.na", "Demo2026y")
    unknown = fails(db, config, "no.such.user", DEMO_PASSWORD)
    assert (unknown.code, unknown.message) == (wrong.code, wrong.message)
    event = last_system_event(db)
    assert (event.kind, event.target, event.actor_id, event.detail["reason"]) == (
        "login_failed", "no.such.user", None, "unknown")


@pytest.mark.parametrize("password", ["", None])
def test_an_empty_password_fails(db, config, password):
    assert fails(db, config, "li.na", password).code == "bad_credentials"


def test_an_inactive_user_cannot_log_in_with_the_right_password(db, config):
    with db.transaction() as s:
        s.execute(update(User).where(User.username == "li.na").values(is_active=False))
    assert fails(db, config, "li.na", DEMO_PASSWORD).code == "bad_credentials"
    assert last_system_event(db).detail["reason"] == "inactive"


def test_five_failures_lock_the_account(db, config):
    assert config.lockout_attempts == 5
    codes = [fails(db, config, "wang.fang", f"wrong-{i}x").code for i in range(5)]
    assert codes == ["bad_credentials"] * 4 + ["account_locked"]
    locked = stored(db, "wang.fang")
    assert locked.locked_until is not None and locked.failed_logins == 0
    assert last_system_event(db).kind == "account_locked"


def lock(db, config, username="wang.fang"):
    for i in range(config.lockout_attempts):
        with pytest.raises(AuthenticationFailed):
            auth.login(db, config, username, f"wrong-{i}x")


def test_a_locked_account_refuses_the_right_password(db, config):
    lock(db, config)
    err = fails(db, config, "wang.fang", DEMO_PASSWORD)
    assert err.code == "account_locked"
    assert err.params["until"] == stored(db, "wang.fang").locked_until.isoformat()
    assert last_system_event(db).kind == "login_refused"


def test_the_lock_lasts_until_lockout_minutes_have_passed(db, config):
    lock(db, config)
    clock.advance(timedelta(minutes=config.lockout_minutes) - timedelta(seconds=5))
    assert fails(db, config, "wang.fang", DEMO_PASSWORD).code == "account_locked"
    clock.advance(timedelta(seconds=10))
    assert auth.login(db, config, "wang.fang", DEMO_PASSWORD).username == "wang.fang"
    assert stored(db, "wang.fang").locked_until is None


def test_a_lock_affects_only_its_own_account(db, config):
    lock(db, config)
    assert auth.login(db, config, "li.na", DEMO_PASSWORD).username == "li.na"


def test_a_successful_login_resets_the_failure_count(db, config):
    for i in range(4):
        fails(db, config, "li.na", f"wrong-{i}x")
    auth.login(db, config, "li.na", DEMO_PASSWORD)
    assert stored(db, "li.na").failed_logins == 0
    assert fails(db, config, "li.na", "wrong-again1").code == "bad_credentials"


def test_every_attempt_keeps_the_system_chain_intact(db, config):
    lock(db, config)
    fails(db, config, "wang.fang", DEMO_PASSWORD)
    with db.session() as s:
        assert audit.verify_system(s) is None


# -- password policy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("password", ["short1a", "abcdefgh", "12345678", "", "密码密码密码密码12"])
def test_the_policy_refuses_weak_passwords(password):
    with pytest.raises(ValidationFailed) as caught:
        auth.check_policy(password)
    assert caught.value.errors["password"][0]["code"] == "password_policy"


@pytest.mark.parametrize("password", ["abcdefg1", "Demo2026x", "a1" * 4, "长密码也行abc123"])
def test_the_policy_accepts_letters_and_digits_of_length_eight(password):
    auth.check_policy(password)


def test_set_password_enforces_the_policy_and_keeps_the_old_one(db, config):
    with db.transaction() as s:
        target = s.scalar(select(User).where(User.username == "li.na"))
        before = (target.password_hash, target.token_version)
        with pytest.raises(ValidationFailed):
            auth.set_password(target, "weak")
        assert (target.password_hash, target.token_version) == before


def test_set_password_bumps_the_token_version_and_replaces_the_password(db, config):
    with db.transaction() as s:
        target = s.scalar(select(User).where(User.username == "li.na"))
        version = target.token_version
        target.failed_logins = 3
        auth.set_password(target, "NewSecret42")
        assert target.token_version == version + 1 and target.failed_logins == 0
    assert auth.login(db, config, "li.na", "NewSecret42").token_version == version + 1
    assert fails(db, config, "li.na", DEMO_PASSWORD).code == "bad_credentials"


def test_set_password_unlocks_the_account(db, config):
    lock(db, config)
    with db.transaction() as s:
        auth.set_password(s.scalar(select(User).where(User.username == "wang.fang")), "Reset2026a")
    assert auth.login(db, config, "wang.fang", "Reset2026a").username == "wang.fang"


def test_passwords_are_stored_as_argon2_hashes(db):
    stored_hash = stored(db, "li.na").password_hash
    assert stored_hash.startswith("$argon2") and DEMO_PASSWORD not in stored_hash
