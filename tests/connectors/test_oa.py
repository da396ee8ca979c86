"""The oa connector and engine.oa against a real local OA: webhook and polled documents start 收文 with their
file, once each; reports carry the idempotency key; every failure is named, refused or counted."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from connectors.base import ConnectorError
from connectors.oa import OaConnector
from engine import clock, oa
from engine.connectors import EngineContext
from engine.errors import ValidationFailed
from engine.jobs import EmbeddedRunner
from engine.models import Attachment, ProcessInstance, SystemEvent
from engine.models.oa import OaDocument, OaPollState
from tests.engine.helpers import load_user, open_tasks, poll, view, workflow_data
from tests.outside import OutsideSystem
from tests.webhooks import (
    OA_SECRET,
    OA_TOKEN,
    PDF,
    configure_oa,
    encode,
    make_client,
    oa_document,
    publish,
    sign,
)


@pytest.fixture
def outside():
    with OutsideSystem() as server:
        yield server


@pytest.fixture
def oa_registry(registry):
    registry.register(OaConnector)  # setup.cfg's entry point makes discover() find it once installed
    return registry


@pytest.fixture
def configured(db, config, oa_registry, outside):
    configure_oa(db, config, oa_registry, outside)


@pytest.fixture
def client(config, oa_registry):
    test_client, platform = make_client(config, oa_registry)
    yield test_client
    platform.stop()


def settings(outside, **extra) -> dict:
    return {"base_url": outside.url, "allowed_hosts": [outside.host], "token": OA_TOKEN, **extra}


def call(db, outside, operation: str, params: dict, key: str = "key-oa-1", instance_id=None, **extra):
    """One direct call of an oa operation, as a worker would make it."""
    context = EngineContext(db, key, instance_id, 5.0)
    return OaConnector(settings(outside, **extra)).call(operation, params, context)


def post(client, document, key: str = OA_SECRET, signature: str | None = None):
    body = document if isinstance(document, bytes) else encode(document)
    return client.post("/api/v1/oa/documents", data=body, content_type="application/json",
                       headers={"X-OA-Signature": sign(key, body) if signature is None else signature})


def receipts(db) -> list[ProcessInstance]:
    with db.session() as s:
        return list(s.scalars(select(ProcessInstance).where(ProcessInstance.process_key == "document_receipt")
                              .order_by(ProcessInstance.id)))


# -- the connector on its own ---------------------------------------------------------------------------------
def test_fetch_new_asks_with_the_cursor_and_the_token(db, outside):
    documents = [oa_document(outside, 1), oa_document(outside, 2, copies="3", summary=None)]
    publish(outside, documents)

    first = call(db, outside, "FetchNew", {})
    later = call(db, outside, "FetchNew", {"since": "1"})

    assert [d["id"] for d in first["documents"]] == ["GXZF-2026-0001", "GXZF-2026-0002"]
    assert first["cursor"] == "2" and first["documents"][1]["copies"] == 3
    assert [d["id"] for d in later["documents"]] == ["GXZF-2026-0002"]
    assert [r["query"] for r in outside.requests] == [{}, {"since": ["1"]}]
    assert outside.requests[0]["headers"]["authorization"] == f"Bearer {OA_TOKEN}"


def test_download_stores_the_file_and_refuses_big_or_foreign_files(db, outside):
    publish(outside, [oa_document(outside, 1)])

    ref = call(db, outside, "Download", {"url": f"{outside.url}/files/1.pdf", "filename": "来文1.pdf"})

    assert (ref["filename"], ref["content_type"], ref["size"]) == ("来文1.pdf", "application/pdf", len(PDF))
    with db.session() as s:
        row = s.get(Attachment, ref["id"])
        assert row is not None and row.instance_id is None  # bound once the instance exists
    outside.answers["/files/big.pdf"] = lambda request: PDF + b"x" * 4096
    with pytest.raises(ConnectorError) as big:
        call(db, outside, "Download", {"url": "/files/big.pdf"}, max_file_bytes=1024)
    assert (big.value.code, big.value.retryable) == ("oa.too_large", False)
    with pytest.raises(ConnectorError) as foreign:
        call(db, outside, "Download", {"url": "http://169.254.169.254/latest/meta-data"})
    assert (foreign.value.code, foreign.value.retryable) == ("oa.forbidden_host", False)
    assert [r["path"] for r in outside.requests] == ["/files/1.pdf", "/files/big.pdf"]


def test_reports_carry_the_idempotency_key_and_name_their_failures(db, outside):
    call(db, outside, "ReportReceipt", {"document_id": "GXZF/7", "registration_no": "收文〔2026〕3号",
                                        "signed_at": "2026-11-29"}, key="job-77", receiver_name="厅办公室")
    call(db, outside, "ReportCompletion", {"document_id": "GXZF/7", "outcome": "已办结"}, key="job-78")

    receipt, completion = outside.requests
    assert (receipt["method"], receipt["path"]) == ("POST", "/api/documents/GXZF%2F7/receipt")
    assert json.loads(receipt["body"]) == {"status": "signed", "signed_by": "厅办公室", "signed_at": "2026-11-29",
                                           "registration_no": "收文〔2026〕3号"}
    assert receipt["headers"]["idempotency-key"] == "job-77"
    assert completion["headers"]["idempotency-key"] == "job-78"
    assert json.loads(completion["body"])["outcome"] == "已办结"
    assert json.loads(completion["body"])["completed_at"][:4].isdigit()

    for behaviour, code, retryable in (("500", "oa.500", True), ("404", "oa.404", False)):
        outside.plan["/api/documents/9/receipt"] = [behaviour]
        with pytest.raises(ConnectorError) as failed:
            call(db, outside, "ReportReceipt", {"document_id": "9"})
        assert (failed.value.code, failed.value.retryable) == (code, retryable)
    outside.plan["/api/documents"] = ["malformed"]
    with pytest.raises(ConnectorError) as malformed:
        call(db, outside, "FetchNew", {})
    assert malformed.value.code == "oa.malformed"


def test_secrets_must_be_stored_as_references(db, config, oa_registry):
    from engine import connectors

    with db.transaction() as s, pytest.raises(ValidationFailed) as plain:
        connectors.configure(s, config, oa_registry, load_user(s, "admin"), "oa", {
            "base_url": "https://oa.gxzf.gov.cn", "allowed_hosts": ["oa.gxzf.gov.cn"], "token": "inline",
            "webhook_secret": "inline"})
    assert {"config.token", "config.webhook_secret"} <= set(plain.value.errors)


# -- the webhook -------------------------------------------------------------------------------------------------
def test_a_signed_webhook_starts_a_receipt_with_the_file_attached(db, config, outside, configured, client):
    document = oa_document(outside, 1)
    publish(outside, [document])

    answer = post(client, document)

    assert answer.status_code == 201, answer.get_json()
    instance_id = answer.get_json()["instance_id"]
    [row] = receipts(db)
    assert (row.id, row.business_key, row.title, row.status) == (instance_id, "OA-GXZF-2026-0001", document["title"],
                                                                 "running")
    [sign_in] = open_tasks(db, instance_id)
    data = view(db, config, "zhang.wei", sign_in.id).data
    assert workflow_data(db, instance_id)["oa_id"] == "GXZF-2026-0001"
    assert {k: data[k] for k in ("source_unit", "source_number", "copies", "urgency", "deadline")} == {
        "source_unit": "自治区人民政府办公厅", "source_number": "桂政办发〔2026〕1号",
        "copies": 2, "urgency": "加急", "deadline": "2026-12-10"}
    with db.session() as s:
        attachment = s.get(Attachment, data["file"])
        assert (attachment.instance_id, attachment.filename, attachment.size) == (instance_id, "来文1.pdf", len(PDF))
        assert s.get(OaDocument, "GXZF-2026-0001").via == "webhook"
        assert s.scalars(select(SystemEvent.target).where(SystemEvent.kind == "oa_document_received")).all() == [
            "GXZF-2026-0001"]
    assert [r["path"] for r in outside.requests] == ["/files/1.pdf"]
    assert outside.requests[0]["headers"]["authorization"] == f"Bearer {OA_TOKEN}"


def test_a_repeated_webhook_answers_with_the_same_instance(db, outside, configured, client):
    document = oa_document(outside, 1)
    publish(outside, [document])

    first = post(client, document)
    again = post(client, {"document": document})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json() == {"instance_id": first.get_json()["instance_id"], "created": False}
    assert len(receipts(db)) == 1
    assert [r["path"] for r in outside.requests] == ["/files/1.pdf"]  # nothing fetched the second time


def test_bad_signatures_and_malformed_documents_are_refused(db, outside, configured, client):
    document = oa_document(outside, 1)
    publish(outside, [document])

    assert post(client, document, key="guessed-key").status_code == 401
    assert post(client, document, signature="").status_code == 401
    assert client.post("/api/v1/oa/documents", data=encode(document), content_type="application/json"
                       ).status_code == 401
    not_json = post(client, b"{not json")
    assert (not_json.status_code, list(not_json.get_json()["errors"])) == (422, ["body"])
    incomplete = post(client, {"id": "X-1", "copies": 0})
    assert incomplete.status_code == 422
    assert {"title", "file_url", "copies"} <= set(incomplete.get_json()["errors"])
    assert receipts(db) == [] and outside.requests == []


def test_a_file_the_oa_cannot_serve_now_is_a_502_and_starts_nothing(db, outside, configured, client):
    document = oa_document(outside, 1)
    publish(outside, [document])
    outside.plan["/files/1.pdf"] = ["503"]

    answer = post(client, document)

    assert answer.status_code == 502 and answer.get_json()["code"] == "oa_unavailable"
    assert receipts(db) == []
    assert post(client, document).status_code == 201  # the OA sends it again later


def test_without_a_webhook_secret_every_webhook_is_refused(db, config, oa_registry, outside, client):
    configure_oa(db, config, oa_registry, outside, webhook_secret=None)
    assert post(client, oa_document(outside, 1)).status_code == 401


# -- polling -----------------------------------------------------------------------------------------------------
def test_polling_follows_the_cursor_and_starts_only_new_documents(db, config, oa_registry, outside):
    configure_oa(db, config, oa_registry, outside, poll_seconds=300)
    documents = [oa_document(outside, 1), oa_document(outside, 2)]
    publish(outside, documents)

    assert oa.poll_due(db, config, oa_registry) == 2
    assert oa.poll_due(db, config, oa_registry) is None  # not due yet
    documents.append(oa_document(outside, 3))
    publish(outside, documents)
    clock.advance(timedelta(seconds=301))
    assert oa.poll_due(db, config, oa_registry) == 1

    assert [r.business_key for r in receipts(db)] == ["OA-GXZF-2026-0001", "OA-GXZF-2026-0002",
                                                      "OA-GXZF-2026-0003"]
    polls = [r["query"] for r in outside.requests if r["path"] == "/api/documents"]
    assert polls == [{}, {"since": ["2"]}]
    with db.session() as s:
        state = s.get(OaPollState, "documents")
        assert (state.cursor, state.failures) == ("3", 0)
        assert {d.via for d in s.scalars(select(OaDocument))} == {"poll"}


def test_a_document_sent_by_webhook_and_then_polled_starts_once(db, config, oa_registry, outside, client):
    configure_oa(db, config, oa_registry, outside, poll_seconds=60)
    document = oa_document(outside, 1)
    publish(outside, [document])

    assert post(client, document).status_code == 201
    assert oa.poll_due(db, config, oa_registry) == 0
    assert len(receipts(db)) == 1


def test_a_failing_poll_is_counted_and_tried_again_without_losing_documents(db, config, oa_registry, outside):
    configure_oa(db, config, oa_registry, outside, poll_seconds=60)
    documents = [oa_document(outside, 1), oa_document(outside, 2), oa_document(outside, 3, title=None)]
    publish(outside, documents)
    outside.plan["/api/documents"] = ["503"]
    outside.plan["/files/2.pdf"] = ["503"]

    assert oa.poll_due(db, config, oa_registry) is None  # the OA is down: logged and counted, nothing raised
    clock.advance(timedelta(seconds=61))
    assert oa.poll_due(db, config, oa_registry) is None  # document 1 started, document 2's file failed
    with db.session() as s:
        state = s.get(OaPollState, "documents")
        assert (state.cursor, state.failures) == (None, 2)
        assert "answered 503" in state.last_error
    assert [r.business_key for r in receipts(db)] == ["OA-GXZF-2026-0001"]

    clock.advance(timedelta(seconds=61))
    assert oa.poll_due(db, config, oa_registry) == 1  # document 2 now; 3 has no title and is skipped
    assert [r.business_key for r in receipts(db)] == ["OA-GXZF-2026-0001", "OA-GXZF-2026-0002"]
    with db.session() as s:
        assert s.get(OaPollState, "documents").cursor == "3"


def test_no_polling_unless_configured(db, config, oa_registry, outside):
    assert oa.poll_due(db, config, oa_registry) is None
    configure_oa(db, config, oa_registry, outside)  # poll_seconds unset: webhooks only
    assert oa.poll_due(db, config, oa_registry) is None
    assert outside.requests == []


def test_the_embedded_scheduler_polls_the_oa_and_outlives_a_failing_poll(db, config, oa_registry, outside, caplog):
    configure_oa(db, config, oa_registry, outside, poll_seconds=1)
    publish(outside, [oa_document(outside, 1)])
    outside.plan["/api/documents"] = ["500"]
    runner = EmbeddedRunner(db, config.with_(scheduler_interval=0.1, embedded_workers=0), oa_registry)
    runner.start()
    try:
        poll(lambda: receipts(db), timeout=10.0)
    finally:
        runner.stop()

    assert [r.business_key for r in receipts(db)] == ["OA-GXZF-2026-0001"]
    assert len([r for r in outside.requests if r["path"] == "/api/documents"]) == 2  # failed, then a second later
    assert any("OA poll failed" in r.getMessage() and "answered 500" in r.getMessage() for r in caplog.records)
    with db.session() as s:
        assert s.get(OaPollState, "documents").failures == 0  # counted, and reset by the poll that worked
