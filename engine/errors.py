"""Errors the engine raises; the web layer maps each class to an HTTP status."""
from __future__ import annotations


class EngineError(Exception):
    """Base class: ``code`` is stable for clients and translations, ``message`` is for people."""

    status = 400
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, errors: dict | None = None, **params):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.errors = errors or {}
        self.params = params


class NotFound(EngineError):
    """Missing, or outside the caller's data scope (we never reveal which)."""

    status = 404
    code = "not_found"


class Forbidden(EngineError):
    status = 403
    code = "forbidden"


class Conflict(EngineError):
    """The task is no longer open, the instance moved on, or the write is stale."""

    status = 409
    code = "conflict"


class ValidationFailed(EngineError):
    """Invalid input; ``errors`` maps a field path to a list of messages."""

    status = 422
    code = "validation_failed"


class AuthenticationFailed(EngineError):
    status = 401
    code = "authentication_failed"


class DeployError(EngineError):
    """A process bundle was rejected; the message names the file, line and element."""

    status = 422
    code = "invalid_process"

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 element: str | None = None, **kw):
        where = ", ".join(p for p in (file, f"line {line}" if line else None,
                                      f"element '{element}'" if element else None) if p)
        super().__init__(f"{where}: {message}" if where else message, **kw)
        self.file, self.line, self.element = file, line, element


class ScriptError(EngineError):
    """A script or condition failed or was refused by the sandbox; names the task."""

    status = 422
    code = "script_error"


class AssignmentError(EngineError):
    """An assignment rule did not parse or matched nobody."""

    status = 422
    code = "assignment_error"


class Misconfigured(EngineError):
    """The platform is set up wrongly (a missing key, an unusable connector configuration)."""

    status = 500
    code = "misconfigured"


class RateLimited(EngineError):
    """Too many calls in the current window; ``retry_after`` says how many seconds to wait."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int = 60, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after
