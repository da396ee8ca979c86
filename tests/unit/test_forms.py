"""Task forms: loading refuses bad files with the file (and line) named; clean() enforces the schema."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import DeployError, ValidationFailed
from engine.forms import Form, load_form, raise_for

FORMS_DIR = Path(__file__).resolve().parents[2] / "forms"


def form(properties: dict, required=(), ui=None, **extra) -> Form:
    schema = {"type": "object", "properties": properties, "required": list(required), **extra}
    if ui is not None:
        schema["ui"] = ui
    return load_form("test.schema.json", json.dumps(schema))


def codes(errors) -> dict[str, list[str]]:
    return {key: [e.code for e in found] for key, found in errors.items()}


def load_error(text: str) -> DeployError:
    with pytest.raises(DeployError) as caught:
        load_form("bad.schema.json", text)
    assert caught.value.file == "bad.schema.json"
    assert caught.value.message.startswith("bad.schema.json")
    return caught.value


# -- loading -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(FORMS_DIR.rglob("*.json")), ids=lambda p: str(p.relative_to(FORMS_DIR)))
def test_every_shipped_form_loads(path):
    loaded = load_form(path.name, path.read_text(encoding="utf-8"))
    assert loaded.properties
    assert set(loaded.order) == set(loaded.properties)


def test_invalid_json_is_refused_with_its_line():
    err = load_error('{\n  "type": "object",\n  "properties": {},\n}\n')
    assert err.line == 4
    assert "line 4: not valid JSON" in err.message


def test_a_schema_that_is_not_json_schema_is_refused():
    err = load_error('{"type": 5, "properties": {}}')
    assert "not a valid JSON Schema at type" in err.message


def test_a_bad_keyword_deep_inside_is_located():
    err = load_error(json.dumps({"type": "object", "properties": {"a": {"type": "string", "minLength": "x"}}}))
    assert "not a valid JSON Schema at properties/a/minLength" in err.message


@pytest.mark.parametrize("text", ["[]", '"form"', "5"])
def test_a_form_must_be_an_object(text):
    assert "a form must be a JSON object" in load_error(text).message


@pytest.mark.parametrize("schema", [{"type": "array", "properties": {}}, {"type": "object"}, {"properties": {"a": {}}}])
def test_a_form_schema_must_describe_an_object_with_properties(schema):
    assert '"type": "object" and "properties"' in load_error(json.dumps(schema)).message


def test_a_property_must_be_a_schema_object():
    err = load_error(json.dumps({"type": "object", "properties": {"a": True}}))
    assert 'property "a" must be a schema object' in err.message


def test_unknown_widgets_are_refused():
    err = load_error(json.dumps({"type": "object", "properties": {"a": {"type": "string"}},
                                 "ui": {"widgets": {"a": "slider"}}}))
    assert 'unknown widget "slider" for "a"' in err.message


def test_widgets_for_unknown_properties_are_refused():
    err = load_error(json.dumps({"type": "object", "properties": {"a": {"type": "string"}},
                                 "ui": {"widgets": {"b": "text"}}}))
    assert 'ui.widgets names "b", which is not a property' in err.message


@pytest.mark.parametrize("key", ["order", "readonly"])
def test_ui_lists_naming_unknown_properties_are_refused(key):
    err = load_error(json.dumps({"type": "object", "properties": {"a": {"type": "string"}}, "ui": {key: ["a", "b"]}}))
    assert f'ui.{key} names "b", which is not a property' in err.message


@pytest.mark.parametrize(("ui", "problem"), [
    ([], '"ui" must be an object'),
    ({"order": "a"}, "ui.order must be a list of property names"),
    ({"readonly": None}, "ui.readonly must be a list of property names"),
    ({"order": [["a"]]}, "ui.order must be a list of property names"),
    ({"widgets": ["a"]}, "ui.widgets must be an object"),
    ({"widgets": {"a": ["text"]}}, 'unknown widget "[\'text\']" for "a"'),
])
def test_a_malformed_ui_block_is_refused(ui, problem):
    err = load_error(json.dumps({"type": "object", "properties": {"a": {"type": "string"}}, "ui": ui}))
    assert problem in err.message


def test_widgets_are_derived_from_the_schema():
    f = form({
        "name": {"type": "string"}, "body": {"type": "string", "maxLength": 5000}, "n": {"type": "integer"},
        "ok": {"type": "boolean"}, "kind": {"enum": ["a", "b"]}, "on": {"type": "string", "format": "date"},
        "tags": {"type": "array", "items": {"enum": ["x", "y"]}},
        "rows": {"type": "array", "items": {"type": "object", "properties": {}}},
        "lead": {"type": "string"},
    }, ui={"widgets": {"lead": "user"}})
    assert f.widgets == {"name": "text", "body": "textarea", "n": "number", "ok": "yesno", "kind": "select",
                         "on": "date", "tags": "checkboxes", "rows": "table", "lead": "user"}
    assert f.references() == {"lead": "user"}


def test_order_lists_named_fields_first_then_the_rest():
    f = form({"a": {}, "b": {}, "c": {}}, ui={"order": ["c", "a"]})
    assert f.order == ["c", "a", "b"]


# -- clean -------------------------------------------------------------------------------------------

def test_clean_drops_unknown_keys():
    data, errors = form({"a": {"type": "string"}}).clean({"a": "x", "evil": 1, "__class__": 2}, {})
    assert data == {"a": "x"} and errors == {}


def test_clean_ignores_submitted_read_only_values_and_keeps_current_data():
    f = form({"title": {"type": "string"}, "note": {"type": "string"}}, ui={"readonly": ["title"]})
    data, errors = f.clean({"title": "forged", "note": "n"}, {"title": "original", "other": 1})
    assert data == {"title": "original", "note": "n"} and errors == {}


def test_clean_leaves_out_a_read_only_field_the_data_does_not_have():
    f = form({"title": {"type": "string"}}, ui={"readonly": ["title"]})
    assert f.clean({"title": "forged"}, {}) == ({}, {})


def test_clean_applies_defaults_as_fresh_copies():
    f = form({"tags": {"type": "array", "default": []}, "n": {"type": "integer", "default": 3}})
    first, _ = f.clean({}, {})
    first["tags"].append("x")
    second, errors = f.clean({}, {})
    assert second == {"tags": [], "n": 3} and errors == {}


def test_submitted_values_win_over_defaults():
    assert form({"n": {"type": "integer", "default": 3}}).clean({"n": 7}, {})[0] == {"n": 7}


@pytest.mark.parametrize("empty", [None, ""])
def test_empty_values_count_as_missing(empty):
    data, errors = form({"a": {"type": "string"}}, required=["a"]).clean({"a": empty}, {})
    assert data == {} and codes(errors) == {"a": ["required"]}


def test_required():
    _, errors = form({"a": {"type": "string"}, "b": {"type": "string"}}, required=["a", "b"]).clean({"b": "x"}, {})
    assert codes(errors) == {"a": ["required"]}
    assert errors["a"][0].as_dict()["message"] == "This field is required."


def test_min_and_max_length_report_the_limit():
    f = form({"title": {"type": "string", "minLength": 2, "maxLength": 5}})
    _, short = f.clean({"title": "x"}, {})
    _, long = f.clean({"title": "x" * 6}, {})
    assert codes(short) == {"title": ["minLength"]} and short["title"][0].limit == 2
    assert codes(long) == {"title": ["maxLength"]}
    assert long["title"][0].as_dict()["message"] == "Enter at most 5 characters."


def test_minimum_and_type():
    f = form({"n": {"type": "integer", "minimum": 1}})
    assert codes(f.clean({"n": 0}, {})[1]) == {"n": ["minimum"]}
    _, errors = f.clean({"n": "three"}, {})
    assert codes(errors) == {"n": ["type"]} and errors["n"][0].limit == "integer"


def test_one_of_choices():
    f = form({"decision": {"type": "string", "oneOf": [{"const": "approve"}, {"const": "return"}]}})
    assert f.clean({"decision": "approve"}, {})[1] == {}
    assert codes(f.clean({"decision": "maybe"}, {})[1]) == {"decision": ["oneOf"]}


def test_enum_choices():
    f = form({"kind": {"type": "string", "enum": ["通知", "函"]}})
    assert codes(f.clean({"kind": "公告"}, {})[1]) == {"kind": ["enum"]}


@pytest.mark.parametrize("value", ["2026-13-01", "2026-02-30", "tomorrow", "2026/01/05"])
def test_date_format(value):
    _, errors = form({"on": {"type": "string", "format": "date"}}).clean({"on": value}, {})
    assert codes(errors) == {"on": ["format"]}
    assert errors["on"][0].as_dict()["message"] == "Enter a valid value (YYYY-MM-DD)."


def test_a_valid_date_passes():
    assert form({"on": {"type": "string", "format": "date"}}).clean({"on": "2026-02-28"}, {})[1] == {}


def test_date_time_format():
    f = form({"at": {"type": "string", "format": "date-time"}})
    assert f.clean({"at": "2026-02-28T09:30"}, {})[1] == {}
    assert codes(f.clean({"at": "soon"}, {})[1]) == {"at": ["format"]}


def test_const_true_means_must_confirm():
    f = form({"seal_applied": {"type": "boolean", "const": True}}, required=["seal_applied"])
    assert codes(f.clean({"seal_applied": False}, {})[1]) == {"seal_applied": ["must_confirm"]}
    assert f.clean({"seal_applied": True}, {})[1] == {}


def test_conditional_requirement_is_reported_on_the_field():
    f = load_form("review.schema.json", (FORMS_DIR / "document_dispatch" / "review.schema.json").read_text("utf-8"))
    assert f.clean({"review_decision": "approve"}, {})[1] == {}
    assert codes(f.clean({"review_decision": "return"}, {})[1]) == {"opinion": ["required"]}


@pytest.fixture
def distribute():
    return load_form("distribute.schema.json",
                     (FORMS_DIR / "document_dispatch" / "distribute.schema.json").read_text("utf-8"))


def row(**changes):
    return {"recipient": "南宁市应急管理局", "copies": 2, "method": "机要交换", **changes}


def distribute_data(**changes):
    return {"seal_applied": True, "print_copies": 10, "distribution": [row()], "distributed_on": "2026-03-02",
            **changes}


def test_a_valid_table_passes(distribute):
    data, errors = distribute.clean(distribute_data(), {"doc_number": "桂应急发〔2026〕1号"})
    assert errors == {}
    assert data["doc_number"] == "桂应急发〔2026〕1号" and data["distribution"] == [row()]


def test_a_bad_table_cell_is_reported_at_its_path(distribute):
    _, errors = distribute.clean(distribute_data(distribution=[row(), row(copies=0)]), {})
    assert codes(errors) == {"distribution.1.copies": ["minimum"]}


def test_table_cells_report_type_enum_required_and_date(distribute):
    rows = [row(copies="two"), row(method="快递"), {"recipient": "柳州市"}, row(sent_on="03/02")]
    _, errors = distribute.clean(distribute_data(distribution=rows), {})
    assert codes(errors) == {
        "distribution.0.copies": ["type"],
        "distribution.1.method": ["enum"],
        "distribution.2.copies": ["required"],
        "distribution.2.method": ["required"],
        "distribution.3.sent_on": ["format"],
    }


def test_an_empty_table_is_too_short(distribute):
    _, errors = distribute.clean(distribute_data(distribution=[]), {})
    assert codes(errors) == {"distribution": ["minItems"]}


def test_several_problems_are_reported_together(distribute):
    _, errors = distribute.clean({"seal_applied": False, "print_copies": 0, "distributed_on": "x"}, {})
    assert codes(errors) == {"seal_applied": ["must_confirm"], "print_copies": ["minimum"],
                             "distributed_on": ["format"], "distribution": ["required"]}


def test_raise_for_builds_a_422_with_per_field_messages(distribute):
    _, errors = distribute.clean(distribute_data(distribution=[row(copies=0)]), {})
    with pytest.raises(ValidationFailed) as caught:
        raise_for(errors)
    assert caught.value.status == 422
    assert caught.value.errors == {"distribution.0.copies": [
        {"code": "minimum", "message": "Enter a value of at least 1.", "limit": 1}]}


def test_raise_for_is_silent_without_errors():
    raise_for({})
