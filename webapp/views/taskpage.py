"""The task page: the form, the opinion with its signature, the approval operations, the instance's history
with every opinion, and the diagram."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from engine import instances, operations, tasks
from engine.errors import Conflict, EngineError, Forbidden, ValidationFailed
from engine.models import HumanTask, Unit, User
from engine.versions import VERSIONS

from .. import i18n
from ..formview import build_fields, parse_submission
from ..platform import platform
from ..security import login_required

bp = Blueprint("tasks", __name__, url_prefix="/tasks")
OPINION = "opinion"  # a form's own opinion field is shown in the opinion block, with the common opinions
PANELS = ("return", "transfer", "delegate", "addSigner", "cc")  # operations with their own small form


def _names(session, ids) -> dict[int, str]:
    ids = {i for i in ids if i}
    return dict(session.execute(select(User.id, User.name).where(User.id.in_(ids))).all()) if ids else {}


def _render(task_id: str, submitted: dict | None = None, errors: dict | None = None, status: int = 200,
            entered: dict | None = None):
    cfg = platform().config
    errors = i18n.field_errors(errors or {})
    with platform().db.session() as s:
        view = tasks.view(s, cfg, g.user, task_id)
        task = view.task
        data = dict(view.data)
        if submitted is not None:
            data.update(submitted)
        fields = build_fields(s, cfg, view.form, data, errors) if view.form else []
        # A clerk with a proxy grant acts too, recording the leader's paper opinion (领导意见代录).
        acting = (view.can_act or bool(view.proxy_for)) and task.kind == "task" and not task.blocked \
            and task.pending is None
        if not acting:
            for f in fields:
                f.readonly = True
        own_opinion = next((f for f in fields if f.name == OPINION), None)
        if own_opinion is not None and acting:
            fields.remove(own_opinion)
        buttons = i18n.buttons(view.config)
        allowed = {b["action"] for b in buttons}
        targets = []
        if acting and "return" in allowed:
            try:
                targets = operations.return_targets(s, cfg, g.user, task_id)
            except EngineError:
                targets = []
        version = VERSIONS.get(s, view.instance.version_id)
        history = instances.history(s, view.instance.id)
        others = [t for t in instances.active_tasks(s, view.instance.id) if t.id != task_id and t.kind == "task"]
        names = _names(s, [task.owner_id, task.assignee_id, *(t.assignee_id for t in view.signers)])
        main = s.get(HumanTask, task.parent_task_id) if task.kind == "signer" else None
        entered = entered or {}
        primary = [b for b in buttons if b["action"] in ("submit", "approve", "reject")]
        units = s.execute(select(Unit.code, Unit.name).order_by(Unit.sort_order, Unit.id)).all() \
            if acting and "cc" in allowed else []
        return render_template(
            "task.html", view=view, task=task, instance=view.instance, fields=fields, history=history,
            others=others, diagram=version.diagram_xml, process_name=version.name, editable=acting,
            can_sign=view.can_act and task.kind == "signer", proxy_only=not view.can_act,
            form_title=view.form.schema.get("title", "") if view.form else "",
            claimable=task.state == "open" and task.assignee_id is None and view.can_act,
            unclaimable=task.state == "open" and task.assignee_id == g.user.id and bool(view.candidates),
            has_errors=bool(errors), errors=errors, names=names, main=main,
            primary=primary, opinion_needed=any(view.config.opinion_required(b["action"]) for b in primary
                                                if b["action"] != "reject") and task.kind == "task",
            panels=[b for b in buttons if b["action"] in PANELS and (b["action"] != "return" or targets)],
            targets=targets, units=units, phrases=operations.phrases(s, g.user) if acting or view.can_act else [],
            opinion=entered.get(OPINION, data.get(OPINION) or ""), signature=entered.get("signature", ""),
            on_behalf_of=entered.get("on_behalf_of", ""),
            withdrawable=task.state == "completed" and task.completed_by_id == g.user.id and task.kind == "task"
            and view.instance.status == "running" and view.config.allow_withdraw,
        ), status


@bp.route("/<task_id>")
@login_required
def show(task_id: str):
    return _render(task_id)


def _entered() -> dict:
    form = request.form
    return {OPINION: form.get(OPINION, "").strip(), "signature": form.get("signature", "").strip() or None,
            "on_behalf_of": form.get("on_behalf_of", "").strip() or None}


@bp.route("/<task_id>", methods=["POST"])
@login_required
def complete(task_id: str):
    """Submit, approve or reject: the main form's buttons (``action``), with opinion and signature."""
    cfg = platform().config
    action = request.form.get("action", "submit")
    entered = _entered()
    submitted = {}
    try:
        with platform().db.session() as s:
            view = tasks.view(s, cfg, g.user, task_id)
        if view.form is not None and view.task.kind == "task" and action != "reject":
            # Uploads are stored in their own transaction so a failed validation keeps them.
            with platform().db.transaction() as s:
                submitted, refused = parse_submission(s, cfg, view.form, request.form, request.files)
            if refused:  # shown at its field, with everything else as it was entered
                raise ValidationFailed("an upload was refused", errors=refused)
            if OPINION in view.form.properties:
                submitted[OPINION] = entered[OPINION]
        opinion, signature, proxy = entered[OPINION] or None, entered["signature"], entered["on_behalf_of"]
        with platform().db.transaction() as s:
            if action == "reject":
                inst = operations.reject(s, cfg, g.user, task_id, opinion, signature, proxy)
            elif action == "approve":
                inst = operations.approve(s, cfg, g.user, task_id, submitted, opinion=opinion, signature=signature,
                                          on_behalf_of=proxy)
            else:
                inst = tasks.complete(s, cfg, g.user, task_id, submitted, opinion=opinion, signature=signature,
                                      on_behalf_of=proxy)
            next_task = next((t for t in instances.active_tasks(s, inst.id) if t.assignee_id == g.user.id), None)
    except ValidationFailed as exc:
        flash(i18n.error_text(exc), "error")
        return _render(task_id, submitted, exc.errors, 422, entered)
    except (Conflict, Forbidden) as exc:
        flash(i18n.error_text(exc), "error")
        return redirect(url_for("tasks.show", task_id=task_id))
    flash(_("Done: %(name)s.", name=view.task.name), "success")
    if next_task is not None:
        return redirect(url_for("tasks.show", task_id=next_task.id))
    return redirect(url_for("inbox.index"))


def _operate(task_id: str, done: str, operation, *args, back_to_task: bool = False):
    """Run one operation in a transaction; flash the outcome; back to the task or to the inbox."""
    try:
        with platform().db.transaction() as s:
            operation(s, platform().config, g.user, *args)
    except ValidationFailed as exc:
        flash(i18n.error_with_details(exc), "error")
        return redirect(url_for("tasks.show", task_id=task_id))
    except (Conflict, Forbidden) as exc:
        flash(i18n.error_text(exc), "error")
        return redirect(url_for("tasks.show", task_id=task_id))
    flash(done, "success")
    return redirect(url_for("tasks.show", task_id=task_id) if back_to_task else url_for("inbox.index"))


def _opinion() -> str | None:
    return request.form.get(OPINION, "").strip() or None


def _usernames(name: str) -> list[str]:
    return [u.strip() for value in request.form.getlist(name) for u in value.replace("，", ",").split(",") if u.strip()]


@bp.route("/<task_id>/return", methods=["POST"])
@login_required
def send_back(task_id: str):
    """退回 to an earlier step, optionally 原路返回."""
    return _operate(task_id, _("Returned."), operations.send_back, task_id, request.form.get("target") or None,
                    _opinion(), request.form.get("straight_back") == "1", request.form.get("on_behalf_of") or None)


@bp.route("/<task_id>/transfer", methods=["POST"])
@login_required
def transfer(task_id: str):
    return _operate(task_id, _("Transferred."), operations.transfer, task_id, request.form.get("to", "").strip(),
                    _opinion())


@bp.route("/<task_id>/delegate", methods=["POST"])
@login_required
def delegate(task_id: str):
    return _operate(task_id, _("Delegated; the task comes back to you once they have acted."), operations.delegate,
                    task_id, request.form.get("to", "").strip(), _opinion())


@bp.route("/<task_id>/signers", methods=["POST"])
@login_required
def add_signers(task_id: str):
    return _operate(task_id, _("Signers added."), operations.add_signers, task_id, _usernames("users"),
                    request.form.get("position", ""), _opinion(), back_to_task=True)


@bp.route("/<task_id>/signers/<signer_id>/remove", methods=["POST"])
@login_required
def remove_signer(task_id: str, signer_id: str):
    return _operate(task_id, _("Signer removed."), operations.remove_signer, signer_id, _opinion(),
                    back_to_task=True)


@bp.route("/<task_id>/cc", methods=["POST"])
@login_required
def copy_to(task_id: str):
    return _operate(task_id, _("Copied."), operations.copy_to, task_id, _usernames("users"),
                    request.form.getlist("units"), request.form.get("note", "").strip(), back_to_task=True)


@bp.route("/<task_id>/withdraw", methods=["POST"])
@login_required
def withdraw(task_id: str):
    """撤回 a step I completed; on success, straight to the step again."""
    try:
        with platform().db.transaction() as s:
            done = s.get(HumanTask, task_id)
            inst = operations.withdraw(s, platform().config, g.user, task_id, _opinion())
            again = next((t for t in instances.active_tasks(s, inst.id)
                          if t.assignee_id == g.user.id and done is not None and t.bpmn_id == done.bpmn_id), None)
    except (Conflict, Forbidden) as exc:
        flash(i18n.error_text(exc), "error")
        return redirect(url_for("tasks.show", task_id=task_id))
    flash(_("Withdrawn: the step is yours again."), "success")
    return redirect(url_for("tasks.show", task_id=again.id) if again else url_for("inbox.index"))


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
