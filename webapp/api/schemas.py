"""Marshmallow schemas of the REST API (they also document it in the OpenAPI file)."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields as f


class PagingArgs(ma.Schema):
    page = f.Integer(load_default=1, validate=ma.validate.Range(min=1))
    per_page = f.Integer(load_default=20, validate=ma.validate.Range(min=1, max=200))


def paged(item_schema):
    """A list-response schema: items plus paging."""
    return type(f"{item_schema.__name__}Page", (ma.Schema,), {
        "items": f.List(f.Nested(item_schema)), "page": f.Integer(), "per_page": f.Integer(),
        "total": f.Integer(),
    })


class TokenRequest(ma.Schema):
    username = f.String(required=True, validate=ma.validate.Length(min=1, max=64))
    password = f.String(required=True, validate=ma.validate.Length(min=1, max=256), load_only=True)


class TokenResponse(ma.Schema):
    access_token = f.String()
    token_type = f.String()
    expires_in = f.Integer()


class ProcessModelOut(ma.Schema):
    key = f.String()
    name = f.String()
    category = f.String()
    description = f.String()
    latest_version = f.Integer()


class ProcessVersionOut(ma.Schema):
    id = f.Integer()
    process_key = f.String()
    version = f.Integer()
    sha256 = f.String()
    deployed_at = f.DateTime()
    user_tasks = f.Dict(attribute="meta.user_tasks")


class DeployResult(ma.Schema):
    version = f.Nested(ProcessVersionOut)
    created = f.Boolean()


class Candidate(ma.Schema):
    username = f.String()
    name = f.String()


class TaskOut(ma.Schema):
    id = f.String()
    instance_id = f.Integer()
    process_key = f.String()
    process_name = f.String()
    instance_title = f.String()
    bpmn_id = f.String()
    name = f.String()
    state = f.String()
    assignee = f.String(allow_none=True)
    candidates = f.List(f.String())
    candidate_groups = f.List(f.String())
    loop_item = f.String(allow_none=True)
    assignment_error = f.String(allow_none=True)
    created_at = f.DateTime()
    due_at = f.DateTime(allow_none=True)
    completed_by = f.String(allow_none=True)
    completed_at = f.DateTime(allow_none=True)
    opinion = f.String(allow_none=True)
    kind = f.String(metadata={"description": "task, or signer for an added signer"})
    parent_task_id = f.String(allow_none=True)
    sign_position = f.String(allow_none=True)
    delegated_by = f.String(allow_none=True)
    blocked = f.Boolean()
    waiting_for_signers = f.Boolean()
    returned_from = f.String(allow_none=True)
    straight_back = f.Boolean()


class TaskDetail(TaskOut):
    form_schema = f.Dict()
    data = f.Dict()
    can_act = f.Boolean()
    buttons = f.List(f.Dict(), metadata={"description": "[{action, label}] the task offers"})
    require_opinion = f.List(f.String())
    signature = f.String(metadata={"description": "none | optional | required"})
    signers = f.List(f.Nested(TaskOut), metadata={"description": "signers added to this task"})
    proxy_for = f.List(f.String(), metadata={"description": "usernames whose opinions the caller may record here"})


class EventOut(ma.Schema):
    seq = f.Integer()
    at = f.DateTime()
    kind = f.String()
    actor = f.String(attribute="actor_name")
    task_id = f.String(allow_none=True)
    bpmn_id = f.String(allow_none=True)
    task_name = f.String(allow_none=True)
    opinion = f.String(allow_none=True)
    detail = f.Dict()
    hash = f.String()


class InstanceOut(ma.Schema):
    id = f.Integer()
    process_key = f.String()
    version = f.Integer()
    status = f.String()
    business_key = f.String(allow_none=True)
    title = f.String()
    region_code = f.String()
    initiator = f.String(allow_none=True)
    created_at = f.DateTime()
    updated_at = f.DateTime()
    ended_at = f.DateTime(allow_none=True)
    error = f.String(allow_none=True)


class InstanceSummary(InstanceOut):
    tasks = f.List(f.Nested(TaskOut))


class InstanceDetail(InstanceSummary):
    history = f.List(f.Nested(EventOut))
    data = f.Dict()
    completed_elements = f.List(f.String())
    active_elements = f.List(f.String())


class InstanceCreate(ma.Schema):
    process_key = f.String(required=True, validate=ma.validate.Length(min=1, max=64))
    data = f.Dict(load_default=dict)
    business_key = f.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=128))
    title = f.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=300))


class InstanceArgs(PagingArgs):
    process_key = f.String()
    status = f.String(validate=ma.validate.OneOf(("running", "suspended", "completed", "terminated", "error")))
    business_key = f.String()
    q = f.String()
    mine = f.Boolean(load_default=False)
    created_from = f.DateTime()
    created_to = f.DateTime()


class AdminAction(ma.Schema):
    reason = f.String(load_default="", validate=ma.validate.Length(max=500))


class TaskArgs(PagingArgs):
    scope = f.String(load_default="mine", validate=ma.validate.OneOf(
        ("mine", "group", "done", "unassigned", "cc", "overdue")), metadata={
        "description": "cc lists what was copied to the caller (CopyOut items); overdue needs instance.supervise"})


class CompleteRequest(ma.Schema):
    data = f.Dict(required=True)
    opinion = f.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=4000))
    signature = f.String(load_default=None, allow_none=True, metadata={"description": "PNG data URL"})
    on_behalf_of = f.String(load_default=None, allow_none=True,
                            metadata={"description": "record this leader's paper opinion (领导意见代录)"})


class ApproveRequest(CompleteRequest):
    data = f.Dict(load_default=dict)


class OpinionRequest(ma.Schema):
    opinion = f.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=4000))
    signature = f.String(load_default=None, allow_none=True)
    on_behalf_of = f.String(load_default=None, allow_none=True)


class OpinionOnly(ma.Schema):
    opinion = f.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=4000))


class ReadReceipt(ma.Schema):
    name = f.String()
    copied_at = f.DateTime()
    read_at = f.DateTime(allow_none=True)


class ReturnRequest(OpinionRequest):
    target = f.String(load_default=None, allow_none=True, metadata={"description": "bpmn id; default: previous"})
    straight_back = f.Boolean(load_default=False, metadata={"description": "原路返回"})


class ReturnTarget(ma.Schema):
    bpmn_id = f.String()
    name = f.String()
    completed_by = f.String()
    completed_at = f.DateTime()


class HandOverRequest(ma.Schema):
    to = f.String(required=True)
    opinion = f.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=4000))


class SignersRequest(ma.Schema):
    users = f.List(f.String(), required=True, validate=ma.validate.Length(min=1, max=20))
    position = f.String(required=True, validate=ma.validate.OneOf(("before", "after", "parallel")))
    opinion = f.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=4000))


class CopyRequest(ma.Schema):
    users = f.List(f.String(), load_default=list)
    units = f.List(f.String(), load_default=list)
    note = f.String(load_default="", validate=ma.validate.Length(max=1000))


class CopyOut(ma.Schema):
    id = f.Integer()
    instance_id = f.Integer()
    instance_title = f.String()
    task_id = f.String(allow_none=True)
    sender = f.String(allow_none=True)
    note = f.String()
    created_at = f.DateTime()
    read_at = f.DateTime(allow_none=True)


class PhraseOut(ma.Schema):
    id = f.Integer()
    text = f.String()
    own = f.Boolean()


class PhraseRequest(ma.Schema):
    text = f.String(required=True, validate=ma.validate.Length(min=1, max=200))


class AssignRequest(ma.Schema):
    username = f.String(required=True)
    reason = f.String(load_default="", validate=ma.validate.Length(max=500))


class MessageRequest(ma.Schema):
    name = f.String(required=True, validate=ma.validate.Length(min=1, max=128))
    correlations = f.Dict(load_default=dict)
    payload = f.Dict(load_default=dict)


class MessageResult(ma.Schema):
    delivered = f.List(f.Integer())
    started = f.List(f.Integer())


class AttachmentOut(ma.Schema):
    id = f.String()
    filename = f.String()
    content_type = f.String()
    size = f.Integer()
    sha256 = f.String()
    uploaded_at = f.DateTime()


class NotificationOut(ma.Schema):
    id = f.Integer()
    category = f.String()
    title = f.String()
    body = f.String()
    link = f.String()
    instance_id = f.Integer(allow_none=True)
    created_at = f.DateTime()
    read_at = f.DateTime(allow_none=True)


class NotificationArgs(PagingArgs):
    unread = f.Boolean(load_default=False)


class ReadRequest(ma.Schema):
    ids = f.List(f.Integer(), load_default=None, allow_none=True)


class IncidentOut(ma.Schema):
    id = f.Integer()
    instance_id = f.Integer()
    kind = f.String()
    bpmn_id = f.String(allow_none=True)
    operation = f.String(allow_none=True)
    job_id = f.String(allow_none=True)
    message = f.String()
    attempts = f.Integer()
    created_at = f.DateTime()
    resolved_at = f.DateTime(allow_none=True)
    resolution = f.String(allow_none=True)
    reason = f.String(allow_none=True)


class IncidentArgs(PagingArgs):
    state = f.String(load_default="open", validate=ma.validate.OneOf(("open", "resolved", "all")))
    instance_id = f.Integer()


class SecretOut(ma.Schema):
    name = f.String()
    updated_at = f.DateTime()


class SecretRequest(ma.Schema):
    value = f.String(required=True)


class ConnectorSettings(ma.Schema):
    name = f.String(dump_only=True)
    title = f.String(dump_only=True)
    config_schema = f.Dict(dump_only=True)
    config = f.Dict(load_default=dict)
    enabled = f.Boolean(load_default=True)
    timeout = f.Float(allow_none=True, load_default=None)
    retries = f.Integer(allow_none=True, load_default=None)
    updated_at = f.DateTime(dump_only=True, allow_none=True)


class CallbackRequest(ma.Schema):
    message = f.String(required=True, validate=ma.validate.Length(min=1, max=255))
    payload = f.Dict(load_default=dict)


class CallbackResult(ma.Schema):
    instance_id = f.Integer()


class BusServiceIn(ma.Schema):
    name = f.String(required=True, validate=ma.validate.Length(min=1, max=200))
    kind = f.String(required=True)
    description = f.String(load_default="")
    definition = f.Dict(required=True)
    enabled = f.Boolean(load_default=True)


class BusServiceOut(ma.Schema):
    key = f.String()
    name = f.String()
    kind = f.String()
    description = f.String()
    definition = f.Dict()
    enabled = f.Boolean()
    revision = f.Integer()
    updated_at = f.DateTime()


class BusConsumerIn(ma.Schema):
    name = f.String(required=True, validate=ma.validate.Length(min=1, max=200))
    permissions = f.List(f.String(), load_default=list)
    rate_per_minute = f.Integer(load_default=600)
    run_as = f.String(load_default=None, allow_none=True)
    enabled = f.Boolean(load_default=True)


class BusConsumerOut(ma.Schema):
    id = f.Integer()
    name = f.String()
    permissions = f.List(f.String())
    rate_per_minute = f.Integer()
    enabled = f.Boolean()
    created_at = f.DateTime()
    last_used_at = f.DateTime(allow_none=True)
    api_key = f.String(dump_default=None, allow_none=True)


class UsageArgs(ma.Schema):
    day_from = f.Date(required=True, data_key="from")
    day_to = f.Date(required=True, data_key="to")
    service = f.String()
    consumer_id = f.Integer()
