"""Server-side rendering of JSON-Schema task forms, and parsing the submitted HTML form back to JSON.

HTML field names: ``f.<field>`` for plain fields, repeated for multiple values, ``f.<field>.<row>.<col>``
for table cells, and ``upload.<field>`` for new files. Everything is validated again by the engine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import g
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from engine import files
from engine.config import Config
from engine.errors import ValidationFailed
from engine.forms import Form
from engine.models import Unit, User


@dataclass
class Field:
    name: str
    label: str
    widget: str
    value: Any = None
    required: bool = False
    readonly: bool = False
    help: str = ""
    options: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    columns: list[Field] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    attachments: list = field(default_factory=list)
    display: str = ""
    input_type: str = "text"
    minimum: Any = None
    maximum: Any = None
    max_length: int | None = None

    @property
    def html_name(self) -> str:
        return f"f.{self.name}"

    def selected(self, value) -> bool:
        current = self.value if isinstance(self.value, list) else [self.value]
        return str(value) in [str(v) for v in current if v is not None]


def _options(prop: dict) -> list[tuple[str, str]]:
    if "oneOf" in prop:
        return [(str(o.get("const")), o.get("title", str(o.get("const")))) for o in prop["oneOf"] if "const" in o]
    if "enum" in prop:
        return [(str(v), str(v)) for v in prop["enum"]]
    items = prop.get("items", {})
    if items:
        return _options(items)
    return []


def _make_field(name: str, prop: dict, widget: str, required: bool, readonly: bool, value) -> Field:
    f = Field(name=name, label=prop.get("title", name), widget=widget, value=value, required=required,
              readonly=readonly, help=prop.get("description", ""), options=_options(prop),
              minimum=prop.get("minimum"), maximum=prop.get("maximum"), max_length=prop.get("maxLength"))
    if widget == "number":
        f.input_type = "number"
    elif widget == "date":
        f.input_type = "date"
    return f


def build_fields(session: Session, config: Config, form: Form, data: dict, errors: dict[str, list[str]] | None = None,
                 units: list[Unit] | None = None) -> list[Field]:
    """The fields of a form with values, options, and translated errors, in display order."""
    errors = errors or {}
    out = []
    attachment_ids = []
    for name in form.order:
        widget = form.widgets[name]
        if widget in ("file", "files"):
            value = data.get(name)
            attachment_ids.extend(value if isinstance(value, list) else [value] if value else [])
    described = files.describe(session, attachment_ids)
    units = units if units is not None else list(session.scalars(select(Unit).order_by(Unit.sort_order, Unit.id)))
    unit_names = {u.code: u.name for u in units}
    for name in form.order:
        prop = form.properties[name]
        widget = form.widgets[name]
        if widget == "hidden":
            continue
        f = _make_field(name, prop, widget, name in form.required, name in form.readonly, data.get(name))
        f.errors = [m for key, msgs in errors.items() if key == name or key.startswith(name + ".") for m in msgs]
        if widget in ("unit", "units"):
            f.options = [(u.code, u.name) for u in units]
            values = f.value if isinstance(f.value, list) else [f.value] if f.value else []
            f.display = "、".join(unit_names.get(str(v), str(v)) for v in values)
        elif widget in ("user", "users"):
            values = f.value if isinstance(f.value, list) else [f.value] if f.value else []
            names = dict(session.execute(select(User.username, User.name).where(User.username.in_(values))).all())
            f.display = "、".join(f"{names.get(v, v)}" for v in values)
        elif widget in ("file", "files"):
            values = f.value if isinstance(f.value, list) else [f.value] if f.value else []
            f.attachments = [described[v] for v in values if v in described]
        elif widget == "table":
            items = prop.get("items", {})
            req = set(items.get("required", []))
            f.columns = [_make_field(c, p, _cell_widget(p), c in req, False, None)
                         for c, p in items.get("properties", {}).items()]
            f.rows = [r for r in (f.value or []) if isinstance(r, dict)]
        elif widget in ("select", "radio", "checkboxes") or (widget == "yesno"):
            labels = dict(f.options)
            values = f.value if isinstance(f.value, list) else [f.value]
            if widget == "yesno":
                f.display = {True: "是", False: "否"}.get(f.value, "")
            else:
                f.display = "、".join(labels.get(str(v), str(v)) for v in values if v is not None)
        else:
            f.display = "" if f.value is None else str(f.value)
        out.append(f)
    return out


def _cell_widget(prop: dict) -> str:
    if "enum" in prop or "oneOf" in prop:
        return "select"
    if prop.get("type") in ("number", "integer"):
        return "number"
    if prop.get("format") == "date":
        return "date"
    return "text"


def _convert(prop: dict, raw: str):
    """An HTML string to the JSON type the schema asks for; unconvertible values stay strings."""
    raw = raw.strip()
    if raw == "":
        return None
    kind = prop.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
    except ValueError:
        return raw
    if kind == "boolean":
        return {"true": True, "false": False, "on": True}.get(raw.lower(), raw)
    return raw


def parse_submission(session: Session, config: Config, form: Form, values: MultiDict,
                     uploads: MultiDict) -> tuple[dict, dict]:
    """Turn request.form/request.files into form data; new files are stored and referenced by id.
    Returns (data, errors): a refused upload is an error of its own field, and the rest is still read."""
    data: dict[str, Any] = {}
    errors: dict[str, list] = {}
    for name in form.order:
        if name in form.readonly:
            continue
        prop = form.properties[name]
        widget = form.widgets[name]
        key = f"f.{name}"
        if widget in ("checkboxes", "users", "units"):
            items = prop.get("items", {})
            data[name] = [v for v in (_convert(items, x) for x in values.getlist(key)) if v is not None]
        elif widget in ("file", "files"):
            kept = [v for v in values.getlist(key) if v]
            for upload in uploads.getlist(f"upload.{name}"):
                if upload and upload.filename:
                    try:
                        kept.append(files.store(session, config, g.user, upload.filename, upload.mimetype,
                                                upload.stream).id)
                    except ValidationFailed as exc:
                        errors.setdefault(name, []).extend(exc.errors["file"])
            data[name] = kept if widget == "files" else (kept[-1] if kept else None)
        elif widget == "table":
            items = prop.get("items", {})
            columns = items.get("properties", {})
            rows: dict[int, dict] = {}
            prefix = f"f.{name}."
            for k in values:
                if not k.startswith(prefix):
                    continue
                parts = k[len(prefix):].split(".", 1)
                if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in columns:
                    continue
                value = _convert(columns[parts[1]], values.get(k, ""))
                if value is not None:
                    rows.setdefault(int(parts[0]), {})[parts[1]] = value
            data[name] = [rows[i] for i in sorted(rows) if rows[i]]
        else:
            raw = values.get(key)
            if raw is not None:
                data[name] = _convert(prop, raw)
    return data, errors
