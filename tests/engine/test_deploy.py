"""Deploying process bundles: precise rejections, immutable versions, instances pinned to their version."""
from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine import files, instances, tasks
from engine.deploy import Bundle, bundle_from_dir, deploy, validate
from engine.errors import DeployError
from engine.models import HumanTask, ProcessInstance, ProcessModel, ProcessVersion, SystemEvent, User

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ROOT / "processes"
FORMS = ROOT / "forms"
BPMN = "document_dispatch.bpmn"


@pytest.fixture(scope="module")
def dispatch() -> Bundle:
    return bundle_from_dir(PROCESSES / "document_dispatch", FORMS)


def changed(bundle: Bundle, old: str, new: str, file: str = BPMN) -> Bundle:
    text = bundle.files[file]
    assert text.count(old) == 1, f"{old!r} must occur once in {file}"
    return dataclasses.replace(bundle, files={**bundle.files, file: text.replace(old, new)})


def line_of(text: str, needle: str) -> int:
    assert needle in text, needle
    return text[: text.index(needle)].count("\n") + 1


def rejected(bundle: Bundle, connectors=None) -> DeployError:
    with pytest.raises(DeployError) as caught:
        validate(bundle, connectors)
    return caught.value


def assert_located(err: DeployError, file: str, line: int | None, element: str | None):
    assert (err.file, err.line, err.element) == (file, line, element)
    where = ", ".join(p for p in (file, f"line {line}" if line else None,
                                  f"element '{element}'" if element else None) if p)
    assert err.message.startswith(where + ": ")


# -- what a valid bundle gives ------------------------------------------------------------------------

def test_bundle_from_dir_reads_metadata_bpmn_and_forms(dispatch):
    assert (dispatch.key, dispatch.name, dispatch.category) == ("document_dispatch", "发文", "公文")
    assert BPMN in dispatch.files
    assert {"draft.schema.json", "review.schema.json", "countersign.schema.json", "sign_off.schema.json",
            "distribute.schema.json"} <= set(dispatch.files)
    assert dispatch.options["title_field"] == "title"
    assert "key" not in dispatch.options and "name" not in dispatch.options


def test_the_dispatch_bundle_validates_against_the_installed_connectors(dispatch, registry):
    spec_json, meta = validate(dispatch, registry.operations())
    assert json.loads(spec_json)["spec"]["name"] == "document_dispatch"
    assert meta["diagram"] == BPMN and meta["title_field"] == "title"
    assert meta["user_tasks"]["draft"].items() >= {"name": "拟稿", "form": "draft.schema.json",
                                                   "assignee": "initiator"}.items()
    assert meta["user_tasks"]["distribute"]["candidates"] == "group('office_clerks')"


@pytest.mark.parametrize("folder", sorted(p.name for p in PROCESSES.iterdir() if (p / "process.json").is_file()))
def test_every_shipped_process_validates(folder, registry):
    """Every user task in processes/ has a form that exists and loads, and an assignment rule."""
    validate(bundle_from_dir(PROCESSES / folder, FORMS), registry.operations())


def test_the_digest_depends_on_content_not_file_order(dispatch):
    reordered = dataclasses.replace(dispatch, files=dict(reversed(list(dispatch.files.items()))))
    assert reordered.sha256 == dispatch.sha256
    assert changed(dispatch, 'name="拟稿"', 'name="起草"').sha256 != dispatch.sha256
    assert dataclasses.replace(dispatch, name="发文（新）").sha256 != dispatch.sha256


def test_bundle_from_dir_without_process_json(tmp_path):
    with pytest.raises(DeployError, match=r"process\.json: process\.json is missing"):
        bundle_from_dir(tmp_path, FORMS)


def test_bundle_from_dir_with_invalid_process_json(tmp_path):
    (tmp_path / "process.json").write_text('{\n  "key": "x",\n  "name": \n}\n', encoding="utf-8")
    with pytest.raises(DeployError) as caught:
        bundle_from_dir(tmp_path, FORMS)
    assert caught.value.line == 4 and "not valid JSON" in caught.value.message


# -- rejections --------------------------------------------------------------------------------------

def test_invalid_xml_names_file_and_line(dispatch):
    bad = changed(dispatch, '<bpmn:exclusiveGateway id="gw_draft"/>', '<bpmn:exclusiveGateway id="gw_draft" id="x"/>')
    err = rejected(bad)
    assert_located(err, BPMN, line_of(bad.files[BPMN], 'id="gw_draft"'), None)
    assert "invalid XML: Attribute id redefined" in err.message


def test_an_xml_entity_is_refused(dispatch):
    bad = changed(dispatch, '<?xml version="1.0" encoding="UTF-8"?>',
                  '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>')
    assert_located(rejected(bad), BPMN, 2, None)


def test_bpmn_schema_violations_name_file_and_line(dispatch):
    bad = changed(dispatch, 'name="发起发文"/>', 'name="发起发文" colour="red"/>')
    err = rejected(bad)
    assert (err.file, err.line) == (BPMN, line_of(bad.files[BPMN], 'colour="red"'))
    assert "The attribute 'colour' is not allowed" in err.message


def test_a_process_without_start_event_names_the_process(dispatch):
    bad = changed(dispatch, '<bpmn:startEvent id="start" name="发起发文"/>', "")
    err = rejected(bad)
    assert_located(err, BPMN, line_of(bad.files[BPMN], '<bpmn:process id="document_dispatch"'), "document_dispatch")
    assert "No start event found" in err.message


def test_unknown_process_id(dispatch):
    err = rejected(dataclasses.replace(dispatch, key="dispatch_v2"))
    assert_located(err, BPMN, None, None)
    assert "unknown process id 'dispatch_v2': the BPMN defines document_dispatch" in err.message


@pytest.mark.parametrize("key", ["Document", "x", "9lives", "has-dash", "a" * 65, ""])
def test_process_keys_must_be_simple_identifiers(dispatch, key):
    assert "must be lower-case letters, digits and _" in rejected(dataclasses.replace(dispatch, key=key)).message


def test_a_bundle_needs_a_bpmn_file(dispatch):
    forms_only = dataclasses.replace(dispatch, files={k: v for k, v in dispatch.files.items() if k != BPMN})
    assert rejected(forms_only).message == "the bundle has no .bpmn file"


def test_a_user_task_without_a_form_property(dispatch):
    bad = changed(dispatch, '<spiffworkflow:property name="formJsonSchemaFilename" value="review.schema.json"/>', "")
    err = rejected(bad)
    assert_located(err, BPMN, line_of(bad.files[BPMN], 'id="review"'), "review")
    assert "user task has no form (spiffworkflow:property formJsonSchemaFilename)" in err.message


def test_a_form_file_missing_from_the_bundle(dispatch):
    bad = dataclasses.replace(dispatch, files={k: v for k, v in dispatch.files.items() if k != "review.schema.json"})
    err = rejected(bad)
    assert_located(err, BPMN, line_of(bad.files[BPMN], 'value="review.schema.json"'), "review")
    assert "form file 'review.schema.json' is not in the bundle" in err.message


def test_a_form_that_is_not_json_schema(dispatch):
    bad = dataclasses.replace(dispatch, files={**dispatch.files, "review.schema.json": '{"type": 5, "properties": {}}'})
    err = rejected(bad)
    assert_located(err, "review.schema.json", None, None)
    assert "not a valid JSON Schema at type" in err.message


def test_a_form_that_is_not_json(dispatch):
    bad = dataclasses.replace(dispatch, files={**dispatch.files, "review.schema.json": '{\n  "type": "object",\n'})
    err = rejected(bad)
    assert (err.file, err.line) == ("review.schema.json", 3)


def test_a_form_with_an_unknown_widget(dispatch):
    bad = changed(dispatch, '"opinion": "textarea"', '"opinion": "wysiwyg"', file="review.schema.json")
    assert 'unknown widget "wysiwyg" for "opinion"' in rejected(bad).message


def test_an_assignment_rule_that_does_not_parse(dispatch):
    bad = changed(dispatch, '<spiffworkflow:property name="assignee" value="initiator"/>',
                  '<spiffworkflow:property name="assignee" value="initiator("/>')
    err = rejected(bad)
    assert_located(err, BPMN, line_of(bad.files[BPMN], 'value="initiator("'), "draft")
    assert "assignment rule 'initiator(' does not parse" in err.message


def test_an_assignment_rule_with_an_unknown_term(dispatch):
    bad = changed(dispatch, "value=\"role('dept_head')\"", "value=\"boss('dept_head')\"")
    err = rejected(bad)
    assert_located(err, BPMN, line_of(bad.files[BPMN], "boss("), "sign_off")
    assert "unknown term" in err.message


def test_a_user_task_with_no_assignee_or_candidates(dispatch):
    bad = changed(dispatch, '<spiffworkflow:property name="assignee" value="initiator"/>', "")
    err = rejected(bad)
    assert_located(err, BPMN, line_of(bad.files[BPMN], 'id="draft"'), "draft")
    assert "user task has no assignee or candidates property" in err.message


@pytest.mark.parametrize(("old", "new", "element"), [
    ("<bpmn:conditionExpression>review_decision == 'return'",
     "<bpmn:conditionExpression>review_decision.__class__ == 'return'", "flow_review_return"),
    ("doc_number = numbering['number']", "doc_number = numbering.__dict__", "numbering"),
    ("<bpmn:timeDate>working_days(1)", "<bpmn:timeDate>working_days.__globals__", "sign_reminder"),
    ("<bpmn:completionCondition>'disagree' in countersign_decisions",
     "<bpmn:completionCondition>__import__('os')", "countersign"),
    ("""value="'桂应急发'\"""", """value="().__class__\"""", "numbering"),
    ("<bpmn:conditionExpression>review_decision == 'return'",
     "<bpmn:conditionExpression>review_decision ==", "flow_review_return"),
])
def test_a_script_the_sandbox_refuses_names_its_element(dispatch, old, new, element):
    bad = changed(dispatch, old, new)
    err = rejected(bad)
    assert_located(err, BPMN, line_of(bad.files[BPMN], new), element)
    assert "script refused: " in err.message
    assert "('" not in err.message


def test_an_unknown_connector_operation(dispatch, registry):
    bad = changed(dispatch, 'id="docnumber/Allocate"', 'id="docnumber/Reserve"')
    err = rejected(bad, registry.operations())
    assert_located(err, BPMN, line_of(bad.files[BPMN], "docnumber/Reserve"), "numbering")
    assert "unknown connector operation 'docnumber/Reserve'" in err.message


def test_connector_operations_are_not_checked_when_none_are_given(dispatch):
    validate(changed(dispatch, 'id="docnumber/Allocate"', 'id="docnumber/Reserve"'), None)


# -- versions ----------------------------------------------------------------------------------------

def latest(session, key="document_dispatch") -> int:
    return session.scalar(select(ProcessModel.latest_version).where(ProcessModel.key == key))


def test_deploying_identical_content_twice_returns_the_same_version(db, dispatch, registry):
    with db.transaction() as s:
        first, _ = deploy(s, dispatch, connectors=registry.operations())
        before = latest(s)
        again, created = deploy(s, dispatch, connectors=registry.operations())
        assert created is False
        assert again.id == first.id and latest(s) == before
        assert s.scalar(select(func.count()).select_from(ProcessVersion)
                        .where(ProcessVersion.process_key == "document_dispatch")) == before


def test_changed_content_makes_a_new_version(db, dispatch, registry, user):
    with db.transaction() as s:
        v1, _ = deploy(s, dispatch)
        v2, created = deploy(s, changed(dispatch, 'name="拟稿"', 'name="起草"'), actor=user("admin"),
                             connectors=registry.operations())
        assert created is True
        assert v2.version == v1.version + 1 == latest(s)
        assert v2.id != v1.id and v2.sha256 != v1.sha256
        assert v2.meta["user_tasks"]["draft"]["name"] == "起草"
        event = s.scalars(select(SystemEvent).order_by(SystemEvent.seq.desc())).first()
        assert (event.kind, event.target, event.detail["version"]) == ("process_deployed", "document_dispatch",
                                                                        v2.version)
        assert event.actor_name == "系统管理员"


def test_a_rejected_bundle_creates_no_version(db, dispatch):
    with db.transaction() as s:
        before = latest(s)
        with pytest.raises(DeployError):
            deploy(s, changed(dispatch, 'value="initiator"', 'value="initiator("'))
        assert latest(s) == before


def test_a_new_process_starts_at_version_one(db, dispatch):
    renamed = dataclasses.replace(dispatch, key="dispatch_copy", files={
        **dispatch.files, BPMN: dispatch.files[BPMN].replace('<bpmn:process id="document_dispatch"',
                                                             '<bpmn:process id="dispatch_copy"')})
    with db.transaction() as s:
        version, created = deploy(s, renamed)
        assert created and version.version == 1 and latest(s, "dispatch_copy") == 1


def draft_data(db, config, who: User) -> dict:
    with db.transaction() as s:
        body = files.store(s, config, who, "正文.pdf", "application/pdf", io.BytesIO(b"%PDF-1.4\n%test\n"))
        return {"title": "关于做好防汛工作的通知", "doc_type": "通知", "secrecy": "公开", "urgency": "平件",
                "main_recipients": "各市应急管理局", "body_file": body.id}


def open_task(db, instance_id: int, bpmn_id: str) -> HumanTask:
    with db.session() as s:
        return s.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.bpmn_id == bpmn_id,
                                                HumanTask.state == "open"))


def test_an_instance_keeps_its_version_after_a_new_deployment(db, config, user, dispatch, registry):
    clerk = user("zhang.wei")
    with db.transaction() as s:
        old = instances.start(s, config, clerk, "document_dispatch")
        v1_id = old.version_id
    # version 2 sends the review to someone else
    v2_bundle = changed(dispatch, "value=\"role('office_director', unit='BGS')\"", "value=\"user('wang.fang')\"")
    with db.transaction() as s:
        v2, created = deploy(s, v2_bundle, connectors=registry.operations())
        assert created and v2.id != v1_id
    with db.transaction() as s:
        tasks.complete(s, config, clerk, open_task(db, old.id, "draft").id, draft_data(db, config, clerk))
    with db.session() as s:
        assert s.get(ProcessInstance, old.id).version_id == v1_id
    assert open_task(db, old.id, "review").assignee_id == user("li.na").id


def test_a_new_instance_uses_the_new_version(db, config, user, dispatch, registry):
    clerk = user("zhang.wei")
    v2_bundle = changed(dispatch, "value=\"role('office_director', unit='BGS')\"", "value=\"user('wang.fang')\"")
    with db.transaction() as s:
        v2, _ = deploy(s, v2_bundle, connectors=registry.operations())
        v2_id = v2.id
    with db.transaction() as s:
        new = instances.start(s, config, clerk, "document_dispatch")
        assert new.version_id == v2_id
    with db.transaction() as s:
        tasks.complete(s, config, clerk, open_task(db, new.id, "draft").id, draft_data(db, config, clerk))
    assert open_task(db, new.id, "review").assignee_id == user("wang.fang").id
