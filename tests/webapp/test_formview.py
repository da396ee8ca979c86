"""Rendering every widget from a JSON Schema form, and parsing the submitted HTML form back to JSON."""
import io
import json

import pytest
from flask import g
from werkzeug.datastructures import FileStorage, MultiDict

from engine.forms import load_form
from webapp.formview import build_fields, parse_submission

SCHEMA = {
    "type": "object",
    "required": ["name", "count"],
    "properties": {
        "name": {"type": "string", "title": "名称", "maxLength": 50},
        "notes": {"type": "string", "title": "说明"},
        "count": {"type": "integer", "title": "数量", "minimum": 1},
        "ratio": {"type": "number", "title": "比例"},
        "day": {"type": "string", "format": "date", "title": "日期"},
        "level": {"type": "string", "title": "等级", "enum": ["一级", "二级"]},
        "answer": {"type": "string", "title": "结论", "oneOf": [{"const": "yes", "title": "通过"},
                                                            {"const": "no", "title": "不通过"}]},
        "tags": {"type": "array", "title": "标签", "items": {"enum": ["危化", "矿山", "烟花"]}},
        "urgent": {"type": "boolean", "title": "紧急"},
        "reviewer": {"type": "string", "title": "审核人"},
        "readers": {"type": "array", "title": "阅知人", "items": {"type": "string"}},
        "lead_unit": {"type": "string", "title": "主办单位"},
        "units": {"type": "array", "title": "协办单位", "items": {"type": "string"}},
        "report": {"type": "string", "title": "报告"},
        "photos": {"type": "array", "title": "照片", "items": {"type": "string"}},
        "rows": {"type": "array", "title": "明细", "items": {"type": "object", "required": ["item"], "properties": {
            "item": {"type": "string", "title": "项目"}, "qty": {"type": "integer", "title": "数量"},
            "kind": {"type": "string", "title": "类别", "enum": ["甲", "乙"]}}}},
        "shown": {"type": "string", "title": "只读"},
    },
    "ui": {"widgets": {"notes": "textarea", "answer": "radio", "reviewer": "user", "readers": "users",
                       "lead_unit": "unit", "units": "units", "report": "file", "photos": "files"},
           "readonly": ["shown"]},
}
EXPECTED_WIDGETS = {
    "name": "text", "notes": "textarea", "count": "number", "ratio": "number", "day": "date", "level": "select",
    "answer": "radio", "tags": "checkboxes", "urgent": "yesno", "reviewer": "user", "readers": "users",
    "lead_unit": "unit", "units": "units", "report": "file", "photos": "files", "rows": "table", "shown": "text",
}


@pytest.fixture
def form():
    return load_form("all.schema.json", json.dumps(SCHEMA))


def test_every_widget_is_derived_or_named(form):
    assert form.widgets == EXPECTED_WIDGETS


def test_fields_carry_labels_options_values_and_errors(db, config, form):
    data = {"level": "二级", "answer": "no", "tags": ["矿山"], "urgent": False, "lead_unit": "BGS",
            "units": ["ZCFGC", "GHCWC"], "reviewer": "li.na", "shown": "来自上一步",
            "rows": [{"item": "灭火器", "qty": 3, "kind": "甲"}]}
    with db.session() as s:
        fields = {f.name: f for f in build_fields(s, config, form, data, {"count": ["此项为必填项。"],
                                                                          "rows.0.qty": ["错"]})}
    assert fields["name"].required and fields["name"].max_length == 50 and fields["name"].label == "名称"
    assert fields["count"].errors == ["此项为必填项。"] and fields["count"].input_type == "number"
    assert fields["day"].input_type == "date"
    assert fields["answer"].options == [("yes", "通过"), ("no", "不通过")] and fields["answer"].display == "不通过"
    assert fields["tags"].selected("矿山") and not fields["tags"].selected("危化")
    assert fields["urgent"].display == "否"
    assert fields["lead_unit"].display == "厅办公室" and ("BGS", "厅办公室") in fields["lead_unit"].options
    assert fields["units"].display == "政策法规处、规划财务处"
    assert fields["reviewer"].display == "李娜"
    assert [c.name for c in fields["rows"].columns] == ["item", "qty", "kind"] and fields["rows"].rows[0]["qty"] == 3
    assert fields["rows"].errors == ["错"]
    assert fields["shown"].readonly and fields["shown"].display == "来自上一步"


def test_submission_is_parsed_to_json_types(app, db, config, user, form):
    values = MultiDict([
        ("f.name", " 名字 "), ("f.count", "3"), ("f.ratio", "0.5"), ("f.day", "2026-12-01"), ("f.level", "一级"),
        ("f.answer", "yes"), ("f.tags", "危化"), ("f.tags", "烟花"), ("f.urgent", "true"), ("f.reviewer", "li.na"),
        ("f.readers", "wang.fang"), ("f.readers", ""), ("f.lead_unit", "BGS"), ("f.units", "ZCFGC"),
        ("f.rows.0.item", "沙袋"), ("f.rows.0.qty", "10"), ("f.rows.0.kind", "乙"),
        ("f.rows.3.item", "雨衣"), ("f.rows.5.item", ""), ("f.shown", "forged"), ("f.unknown", "x"),
    ])
    pdf = FileStorage(io.BytesIO(b"%PDF-1.4 r"), "报告.pdf", content_type="application/pdf")
    png = FileStorage(io.BytesIO(b"\x89PNG\r\n\x1a\nxx"), "a.png", content_type="image/png")
    uploads = MultiDict([("upload.report", pdf), ("upload.photos", png)])
    with app.test_request_context("/"), db.transaction() as s:
        g.user = user("zhang.wei")
        data, refused = parse_submission(s, config, form, values, uploads)
    assert refused == {}
    assert data["name"] == "名字" and data["count"] == 3 and data["ratio"] == 0.5 and data["urgent"] is True
    assert data["tags"] == ["危化", "烟花"] and data["readers"] == ["wang.fang"] and data["units"] == ["ZCFGC"]
    assert data["rows"] == [{"item": "沙袋", "qty": 10, "kind": "乙"}, {"item": "雨衣"}]
    assert len(data["report"]) == 36 and len(data["photos"]) == 1
    assert "shown" not in data and "unknown" not in data
    assert form.clean(data, {"shown": "来自上一步"})[1] == {}

    # A refused upload is an error of its own field; the other files and fields are still read.
    fake = FileStorage(io.BytesIO(b"not a pdf"), "假.pdf", content_type="application/pdf")
    png = FileStorage(io.BytesIO(b"\x89PNG\r\n\x1a\nxx"), "b.png", content_type="image/png")
    with app.test_request_context("/"), db.transaction() as s:
        g.user = user("zhang.wei")
        data, refused = parse_submission(s, config, form, values,
                                         MultiDict([("upload.report", fake), ("upload.photos", png)]))
    assert [e["code"] for e in refused["report"]] == ["file_content"] and list(refused) == ["report"]
    assert data["report"] is None and len(data["photos"]) == 1 and data["name"] == "名字"


def test_unconvertible_numbers_stay_strings_so_validation_reports_them(app, db, config, user, form):
    with app.test_request_context("/"), db.transaction() as s:
        g.user = user("zhang.wei")
        data, _ = parse_submission(s, config, form, MultiDict([("f.name", "x"), ("f.count", "三")]), MultiDict())
    errors = form.clean(data, {})[1]
    assert data["count"] == "三" and errors["count"][0].code == "type"
