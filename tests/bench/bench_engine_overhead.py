"""Benchmark (1): one task completion through emflow's engine versus the same completion in plain SpiffWorkflow.

emflow: ``engine.tasks.complete`` inside ``db.transaction()`` on PostgreSQL, with the real schema
(``engine.schema.upgrade``), the demo organisation (``engine.demo.load_org``) and a small approval process
deployed through ``engine.deploy``: submit (initiator) -> review (li.na; approve/return) -> archive (a group).
Two completions are timed on each of N instances: *submit* (creates the review task) and *review* (evaluates
the gateway and offers the archive task to a candidate group).

Plain SpiffWorkflow, the same BPMN parsed by ``SpiffBpmnParser`` with the stock ``PythonScriptEngine``:

- *run*: ``task.set_data`` + ``task.run`` + ``do_engine_steps`` on an already-loaded workflow (the ratio the
  issue asks for);
- *stateless cycle*: ``deserialize_json`` -> run -> ``serialize_json`` with the stock ``BpmnWorkflowSerializer``
  (the cycle notes/performance-reference.md sets the <= 5x target against).

A second, instrumented pass over fresh instances splits the engine's time into deserialize / workflow run /
serialize / SQL / COMMIT / the rest (exclusive times, wrappers installed only for that pass).

    .venv/bin/python tests/bench/bench_engine_overhead.py [--n 300] [--quick] [--keep]
"""
from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections import defaultdict
from functools import wraps
from pathlib import Path
from uuid import UUID

import benchlib as B
from sqlalchemy import event, select

DB_NAME = "emflow_bench_overhead"


# -- exclusive-time breakdown ---------------------------------------------------------------------------------
class Breakdown:
    """Wraps functions; each wrapped call's time minus the time of wrapped calls inside it goes to its label:
    wall time in ``totals``, this process's CPU time in ``cpu`` (waits for the database count only in the first)."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []
        self._patches: list[tuple] = []

    def enter(self, label: str) -> None:
        self._stack.append([label, time.perf_counter(), time.process_time(), 0.0, 0.0])

    def exit(self) -> None:
        label, t0, c0, child, child_cpu = self._stack.pop()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.totals[label] += elapsed - child
        self.cpu[label] += cpu - child_cpu
        self.calls[label] += 1
        if self._stack:
            self._stack[-1][3] += elapsed
            self._stack[-1][4] += cpu

    def wrap(self, owner, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        @wraps(original)
        def wrapper(*args, **kwargs):
            self.enter(label)
            try:
                return original(*args, **kwargs)
            finally:
                self.exit()

        setattr(owner, attr, wrapper)
        self._patches.append((owner, attr, original))

    def undo(self) -> None:
        for owner, attr, original in reversed(self._patches):
            setattr(owner, attr, original)
        self._patches.clear()

    def reset(self) -> None:
        self.totals.clear()
        self.cpu.clear()
        self.calls.clear()


def instrument(db) -> tuple[Breakdown, callable]:
    """Wrap the engine's phases, SQLAlchemy's flush/commit, every SQL round trip and the DBAPI COMMIT."""
    from SpiffWorkflow.task import Task
    from sqlalchemy.orm import Session

    from engine import audit, forms, rawsql, rowwrites, runtime, tasks

    bd = Breakdown()
    bd.wrap(runtime, "state_from_json", "deserialize (state_from_json)")
    bd.wrap(runtime, "state_to_json", "serialize (state_to_json)")
    bd.wrap(runtime, "compact", "compact task tree")
    bd.wrap(runtime.Step, "run", "workflow run (task.run + engine steps)")
    bd.wrap(Task, "run", "workflow run (task.run + engine steps)")
    bd.wrap(runtime.Step, "__init__", "step setup (version cache, script engine)")
    bd.wrap(runtime.Step, "_track_elements", "track diagram elements")
    bd.wrap(runtime.Step, "_sync_human_tasks", "human tasks + assignment rules")
    bd.wrap(runtime.Step, "_sync_subscriptions", "subscriptions / timers / jobs")
    bd.wrap(runtime.Step, "_next_timer", "subscriptions / timers / jobs")
    bd.wrap(runtime.Step, "_write_jobs", "subscriptions / timers / jobs")
    bd.wrap(forms.Form, "clean", "form validation (jsonschema)")
    bd.wrap(audit, "record", "audit event (hash chain)")
    bd.wrap(tasks, "get", "task lookup + visibility")
    bd.wrap(Session, "flush", "ORM flush bookkeeping")
    bd.wrap(Session, "commit", "ORM flush bookkeeping")
    bd.wrap(rowwrites, "write_rows", "row writes (Core: task UPDATE + INSERT, instance UPDATE)")
    bd.wrap(rowwrites, "update_changed", "row writes (Core: task UPDATE + INSERT, instance UPDATE)")
    # On PostgreSQL the row writes only queue; the batch goes as one statement, and the locking read too, past
    # SQLAlchemy's cursor events.
    bd.wrap(rowwrites._Batch, "send", "SQL statements (round trips)")
    bd.wrap(rawsql, "fetchone", "SQL statements (round trips)")
    engine = db.write_engine
    dialect = engine.dialect
    original_commit = dialect.do_commit

    def do_commit(dbapi_connection):
        bd.enter("COMMIT round trip (WAL flush)")
        try:
            return original_commit(dbapi_connection)
        finally:
            bd.exit()

    dialect.do_commit = do_commit

    def before(conn, cursor, statement, parameters, context, executemany):
        bd.enter("SQL statements (round trips)")

    def after(conn, cursor, statement, parameters, context, executemany):
        bd.exit()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)

    def undo():
        bd.undo()
        dialect.do_commit = original_commit
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)

    return bd, undo


# -- emflow side ------------------------------------------------------------------------------------------------
def start_instances(db, config, user, n: int) -> list[int]:
    from engine import instances

    ids = []
    for _ in range(n):
        with db.transaction() as s:
            ids.append(instances.start(s, config, user, B.APPROVAL).id)
    return ids


def open_task_ids(db, instance_ids: list[int], bpmn_id: str) -> list[str]:
    from engine.models import HumanTask

    with db.session() as s:
        rows = dict(s.execute(select(HumanTask.instance_id, HumanTask.id).where(
            HumanTask.instance_id.in_(instance_ids), HumanTask.state == "open", HumanTask.bpmn_id == bpmn_id)).all())
    return [rows[i] for i in instance_ids]


def complete_all(db, config, user, task_ids: list[str], data: dict) -> list[float]:
    from engine import tasks

    times = []
    for task_id in task_ids:
        t0 = time.perf_counter()
        with db.transaction() as s:
            tasks.complete(s, config, user, task_id, dict(data))
        times.append(time.perf_counter() - t0)
    return times


# -- plain SpiffWorkflow side ----------------------------------------------------------------------------------
def stock_workflows(n: int):
    """n plain SpiffWorkflow instances of the same BPMN, each waiting at 'submit'."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.util.task import TaskState

    spec, subs = B.stock_spec(B.APPROVAL_BPMN, B.APPROVAL)
    out = []
    for _ in range(n):
        wf = BpmnWorkflow(spec, subs)
        wf.get_next_task(state=TaskState.READY).set_data(initiator="zhang.wei", business_key=None)
        wf.do_engine_steps()
        out.append(wf)
    return out


def ready_id(wf, bpmn_id: str) -> UUID:
    from SpiffWorkflow.util.task import TaskState

    [task] = [t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.bpmn_id == bpmn_id]
    return task.id


def time_runs(workflows, bpmn_id: str, data: dict) -> list[float]:
    """set_data + run + do_engine_steps on loaded workflows (the task id is known, as in the engine)."""
    ids = [ready_id(wf, bpmn_id) for wf in workflows]
    times = []
    for wf, tid in zip(workflows, ids, strict=True):
        t0 = time.perf_counter()
        task = wf.get_task_from_id(tid)
        task.set_data(**data)
        task.run()
        wf.do_engine_steps()
        times.append(time.perf_counter() - t0)
    return times


def time_stateless(blobs: list[str], bpmn_id: str, data: dict, serializer) -> tuple[list[float], dict, list[str]]:
    """deserialize_json -> set_data/run/do_engine_steps -> serialize_json; returns totals, parts, new blobs."""
    times, parts, out = [], defaultdict(list), []
    for blob in blobs:
        t0 = time.perf_counter()
        wf = serializer.deserialize_json(blob)
        t1 = time.perf_counter()
        task = wf.get_task_from_id(ready_id(wf, bpmn_id))
        task.set_data(**data)
        task.run()
        wf.do_engine_steps()
        t2 = time.perf_counter()
        new = serializer.serialize_json(wf)
        t3 = time.perf_counter()
        times.append(t3 - t0)
        parts["deserialize"].append(t1 - t0)
        parts["run"].append(t2 - t1)
        parts["serialize"].append(t3 - t2)
        out.append(new)
    return times, parts, out


def time_emflow_in_memory(db, version_id: int, n: int) -> tuple[dict, dict]:
    """The engine's own workflow work without the database: state_from_json (spec-less) -> run in the sandboxed
    script engine -> refresh_timers/do_engine_steps -> compact -> state_to_json, for submit then review."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.util.task import TaskState

    from engine.bpmn.compact import compact
    from engine.bpmn.scripting import ScriptEngine
    from engine.bpmn.serializer import state_from_json, state_to_json
    from engine.versions import VERSIONS

    with db.session() as s:
        version = VERSIONS.get(s, version_id)
    blobs = []
    for _ in range(n):
        wf = BpmnWorkflow(version.spec, version.subprocess_specs, script_engine=ScriptEngine())
        wf.get_next_task(state=TaskState.READY).set_data(initiator="zhang.wei", business_key=None)
        wf.refresh_timers()
        wf.do_engine_steps()
        compact(wf)
        blobs.append(state_to_json(wf))
    results, sizes = {}, {}
    for bpmn_id, data in (("submit", B.SUBMIT_DATA), ("review", B.REVIEW_DATA)):
        parts = defaultdict(list)
        sizes[bpmn_id] = sum(len(b) for b in blobs) / len(blobs)
        new_blobs = []
        for blob in blobs:
            t0 = time.perf_counter()
            wf = state_from_json(blob, version.spec, version.subprocess_specs)
            wf.script_engine = ScriptEngine()
            t1 = time.perf_counter()
            task = wf.get_task_from_id(ready_id(wf, bpmn_id))
            task.set_data(**data)
            task.run()
            wf.refresh_timers()
            wf.do_engine_steps()
            t2 = time.perf_counter()
            compact(wf)
            new = state_to_json(wf)
            t3 = time.perf_counter()
            parts["total"].append(t3 - t0)
            parts["deserialize"].append(t1 - t0)
            parts["run"].append(t2 - t1)
            parts["compact + serialize"].append(t3 - t2)
            new_blobs.append(new)
        blobs = new_blobs
        results[bpmn_id] = parts
    return results, sizes


# -- report ---------------------------------------------------------------------------------------------------------
def row(label: str, values: list[float]) -> str:
    s = B.summary(values)
    return f"  {label:<58} median {s['median'] * 1000:8.3f} ms   p95 {s['p95'] * 1000:8.3f} ms   (n={s['n']})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="completions timed per kind (default 300)")
    ap.add_argument("--quick", action="store_true", help="n=60: a fast smoke run")
    ap.add_argument("--keep", action="store_true", help=f"keep the database {DB_NAME}")
    args = ap.parse_args()
    n = 60 if args.quick else args.n
    warm = 20
    B.banner(f"bench_engine_overhead: task completion, engine on PostgreSQL vs plain SpiffWorkflow (n={n})")

    tmp = Path(tempfile.mkdtemp(prefix="emflow_bench_overhead_"))
    config, db, versions = B.setup_emflow(DB_NAME, tmp, [B.bundle(B.APPROVAL)])
    try:
        with db.session() as s:
            clerk, director = B.load_user(s, "zhang.wei"), B.load_user(s, "li.na")
        # Warm-up: version cache, connection pool, prepared statements, form validators.
        ids = start_instances(db, config, clerk, warm)
        complete_all(db, config, clerk, open_task_ids(db, ids, "submit"), B.SUBMIT_DATA)
        complete_all(db, config, director, open_task_ids(db, ids, "review"), B.REVIEW_DATA)

        t0 = time.perf_counter()
        ids = start_instances(db, config, clerk, n)
        start_time = (time.perf_counter() - t0) / n
        gc.collect()
        engine_submit = complete_all(db, config, clerk, open_task_ids(db, ids, "submit"), B.SUBMIT_DATA)
        engine_review = complete_all(db, config, director, open_task_ids(db, ids, "review"), B.REVIEW_DATA)

        # Instrumented pass on fresh instances (wrappers add a little time; shares are what matter).
        ids2 = start_instances(db, config, clerk, n)
        sub_ids, bd_parts = open_task_ids(db, ids2, "submit"), {}
        bd, undo = instrument(db)
        try:
            for label, user, data, bpmn_id in (("submit", clerk, B.SUBMIT_DATA, "submit"),
                                               ("review", director, B.REVIEW_DATA, "review")):
                task_ids = sub_ids if bpmn_id == "submit" else open_task_ids(db, ids2, "review")
                bd.reset()
                t0 = time.perf_counter()
                complete_all(db, config, user, task_ids, data)
                total = (time.perf_counter() - t0) / len(task_ids)
                bd_parts[label] = (total, {k: v / len(task_ids) for k, v in bd.totals.items()},
                                   {k: v / len(task_ids) for k, v in bd.calls.items()})
        finally:
            undo()
        with db.session() as s:
            from engine.models import ProcessInstance

            state_text = s.scalar(select(ProcessInstance.state).where(ProcessInstance.id == ids[0]))
        emflow_mem, emflow_sizes = time_emflow_in_memory(db, versions[B.APPROVAL], n)
    finally:
        db.dispose()
        if not args.keep:
            B.drop_db(DB_NAME)

    # Plain SpiffWorkflow.
    serializer = B.stock_serializer()
    time_runs(stock_workflows(warm), "submit", B.SUBMIT_DATA)  # warm-up
    wfs = stock_workflows(n)
    blobs = [serializer.serialize_json(wf) for wf in wfs]
    gc.collect()
    mem_submit = time_runs(wfs, "submit", B.SUBMIT_DATA)
    mem_review = time_runs(wfs, "review", B.REVIEW_DATA)
    cyc_submit, cyc_submit_parts, blobs2 = time_stateless(blobs, "submit", B.SUBMIT_DATA, serializer)
    cyc_review, cyc_review_parts, _ = time_stateless(blobs2, "review", B.REVIEW_DATA, serializer)

    med = statistics.median
    print()
    print(f"Stored emflow state after submit: {len(state_text or '')} bytes (spec-less, compacted); "
          f"stock SpiffWorkflow JSON with spec: {sum(map(len, blobs)) // len(blobs)} bytes")
    print(f"Starting an instance through the engine (for reference): {start_time * 1000:.2f} ms each")
    for kind, eng, mem, cyc, parts in (("submit", engine_submit, mem_submit, cyc_submit, cyc_submit_parts),
                                       ("review", engine_review, mem_review, cyc_review, cyc_review_parts)):
        em = emflow_mem[kind]
        print()
        print(f"-- completion of '{kind}' " + "-" * 80)
        print(row("emflow: tasks.complete in db.transaction() (PostgreSQL)", eng))
        print(row("emflow in memory: state_from_json -> run -> compact -> json", em["total"]))
        print(row("SpiffWorkflow in memory: set_data + run + do_engine_steps", mem))
        print(row("SpiffWorkflow stateless: deserialize -> run -> serialize", cyc))
        print(f"      stock cycle parts (median): deserialize {med(parts['deserialize']) * 1000:.3f} ms, "
              f"run {med(parts['run']) * 1000:.3f} ms, serialize {med(parts['serialize']) * 1000:.3f} ms")
        print(f"      emflow in-memory parts (median): deserialize {med(em['deserialize']) * 1000:.3f} ms, "
              f"run {med(em['run']) * 1000:.3f} ms, compact+serialize {med(em['compact + serialize']) * 1000:.3f} ms"
              f" (state {emflow_sizes[kind]:.0f} bytes)")
        r_run = med(eng) / med(mem)
        r_cyc = med(eng) / med(cyc)
        print(f"  RATIO engine / in-memory run            = {r_run:6.1f}x (median)   "
              f"{B.pct(eng, 95) / B.pct(mem, 95):6.1f}x (p95)")
        print(f"  RATIO engine / stateless stock cycle    = {r_cyc:6.1f}x (median)   target <= 5x "
              f"(performance-reference §3.1, for a full HTTP request): {B.verdict(r_cyc <= 5)}")

    for kind, (total, parts, calls) in bd_parts.items():
        print()
        print(f"-- breakdown of one '{kind}' completion (instrumented pass, mean per completion, exclusive times) --")
        accounted = sum(parts.values())
        for label, value in sorted(parts.items(), key=lambda kv: -kv[1]):
            extra = f"  ({calls[label]:.1f} per completion)" if label.startswith(("SQL", "audit")) else ""
            print(f"  {label:<46} {value * 1000:8.3f} ms  {value / total * 100:5.1f} %{extra}")
        print(f"  {'other (engine + SQLAlchemy ORM Python)':<46} {(total - accounted) * 1000:8.3f} ms  "
              f"{(total - accounted) / total * 100:5.1f} %")
        print(f"  {'total':<46} {total * 1000:8.3f} ms")
    print()
    print(f"load average at the end: {B.loadavg()}")


if __name__ == "__main__":
    main()
