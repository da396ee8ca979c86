"""Administration: process versions, deployment, tasks whose rule matched nobody, instances in error."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from engine import tasks
from engine.deploy import Bundle, deploy
from engine.errors import DeployError, ValidationFailed
from engine.models import ProcessInstance, ProcessModel, ProcessVersion, User

from .. import i18n
from ..platform import platform
from ..security import permission_required

bp = Blueprint("admin", __name__, url_prefix="/admin")
MAX_FILES = 50


@bp.route("")
@permission_required("instance.admin")
def index():
    with platform().db.session() as s:
        versions = list(s.execute(select(ProcessVersion, ProcessModel.name, User.name)
                                  .join(ProcessModel, ProcessModel.key == ProcessVersion.process_key)
                                  .outerjoin(User, User.id == ProcessVersion.deployed_by_id)
                                  .order_by(ProcessVersion.process_key, ProcessVersion.version.desc())))
        unassigned, _total = tasks.inbox(s, g.user, "unassigned", 1, 100)
        failing = list(s.scalars(select(ProcessInstance).where(ProcessInstance.status == "error")
                                 .order_by(ProcessInstance.updated_at.desc()).limit(100)))
    return render_template("admin.html", versions=versions, unassigned=unassigned, failing=failing)


def bundle_from_upload(form, uploads) -> Bundle:
    """A bundle from an upload: BPMN/DMN and *.schema.json files plus key and name fields."""
    items = [f for f in uploads.getlist("files") if f and f.filename][:MAX_FILES]
    if not items:
        raise DeployError("choose the BPMN file and its forms")
    contents = {}
    for item in items:
        name = item.filename.rsplit("/", 1)[-1]
        try:
            contents[name] = item.read().decode("utf-8")
        except UnicodeDecodeError:
            raise DeployError("the file is not UTF-8 text", file=name) from None
    return Bundle(key=form.get("key", "").strip(), name=form.get("name", "").strip() or form.get("key", ""),
                  files=contents, category=form.get("category", "").strip())


@bp.route("/deploy", methods=["POST"])
@permission_required("process.deploy")
def deploy_upload():
    try:
        bundle = bundle_from_upload(request.form, request.files)
        with platform().db.transaction() as s:
            version, created = deploy(s, bundle, g.user, platform().registry.operations())
            message = (_("Deployed %(key)s version %(n)s.", key=version.process_key, n=version.version) if created
                       else _("%(key)s version %(n)s already has this content.", key=version.process_key,
                              n=version.version))
        flash(message, "success")
    except DeployError as exc:
        flash(_("Not deployed: %(reason)s", reason=exc.message), "error")
    return redirect(url_for("admin.index"))


@bp.route("/tasks/<task_id>/assign", methods=["POST"])
@permission_required("instance.admin")
def assign(task_id: str):
    try:
        with platform().db.transaction() as s:
            tasks.assign(s, platform().config, g.user, task_id, request.form.get("username", "").strip(),
                         request.form.get("reason", "").strip()[:500])
        flash(_("The task is assigned."), "success")
    except ValidationFailed as exc:
        flash(i18n.error_with_details(exc), "error")
    return redirect(url_for("admin.index"))
