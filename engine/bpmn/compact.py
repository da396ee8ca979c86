"""Keep serialized state flat: drop finished history above the live part of the task tree.

SpiffWorkflow keeps every finished task in the tree, so an instance's state, and the cost of each
completion, grow with its history; a loop deeper than ~500 rounds also hits the task iterator's depth
limit. The audit table holds the history, so the tree only needs the live part: the lowest common
ancestor of all unfinished tasks (which keeps open parallel branches and their finished siblings
intact for joins) and that ancestor's parent (whose data new tasks inherit). Everything above is
cut away and the kept part is re-attached to the root. A running sequential multi-instance task also
drops its finished instances.
"""
from __future__ import annotations

from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import (
    SequentialMultiInstanceTask as SequentialMultiInstanceTaskMixin,
)
from SpiffWorkflow.util.task import TaskState


def _path_to_root(task):
    path = []
    while task is not None:
        path.append(task)
        task = task.parent
    path.reverse()
    return path


def _lowest_common_ancestor(tasks):
    paths = [_path_to_root(t) for t in tasks]
    lca = None
    for level in zip(*paths, strict=False):
        if all(t is level[0] for t in level):
            lca = level[0]
        else:
            break
    return lca


def _compact_one(workflow, top) -> int:
    root = workflow.task_tree
    live = [t for t in workflow.tasks.values() if not t.has_state(TaskState.FINISHED_MASK)]
    if not live:
        return 0
    lca = _lowest_common_ancestor(live)
    keep = lca.parent if lca is not None else None
    if keep is None or keep is root or keep.parent is root:
        return 0
    kept = {root.id}
    kept.update(t.id for t in keep)  # iterating a task walks its subtree
    removed = [tid for tid in workflow.tasks if tid not in kept]
    for tid in removed:
        if tid in top.subprocesses:
            top.delete_subprocess(workflow.tasks[tid])
    for tid in removed:
        del workflow.tasks[tid]
    root._children = [keep.id]
    keep._parent = root.id
    if workflow.last_task is not None and workflow.last_task.id not in kept:
        workflow.last_task = None
    return len(removed)


def _prune_sequential_instances(workflow, top) -> int:
    """A running sequential multi-instance keeps each finished instance as a child; it needs none of them
    (its own bookkeeping and the merged output live on the parent), so they go too."""
    removed = 0
    for task in [t for t in workflow.tasks.values()
                 if isinstance(t.task_spec, SequentialMultiInstanceTaskMixin) and t.state == TaskState.STARTED]:
        done = [c for c in task.children if c.state == TaskState.COMPLETED]
        for child in done:
            subtree = [t.id for t in child]
            for tid in subtree:
                if tid in top.subprocesses:
                    top.delete_subprocess(workflow.tasks[tid])
            for tid in subtree:
                workflow.tasks.pop(tid, None)
            task._children.remove(child.id)
            removed += len(subtree)
        if done and workflow.last_task is not None and workflow.last_task.id not in workflow.tasks:
            workflow.last_task = None
    return removed


def compact(workflow) -> int:
    """Remove finished ancestors of the live frontier, and finished instances of running sequential
    multi-instance tasks, in the workflow and in each live subprocess."""
    removed = _compact_one(workflow, workflow) + _prune_sequential_instances(workflow, workflow)
    for key in list(workflow.subprocesses):
        sub = workflow.subprocesses.get(key)  # an earlier pass may have deleted it with its parent
        if sub is not None:
            removed += _compact_one(sub, workflow) + _prune_sequential_instances(sub, workflow)
    return removed
