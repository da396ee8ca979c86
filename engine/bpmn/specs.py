"""Task-spec subclasses: asynchronous service tasks and multi-instance with aggregate conditions."""
from __future__ import annotations

from SpiffWorkflow.spiff.specs.defaults import (
    ParallelMultiInstanceTask,
    SequentialMultiInstanceTask,
    ServiceTask,
)


class AsyncServiceTask(ServiceTask):
    """A service task that hands its call to the job outbox and waits (STARTED) for the result."""

    def _execute(self, task):
        engine = task.workflow.script_engine
        engine.enqueue_service_call(task, self.operation_name, self.evaluate_params(task))
        return None  # None leaves the task STARTED until a worker completes it


class _AggregateCondition:
    """Evaluates completionCondition on the multi-instance task itself, after each instance merges.

    SpiffWorkflow evaluates it on the last finished instance, whose copy of the output collection
    is stale, so an N-of-M rule such as ``len(approvals) >= 2`` would never fire. Here the
    condition sees the output collection with every decision so far.
    """

    def check_completion_condition(self, my_task):
        if self.condition is not None and my_task.internal_data.get("merged"):
            return my_task.workflow.script_engine.evaluate(my_task, self.condition)
        return None


class AggregateParallelMI(_AggregateCondition, ParallelMultiInstanceTask):
    pass


class AggregateSequentialMI(_AggregateCondition, SequentialMultiInstanceTask):
    pass
