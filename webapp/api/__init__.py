"""The REST API under /api/v1 (flask-smorest): bearer tokens, JSON in and out, one error format.

Errors are ``{"code": <string>, "status": <int>, "message": <string>, "errors": {field: [messages]}}``.
Lists are ``{"items": [...], "page", "per_page", "total"}``.
"""
from __future__ import annotations

import re

import marshmallow as ma
from flask import Flask, g, jsonify, render_template, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from engine.errors import AuthenticationFailed, EngineError

from .. import i18n
from ..platform import platform
from ..security import user_from_token


class ErrorSchema(ma.Schema):
    code = ma.fields.String()
    status = ma.fields.Integer()
    message = ma.fields.String()
    errors = ma.fields.Dict()


def error_body(code: str, status: int, message: str, errors: dict | None = None) -> dict:
    return {"code": code, "status": status, "message": message, "errors": errors or {}}


class EmflowApi(Api):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):
        """JSON errors for the API; the web pages keep their HTML error page."""
        if not request.path.startswith("/api/"):
            from ..views import render_http_error

            return render_http_error(error)
        data = getattr(error, "data", None) or {}
        errors = data.get("errors") or data.get("messages") or {}
        if isinstance(errors, dict) and set(errors) <= {"json", "query", "form", "files", "headers"}:
            flat = {}
            for part in errors.values():
                flat.update(part if isinstance(part, dict) else {"_": part})
            errors = flat
        code = re.sub(r"[^a-z]+", "_", (error.name or "error").lower()).strip("_")
        message = data.get("message") or error.description or error.name
        response = jsonify(error_body(code, error.code or 500, message, errors))
        response.status_code = error.code or 500
        for key, value in (data.get("headers") or {}).items():
            response.headers[key] = value
        return response


def engine_error_response(exc: EngineError):
    message = i18n.error_text(exc)
    errors = i18n.field_errors(exc.errors) if exc.errors else {}
    response = jsonify(error_body(exc.code, exc.status, message, errors))
    response.status_code = exc.status
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="emflow"'
    return response


# The callback endpoint authenticates by its unguessable, HMAC-signed address, the gateway by the
# consumer's API key, SMS receipts and OA / ministry webhooks by their HMAC signature, telemetry by the
# gateway's credential, instead of a user's bearer token.
PUBLIC_ENDPOINTS = {"api_auth.token", "api_callbacks.callback", "api_services.call", "api_services.wsdl",
                    "api_services.soap", "api_telemetry.ingest", "api_sms.receipts",
                    "api_oa.documents", "api_ministry.instructions"}


def authenticate() -> None:
    """Every API call needs a bearer token, except getting one and reading the OpenAPI document."""
    if not request.path.startswith("/api/") or request.path == "/api/v1/openapi.json":
        return
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        raise AuthenticationFailed("a bearer token is required", code="token_missing")
    g.user = user_from_token(header[7:].strip())
    platform().usernames[g.user.id] = g.user.username  # response bodies name the caller without a query


def init_api(app: Flask, csrf) -> Api:
    from . import (
        attachments,
        auth,
        bus,
        callbacks,
        connectors,
        incidents,
        messages,
        ministry,
        models,
        notifications,
        oa,
        opinions,
        process_instances,
        secrets,
        services,
        sheets,
        sms,
        tasks,
        telemetry,
    )

    api = EmflowApi(app, spec_kwargs={"components": {"securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer"}}}, "security": [{"bearer": []}]})
    app.before_request(authenticate)
    for module in (auth, models, process_instances, tasks, messages, attachments, notifications, connectors,
                   opinions, sheets, incidents, secrets, callbacks, bus, services, telemetry, sms, oa,
                   ministry):
        csrf.exempt(module.blp)
        api.register_blueprint(module.blp, url_prefix=f"/api/v1{module.PREFIX}")

    @app.errorhandler(EngineError)
    def _engine_error(exc: EngineError):
        if request.path.startswith("/api/"):
            return engine_error_response(exc)
        return render_template("error.html", message=i18n.error_text(exc), status=exc.status), exc.status

    return api
