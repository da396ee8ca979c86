"""Passwords (argon2), the password policy, login with lockout, and role/permission setup."""
from __future__ import annotations

import contextlib
import re
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .config import Config
from .errors import AuthenticationFailed, ValidationFailed
from .forms import N_
from .models import User, utcnow

_hasher = PasswordHasher()
# A real hash to verify against when the user does not exist, so timing does not reveal usernames.
_DUMMY = _hasher.hash("emflow-timing-equaliser")

PERMISSIONS = {
    "process.deploy": N_("Deploy process models"),
    "instance.admin": N_("Administer process instances (suspend, resume, terminate, assign)"),
    "message.send": N_("Send messages to processes"),
    "instance.supervise": N_("Supervise processes in the data scope: overdue list, urge"),
}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_policy(password: str) -> None:
    """At least 8 characters with letters and digits (等保 level-3 baseline)."""
    if len(password) < 8 or not re.search(r"[A-Za-z]", password) or not re.search(r"\d", password):
        raise ValidationFailed("the password must have at least 8 characters, with letters and digits",
                               errors={"password": [{"code": "password_policy",
                                                     "message": "at least 8 characters, letters and digits"}]})


def revoke_tokens(user: User) -> None:
    """Invalidate the user's signed API tokens and sessions (servers notice within seconds)."""
    user.token_version += 1
    user.token_changed_at = utcnow()


def set_password(user: User, password: str) -> None:
    check_policy(password)
    user.password_hash = hash_password(password)
    revoke_tokens(user)
    user.failed_logins, user.locked_until = 0, None


def login(db, config: Config, username: str, password: str, source: str = "") -> User:
    """Check a login in its own transaction, so failures and lockouts are stored even though we raise.
    Five failures in a row lock the account for a while; every attempt is audited."""
    with db.transaction() as session:
        user, error = _check(session, config, username or "", password or "", source)
    if error is not None:
        raise error
    return user


def _check(session: Session, config: Config, username: str, password: str, source: str):
    user = session.scalars(select(User).where(User.username == username).with_for_update(of=User)).first()
    now = utcnow()
    if user is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY, password or "x")
        audit.record_system(session, "login_failed", None, target=username[:100], source=source, reason="unknown")
        return None, AuthenticationFailed("wrong username or password", code="bad_credentials")
    if user.locked_until is not None and user.locked_until > now:
        audit.record_system(session, "login_refused", user, target=username, source=source, reason="locked")
        return None, AuthenticationFailed("the account is locked after repeated failed logins; try again later",
                                          code="account_locked", until=user.locked_until.isoformat())
    try:
        ok = bool(user.password_hash) and _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, InvalidHashError, VerificationError):
        ok = False
    if not ok or not user.is_active:
        user.failed_logins += 1
        locked = user.failed_logins >= config.lockout_attempts
        if locked:
            user.locked_until = now + timedelta(minutes=config.lockout_minutes)
            user.failed_logins = 0
        audit.record_system(session, "account_locked" if locked else "login_failed", user, target=username,
                            source=source, reason="inactive" if ok else "password")
        if locked:
            return None, AuthenticationFailed(
                "the account is locked after repeated failed logins; try again later", code="account_locked",
                until=user.locked_until.isoformat())
        return None, AuthenticationFailed("wrong username or password", code="bad_credentials")
    user.failed_logins, user.locked_until = 0, None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    audit.record_system(session, "login", user, target=username, source=source)
    return user, None
