"""Benchmark (4): does a completion get slower as an instance accumulates history?

emflow (engine.tasks.complete in db.transaction() on PostgreSQL):

- *gateway loop*: a user task loops back to itself through an exclusive gateway until ``rounds >= wanted``
  (a script task counts). The engine compacts the task tree after every step, so this must stay flat:
  target latency at 1,000 completed tasks <= 2x the latency at 10 (performance-reference.md §3.3).
- *sequential multi-instance*: one user task with ``loopCardinality`` = 1,010, for comparison with plain
  SpiffWorkflow on the same shape (compaction keeps the finished instances of a live multi-instance task).

- *gateway loop over HTTP*: the same loop, but the completions inside the measurement windows go through
  ``POST /api/v1/tasks/<id>/complete`` (Flask test client, in process; the others through the engine to save
  time), because the API's response carries the instance's whole history (``--no-http`` skips it).

Plain SpiffWorkflow (stock parser, script engine and ``BpmnWorkflowSerializer``; the whole task tree kept and
the workflow deserialized -> run -> serialized at every step, as a stateless server would):

- *sequential multi-instance* with 1,010 instances: the bare comparison at 10 vs 1,000 (the notes say ~30x).
  The gateway loop cannot be used for this: SpiffWorkflow's task iterator stops at depth 1,000, so an
  uncompacted loop silently ends after about 250 rounds (4 tasks per round) and reports itself completed;
- *gateway loop*: run to show where it stops, and its growth up to that point.

"Latency at k" is the median over the completions made when k-w..k+w tasks were already completed
(w = 5 at 10, 10 at 100 and 1,000), pooled over the instances (completed round-robin).

    .venv/bin/python tests/bench/bench_growth.py [--n 1000] [--instances 3] [--quick] [--keep]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import benchlib as B
from sqlalchemy import select

DB_NAME = "emflow_bench_growth"


def windows(n: int) -> list[tuple[int, int]]:
    """(centre, half width) of the measurement windows."""
    out = [(10, 5), (100, 10)]
    if n > 150:
        out.append((n, 10))
    return [(k, w) for k, w in out if k + w <= n + 10]


def window_median(samples: dict[int, list[float]], k: int, w: int) -> tuple[float, int]:
    pooled = [t for done, ts in samples.items() if k - w <= done <= k + w for t in ts]
    return (statistics.median(pooled), len(pooled)) if pooled else (float("nan"), 0)


# -- emflow ---------------------------------------------------------------------------------------------------
def engine_growth(db, config, user, key: str, n_instances: int, wanted: int, note: str):
    """Complete every instance's open task round-robin; samples[completed_before] = [latency, ...]."""
    from engine import instances, tasks
    from engine.models import HumanTask, ProcessInstance

    ids = []
    for _ in range(n_instances):
        with db.transaction() as s:
            ids.append(instances.start(s, config, user, key, data={"wanted": wanted}).id)
    samples: dict[int, list[float]] = defaultdict(list)
    sizes: dict[int, int] = {}
    for done in range(wanted):
        with db.session() as s:
            open_ids = dict(s.execute(select(HumanTask.instance_id, HumanTask.id).where(
                HumanTask.instance_id.in_(ids), HumanTask.state == "open")).all())
        for iid in ids:
            t0 = time.perf_counter()
            with db.transaction() as s:
                tasks.complete(s, config, user, open_ids[iid], {"note": note})
            samples[done].append(time.perf_counter() - t0)
        if done + 1 in (10, 100, 1000) or done + 1 == wanted - 1:
            with db.session() as s:
                sizes[done + 1] = len(s.scalar(select(ProcessInstance.state).where(ProcessInstance.id == ids[0])))
    with db.session() as s:
        statuses = set(s.scalars(select(ProcessInstance.status).where(ProcessInstance.id.in_(ids))))
    return samples, sizes, statuses


def http_growth(db, config, user, wanted: int, note: str, ws):
    """The gateway loop with the completions inside the windows made over the REST API (test client)."""
    from engine import instances, tasks
    from engine.models import HumanTask
    from engine.org import principal_of
    from webapp import create_app
    from webapp.security import issue_token

    app = create_app(config.with_(redis_url="redis://127.0.0.1:6379/14", secret_key="bench-growth"))
    client = app.test_client()
    with app.app_context(), db.session() as s:
        token = issue_token(principal_of(s, user.id))
    headers = {"Authorization": f"Bearer {token}"}
    with db.transaction() as s:
        iid = instances.start(s, config, user, B.LOOP, data={"wanted": wanted}).id
    timed = {done for k, w in ws for done in range(k - w, k + w + 1)}
    samples: dict[int, list[float]] = defaultdict(list)
    sizes: dict[int, int] = {}
    try:
        for done in range(max(timed) + 1):
            with db.session() as s:
                task_id = s.scalar(select(HumanTask.id).where(HumanTask.instance_id == iid, HumanTask.state == "open"))
            if done in timed:
                t0 = time.perf_counter()
                response = client.post(f"/api/v1/tasks/{task_id}/complete", json={"data": {"note": note}},
                                       headers=headers)
                samples[done].append(time.perf_counter() - t0)
                assert response.status_code == 200, response.get_data(as_text=True)[:300]
                sizes[done] = len(response.get_data())
            else:
                with db.transaction() as s:
                    tasks.complete(s, config, user, task_id, {"note": note})
    finally:
        app.extensions["emflow"].db.dispose()
    return samples, {k: sizes[k] for k, _ in ws if k in sizes}


# -- plain SpiffWorkflow ---------------------------------------------------------------------------------------
def bare_growth(bpmn_text: str, process_id: str, wanted: int, n_instances: int, note: str):
    """Stateless cycle per completion with the whole tree kept; stops early if the workflow claims completion."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.util.task import TaskState

    serializer = B.stock_serializer()
    spec, subs = B.stock_spec(bpmn_text, process_id)
    blobs = []
    for _ in range(n_instances):
        wf = BpmnWorkflow(spec, subs)
        wf.get_next_task(state=TaskState.READY).set_data(wanted=wanted)
        wf.do_engine_steps()
        blobs.append(serializer.serialize_json(wf))
    samples: dict[int, list[float]] = defaultdict(list)
    parts: dict[int, list[tuple[float, float, float]]] = defaultdict(list)
    sizes: dict[int, int] = {}
    stopped_at = None
    for done in range(wanted):
        for i, blob in enumerate(blobs):
            t0 = time.perf_counter()
            wf = serializer.deserialize_json(blob)
            t1 = time.perf_counter()
            ready = wf.get_tasks(state=TaskState.READY, manual=True)
            if not ready:
                stopped_at = stopped_at or (done, wf.is_completed(), dict(wf.data))
                continue
            task = ready[0]
            task.set_data(note=note)
            task.run()
            wf.do_engine_steps()
            t2 = time.perf_counter()
            blobs[i] = serializer.serialize_json(wf)
            t3 = time.perf_counter()
            samples[done].append(t3 - t0)
            parts[done].append((t1 - t0, t2 - t1, t3 - t2))
        if stopped_at:
            break
        if done + 1 in (10, 100, 1000) or done + 1 == wanted - 1:
            sizes[done + 1] = len(blobs[0])
    return samples, parts, sizes, stopped_at


def report(title: str, samples, ws, sizes, target: float | None, extra: str = "") -> None:
    print()
    print(f"-- {title} " + "-" * max(0, 96 - len(title)))
    base = None
    for k, w in ws:
        med, count = window_median(samples, k, w)
        if count == 0:
            continue
        base = base or med
        print(f"  latency at {k:>5} completed: median {med * 1000:8.3f} ms   (n={count}, window {k - w}..{k + w})"
              f"   x{med / base:5.2f} of the latency at 10")
    if sizes:
        print("  stored state size: " + ", ".join(f"{k} done: {v / 1024:.1f} KB" for k, v in sorted(sizes.items())))
    if len(ws) >= 2 and base:
        k, w = ws[-1]
        med, count = window_median(samples, k, w)
        if count:
            ratio = med / base
            line = f"  RATIO latency at {k} / at 10 = {ratio:.2f}x"
            if target is not None:
                line += f"   target <= {target:g}x: {B.verdict(ratio <= target)}"
            print(line)
    if extra:
        print(extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="completed tasks to reach (default 1,000)")
    ap.add_argument("--instances", type=int, default=3, help="instances per emflow loop run (default 3)")
    ap.add_argument("--payload", type=int, default=100, help="characters of the note submitted each step")
    ap.add_argument("--quick", action="store_true", help="n=200, one instance each")
    ap.add_argument("--keep", action="store_true", help=f"keep the database {DB_NAME}")
    ap.add_argument("--skip-engine-mi", action="store_true", help="skip emflow's multi-instance run")
    ap.add_argument("--no-http", action="store_true", help="skip the loop over the REST API")
    args = ap.parse_args()
    if args.quick:
        args.n, args.instances = 200, 1
    wanted = args.n + 11  # the window around n needs a few completions past it
    note = ("巡查记录" * (args.payload // 4 + 1))[: args.payload]
    ws = windows(args.n)
    B.banner(f"bench_growth: completion latency vs completed tasks in one instance (n={args.n}, "
             f"{args.instances} emflow loop instances, note {args.payload} chars)")

    tmp = Path(tempfile.mkdtemp(prefix="emflow_bench_growth_"))
    config, db, _ = B.setup_emflow(DB_NAME, tmp, [B.bundle(B.LOOP), B.bundle(B.SEQ_MI)])
    try:
        with db.session() as s:
            clerk = B.load_user(s, "zhang.wei")
        engine_growth(db, config, clerk, B.LOOP, 1, 15, note)  # warm-up
        t0 = time.perf_counter()
        loop_samples, loop_sizes, loop_status = engine_growth(db, config, clerk, B.LOOP, args.instances, wanted,
                                                              note)
        loop_time = time.perf_counter() - t0
        http_samples = http_sizes = None
        if not args.no_http:
            http_samples, http_sizes = http_growth(db, config, clerk, wanted, note, ws)
        mi_samples = mi_sizes = mi_status = None
        if not args.skip_engine_mi:
            mi_samples, mi_sizes, mi_status = engine_growth(db, config, clerk, B.SEQ_MI, max(1, args.instances - 1),
                                                            wanted, note)
    finally:
        db.dispose()
        if not args.keep:
            B.drop_db(DB_NAME)

    bare_mi, bare_mi_parts, bare_mi_sizes, _ = bare_growth(B.SEQ_MI_BPMN, B.SEQ_MI, wanted,
                                                           max(1, args.instances - 1), note)
    # The stock gateway loop: plain BPMN, no emflow classes; count rounds until it stops by itself.
    bare_loop, _, bare_loop_sizes, stopped = bare_growth(B.LOOP_BPMN, B.LOOP, wanted, 1, note)

    report(f"emflow, gateway loop (PostgreSQL, {args.instances} instances, {loop_time:.0f} s)", loop_samples, ws,
           loop_sizes, 2.0, f"  instances ended as: {sorted(loop_status)}")
    if http_samples is not None:
        report("emflow, gateway loop, completions over HTTP (POST /api/v1/tasks/<id>/complete, test client)",
               http_samples, ws, {}, 2.0, "  response body: " + ", ".join(
                   f"at {k}: {v / 1024:.1f} KB" for k, v in sorted(http_sizes.items())))
    if mi_samples is not None:
        report("emflow, sequential multi-instance (PostgreSQL)", mi_samples, ws, mi_sizes, None,
               f"  instances ended as: {sorted(mi_status)}")
    parts_note = ""
    k, w = ws[-1]
    sel = [p for done, ps in bare_mi_parts.items() if k - w <= done <= k + w for p in ps]
    sel10 = [p for done, ps in bare_mi_parts.items() if 5 <= done <= 15 for p in ps]
    if sel and sel10:
        def fmt(rows):
            return "/".join(f"{statistics.median(r[i] for r in rows) * 1000:.2f}" for i in range(3))
        parts_note = (f"  deserialize/run/serialize medians: at 10 {fmt(sel10)} ms, at {k} {fmt(sel)} ms")
    report("plain SpiffWorkflow, sequential multi-instance, whole tree, stateless cycle", bare_mi, ws,
           bare_mi_sizes, None, parts_note + "\n  (performance-reference.md: bare SpiffWorkflow grows about 30x)")
    loop_ws = [(k, w) for k, w in ((10, 5), (100, 10), (200, 10)) if bare_loop.get(k + w)]
    stop_note = ""
    if stopped:
        done, completed, data = stopped
        stop_note = (f"  SpiffWorkflow stopped offering the user task after {done} rounds (wanted {wanted}); "
                     f"is_completed()={completed}, workflow data has 'rounds': {'rounds' in data} "
                     f"-> the loop ended silently (TaskIterator max_depth=1000)")
    report("plain SpiffWorkflow, gateway loop, whole tree, stateless cycle", bare_loop, loop_ws, bare_loop_sizes,
           None, stop_note)
    print()
    print(f"load average at the end: {B.loadavg()}")


if __name__ == "__main__":
    main()
