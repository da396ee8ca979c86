"""The handling sheet (办理单/签批单) of an instance: the document's fields and every person's decision, in order.

``build`` gathers plain data for the printable page and the PDF; both only lay it out. The document
fields are those of the process's first user task form (the draft or sign-in form), in their ui order,
followed by the read-only fields later forms show that it lacks (发文字号, 收文登记号 …) once they have a
value. The steps are the audit events that carry a person's decision.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import instances
from .errors import NotFound
from .forms import Form
from .models import Attachment, InstanceEvent, ProcessInstance, Signature, Unit, User
from .runtime import instance_data
from .versions import VERSIONS, VersionRuntime

STEP_KINDS = ("task_completed", "task_returned", "signer_signed", "delegation_resolved", "task_auto_completed")
DECISIONS = {"approve": "同意", "agree": "同意", "reject": "不同意", "disagree": "不同意", "return": "退回",
             "auto": "自动通过"}
LONG_WIDGETS = {"textarea", "table"}
SKIPPED_FIELDS = {"opinion"}  # the drafter's note is the first step's opinion, not a document field


@dataclass
class SheetField:
    """One document field as people read it; ``long`` fields take a whole row."""

    name: str
    title: str
    value: str
    long: bool = False


@dataclass
class SheetStep:
    """One person's decision on one step, with their opinion and signature (a Signature id)."""

    step: str
    who: str
    opinion: str
    decision: str
    at: str  # YYYY-MM-DD HH:MM in the sheet's time zone
    signature_id: str | None = None


@dataclass
class Sheet:
    """What a handling sheet shows; times are already formatted, ``status`` is the instance's status code."""

    instance_id: int
    organisation: str  # the top unit of the instance's unit, e.g. 广西壮族自治区应急管理厅
    title: str  # process.json "sheet_title", else f"{process name}处理单"
    process_name: str
    instance_title: str
    business_key: str
    status: str
    started_at: str
    ended_at: str
    fields: list[SheetField] = field(default_factory=list)
    steps: list[SheetStep] = field(default_factory=list)


def build(session: Session, instance: ProcessInstance, timezone: str = "Asia/Shanghai") -> Sheet:
    """Assemble the sheet of an instance the caller may see (check with engine.instances.get first)."""
    version = VERSIONS.get(session, instance.version_id)
    tz = ZoneInfo(timezone)
    names = _Names(session)
    forms = _forms_in_flow_order(version)
    data = instance_data(session, instance)
    return Sheet(
        instance_id=instance.id, organisation=_organisation(session, instance), process_name=version.name,
        title=version.meta.get("sheet_title") or f"{version.name}处理单", instance_title=instance.title,
        business_key=instance.business_key or "", status=instance.status,
        started_at=_when(instance.created_at, tz), ended_at=_when(instance.ended_at, tz),
        fields=_fields(forms, data, names, tz),
        steps=[_step(e, version, names, tz) for e in instances.history(session, instance.id) if e.kind in STEP_KINDS],
    )


def signature_image(session: Session, user, signature_id: str) -> bytes:
    """A signature's PNG for a reader who may see its instance; NotFound otherwise (as for the instance)."""
    row = session.get(Signature, signature_id)
    if row is None or (row.instance_id is None and row.user_id != user.id):
        raise NotFound("signature not found")
    if row.instance_id is not None:
        instances.get(session, user, row.instance_id)
    return row.image


def signature_images(session: Session, sheet: Sheet) -> dict[str, bytes]:
    """The PNGs of the sheet's signatures by id (all belong to the sheet's instance)."""
    ids = {s.signature_id for s in sheet.steps if s.signature_id}
    if not ids:
        return {}
    return dict(session.execute(select(Signature.id, Signature.image).where(
        Signature.id.in_(ids), Signature.instance_id == sheet.instance_id)).all())


def field_rows(fields: list[SheetField], short: int = 18) -> list[list[SheetField]]:
    """The fields laid out two to a row, as paper forms do; a long field (or value) takes a row alone."""
    rows, pending = [], None
    for f in fields:
        if f.long or len(f.value) > short:
            if pending is not None:  # keep the fields' order: the waiting short one gets its row first
                rows.append([pending])
                pending = None
            rows.append([f])
        elif pending is not None:
            rows.append([pending, f])
            pending = None
        else:
            pending = f
    if pending is not None:
        rows.append([pending])
    return rows


def _forms_in_flow_order(version: VersionRuntime) -> list[Form]:
    """The user task forms in the order the flow meets them from the start event (breadth first)."""
    user_tasks = version.meta.get("user_tasks", {})
    seen, out, queue = set(), [], deque([version.spec.start])
    while queue:
        spec = queue.popleft()
        if spec.name in seen:
            continue
        seen.add(spec.name)
        info = user_tasks.get(getattr(spec, "bpmn_id", None) or "")
        form = version.form(info.get("form")) if info else None
        if form is not None and form not in out:
            out.append(form)
        queue.extend(spec.outputs)
    return out


def _fields(forms: list[Form], data: dict, names: _Names, tz: ZoneInfo) -> list[SheetField]:
    if not forms:
        return []
    first, out = forms[0], []
    for name in first.order:
        if name not in SKIPPED_FIELDS and first.widgets[name] != "hidden":
            out.append(_field(first, name, data.get(name), names, tz))
    shown = set(first.properties)
    for form in forms[1:]:
        for name in form.order:
            if name in form.readonly and name not in shown and name not in SKIPPED_FIELDS \
                    and data.get(name) not in (None, "", []):
                shown.add(name)
                out.append(_field(form, name, data[name], names, tz))
    return out


def _field(form: Form, name: str, value, names: _Names, tz: ZoneInfo) -> SheetField:
    prop, widget = form.properties[name], form.widgets[name]
    return SheetField(name=name, title=prop.get("title") or name, value=_text(prop, widget, value, names, tz),
                      long=widget in LONG_WIDGETS)


def _text(prop: dict, widget: str, value, names: _Names, tz: ZoneInfo) -> str:
    """A value as people read it: choice titles, names for codes and ids, dates, lists joined with 、."""
    if value is None or value == "" or value == []:
        return ""
    if widget in ("user", "users", "unit", "units", "file", "files"):
        kind = widget.rstrip("s")
        return "、".join(names.get(kind, str(v)) for v in (value if isinstance(value, list) else [value]))
    if widget == "table" and isinstance(value, list):
        return "；".join(_row(row, prop.get("items", {}).get("properties", {}), tz) for row in value)
    if isinstance(value, list):
        return "、".join(_plain(v, prop.get("items", {}), tz) for v in value)
    return _plain(value, prop, tz)


def _plain(value, prop: dict, tz: ZoneInfo) -> str:
    """One scalar: a oneOf title, 是/否, a date as YYYY-MM-DD, a date-time in the sheet's zone."""
    for option in prop.get("oneOf", []):
        if option.get("const") == value:
            return option.get("title") or str(value)
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    fmt = prop.get("format")
    if isinstance(value, str) and fmt in ("date", "date-time"):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        if fmt == "date":
            return f"{parsed:%Y-%m-%d}"
        return _when(parsed if parsed.tzinfo else parsed.replace(tzinfo=tz), tz)
    return str(value)


def _row(row, columns: dict, tz: ZoneInfo) -> str:
    """A table row as "title：value，title：value"."""
    if not isinstance(row, dict):
        return str(row)
    return "，".join(f"{columns.get(k, {}).get('title', k)}：{_plain(v, columns.get(k, {}), tz)}"
                    for k, v in row.items() if v not in (None, ""))


def _step(e: InstanceEvent, version: VersionRuntime, names: _Names, tz: ZoneInfo) -> SheetStep:
    detail = e.detail or {}
    step = e.task_name or e.bpmn_id or ""
    if detail.get("loop_item"):  # a counter-sign is for a unit or a person: say whose
        step = f"{step}（{names.label(detail['loop_item'])}）"
    who = e.actor_name
    proxy = detail.get("on_behalf_of")
    if proxy:  # a clerk recorded a leader's paper opinion: the leader decided, the clerk entered it
        who = f"{proxy.get('name')}（{e.actor_name}代录）"
    return SheetStep(step=step, who=who, opinion=e.opinion or "", decision=_decision(e, version),
                     at=_when(e.at, tz), signature_id=detail.get("signature"))


def _decision(e: InstanceEvent, version: VersionRuntime) -> str:
    """The decision in Chinese where the event carries one: given explicitly, or a *decision form field."""
    detail = e.detail or {}
    if e.kind == "task_auto_completed":
        return DECISIONS["auto"]
    if e.kind == "task_returned":
        return DECISIONS.get(detail.get("decision") or detail.get("action") or "return", DECISIONS["return"])
    if detail.get("label"):  # the task's own button wording, e.g. 批示
        return detail["label"]
    if detail.get("decision"):
        return DECISIONS.get(detail["decision"], str(detail["decision"]))
    # Only changed values are recorded, so a decision repeated in a later round may not show here.
    for name, value in (detail.get("changes") or {}).items():
        if name.endswith("decision") and isinstance(value, str):
            form = version.form(version.user_task(e.bpmn_id or "").get("form"))
            prop = form.properties.get(name, {}) if form is not None else {}
            title = next((o.get("title") for o in prop.get("oneOf", []) if o.get("const") == value), None)
            return title or DECISIONS.get(value, value)
    return ""


def _when(value: datetime | None, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value else ""


def _organisation(session: Session, instance: ProcessInstance) -> str:
    """The name of the top unit above the instance's unit (the department issuing the sheet)."""
    unit = session.get(Unit, instance.unit_id) if instance.unit_id else None
    for _ in range(20):  # unit trees are shallow; the bound guards against a cycle in bad data
        if unit is None or unit.parent_id is None:
            break
        unit = session.get(Unit, unit.parent_id)
    return unit.name if unit is not None else ""


class _Names:
    """People's names, unit names and file names for the codes and ids stored in form data (cached)."""

    def __init__(self, session: Session):
        self.session = session
        self._cache: dict[tuple[str, str], str] = {}

    def get(self, kind: str, key: str) -> str:
        if (kind, key) not in self._cache:
            column, where = {"user": (User.name, User.username), "unit": (Unit.name, Unit.code),
                             "file": (Attachment.filename, Attachment.id)}[kind]
            self._cache[kind, key] = self.session.scalar(select(column).where(where == key)) or key
        return self._cache[kind, key]

    def label(self, item: str) -> str:
        """A multi-instance item: a unit code or a username, shown as its name."""
        name = self.get("unit", item)
        return name if name != item else self.get("user", item)
