"""What a user task allows and how it behaves, from its BPMN extension properties.

    <spiffworkflow:property name="buttons" value="approve,reject,return,transfer,delegate,addSigner,cc,urge"/>
    <spiffworkflow:property name="label.approve" value="签发"/>
    <spiffworkflow:property name="requireOpinion" value="reject,return"/>      (or "true" for every action)
    <spiffworkflow:property name="onReject" value="end"/>                      (or the id of a step to return to)
    <spiffworkflow:property name="timeout" value="P2D"/>                       (days are working days; PT4H hours)
    <spiffworkflow:property name="dueField" value="deadline"/>                 (the deadline is a date in the data)
    <spiffworkflow:property name="timeoutAction" value="remind:3"/>            (remind[:N]|approve|reject|escalate)
    <spiffworkflow:property name="emptyApprover" value="admin"/>               (error | approve | skip | leader | admin)
    <spiffworkflow:property name="initiatorApprover" value="approve"/>         (self | approve | skip | leader)
    <spiffworkflow:property name="dedupe" value="true"/>                       (the same person twice in a row: once)
    <spiffworkflow:property name="signature" value="optional"/>                (none | optional | required)
    <spiffworkflow:property name="allowWithdraw" value="false"/>
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import DeployError
from .forms import N_

BUTTONS = {
    "submit": N_("Submit"), "approve": N_("Approve"), "reject": N_("Reject"), "return": N_("Return"),
    "transfer": N_("Transfer"), "delegate": N_("Delegate"), "addSigner": N_("Add signer"), "cc": N_("Copy to"),
    "urge": N_("Urge"),
}
DEFAULT_BUTTONS = ("submit",)  # a plain form submission; the form itself carries any decision
TIMEOUT_ACTIONS = ("remind", "approve", "reject", "escalate")
EMPTY_RULES = ("error", "approve", "skip", "leader", "admin")
INITIATOR_RULES = ("self", "approve", "skip", "leader")
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")

PROPERTIES = ("buttons", "requireOpinion", "onReject", "timeout", "dueField", "timeoutAction", "emptyApprover",
              "initiatorApprover", "dedupe", "signature", "allowWithdraw")


@dataclass(frozen=True)
class Duration:
    working_days: int = 0
    hours: int = 0
    minutes: int = 0


@dataclass(frozen=True)
class TaskConfig:
    buttons: tuple[str, ...] = DEFAULT_BUTTONS
    labels: dict[str, str] = field(default_factory=dict)
    require_opinion: frozenset[str] = frozenset({"reject", "return"})
    on_reject: str = "end"
    timeout: Duration | None = None
    due_field: str | None = None
    timeout_action: str = "remind"
    remind_limit: int = 3
    empty_approver: str = "error"
    initiator_approver: str = "self"
    dedupe: bool = False
    signature: str = "none"
    allow_withdraw: bool = True

    def allows(self, action: str) -> bool:
        return action in self.buttons

    def opinion_required(self, action: str) -> bool:
        return "*" in self.require_opinion or action in self.require_opinion

    @property
    def repeat(self) -> Duration:
        """How often an overdue task is reminded again: its timeout, or one working day."""
        return self.timeout or Duration(working_days=1)


def parse_duration(text: str) -> Duration:
    match = _DURATION.match(text.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"'{text}' is not a duration such as P2D, PT4H or P1DT2H")
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return Duration(days, hours, minutes)


def _flag(value: str) -> bool:
    return value.strip().lower() in ("true", "yes", "1")


def parse(props: dict[str, str], user_task_ids: set[str], where: dict) -> TaskConfig:
    """Read a user task's operation properties; raise DeployError (with ``where``: file, line, element)."""
    def fail(message: str):
        raise DeployError(message, **where)

    values = {}
    if "buttons" in props:
        buttons = tuple(b.strip() for b in props["buttons"].split(",") if b.strip())
        unknown = [b for b in buttons if b not in BUTTONS]
        if unknown or not buttons:
            fail(f"unknown button(s) {', '.join(unknown) or '(none)'}; known: {', '.join(BUTTONS)}")
        values["buttons"] = buttons
    labels = {k[len("label."):]: v for k, v in props.items() if k.startswith("label.")}
    for name in labels:
        if name not in BUTTONS:
            fail(f"label for unknown button '{name}'")
    values["labels"] = labels
    if "requireOpinion" in props:
        raw = props["requireOpinion"].strip()
        values["require_opinion"] = frozenset({"*"} if _flag(raw) else
                                              {b.strip() for b in raw.split(",") if b.strip()} - {"false"})
    if "onReject" in props:
        target = props["onReject"].strip()
        if target != "end" and target not in user_task_ids:
            fail(f"onReject must be 'end' or the id of a user task, not '{target}'")
        values["on_reject"] = target
    if "timeout" in props:
        try:
            values["timeout"] = parse_duration(props["timeout"])
        except ValueError as exc:
            fail(str(exc))
    if "dueField" in props:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", props["dueField"].strip()):
            fail("dueField must name a form field")
        values["due_field"] = props["dueField"].strip()
    if "timeoutAction" in props:
        action, _, count = props["timeoutAction"].strip().partition(":")
        if action not in TIMEOUT_ACTIONS or (count and (not count.isdigit() or action != "remind")):
            fail(f"timeoutAction must be one of {', '.join(TIMEOUT_ACTIONS)} (remind:N for N reminders)")
        values["timeout_action"] = action
        if count:
            values["remind_limit"] = int(count)
    for prop, key, allowed in (("emptyApprover", "empty_approver", EMPTY_RULES),
                               ("initiatorApprover", "initiator_approver", INITIATOR_RULES),
                               ("signature", "signature", ("none", "optional", "required"))):
        if prop in props:
            if props[prop].strip() not in allowed:
                fail(f"{prop} must be one of {', '.join(allowed)}")
            values[key] = props[prop].strip()
    if "dedupe" in props:
        values["dedupe"] = _flag(props["dedupe"])
    if "allowWithdraw" in props:
        values["allow_withdraw"] = _flag(props["allowWithdraw"])
    return TaskConfig(**values)


def to_meta(config: TaskConfig) -> dict:
    """The JSON form stored in a version's metadata."""
    return {
        "buttons": list(config.buttons), "labels": config.labels, "require_opinion": sorted(config.require_opinion),
        "on_reject": config.on_reject,
        "timeout": [config.timeout.working_days, config.timeout.hours, config.timeout.minutes]
        if config.timeout else None, "due_field": config.due_field,
        "timeout_action": config.timeout_action, "remind_limit": config.remind_limit,
        "empty_approver": config.empty_approver, "initiator_approver": config.initiator_approver,
        "dedupe": config.dedupe, "signature": config.signature, "allow_withdraw": config.allow_withdraw,
    }


def from_meta(meta: dict | None) -> TaskConfig:
    """A TaskConfig from version metadata (versions deployed before operations existed get the defaults)."""
    if not meta:
        return TaskConfig()
    timeout = meta.get("timeout")
    return TaskConfig(
        buttons=tuple(meta["buttons"]), labels=dict(meta["labels"]), require_opinion=frozenset(meta["require_opinion"]),
        on_reject=meta["on_reject"], timeout=Duration(*timeout) if timeout else None, due_field=meta.get("due_field"),
        timeout_action=meta["timeout_action"], remind_limit=meta["remind_limit"],
        empty_approver=meta["empty_approver"], initiator_approver=meta["initiator_approver"],
        dedupe=meta["dedupe"], signature=meta["signature"], allow_withdraw=meta["allow_withdraw"],
    )
