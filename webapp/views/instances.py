"""Process instances: the list (within the data scope) and one instance with history and diagram."""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from engine import instances, operations
from engine.errors import Conflict, Forbidden
from engine.models import ProcessModel, TaskCopy, User
from engine.versions import VERSIONS

from .. import i18n
from ..platform import platform
from ..security import login_required, permission_required

bp = Blueprint("instances", __name__, url_prefix="/instances")
PER_PAGE = 20


def _date(value: str | None):
    try:
        return datetime.fromisoformat(value).astimezone() if value else None
    except ValueError:
        return None


@bp.route("")
@login_required
def index():
    args = request.args
    created_to = _date(args.get("to"))
    filters = instances.Filters(
        process_key=args.get("process") or None, status=args.get("status") or None, q=args.get("q") or None,
        mine=args.get("mine") == "1", created_from=_date(args.get("from")),
        created_to=created_to + timedelta(days=1) if created_to else None,
    )
    if filters.status and filters.status not in instances.STATUSES:
        abort(404)
    page = max(args.get("page", 1, type=int), 1)
    with platform().db.session() as s:
        items, total = instances.query(s, g.user, filters, page, PER_PAGE)
        models = list(s.scalars(select(ProcessModel).order_by(ProcessModel.key)))
    return render_template("instances.html", items=items, total=total, page=page, per_page=PER_PAGE,
                           models=models, filters=filters, statuses=instances.STATUSES, args=args)


@bp.route("/<int:instance_id>")
@login_required
def show(instance_id: int):
    user = g.user
    with platform().db.session() as s:
        inst = instances.get(s, user, instance_id)
        version = VERSIONS.get(s, inst.version_id)
        active = instances.active_tasks(s, inst.id)
        live = inst.status in ("running", "suspended")
        unread = s.scalar(select(TaskCopy.id).where(TaskCopy.instance_id == inst.id, TaskCopy.user_id == user.id,
                                                    TaskCopy.read_at.is_(None)).limit(1)) is not None
        page = render_template(
            "instance.html", instance=inst, version=version, diagram=version.diagram_xml,
            history=instances.history(s, inst.id), active=active, receipts=operations.read_receipts(s, inst.id),
            holders=dict(s.execute(select(User.id, User.name).where(
                User.id.in_({t.assignee_id for t in active if t.assignee_id}))).all()),
            can_urge=inst.status == "running" and bool(active) and (
                inst.initiator_id == user.id or user.can("instance.supervise") or user.can("instance.admin")),
            can_cancel=live and inst.initiator_id == user.id and bool(version.meta.get("allow_cancel")))
    if unread:  # opening an instance copied to me is the read receipt
        with platform().db.transaction() as s:
            operations.mark_copies_read(s, user, instance_id)
    return page


@bp.route("/<int:instance_id>/urge", methods=["POST"])
@login_required
def urge(instance_id: int):
    try:
        with platform().db.transaction() as s:
            n = operations.urge(s, platform().config, g.user, instance_id, request.form.get("opinion", "").strip())
        flash(_("Urged: %(n)s person(s) notified.", n=n), "success")
    except (Conflict, Forbidden) as exc:
        flash(i18n.error_text(exc), "error")
    return redirect(url_for("instances.show", instance_id=instance_id))


@bp.route("/<int:instance_id>/cancel", methods=["POST"])
@login_required
def cancel(instance_id: int):
    try:
        with platform().db.transaction() as s:
            operations.cancel(s, platform().config, g.user, instance_id, request.form.get("opinion", "").strip())
        flash(_("The process is cancelled."), "success")
    except (Conflict, Forbidden) as exc:
        flash(i18n.error_text(exc), "error")
    return redirect(url_for("instances.show", instance_id=instance_id))


@bp.route("/<int:instance_id>/<any(suspend, resume, terminate):action>", methods=["POST"])
@permission_required("instance.admin")
def admin_action(instance_id: int, action: str):
    operation = getattr(instances, action)
    with platform().db.transaction() as s:
        operation(s, platform().config, g.user, instance_id, request.form.get("reason", "").strip()[:500])
    flash({"suspend": _("The process is suspended."), "resume": _("The process is running again."),
           "terminate": _("The process is terminated.")}[action], "success")
    return redirect(url_for("instances.show", instance_id=instance_id))
