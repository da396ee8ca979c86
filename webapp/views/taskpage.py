"""The task page: the form, the instance's history with every opinion, and the diagram."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine import instances, tasks
from engine.errors import Conflict, ValidationFailed
from engine.versions import VERSIONS

from .. import i18n
from ..formview import build_fields, parse_submission
from ..platform import platform
from ..security import login_required

bp = Blueprint("tasks", __name__, url_prefix="/tasks")


def _render(task_id: str, submitted: dict | None = None, errors: dict | None = None, status: int = 200):
    cfg = platform().config
    with platform().db.session() as s:
        view = tasks.view(s, cfg, g.user, task_id)
        data = dict(view.data)
        if submitted is not None:
            data.update(submitted)
        fields = build_fields(s, cfg, view.form, data, i18n.field_errors(errors or {})) if view.form else []
        if not view.can_act:
            for f in fields:
                f.readonly = True
        version = VERSIONS.get(s, view.instance.version_id)
        history = instances.history(s, view.instance.id)
        others = [t for t in instances.active_tasks(s, view.instance.id) if t.id != task_id]
        return render_template(
            "task.html", view=view, task=view.task, instance=view.instance, fields=fields, history=history,
            others=others, diagram=version.diagram_xml, process_name=version.name,
            editable=view.can_act, form_title=view.form.schema.get("title", "") if view.form else "",
            claimable=view.task.state == "open" and view.task.assignee_id is None and view.can_act,
            unclaimable=view.task.state == "open" and view.task.assignee_id == g.user.id and bool(view.candidates),
            has_errors=bool(errors),
        ), status


@bp.route("/<task_id>")
@login_required
def show(task_id: str):
    return _render(task_id)


@bp.route("/<task_id>", methods=["POST"])
@login_required
def complete(task_id: str):
    cfg = platform().config
    submitted = {}
    try:
        with platform().db.session() as s:
            view = tasks.view(s, cfg, g.user, task_id)
        # Uploads are stored in their own transaction so a failed validation keeps them.
        with platform().db.transaction() as s:
            submitted = parse_submission(s, cfg, view.form, request.form, request.files)
        with platform().db.transaction() as s:
            inst = tasks.complete(s, cfg, g.user, task_id, submitted)
            next_task = next((t for t in instances.active_tasks(s, inst.id) if t.assignee_id == g.user.id), None)
    except ValidationFailed as exc:
        flash(i18n.error_text(exc), "error")
        return _render(task_id, submitted, exc.errors, 422)
    except Conflict as exc:
        flash(i18n.error_text(exc), "error")
        return redirect(url_for("tasks.show", task_id=task_id))
    flash(_("Done: %(name)s.", name=view.task.name), "success")
    if next_task is not None:
        return redirect(url_for("tasks.show", task_id=next_task.id))
    return redirect(url_for("inbox.index"))


@bp.route("/<task_id>/claim", methods=["POST"])
@login_required
def claim(task_id: str):
    try:
        with platform().db.transaction() as s:
            tasks.claim(s, platform().config, g.user, task_id)
        flash(_("The task is yours now."), "success")
    except Conflict as exc:
        flash(i18n.error_text(exc), "error")
    return redirect(url_for("tasks.show", task_id=task_id))


@bp.route("/<task_id>/unclaim", methods=["POST"])
@login_required
def unclaim(task_id: str):
    with platform().db.transaction() as s:
        tasks.unclaim(s, platform().config, g.user, task_id)
    flash(_("The task is back in the group's list."), "info")
    return redirect(url_for("inbox.index", tab="group"))
