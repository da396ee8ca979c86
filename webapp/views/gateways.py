"""Edge gateways for monitoring administrators: their state and last contact, registering one (its credential is
shown once), and its settings: name, enabled, how long it may stay unheard before its silence alarm."""
from __future__ import annotations

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from engine import alarms, clock, monitoring
from engine.errors import EngineError, ValidationFailed
from engine.models import Enterprise
from engine.models.monitoring import Gateway

from .. import i18n
from ..platform import platform
from ..security import permission_required

bp = Blueprint("gateways", __name__, url_prefix="/alarms/gateways")
MAX_MINUTES = monitoring.MAX_SILENT_AFTER_S // 60
PICKER_SIZE = 20
STATES = {"reporting": _l("Reporting"), "silent": _l("Communication lost"), "never": _l("Never reported"),
          "disabled": _l("Disabled")}


@bp.app_context_processor
def labels():
    return {"gateway_state_text": lambda s: STATES.get(s, s)}


def _state(gateway: Gateway, now) -> str:
    """disabled | never (has not reported yet) | silent (unheard for longer than its threshold) | reporting."""
    if not gateway.enabled:
        return "disabled"
    if gateway.last_seen_at is None:
        return "never"
    return "silent" if now - gateway.last_seen_at > alarms.silent_after(gateway) else "reporting"


def _row(gateway: Gateway, now) -> dict:
    return {"gateway": gateway, "state": _state(gateway, now),
            "minutes": alarms.silent_after(gateway).total_seconds() // 60}


@bp.route("")
@permission_required(monitoring.PERMISSION)
def index(new_token: str | None = None, new_code: str | None = None, form: dict | None = None,
          errors: dict | None = None, status: int = 200):
    with platform().db.session() as s:
        now = clock.now()
        rows = [_row(gw, now) for gw in monitoring.gateways(s, g.user)]
        names = dict(s.execute(select(Enterprise.id, Enterprise.name).where(
            Enterprise.id.in_({r["gateway"].enterprise_id for r in rows}))).all()) if rows else {}
        offered = monitoring.enterprises(s, g.user, limit=PICKER_SIZE)  # the picker's first suggestions
    return render_template("gateways.html", rows=rows, enterprises=names, offered=offered, new_token=new_token,
                           new_code=new_code, form=form or {}, errors=errors or {},
                           default_minutes=alarms.SILENT_AFTER_S // 60), status


@bp.route("", methods=["POST"])
@permission_required(monitoring.PERMISSION)
def register():
    form = {k: request.form.get(k, "").strip() for k in ("code", "name", "enterprise")}
    try:
        with platform().db.transaction() as s:
            enterprise = monitoring.enterprise_named(s, g.user, form["enterprise"])
            gateway, token = monitoring.create_gateway(s, g.user, form["code"], enterprise.id, form["name"][:200])
            code = gateway.code
    except ValidationFailed as exc:
        return index(form=form, errors=_field_errors(exc), status=422)
    except EngineError as exc:
        flash(i18n.error_with_details(exc), "error")
        return redirect(url_for("gateways.index"))
    # Rendered, not redirected: the credential is shown once and never stored in the session cookie.
    return index(new_token=token, new_code=code)


@bp.route("/enterprises")
@permission_required(monitoring.PERMISSION)
def enterprises():
    """The picker's lookup: enterprises matching a name or credit-code fragment, as datalist options."""
    q = request.args.get("q", "").strip()[:50]
    with platform().db.session() as s:
        return jsonify([{"value": e.credit_code, "label": e.name}
                        for e in monitoring.enterprises(s, g.user, q, limit=PICKER_SIZE)])


@bp.route("/<int:gateway_id>")
@permission_required(monitoring.PERMISSION)
def edit(gateway_id: int, form: dict | None = None, errors: dict | None = None, new_token: str | None = None,
         status: int = 200):
    with platform().db.session() as s:
        gateway = monitoring.gateway(s, g.user, gateway_id)
        enterprise = s.get(Enterprise, gateway.enterprise_id)
    if form is None:
        form = {"name": gateway.name, "enabled": gateway.enabled,
                "minutes": "" if gateway.silent_after_s is None else str(gateway.silent_after_s // 60)}
    return render_template("gateway.html", gateway=gateway, state=_state(gateway, clock.now()), enterprise=enterprise,
                           form=form, errors=errors or {}, new_token=new_token, max_minutes=MAX_MINUTES,
                           default_minutes=alarms.SILENT_AFTER_S // 60), status


@bp.route("/<int:gateway_id>", methods=["POST"])
@permission_required(monitoring.PERMISSION)
def save(gateway_id: int):
    form = {"name": request.form.get("name", "").strip(), "enabled": request.form.get("enabled") == "on",
            "minutes": request.form.get("minutes", "").strip()}
    changes = {"name": form["name"], "enabled": form["enabled"]}
    if form["minutes"]:
        try:
            changes["silent_after_s"] = int(form["minutes"]) * 60
        except ValueError:
            return edit(gateway_id, form, {"minutes": [_("Enter whole minutes, or leave it empty for the default.")]},
                        status=422)
    else:
        changes["silent_after_s"] = None
    try:
        with platform().db.transaction() as s:
            monitoring.update_gateway(s, g.user, gateway_id, changes)
    except ValidationFailed as exc:
        return edit(gateway_id, form, _field_errors(exc), status=422)
    flash(_("The gateway's settings are saved."), "success")
    return redirect(url_for("gateways.index"))


@bp.route("/<int:gateway_id>/credential", methods=["POST"])
@permission_required(monitoring.PERMISSION)
def rotate(gateway_id: int):
    """A new credential; the old one stops working at once. Shown once, like a new gateway's."""
    with platform().db.transaction() as s:
        token = monitoring.rotate_token(s, g.user, gateway_id)
    return edit(gateway_id, new_token=token)


def _field_errors(exc: ValidationFailed) -> dict[str, list[str]]:
    """The engine's field errors as messages for the form (minutes, not the engine's seconds)."""
    texts = {
        "name": _("Enter a name of at most 200 characters."),
        "code": _("A gateway code is 1 to 64 letters, digits, '.', '-' or '_', and not taken."),
        "silent_after_s": _("Between 1 minute and %(max)s minutes (7 days).", max=MAX_MINUTES),
        "enterprise": _("Choose the enterprise from the list (its name or credit code)."),
    }
    errors = {("minutes" if key == "silent_after_s" else key): [texts.get(key, i18n.error_text(exc))]
              for key in exc.errors}
    return errors or {"form": [i18n.error_text(exc)]}
