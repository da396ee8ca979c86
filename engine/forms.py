"""Task forms: JSON Schema 2020-12 with a ``ui`` block, checked at deploy and enforced on submission.

A form file holds the schema of the data a user task collects plus a ``ui`` block:

    "ui": {"order": [...], "widgets": {"body": "textarea", "lead": "user"}, "readonly": ["title"]}

Widgets: text, textarea, number, date, select, radio, checkboxes, yesno, user, users, unit, units,
file, files, table. Read-only fields show data from earlier steps; their submitted values are ignored.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from .errors import DeployError, ValidationFailed


def N_(message: str) -> str:
    """Mark a message for translation (catalogues are built by the web layer)."""
    return message


WIDGETS = {"text", "textarea", "number", "date", "select", "radio", "checkboxes", "yesno", "user", "users",
           "unit", "units", "file", "files", "table", "hidden"}
REFERENCE_WIDGETS = {"user": "user", "users": "user", "unit": "unit", "units": "unit", "file": "file", "files": "file"}

MESSAGES = {
    "required": N_("This field is required."),
    "minLength": N_("Enter at least %(limit)s characters."),
    "maxLength": N_("Enter at most %(limit)s characters."),
    "minimum": N_("Enter a value of at least %(limit)s."),
    "maximum": N_("Enter a value of at most %(limit)s."),
    "exclusiveMinimum": N_("Enter a value greater than %(limit)s."),
    "exclusiveMaximum": N_("Enter a value less than %(limit)s."),
    "enum": N_("Choose one of the offered options."),
    "const": N_("Choose one of the offered options."),
    "oneOf": N_("Choose one of the offered options."),
    "must_confirm": N_("Please confirm this."),
    "type": N_("Enter a valid value (%(limit)s)."),
    "format": N_("Enter a valid value (%(limit)s)."),
    "pattern": N_("The value does not have the expected format."),
    "minItems": N_("Choose or add at least %(limit)s item(s)."),
    "maxItems": N_("Choose or add at most %(limit)s item(s)."),
    "uniqueItems": N_("Each item may appear only once."),
    "unknown_user": N_("No such user: %(limit)s."),
    "unknown_unit": N_("No such unit: %(limit)s."),
    "unknown_file": N_("The attachment is missing or belongs to someone else."),
    "invalid": N_("This value is not valid."),
    "file_type": N_("Files of this type cannot be attached: PDF, Word, Excel, OFD, images, text and ZIP can."),
    "file_too_large": N_("The file is larger than %(limit)s MB."),
    "file_empty": N_("The file is empty."),
    "file_content": N_("The file's content does not match its type."),
}

# How the "type" and "format" limits read in messages ("Enter a valid value (a whole number).").
LIMIT_NAMES = {
    "integer": N_("a whole number"), "number": N_("a number"), "string": N_("text"), "boolean": N_("yes or no"),
    "array": N_("a list"), "object": N_("a group of fields"), "YYYY-MM-DD": N_("a date such as 2026-01-31"),
}

_FORMATS = FormatChecker(["date", "email"])


@_FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value) -> bool:
    return not isinstance(value, str) or bool(datetime.fromisoformat(value))


@_FORMATS.checks("time", raises=ValueError)
def _is_time(value) -> bool:
    return not isinstance(value, str) or bool(time.fromisoformat(value))


@dataclass(frozen=True)
class FieldError:
    """One problem with one field; ``message`` is an English template with %(limit)s."""

    code: str
    limit: Any = None

    @property
    def message(self) -> str:
        return MESSAGES.get(self.code, MESSAGES["invalid"])

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message % {"limit": self.limit}, "limit": self.limit}


class Form:
    """A loaded task form."""

    def __init__(self, name: str, schema: dict):
        self.name = name
        self.schema = schema
        self.ui = schema.get("ui", {})
        self.properties: dict[str, dict] = schema.get("properties", {})
        self.readonly = set(self.ui.get("readonly", []))
        self.widgets = {name: self.widget(name) for name in self.properties}
        self._validator = Draft202012Validator({k: v for k, v in schema.items() if k != "ui"},
                                               format_checker=_FORMATS)

    @property
    def order(self) -> list[str]:
        listed = [f for f in self.ui.get("order", []) if f in self.properties]
        return listed + [f for f in self.properties if f not in listed]

    @property
    def required(self) -> set[str]:
        return set(self.schema.get("required", []))

    def widget(self, name: str) -> str:
        """The widget for a field: explicit in ui.widgets, else derived from its schema."""
        explicit = self.ui.get("widgets", {}).get(name)
        if explicit:
            return explicit
        prop = self.properties[name]
        kind = prop.get("type")
        if "enum" in prop or "oneOf" in prop:
            return "select"
        if kind == "boolean":
            return "yesno"
        if kind in ("number", "integer"):
            return "number"
        if kind == "array":
            items = prop.get("items", {})
            if items.get("type") == "object":
                return "table"
            if "enum" in items or "oneOf" in items:
                return "checkboxes"
        if prop.get("format") == "date":
            return "date"
        if kind == "string" and prop.get("maxLength", 0) > 200:
            return "textarea"
        return "text"

    def references(self) -> dict[str, str]:
        """Fields whose values point at users, units or attachments: name -> 'user' | 'unit' | 'file'."""
        return {n: REFERENCE_WIDGETS[w] for n, w in self.widgets.items() if w in REFERENCE_WIDGETS}

    def clean(self, submitted: dict, current: dict) -> tuple[dict, dict[str, list[FieldError]]]:
        """Keep only the form's editable fields, take read-only ones from current data, validate.

        Returns the cleaned data and the errors per field (empty when valid).
        """
        data = {}
        for name in self.properties:
            if name in self.readonly:
                if name in current:
                    data[name] = current[name]
                continue
            value = submitted.get(name)
            if isinstance(value, str):
                value = value.strip()  # "   " is no answer, and does not satisfy minLength
            if value is not None and value != "":
                data[name] = value
            elif "default" in self.properties[name]:
                data[name] = copy.deepcopy(self.properties[name]["default"])
        errors: dict[str, list[FieldError]] = {}
        for err in self._validator.iter_errors(data):
            path = [str(p) for p in err.absolute_path]
            if err.validator == "required":
                missing = err.message.split("'")[1] if "'" in err.message else ""
                path.append(missing)
            key = ".".join(path) or "__all__"
            limit = err.validator_value if err.validator in (
                "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                "minItems", "maxItems", "type", "format") else None
            code = err.validator if err.validator in MESSAGES else "invalid"
            if err.validator == "const" and err.validator_value is True:
                code = "must_confirm"
            if err.validator == "format":
                limit = {"date": "YYYY-MM-DD", "date-time": "YYYY-MM-DDTHH:MM"}.get(err.validator_value, limit)
            errors.setdefault(key, []).append(FieldError(code, limit))
        return data, errors


def load_form(name: str, text: str) -> Form:
    """Parse and check a form file; raise DeployError naming the file and the problem."""
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeployError(f"not valid JSON: {exc.msg}", file=name, line=exc.lineno) from None
    if not isinstance(schema, dict):
        raise DeployError("a form must be a JSON object", file=name)
    try:
        Draft202012Validator.check_schema({k: v for k, v in schema.items() if k != "ui"})
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise DeployError(f"not a valid JSON Schema at {where}: {exc.message}", file=name) from None
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise DeployError('a form schema must have "type": "object" and "properties"', file=name)
    ui = schema.get("ui", {})
    if not isinstance(ui, dict):
        raise DeployError('"ui" must be an object', file=name)
    props = schema["properties"]
    for field, prop in props.items():
        if not isinstance(prop, dict):
            raise DeployError(f'property "{field}" must be a schema object', file=name)
    for key in ("order", "readonly"):
        listed = ui.get(key, [])
        if not isinstance(listed, list) or not all(isinstance(f, str) for f in listed):
            raise DeployError(f"ui.{key} must be a list of property names", file=name)
        for field in listed:
            if field not in props:
                raise DeployError(f'ui.{key} names "{field}", which is not a property', file=name)
    if not isinstance(ui.get("widgets", {}), dict):
        raise DeployError("ui.widgets must be an object", file=name)
    for field, widget in ui.get("widgets", {}).items():
        if field not in props:
            raise DeployError(f'ui.widgets names "{field}", which is not a property', file=name)
        if not isinstance(widget, str) or widget not in WIDGETS:
            raise DeployError(f'unknown widget "{widget}" for "{field}" (known: {", ".join(sorted(WIDGETS))})',
                              file=name)
    return Form(name, schema)


def raise_for(errors: dict[str, list[FieldError]]) -> None:
    """Raise ValidationFailed (422) with per-field errors, if there are any."""
    if errors:
        raise ValidationFailed("the submitted data is not valid",
                               errors={k: [e.as_dict() for e in v] for k, v in errors.items()})
