"""emflow web app: the app factory. One blueprint per area; the REST API under /api/v1."""
from __future__ import annotations

from datetime import date, datetime

from flask import Flask, g, redirect, url_for
from flask.json.provider import DefaultJSONProvider
from flask_babel import Babel
from flask_wtf.csrf import CSRFProtect

from engine.config import Config

from . import i18n
from .platform import Platform, init_app, load_or_create_secret
from .security import load_session_user

babel = Babel()
csrf = CSRFProtect()

CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self'; font-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
       "form-action 'self'")


class IsoJSONProvider(DefaultJSONProvider):
    """JSON with ISO 8601 dates (Flask's default writes HTTP dates), Chinese text unescaped, and keys in the
    order the code builds them (sorting them costs time in every response)."""

    ensure_ascii = False
    sort_keys = False

    @staticmethod
    def default(o):
        if isinstance(o, (datetime, date)):
            return o.isoformat()
        return DefaultJSONProvider.default(o)


def create_app(config: Config | None = None, *, start_background: bool = False, overrides: dict | None = None,
               platform: Platform | None = None) -> Flask:
    """Build the app. ``start_background`` runs the embedded job/timer threads (serve does; tests don't)."""
    config = config or Config.from_env()
    app = Flask(__name__, instance_path=str(config.instance_path))
    app.config.from_mapping(
        SECRET_KEY=config.secret_key or load_or_create_secret(config.instance_path),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="emflow_session",
        # The whole request: a form may carry several files, each up to max_upload_bytes (checked as it is stored).
        MAX_CONTENT_LENGTH=max(config.max_request_bytes, config.max_upload_bytes + 1024 * 1024),
        BABEL_DEFAULT_LOCALE="zh_CN",
        BABEL_DEFAULT_TIMEZONE=config.timezone,
        WTF_CSRF_TIME_LIMIT=None,
        API_TITLE="emflow",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
    )
    app.config.update(overrides or {})
    app.json = IsoJSONProvider(app)
    platform = platform or Platform(config)
    init_app(app, platform)
    babel.init_app(app, locale_selector=i18n.select_locale)
    csrf.init_app(app)

    from . import views
    from .api import init_api

    app.before_request(load_session_user)
    views.register(app)
    init_api(app, csrf)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if g.get("user") is not None:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.route("/")
    def index():
        return redirect(url_for("inbox.index"))

    if start_background:
        platform.start_background()
    return app
