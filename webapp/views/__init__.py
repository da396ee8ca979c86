"""Web pages: one blueprint per area, registered by the app factory."""
from __future__ import annotations

from flask import Flask, g, render_template, request
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from sqlalchemy import select

from engine import notifications, tasks
from engine.files import megabytes
from engine.models import Unit, User

from .. import i18n
from ..platform import platform
from . import (
    admin,
    alarms,
    auth,
    files,
    gateways,
    inbox,
    instances,
    integration,
    lookup,
    notices,
    opinions,
    processes,
    sheet,
    taskpage,
)

BLUEPRINTS = (auth.bp, inbox.bp, processes.bp, taskpage.bp, instances.bp, files.bp, notices.bp, admin.bp, lookup.bp,
              sheet.bp, opinions.bp, integration.bp, alarms.bp, gateways.bp)

def register(app: Flask) -> None:
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    app.jinja_env.filters["dt"] = i18n.fmt_dt
    app.jinja_env.globals["get_locale"] = get_locale
    app.jinja_env.globals["status_text"] = status_text
    app.jinja_env.globals["event_text"] = event_text
    app.jinja_env.globals["item_label"] = item_label
    app.jinja_env.globals.update(decision_text=decision_text, position_text=position_text, reason_text=reason_text,
                                  category_text=category_text, upload_limit=lambda: platform().config.max_upload_bytes,
                                  megabytes=megabytes)

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



def render_http_error(exc):
    """The HTML error page for a page request (the API answers JSON instead)."""
    messages = {403: _("You may not do this."), 404: _("Not found, or outside your data scope."),
                405: _("This action is not allowed here."), 413: _("The upload is too large.")}
    return render_template("error.html", message=messages.get(exc.code, exc.description), status=exc.code), exc.code


def item_label(value) -> str:
    """What a multi-instance task is for, readable: a unit code or username shown as its name."""
    if not value:
        return ""
    names = g.get("_item_names")
    if names is None:
        with platform().db.session() as s:
            names = g._item_names = dict(s.execute(select(Unit.code, Unit.name)).all())
    if value not in names:
        with platform().db.session() as s:
            names[value] = s.scalar(select(User.name).where(User.username == value)) or value
    return names[value]


def status_text(status: str) -> str:
    return {"running": _("Running"), "suspended": _("Suspended"), "completed": _("Completed"),
            "terminated": _("Terminated"), "error": _("Error"), "open": _("Open"),
            "cancelled": _("Cancelled"), "returned": _("Returned"), "withdrawn": _("Withdrawn"),
            "waiting": _("Waiting")}.get(status, status)


def event_text(kind: str) -> str:
    return {
        "started": _("Started"), "task_created": _("Task created"), "task_completed": _("Completed"),
        "task_claimed": _("Claimed"), "task_unclaimed": _("Given back"), "task_assigned": _("Assigned"),
        "task_cancelled": _("Task cancelled"), "completed": _("Process completed"), "suspended": _("Suspended"),
        "resumed": _("Resumed"), "terminated": _("Terminated"), "timer_fired": _("Timer fired"),
        "message_received": _("Message received"), "service_call_queued": _("Service call queued"),
        "service_call_completed": _("Service call completed"), "service_result_ignored": _("Late result ignored"),
        "incident": _("Incident"), "task_returned": _("Returned"), "task_transferred": _("Transferred"),
        "task_delegated": _("Delegated"), "delegation_resolved": _("Handled by the delegate"),
        "signers_added": _("Signers added"), "signer_removed": _("Signer removed"), "signer_signed": _("Signed"),
        "task_decided": _("Decided, waiting for added signers"), "task_released": _("Added signers have signed"),
        "task_withdrawn": _("Withdrawn"), "rejected": _("Rejected, process ended"), "cancelled": _("Cancelled"),
        "copied": _("Copied to"), "urged": _("Urged"), "task_overdue_reminded": _("Overdue reminder"),
        "task_escalated": _("Escalated"), "task_escalation_failed": _("Escalation found no leader"),
        "task_timed_out": _("Handled automatically after the deadline"),
        "task_auto_completed": _("Approved automatically"),
    }.get(kind, kind)


def decision_text(decision: str | None, action: str | None = None) -> str:
    """The decision recorded with a completion, in words (同意, 驳回); empty for a plain submission."""
    return {"approve": _("Approved"), "reject": _("Rejected")}.get(decision or "", "") if action != "timeout" else ""


def category_text(category: str) -> str:
    return {"task": _("Task"), "reminder": _("Reminder"), "urge": _("Urge"), "cc": _("Copy to"),
            "alarm": _("Alarm"), "message": _("Message"), "system": _("System notice")}.get(category, category)


def position_text(position: str | None) -> str:
    return {"before": _("before me"), "after": _("after me"), "parallel": _("in parallel")}.get(position or "", "")


def reason_text(reason: str | None) -> str:
    """Why an approver rule completed a task by itself (the engine records the reason in English)."""
    if not reason:
        return ""
    for key, text in (("same person", _("the same person approved the previous step")),
                      ("initiator", _("the approver is the initiator")),
                      ("skipped", _("nobody matched the assignment rule; the step was skipped")),
                      ("matched nobody", _("nobody matched the assignment rule")),
                      ("nobody matched", _("nobody matched the assignment rule"))):
        if key in reason:
            return text
    return reason
