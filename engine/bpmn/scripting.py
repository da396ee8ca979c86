"""The script engine our workflows run with: sandboxed, naming the task in every error."""
from __future__ import annotations

from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.exceptions import SpiffWorkflowException

from ..errors import ScriptError
from .sandbox import SandboxEnvironment, SandboxViolation


def describe_task(task) -> str:
    spec = task.task_spec
    name = getattr(spec, "bpmn_name", None) or spec.name
    return f"'{name}' ({getattr(spec, 'bpmn_id', None) or spec.name})"


class ScriptEngine(PythonScriptEngine):
    """Runs scripts in the sandbox and collects service calls for the job outbox.

    One instance per loaded workflow: ``service_calls`` is read by the runtime after engine steps.
    """

    def __init__(self, helpers: dict | None = None, time_limit: float = 2.0):
        super().__init__(environment=SandboxEnvironment(helpers, time_limit))
        self.service_calls: list[dict] = []

    def _fail(self, task, what: str, source: str, err: Exception):
        kind = "refused by the sandbox" if isinstance(err, (SandboxViolation, SyntaxError)) else "failed"
        detail = err.msg if isinstance(err, SyntaxError) and err.msg else err
        line = getattr(err, "lineno", None)
        where = f" (line {line})" if line else ""
        raise ScriptError(
            f"{what} in task {describe_task(task)} {kind}{where}: {detail}",
            task=task.task_spec.bpmn_id or task.task_spec.name, source=source,
        ) from err

    def evaluate(self, task, expression, external_context=None):
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except (ScriptError, SpiffWorkflowException):
            raise
        except Exception as err:  # noqa: BLE001 - every failure becomes a ScriptError naming the task
            self._fail(task, "Expression", expression, err)

    def execute(self, task, script, external_context=None):
        try:
            return self.environment.execute(script, task.data, external_context or {})
        except (ScriptError, SpiffWorkflowException):
            raise
        except Exception as err:  # noqa: BLE001
            self._fail(task, "Script", script, err)

    def call_service(self, task, **kwargs):
        raise ScriptError(f"service task {describe_task(task)} must run through the job queue")

    def enqueue_service_call(self, task, operation: str, params: dict) -> None:
        """Called by AsyncServiceTask: remember the call; the runtime writes it to the outbox."""
        self.service_calls.append({
            "task_id": str(task.id),
            "bpmn_id": task.task_spec.bpmn_id,
            "operation": operation,
            "params": {k: v["value"] for k, v in params.items()},
            "result_variable": task.task_spec.result_variable,
            # A model that expects the outside system to answer later names the message (callbackMessage).
            "callback_message": (getattr(task.task_spec, "extensions", None) or {}).get("properties", {})
            .get("callbackMessage"),
        })
