"""Sessions for the web pages (login, idle timeout) and bearer tokens for the API."""
from __future__ import annotations

import time
from functools import lru_cache, wraps

from flask import abort, current_app, g, redirect, request, session, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from engine.errors import AuthenticationFailed
from engine.models import User
from engine.org import Principal

from .platform import platform


def _serializer() -> URLSafeTimedSerializer:
    return _serializer_for(current_app.secret_key)


@lru_cache(maxsize=4)
def _serializer_for(secret_key: str) -> URLSafeTimedSerializer:
    # Built once: building one costs a third of what checking a token does.
    return URLSafeTimedSerializer(secret_key, salt="emflow-api-token")


def issue_token(principal: Principal) -> str:
    """A signed bearer token that carries the caller's principal (no database read per request)."""
    return _serializer().dumps({"u": principal.id, "v": principal.token_version, "p": principal.to_claims()})


def user_from_token(token: str) -> Principal:
    """The principal a bearer token carries; AuthenticationFailed if it is invalid, expired or revoked."""
    try:
        data = _serializer().loads(token, max_age=platform().config.token_ttl_seconds)
        principal = Principal.from_claims(data["p"])
    except SignatureExpired:
        raise AuthenticationFailed("the token has expired", code="token_expired") from None
    except (BadSignature, KeyError, TypeError):
        raise AuthenticationFailed("the token is not valid", code="token_invalid") from None
    if platform().revocations.revoked(platform().db.session, principal.id, principal.token_version):
        raise AuthenticationFailed("the token is no longer valid", code="token_revoked")
    return principal


def start_session(user: User) -> None:
    session.clear()
    session["uid"], session["tv"], session["seen"] = user.id, user.token_version, int(time.time())
    session.permanent = False


def load_session_user() -> None:
    """Set g.user from the session cookie, ending sessions idle longer than the configured limit.
    The API ignores cookies: it authenticates by bearer token only (so it needs no CSRF token)."""
    if request.path.startswith("/api/"):
        return
    g.user = None
    uid = session.get("uid")
    if uid is None:
        return
    idle = platform().config.session_idle_minutes * 60
    now = int(time.time())
    if now - int(session.get("seen", 0)) > idle:
        session.clear()
        session["expired"] = True  # the login page says why
        return
    with platform().db.session() as s:
        principal = platform().principals.load(s, uid, session.get("tv"))
    if principal is None:
        session.clear()
        return
    g.user = principal
    if now - int(session.get("seen", 0)) > 30:  # avoid rewriting the cookie on every request
        session["seen"] = now


def login_required(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        if g.get("user") is None:
            return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
        return view(*args, **kwargs)
    return wrapped


def permission_required(permission: str):
    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if not g.user.can(permission):
                abort(403)
            return view(*args, **kwargs)
        return wrapped
    return decorator
