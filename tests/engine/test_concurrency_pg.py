"""Concurrent writers on PostgreSQL: one task completed twice at once, and 20 documents numbered at once.

Each thread works in its own ``db.transaction()``, as separate web requests and workers do.
"""
from __future__ import annotations

import os
import threading

import pytest

from engine import audit, jobs, tasks
from engine.errors import Conflict
from tests.concurrency import in_threads, release_when_waiting
from tests.engine.helpers import (
    assert_state_round_trips,
    clear_of_midnight,
    dispatch_to_distribution,
    distribute_payload,
    events,
    instance,
    jobs_of,
    load_user,
    only_task,
    review,
    sign_off,
    start_dispatch,
    workflow_data,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get("EMFLOW_TEST_DATABASE_URL"), reason="needs EMFLOW_TEST_DATABASE_URL"),
]

APPROVE = {"review_decision": "approve", "opinion": "同意"}
RETURN = {"review_decision": "return", "opinion": "退回修改"}




def complete_review(db, config, task_id: str, data: dict) -> str:
    with db.transaction() as s:
        tasks.complete(s, config, load_user(s, "li.na"), task_id, data)
    return "completed"




def assert_consistent(db, instance_id: int, review_id: str) -> None:
    """One completion of the review, recorded once, a state that loads, an intact chain."""
    completed = [e for e in events(db, instance_id, "task_completed") if e.task_id == review_id]
    assert len(completed) == 1
    assert only_task(db, instance_id).bpmn_id == ("sign_off" if completed[0].detail["changes"]["review_decision"]
                                                  == "approve" else "draft")
    assert_state_round_trips(db, instance_id)
    with db.session() as s:
        assert audit.verify_instance(s, instance_id) is None


# -- one task, two completions --------------------------------------------------------------------------
def test_two_simultaneous_completions_one_wins_the_other_conflicts(db, config):
    for _ in range(5):
        instance_id = start_dispatch(db, config)
        review_id = only_task(db, instance_id, "review").id
        version = instance(db, instance_id).lock_version

        results = in_threads(lambda t=review_id: complete_review(db, config, t, APPROVE),
                             lambda t=review_id: complete_review(db, config, t, RETURN), together=True)

        assert sorted(map(type, results), key=str) == sorted([str, Conflict], key=str), results
        [conflict] = [r for r in results if isinstance(r, Conflict)]
        assert conflict.code == "task_closed"
        assert instance(db, instance_id).lock_version > version
        assert_consistent(db, instance_id, review_id)


def test_the_second_completion_waits_for_the_first_then_conflicts(db, config):
    instance_id = start_dispatch(db, config)
    review_id = only_task(db, instance_id, "review").id
    holding, release = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def first():
        with db.transaction() as s:
            tasks.complete(s, config, load_user(s, "li.na"), review_id, APPROVE)
            holding.set()
            release.wait(30)  # keep the instance row locked until the second writer queues on it
        results["first"] = "completed"

    def second():
        try:
            results["second"] = complete_review(db, config, review_id, RETURN)
        except Exception as exc:  # noqa: BLE001
            results["second"] = exc

    t1 = threading.Thread(target=first)
    t1.start()
    assert holding.wait(30)
    t2 = threading.Thread(target=second)
    t2.start()
    try:
        release_when_waiting(db, release)
    finally:
        t1.join(30)
        t2.join(30)

    assert results["first"] == "completed"
    assert isinstance(results["second"], Conflict) and results["second"].code == "task_closed"
    assert_consistent(db, instance_id, review_id)
    assert only_task(db, instance_id).bpmn_id == "sign_off"


def test_a_claim_racing_a_completion_leaves_one_outcome(db, config, registry):
    instance_id = dispatch_to_distribution(db, config, registry)
    task_id = only_task(db, instance_id).id

    def claim():
        with db.transaction() as s:
            return tasks.claim(s, config, load_user(s, "zhang.wei"), task_id).assignee_id

    def finish():
        with db.transaction() as s:
            return tasks.complete(s, config, load_user(s, "zhang.wei"), task_id, distribute_payload()).status

    results = in_threads(claim, finish, together=True)

    assert "completed" in results
    assert all(not isinstance(r, Exception) or isinstance(r, Conflict) for r in results), results
    assert instance(db, instance_id).status == "completed"
    assert_state_round_trips(db, instance_id)


# -- twenty documents at once -----------------------------------------------------------------------------
def test_twenty_documents_signed_and_numbered_concurrently(db, config, registry):
    year = clear_of_midnight(config).year  # the engine's local year, not the host's, when the jobs below run
    count = 20
    ids = []
    for _ in range(count):
        instance_id = start_dispatch(db, config)
        review(db, config, instance_id)
        ids.append(instance_id)

    signed = in_threads(*[lambda i=i: sign_off(db, config, i) for i in ids], together=True)
    assert signed == [None] * count, signed

    job_ids = [job.id for i in ids for job in jobs_of(db, i)]
    assert len(job_ids) == count and set(jobs.due_jobs(db, limit=100)) == set(job_ids)
    outcomes = in_threads(*[lambda j=j: jobs.execute(db, config, registry, j) for j in job_ids], together=True)
    assert outcomes == ["done"] * count, outcomes

    numbers = [workflow_data(db, i)["numbering"] for i in ids]
    assert sorted(n["sequence"] for n in numbers) == list(range(1, count + 1))
    assert {n["number"] for n in numbers} == {f"桂应急发〔{year}〕{k}号" for k in range(1, count + 1)}
    for i in ids:
        assert only_task(db, i).bpmn_id == "distribute"
        assert_state_round_trips(db, i)
