"""Web pages: one blueprint per area, registered by the app factory."""
from __future__ import annotations

from flask import Flask, g, render_template, request
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

from engine import notifications, tasks

from .. import i18n
from ..platform import platform
from . import admin, auth, files, inbox, instances, lookup, notices, processes, taskpage

BLUEPRINTS = (auth.bp, inbox.bp, processes.bp, taskpage.bp, instances.bp, files.bp, notices.bp, admin.bp, lookup.bp)

def register(app: Flask) -> None:
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    app.jinja_env.filters["dt"] = i18n.fmt_dt
    app.jinja_env.globals["get_locale"] = get_locale
    app.jinja_env.globals["status_text"] = status_text
    app.jinja_env.globals["event_text"] = event_text

    @app.context_processor
    def badges():
        user = g.get("user")
        if user is None or request.path.startswith("/static"):
            return {}
        with platform().db.session() as s:
            return {"badges": {**tasks.counts(s, user), "notes": notifications.unread_count(s, user)}}

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_template("error.html", message=_("The form has expired. Please reload the page and try again."),
                               status=400), 400

    for status in (403, 404, 405, 413):
        app.register_error_handler(status, _http_error)


def _http_error(exc):
    messages = {403: _("You may not do this."), 404: _("Not found, or outside your data scope."),
                405: _("This action is not allowed here."), 413: _("The upload is too large.")}
    return render_template("error.html", message=messages.get(exc.code, str(exc)), status=exc.code), exc.code


def status_text(status: str) -> str:
    return {"running": _("Running"), "suspended": _("Suspended"), "completed": _("Completed"),
            "terminated": _("Terminated"), "error": _("Error"), "open": _("Open"),
            "cancelled": _("Cancelled")}.get(status, status)


def event_text(kind: str) -> str:
    return {
        "started": _("Started"), "task_created": _("Task created"), "task_completed": _("Completed"),
        "task_claimed": _("Claimed"), "task_unclaimed": _("Given back"), "task_assigned": _("Assigned"),
        "task_cancelled": _("Task cancelled"), "completed": _("Process completed"), "suspended": _("Suspended"),
        "resumed": _("Resumed"), "terminated": _("Terminated"), "timer_fired": _("Timer fired"),
        "message_received": _("Message received"), "service_call_queued": _("Service call queued"),
        "service_call_completed": _("Service call completed"), "service_result_ignored": _("Late result ignored"),
        "incident": _("Incident"),
    }.get(kind, kind)
