"""Translation helpers: the locale, date formats, and Chinese text for engine errors."""
from __future__ import annotations

from flask import request
from flask_babel import format_datetime, gettext
from flask_babel import lazy_gettext as _l

from engine.errors import EngineError
from engine.forms import LIMIT_NAMES, MESSAGES

LOCALES = ("zh_CN", "en")

ERROR_TEXT = {
    "task_closed": _l("This task has already been completed or cancelled."),
    "task_claimed": _l("Another user has already claimed this task."),
    "task_not_ready": _l("This task is no longer ready."),
    "not_your_task": _l("You may not act on this task."),
    "not_a_candidate": _l("This task is not offered to you."),
    "not_assignee": _l("Only the user who claimed the task can give it back."),
    "not_claimable": _l("This task was assigned to you and cannot be given back."),
    "instance_not_running": _l("The process is not running (suspended or ended)."),
    "instance_not_suspended": _l("The process is not suspended."),
    "instance_ended": _l("The process has already ended."),
    "not_admin": _l("Only process administrators may do this."),
    "not_a_starter": _l("You may not start this process."),
    "not_a_sender": _l("You may not send messages to processes."),
    "bad_credentials": _l("Wrong username or password."),
    "account_locked": _l("The account is locked after repeated failed logins. Try again later."),
    "not_found": _l("Not found, or outside your data scope."),
    "validation_failed": _l("Please correct the marked fields."),
    "conflict": _l("The data was changed by someone else in the meantime. Please reload and try again."),
    "stale": _l("The data was changed by someone else in the meantime. Please reload and try again."),
    "no_receiver": _l("No process is waiting for this message."),
    "operation_not_allowed": _l("This step does not offer this operation."),
    "waiting_for_signers": _l("Added signers are still involved in this task."),
    "no_return_target": _l("There is no earlier step to return to."),
    "not_a_return_target": _l("The chosen step is not an earlier step of this task."),
    "no_such_step": _l("The chosen step does not exist in this process."),
    "same_user": _l("Choose someone other than the task's current holder."),
    "already_delegated": _l("This task is already delegated."),
    "signer_acted": _l("This signer has already signed."),
    "not_completer": _l("Only the person who completed this step can withdraw it."),
    "next_step_acted": _l("The next step has already been acted on; it can no longer be withdrawn."),
    "not_initiator": _l("Only the initiator can cancel this process."),
    "not_urger": _l("Only the initiator or a supervisor can urge."),
    "urged_recently": _l("You urged this process a short while ago. Please try again later."),
    "nobody_to_urge": _l("Nobody holds an open task in this process."),
    "not_a_proxy": _l("You may not record opinions on this person's behalf."),
    "too_many_phrases": _l("You have 50 common opinions already; delete one first."),
    "not_supervisor": _l("Only supervisors see the overdue list."),
    "task_delegated": _l("This task was delegated to you: act on it and it goes back to its owner, who decides it."),
    "incident_resolved": _l("This incident has already been handled."),
    "incident_not_skippable": _l("Only a failed service call can be skipped; retry this one."),
    "instance_not_in_error": _l("The process is not stopped by an error."),
    "task_not_waiting": _l("The failed step is no longer waiting."),
    "secret_in_use": _l("A connector still uses this secret."),
    "secrets_key_missing": _l("The secrets key is not configured (EMFLOW_SECRETS_KEY)."),
    "secret_undecryptable": _l("A stored secret cannot be decrypted with the configured key."),
    "callback_unknown": _l("This callback address is not valid."),
    "callback_not_waiting": _l("The process is not waiting for this answer (already answered?)."),
    "api_key_invalid": _l("A valid API key is required."),
    "not_permitted": _l("This consumer may not call this operation."),
    "no_such_service": _l("No such service operation."),
    "rate_limited": _l("Too many calls; try again shortly."),
    "consumer_exists": _l("A consumer with this name exists."),
}


def buttons(config) -> list[dict]:
    """The operations a task offers, with their labels (the task's own, else the translated default)."""
    from engine.taskconfig import BUTTONS

    return [{"action": b, "label": config.labels.get(b) or gettext(BUTTONS[b])} for b in config.buttons]


def select_locale() -> str:
    """Simplified Chinese unless the browser prefers English."""
    return request.accept_languages.best_match(LOCALES, default="zh_CN") or "zh_CN"


def error_text(exc: EngineError) -> str:
    text = ERROR_TEXT.get(exc.code)
    return str(text) if text is not None else exc.message


def error_with_details(exc: EngineError) -> str:
    """The error as one sentence for a flash message on a page that does not mark the fields: its field errors
    are spelt out ("correct the marked fields" with nothing marked would tell the user nothing)."""
    detail = "；".join(m for msgs in field_errors(exc.errors or {}).values() for m in msgs)
    return f"{error_text(exc)} {detail}".strip()


def field_errors(errors: dict) -> dict[str, list[str]]:
    """Engine per-field errors ({code, limit}) as translated sentences."""
    out: dict[str, list[str]] = {}
    for field, items in errors.items():
        for item in items:
            template = MESSAGES.get(item.get("code"))
            limit = item.get("limit")
            if isinstance(limit, str) and limit in LIMIT_NAMES:
                limit = gettext(LIMIT_NAMES[limit])
            text = gettext(template, limit=limit) if template else item.get("message", "")
            out.setdefault(field, []).append(text)
    return out


def fmt_dt(value, pattern: str = "yyyy-MM-dd HH:mm") -> str:
    return format_datetime(value, pattern) if value else ""
