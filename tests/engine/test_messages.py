"""engine.messages.deliver: correlated catch events, business-key fallback, message start events."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine import messages
from engine.errors import Forbidden, NotFound, ValidationFailed
from engine.models import MessageSubscription, ProcessInstance
from engine.runtime import correlation_key
from tests.engine.helpers import (
    assert_state_round_trips,
    bpmn,
    deploy_bundle,
    events,
    flows,
    instance,
    load_user,
    only_task,
    open_tasks,
    start,
    user_task,
    workflow_data,
)

CORRELATED = "order_payment"
CORRELATED_DEFINITIONS = """
  <bpmn:collaboration id="collab">
    <bpmn:participant id="p_order" processRef="{process}"/>
    <bpmn:correlationKey name="order_key"><bpmn:correlationPropertyRef>order_id</bpmn:correlationPropertyRef>
    </bpmn:correlationKey>
  </bpmn:collaboration>
  <bpmn:message id="payment_received" name="payment_received"/>
  <bpmn:correlationProperty id="order_id" name="Order id">
    <bpmn:correlationPropertyRetrievalExpression messageRef="payment_received">
      <bpmn:formalExpression>{retrieval}</bpmn:formalExpression>
    </bpmn:correlationPropertyRetrievalExpression>
  </bpmn:correlationProperty>"""
CORRELATED_BODY = """
    <bpmn:startEvent id="start"/>
    <bpmn:intermediateCatchEvent id="wait_payment" name="等待付款">
      <bpmn:messageEventDefinition messageRef="payment_received">
        <bpmn:extensionElements>
          <spiffworkflow:messageVariable>payment</spiffworkflow:messageVariable>
          <spiffworkflow:processVariableCorrelation>
            <spiffworkflow:propertyId>order_id</spiffworkflow:propertyId>
            <spiffworkflow:expression>my_order_id</spiffworkflow:expression>
          </spiffworkflow:processVariableCorrelation>
        </bpmn:extensionElements>
      </bpmn:messageEventDefinition>
    </bpmn:intermediateCatchEvent>
    """ + user_task("after", "到账处理") + '<bpmn:endEvent id="end"/>' + flows(
    ("start", "wait_payment"), ("wait_payment", "after"), ("after", "end"))

UNCORRELATED = "doc_receipt"
UNCORRELATED_BODY = """
    <bpmn:startEvent id="start"/>
    <bpmn:intermediateCatchEvent id="wait_receipt" name="等待回执">
      <bpmn:messageEventDefinition messageRef="doc_received"/>
    </bpmn:intermediateCatchEvent>
    """ + user_task("after", "回执处理") + '<bpmn:endEvent id="end"/>' + flows(
    ("start", "wait_receipt"), ("wait_receipt", "after"), ("after", "end"))

MESSAGE_START = "alarm_handling"
MESSAGE_START_BODY = """
    <bpmn:startEvent id="start" name="收到报警">
      <bpmn:messageEventDefinition messageRef="alarm_raised">
        <bpmn:extensionElements><spiffworkflow:messageVariable>alarm</spiffworkflow:messageVariable>
        </bpmn:extensionElements>
      </bpmn:messageEventDefinition>
    </bpmn:startEvent>
    """ + user_task("handle", "报警处置", 'user("li.na")') + '<bpmn:endEvent id="end"/>' + flows(
    ("start", "handle"), ("handle", "end"))


@pytest.fixture
def correlated(db):
    definitions = CORRELATED_DEFINITIONS.format(process=CORRELATED, retrieval="order_id")
    deploy_bundle(db, CORRELATED, bpmn(CORRELATED, CORRELATED_BODY, definitions))


@pytest.fixture
def nested(db):
    """Like ``correlated``, but the order id is read from the payload as order['id']."""
    definitions = CORRELATED_DEFINITIONS.format(process="nested_order", retrieval="order['id']")
    deploy_bundle(db, "nested_order", bpmn("nested_order", CORRELATED_BODY, definitions))


@pytest.fixture
def uncorrelated(db):
    deploy_bundle(db, UNCORRELATED, bpmn(UNCORRELATED, UNCORRELATED_BODY,
                                         '<bpmn:message id="doc_received" name="doc_received"/>'))


@pytest.fixture
def message_start(db):
    deploy_bundle(db, MESSAGE_START, bpmn(MESSAGE_START, MESSAGE_START_BODY,
                                          '<bpmn:message id="alarm_raised" name="alarm_raised"/>'))


def deliver(db, config, username: str, name: str, correlations=None, payload=None) -> dict:
    with db.transaction() as s:
        return messages.deliver(s, config, load_user(s, username), name, correlations, payload)


def subscriptions(db, instance_id: int) -> list[tuple[str, str]]:
    with db.session() as s:
        return [(m.message_name, m.correlation_key) for m in s.scalars(
            select(MessageSubscription).where(MessageSubscription.instance_id == instance_id))]


def instance_count(db) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(ProcessInstance))


# -- correlated catch event ---------------------------------------------------------------------------
def test_a_waiting_instance_is_subscribed_with_its_correlation_values(db, config, correlated):
    instance_id = start(db, config, "zhang.wei", CORRELATED, data={"my_order_id": "A1"})

    assert subscriptions(db, instance_id) == [("payment_received", correlation_key({"order_id": "A1"}))]
    assert instance(db, instance_id).active_elements == ["wait_payment"]


def test_the_right_correlation_moves_the_instance(db, config, correlated):
    wanted = start(db, config, "zhang.wei", CORRELATED, data={"my_order_id": "A1"})
    other = start(db, config, "zhang.wei", CORRELATED, data={"my_order_id": "B2"})

    result = deliver(db, config, "admin", "payment_received", {"order_id": "A1"}, {"order_id": "A1", "amount": 10})

    assert result == {"delivered": [wanted], "started": []}
    assert only_task(db, wanted).bpmn_id == "after"
    assert workflow_data(db, wanted)["payment"] == {"order_id": "A1", "amount": 10}
    received = events(db, wanted, "message_received")
    assert [(e.actor_name, e.detail["message"], e.detail["correlations"]) for e in received] == [
        ("系统管理员", "payment_received", {"order_id": "A1"})]
    assert subscriptions(db, wanted) == []
    assert open_tasks(db, other) == [] and subscriptions(db, other) != []
    assert_state_round_trips(db, wanted)


def test_a_wrong_correlation_finds_no_receiver(db, config, correlated):
    instance_id = start(db, config, "zhang.wei", CORRELATED, data={"my_order_id": "A1"})
    before = instance_count(db)

    with pytest.raises(NotFound) as err:
        deliver(db, config, "admin", "payment_received", {"order_id": "ZZZ"}, {"amount": 10})

    assert err.value.code == "no_receiver"
    assert open_tasks(db, instance_id) == [] and events(db, instance_id, "message_received") == []
    assert instance_count(db) == before


def test_the_correlation_values_travel_in_the_payload(db, config, correlated):
    instance_id = start(db, config, "zhang.wei", CORRELATED, data={"my_order_id": "A1"})

    deliver(db, config, "admin", "payment_received", {"order_id": "A1"}, {"amount": 10})

    assert workflow_data(db, instance_id)["payment"] == {"order_id": "A1", "amount": 10}
    assert only_task(db, instance_id).bpmn_id == "after"


def test_a_payload_contradicting_the_correlation_is_invalid(db, config, correlated):
    instance_id = start(db, config, "zhang.wei", CORRELATED, data={"my_order_id": "A1"})

    with pytest.raises(ValidationFailed) as err:
        deliver(db, config, "admin", "payment_received", {"order_id": "A1"}, {"order_id": "B2"})

    assert list(err.value.errors) == ["payload.order_id"]
    assert open_tasks(db, instance_id) == []


def test_a_retrieval_expression_reads_the_payload(db, config, nested):
    instance_id = start(db, config, "zhang.wei", "nested_order", data={"my_order_id": "A1"})

    deliver(db, config, "admin", "payment_received", {"order_id": "A1"}, {"order": {"id": "A1"}})

    assert only_task(db, instance_id).bpmn_id == "after"


def test_a_payload_the_retrieval_expression_cannot_read_is_invalid(db, config, nested):
    instance_id = start(db, config, "zhang.wei", "nested_order", data={"my_order_id": "A1"})

    with pytest.raises(ValidationFailed) as err:
        deliver(db, config, "admin", "payment_received", {"order_id": "A1"}, {"amount": 10})

    assert "payload" in err.value.errors
    assert open_tasks(db, instance_id) == [] and events(db, instance_id, "message_received") == []
    assert subscriptions(db, instance_id) != []


def test_a_message_is_delivered_only_once(db, config, correlated):
    start(db, config, "zhang.wei", CORRELATED, data={"my_order_id": "A1"})
    deliver(db, config, "admin", "payment_received", {"order_id": "A1"})

    with pytest.raises(NotFound):
        deliver(db, config, "admin", "payment_received", {"order_id": "A1"})


def test_an_unknown_message_name_finds_no_receiver(db, config, correlated):
    start(db, config, "zhang.wei", CORRELATED, data={"my_order_id": "A1"})
    with pytest.raises(NotFound):
        deliver(db, config, "admin", "refund_issued", {"order_id": "A1"})


# -- business-key fallback ---------------------------------------------------------------------------------
def test_without_correlation_the_business_key_correlates(db, config, uncorrelated):
    wanted = start(db, config, "zhang.wei", UNCORRELATED, business_key="FW-2026-09")
    other = start(db, config, "zhang.wei", UNCORRELATED, business_key="FW-2026-10")
    assert subscriptions(db, wanted) == [("doc_received", correlation_key({"business_key": "FW-2026-09"}))]

    result = deliver(db, config, "admin", "doc_received", {"business_key": "FW-2026-09"}, {"receipt": "已签收"})

    assert result["delivered"] == [wanted]
    assert only_task(db, wanted).bpmn_id == "after"
    assert open_tasks(db, other) == []


def test_a_wrong_business_key_finds_no_receiver(db, config, uncorrelated):
    start(db, config, "zhang.wei", UNCORRELATED, business_key="FW-2026-09")
    with pytest.raises(NotFound) as err:
        deliver(db, config, "admin", "doc_received", {"business_key": "FW-2026-99"})
    assert err.value.code == "no_receiver"


def test_a_suspended_instance_does_not_receive(db, config, uncorrelated):
    from engine import instances

    instance_id = start(db, config, "zhang.wei", UNCORRELATED, business_key="FW-1")
    with db.transaction() as s:
        instances.suspend(s, config, load_user(s, "admin"), instance_id)

    with pytest.raises(NotFound):
        deliver(db, config, "admin", "doc_received", {"business_key": "FW-1"})


# -- permission and input ----------------------------------------------------------------------------------
def test_sending_needs_the_message_send_permission(db, config, uncorrelated):
    instance_id = start(db, config, "zhang.wei", UNCORRELATED, business_key="FW-1")

    with pytest.raises(Forbidden) as err:
        deliver(db, config, "zhang.wei", "doc_received", {"business_key": "FW-1"})

    assert err.value.code == "not_a_sender"
    assert open_tasks(db, instance_id) == []


@pytest.mark.parametrize(("name", "correlations", "payload"), [
    ("", {}, {}),
    ("doc_received", ["FW-1"], {}),
    ("doc_received", {"business_key": "FW-1"}, "receipt"),
], ids=["no-name", "list-correlations", "string-payload"])
def test_malformed_messages_are_invalid(db, config, uncorrelated, name, correlations, payload):
    with pytest.raises(ValidationFailed):
        deliver(db, config, "admin", name, correlations, payload)


# -- message start event ----------------------------------------------------------------------------------
def test_a_message_start_event_starts_a_new_instance(db, config, message_start):
    before = instance_count(db)

    result = deliver(db, config, "admin", "alarm_raised", {"business_key": "ALARM-0042"},
                     {"title": "鑫安化工可燃气体浓度超限", "level": 2})

    [instance_id] = result["started"]
    assert result["delivered"] == [] and instance_count(db) == before + 1
    row = instance(db, instance_id)
    assert (row.process_key, row.business_key, row.title) == (MESSAGE_START, "ALARM-0042", "鑫安化工可燃气体浓度超限")
    task = only_task(db, instance_id)
    assert task.bpmn_id == "handle"
    assert workflow_data(db, instance_id)["alarm"] == {"title": "鑫安化工可燃气体浓度超限", "level": 2}
    assert_state_round_trips(db, instance_id)


def test_each_start_message_starts_its_own_instance(db, config, message_start):
    first = deliver(db, config, "admin", "alarm_raised", {"business_key": "A-1"})["started"]
    second = deliver(db, config, "admin", "alarm_raised", {"business_key": "A-2"})["started"]

    assert len(set(first + second)) == 2


def test_the_message_start_version_records_its_start_message(db, message_start):
    from engine.versions import VERSIONS, latest_version_id

    with db.session() as s:
        assert VERSIONS.get(s, latest_version_id(s, MESSAGE_START)).meta["message_starts"] == ["alarm_raised"]
