"""Benchmark (3): HTTP task completions and inbox reads, emflow versus a bare Flask + gunicorn + PostgreSQL stack.

Both apps run under gunicorn with the same worker class and count on the same machine in the same run, against
the same PostgreSQL database (emflow_bench_http), loaded by wrk with 50 connections (closed loop, no think time).

emflow is served as ``gunicorn 'webapp:create_app()'`` with EMFLOW_REDIS_URL set: that is the configuration
``emflow serve`` uses in PostgreSQL/Redis mode (several processes; no embedded job/timer threads, because the
factory's ``start_background`` defaults to False and Redis mode has no embedded runner). ``emflow serve`` itself
is not used because without Redis it forces a single process, and because the gunicorn command line lets both
apps get exactly the same server settings. Redis is never contacted: the process has no service tasks.

- completions: ``POST /api/v1/tasks/<id>/complete`` of the 'submit' task of the small approval process (the
  instances were started through the engine by 3,000 different users; each token belongs to the assignee),
  versus ``POST /bare/instances/<id>/complete`` (bare_app.py: SELECT … FOR UPDATE, deserialize, run, serialize,
  UPDATE, INSERT event, COMMIT). Every task id is completed once (wrk_complete.lua).
- reads: ``GET /api/v1/tasks?scope=mine`` versus ``GET /bare/tasks`` (the same two indexed SELECTs), cycling
  through the 3,000 users' tokens (wrk_read.lua), over 200,000 human_task rows.

Targets (the issue): completions >= 0.7x and inbox reads >= 0.8x of the bare stack. performance-reference.md
measured the bare stack at ~560 completions/s and ~1,450 reads/s on 2 cores (5 sync workers).

    .venv/bin/python tests/bench/bench_http.py [--workers 5] [--worker-class sync|gthread] [--threads 8]
                                               [--duration 10] [--connections 50] [--quick] [--keep]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import benchlib as B
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

DB_NAME = "emflow_bench_http"
KEPT = 120  # emflow tasks kept for the in-process breakdown, never given to wrk
HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
SECRET = "bench-http-secret-key"
REDIS_URL = os.environ.get("EMFLOW_BENCH_REDIS", "redis://127.0.0.1:6379/14")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- data ------------------------------------------------------------------------------------------------------
def _start_chunk(url: str, instance_path: str, user_ids: list[int], prefix: str) -> int:
    """Start one approval instance per user id through the engine (runs in a worker process)."""
    from engine import clock, instances
    from engine.db import Database
    from engine.models import User

    clock.install()
    config = B.make_config(url, Path(instance_path), secret_key=SECRET)
    db = Database(config)
    with db.session() as s:
        users = {u.id: u for u in s.scalars(select(User).where(User.id.in_(set(user_ids))))}
        for u in users.values():
            _ = u.roles, u.groups, u.unit
    for i in range(0, len(user_ids), 25):
        with db.transaction() as s:
            for j, uid in enumerate(user_ids[i:i + 25]):
                instances.start(s, config, users[uid], B.APPROVAL, business_key=f"{prefix}-{i + j}")
    db.dispose()
    return len(user_ids)


def prepare(args, tmp: Path) -> dict:
    """Schema, demo org, 3,000 users, 200,000 task rows, emflow instances to complete, bare instances."""
    from bare_app import SCHEMA
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.util.task import TaskState

    t0 = time.perf_counter()
    config, db, versions = B.setup_emflow(DB_NAME, tmp / "setup", [B.bundle(B.APPROVAL)])
    db.dispose()
    url = config.database_url
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        first, last = B.bulk_org(conn, args.users, n_groups=150)
        scale = args.read_tasks / 200_000
        B.bulk_tasks(conn, B.APPROVAL, versions[B.APPROVAL], args.read_tasks, first, last,
                     open_per_user=max(3, round(20 * scale)), group_open=round(2000 * scale),
                     user_cand_open=round(1000 * scale), busy_users=20, busy_open=max(10, round(100 * scale)))
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    rng = random.Random(args.seed)
    user_ids = list(range(first, last + 1))

    # emflow: instances started through the engine, each by a random user (its 'submit' task is theirs).
    n_emflow = args.emflow_tasks * args.rounds + KEPT
    owners = [rng.choice(user_ids) for _ in range(n_emflow)]
    chunks = [owners[i::2] for i in range(2)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        pool.starmap(_start_chunk, [(url, str(tmp / f"start{i}"), chunk, f"HTTP{i}")
                                    for i, chunk in enumerate(chunks)])
    with engine.connect() as conn:
        emflow_tasks = conn.execute(text("""
            SELECT h.id, h.assignee_id FROM human_task h JOIN process_instance p ON p.id = h.instance_id
            WHERE p.business_key LIKE 'HTTP%' AND h.state = 'open' AND h.bpmn_id = 'submit'""")).all()
    rng.shuffle(emflow_tasks)

    # bare: one plain SpiffWorkflow instance waiting at 'submit', serialized with its spec, copied per row.
    spec, subs = B.stock_spec(B.APPROVAL_BPMN, B.APPROVAL)
    wf = BpmnWorkflow(spec, subs)
    wf.get_next_task(state=TaskState.READY).set_data(initiator="bench", business_key=None)
    wf.do_engine_steps()
    state = B.stock_serializer().serialize_json(wf)
    with engine.begin() as conn:
        conn.execute(text("""INSERT INTO bare_instance (owner_id, state)
                             SELECT :u0 + floor(random() * :nu)::int, :state FROM generate_series(1, :n)"""),
                     {"u0": first, "nu": len(user_ids), "state": state, "n": args.bare_tasks * args.rounds + KEPT})
        bare_tasks = conn.execute(text("SELECT id, owner_id FROM bare_instance ORDER BY id")).all()
    engine.dispose()
    B.analyze(url, ["user", "group_member", "process_instance", "human_task", "task_candidate", "bare_instance",
                    "instance_event"])

    # Tokens: emflow's own issue_token (the bare app checks the same signature).
    from engine.models import User
    from engine.org import principal_of
    from webapp import create_app
    from webapp.security import issue_token

    app_config = B.make_config(url, tmp / "tokens", secret_key=SECRET)
    app = create_app(app_config)
    with app.app_context():
        with app.extensions["emflow"].db.session() as s:
            ids = list(s.scalars(select(User.id).where(User.id.between(first, last))))
            tokens = {uid: issue_token(principal_of(s, uid)) for uid in ids}
        app.extensions["emflow"].db.dispose()

    files = {}

    def write(name: str, lines: list[str]) -> None:
        path = tmp / name
        path.write_text("\n".join(lines) + "\n")
        files[name] = path

    write("emflow_breakdown.txt", [f"/api/v1/tasks/{t}/complete {tokens[u]}" for t, u in emflow_tasks[-KEPT:]])
    write("bare_breakdown.txt", [f"/bare/instances/{i}/complete {tokens[u]}" for i, u in bare_tasks[-KEPT:]])
    emflow_tasks, bare_tasks = emflow_tasks[:-KEPT], bare_tasks[:-KEPT]
    for r in range(args.rounds):  # each round's warm-up and measured tasks, never used twice
        mine = emflow_tasks[r::args.rounds]
        warm = min(len(mine) // 5, 400)
        write(f"emflow_complete_warm{r}.txt", [f"/api/v1/tasks/{t}/complete {tokens[u]}" for t, u in mine[:warm]])
        write(f"emflow_complete{r}.txt", [f"/api/v1/tasks/{t}/complete {tokens[u]}" for t, u in mine[warm:]])
        mine = bare_tasks[r::args.rounds]
        warm = min(len(mine) // 5, 1500)
        write(f"bare_complete_warm{r}.txt", [f"/bare/instances/{i}/complete {tokens[u]}" for i, u in mine[:warm]])
        write(f"bare_complete{r}.txt", [f"/bare/instances/{i}/complete {tokens[u]}" for i, u in mine[warm:]])
    readers = list(user_ids)
    rng.shuffle(readers)
    write("emflow_read.txt", [f"/api/v1/tasks?scope=mine {tokens[u]}" for u in readers])
    write("bare_read.txt", [f"/bare/tasks {tokens[u]}" for u in readers])
    body = tmp / "body.json"
    body.write_text(json.dumps({"data": B.SUBMIT_DATA}, ensure_ascii=False))
    files["body"] = body
    return {"url": url, "files": files, "prep_s": time.perf_counter() - t0, "emflow_tasks": len(emflow_tasks),
            "bare_tasks": len(bare_tasks), "state_bytes": len(state)}


# -- servers and load ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn_cmd(args, app: str, port: int, log: Path) -> list[str]:
    cmd = [str(VENV_BIN / "gunicorn"), "--workers", str(args.workers), "--worker-class", args.worker_class,
           "--bind", f"127.0.0.1:{port}", "--backlog", "2048", "--timeout", "120", "--graceful-timeout", "5",
           "--log-level", "warning", "--error-logfile", str(log)]
    if args.worker_class == "gthread":
        cmd += ["--threads", str(args.threads)]
    return cmd + [app]


def wait_ready(port: int, path: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # it answered (401 without a token is fine)
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not come up")


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                out.append(int(entry))
    return out


def cpu_seconds(pids) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        out[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def pg_backends(url: str) -> list[int]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        pids = list(c.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND pid <> pg_backend_pid()")))
    engine.dispose()
    return pids


def checkpoint(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.exec_driver_sql("CHECKPOINT")
    engine.dispose()


def run_wrk(args, port: int, script: str, script_args: list[str], duration: float) -> dict:
    cmd = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
           "-s", str(HERE / script), f"http://127.0.0.1:{port}", "--", *script_args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            result = json.loads(line[len("BENCHJSON "):])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")


def run_stack(args, name: str, prep: dict, tmp: Path, round_: int = 0) -> dict:
    """One round of a stack: a fresh gunicorn, warm-up, then the measured completions and reads."""
    files = prep["files"]
    port = free_port()
    log = tmp / f"{name}-{round_}-gunicorn.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMFLOW_", "BARE_"))}
    if name == "emflow":
        env.update(EMFLOW_DATABASE_URL=prep["url"].replace("postgresql+psycopg://", "postgresql://"),
                   EMFLOW_REDIS_URL=REDIS_URL, EMFLOW_SECRET_KEY=SECRET,
                   EMFLOW_INSTANCE_PATH=str(tmp / "instance"))
        cmd, cwd, ready = gunicorn_cmd(args, "webapp:create_app()", port, log), B.REPO, "/api/v1/tasks"
        complete_files = (f"emflow_complete_warm{round_}.txt", f"emflow_complete{round_}.txt")
        read_file = "emflow_read.txt"
    else:
        env.update(BARE_DATABASE_URL=prep["url"], BARE_SECRET_KEY=SECRET)
        cmd, cwd, ready = gunicorn_cmd(args, "bare_app:create_app()", port, log), HERE, "/bare/health"
        complete_files = (f"bare_complete_warm{round_}.txt", f"bare_complete{round_}.txt")
        read_file = "bare_read.txt"
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    results = {}
    try:
        wait_ready(port, ready, proc)
        nthreads = str(args.wrk_threads)
        run_wrk(args, port, "wrk_complete.lua", [str(files[complete_files[0]]), nthreads, str(files["body"])],
                args.warmup)
        for phase, script, script_args in (
                ("complete", "wrk_complete.lua", [str(files[complete_files[1]]), nthreads, str(files["body"])]),
                ("read", "wrk_read.lua", [str(files[read_file]), nthreads])):
            if phase == "read":
                run_wrk(args, port, script, script_args, args.warmup)
            checkpoint(prep["url"])
            workers = children(proc.pid)
            backends = pg_backends(prep["url"])
            before = cpu_seconds(workers), cpu_seconds(backends)
            result = run_wrk(args, port, script, script_args, args.duration)
            backends_after = set(backends) | set(pg_backends(prep["url"]))
            after = cpu_seconds(workers), cpu_seconds(backends_after)
            app_cpu = sum(after[0].get(p, 0) - before[0].get(p, 0) for p in after[0])
            pg_cpu = sum(after[1].get(p, 0) - before[1].get(p, 0) for p in after[1])
            result["app_cpu_ms"] = app_cpu / max(1, result["requests"]) * 1000
            result["pg_cpu_ms"] = pg_cpu / max(1, result["requests"]) * 1000
            results[phase] = result
    finally:
        results["server_errors"] = B.stop_server(proc, log)
    return results


def server_side_completions(url: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        n = c.scalar(text("""SELECT count(*) FROM human_task h JOIN process_instance p ON p.id = h.instance_id
                             WHERE p.business_key LIKE 'HTTP%' AND h.bpmn_id = 'submit' AND h.state = 'completed'"""))
    engine.dispose()
    return n


def inprocess_breakdown(prep: dict, tmp: Path, n: int) -> dict:
    """Both stacks' requests through Flask's test client in this process (no server, no concurrency): mean CPU
    and wall time per request, split by the same labels (exclusive times), with SQL statements per request.
    Uses completions set aside for it (wrk never gets them)."""


    import bare_app
    import psycopg
    from bench_engine_overhead import Breakdown
    from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.task import Task
    from sqlalchemy import event
    from sqlalchemy.engine import Connection

    import webapp.api as api_module
    from engine import rawsql, rowwrites, runtime
    from engine import tasks as engine_tasks
    from webapp import create_app
    from webapp.api import serial

    config = B.make_config(prep["url"], tmp / "inprocess", secret_key=SECRET, redis_url=REDIS_URL)
    app = create_app(config)
    os.environ.update(BARE_DATABASE_URL=prep["url"], BARE_SECRET_KEY=SECRET)
    bare = bare_app.create_app()
    body = json.loads(prep["files"]["body"].read_text())
    lines = {name: [ln.split() for ln in prep["files"][name].read_text().splitlines()]
             for name in ("emflow_read.txt", "bare_read.txt", "emflow_breakdown.txt", "bare_breakdown.txt")}
    bd = Breakdown()
    statements = {"n": 0}

    def count(*_args):
        statements["n"] += 1

    spiff = "SpiffWorkflow: load, run, save"
    bd.wrap(Connection, "_execute_context", "SQL statements: SQLAlchemy Core + psycopg + waits")
    # A step's batched writes and its locking read go past SQLAlchemy.
    bd.wrap(rowwrites._Batch, "send", "SQL statements: SQLAlchemy Core + psycopg + waits")
    bd.wrap(rawsql, "fetchone", "SQL statements: SQLAlchemy Core + psycopg + waits")
    bd.wrap(Connection, "_commit_impl", "COMMIT")
    bd.wrap(api_module, "user_from_token", "authenticate (token, principal)")
    bd.wrap(engine_tasks, "inbox", "engine: tasks.inbox, ORM and the rest")
    bd.wrap(serial, "tasks_out", "response: serial.tasks_out")
    bd.wrap(engine_tasks, "complete", "engine: tasks.complete, ORM and the rest")
    for owner, attr in ((runtime, "state_from_json"), (runtime, "state_to_json"), (runtime.Step, "run"),
                        (BpmnWorkflowSerializer, "deserialize_json"), (BpmnWorkflowSerializer, "serialize_json"),
                        (Task, "run"), (BpmnWorkflow, "do_engine_steps")):
        bd.wrap(owner, attr, spiff)
    # The write engine's listeners also hear emflow's autocommit read engine; bare_app keeps its own engine.
    engines = (app.extensions["emflow"].db.write_engine, bare.config["BARE_ENGINE"])
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    raw_execute = psycopg.RawCursor.execute

    def counted(*args, **kwargs):  # the batched writes and the locking read go past SQLAlchemy's cursor events
        count()
        return raw_execute(*args, **kwargs)

    psycopg.RawCursor.execute = counted
    out = {}
    try:
        for stack, client in (("emflow", app.test_client()), ("bare", bare.test_client())):
            def get(path, token, client=client):
                return client.get(path, headers={"Authorization": f"Bearer {token}"})

            def post(path, token, client=client):
                return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})

            for kind, items, call in (("read", lines[f"{stack}_read.txt"], get),
                                      ("complete", lines[f"{stack}_breakdown.txt"], post)):
                for path, token in items[:10]:  # warm-up
                    assert call(path, token).status_code == 200
                bd.reset()
                statements["n"] = 0
                t0, c0 = time.perf_counter(), time.process_time()
                for path, token in items[10:10 + n]:
                    response = call(path, token)
                    assert response.status_code == 200, response.get_data(as_text=True)[:300]
                wall, cpu = (time.perf_counter() - t0) / n, (time.process_time() - c0) / n
                out[(stack, kind)] = {"wall": wall, "cpu": cpu, "statements": statements["n"] / n,
                                      "parts": {k: (bd.cpu[k] / n, bd.totals[k] / n) for k in bd.totals}}
    finally:
        bd.undo()
        psycopg.RawCursor.execute = raw_execute
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
        app.extensions["emflow"].db.dispose()
        engines[1].dispose()
    return out


def print_breakdown(breakdown: dict) -> None:
    print("requests in-process (Flask test client, one at a time): mean CPU per request (wall in brackets), "
          "exclusive times")
    for kind in ("complete", "read"):
        e, b = breakdown[("emflow", kind)], breakdown[("bare", kind)]
        print(f"  {kind:<56} {'emflow':>16} {'bare':>16}")
        print(f"    {'total':<54} {_cw(e['cpu'], e['wall'])} {_cw(b['cpu'], b['wall'])}   CPU ratio "
              f"{b['cpu'] / e['cpu']:.2f}")
        print(f"    {'SQL statements per request':<54} {e['statements']:>16.1f} {b['statements']:>16.1f}")
        labels = sorted(set(e["parts"]) | set(b["parts"]), key=lambda k: -e["parts"].get(k, (0, 0))[0])
        for label in labels:
            print(f"    {label:<54} {_cw(*e['parts'].get(label, (0, 0)))} {_cw(*b['parts'].get(label, (0, 0)))}")
        rest = [x["cpu"] - sum(c for c, _ in x["parts"].values()) for x in (e, b)]
        rest_wall = [x["wall"] - sum(w for _, w in x["parts"].values()) for x in (e, b)]
        print(f"    {'Flask, flask-smorest, web layer and the rest':<54} {_cw(rest[0], rest_wall[0])} "
              f"{_cw(rest[1], rest_wall[1])}")


def _cw(cpu: float, wall: float) -> str:
    return f"{cpu * 1000:6.2f} ({wall * 1000:5.2f})"


def ratio(results: dict, phase: str) -> float:
    return results["emflow"][phase]["rps"] / results["bare"][phase]["rps"]


def median_round(rounds: list[dict], phase: str) -> dict:
    """The round whose emflow/bare ratio is the median (the lower middle one for an even count)."""
    return sorted(rounds, key=lambda res: ratio(res, phase))[(len(rounds) - 1) // 2]


def line(name: str, r: dict) -> str:
    errors = r["non2xx"] + r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    return (f"  {name:<30}{r['rps']:>9.1f}/s  p50 {r['p50_us'] / 1000:7.1f} ms  p95 {r['p95_us'] / 1000:7.1f} ms  "
            f"p99 {r['p99_us'] / 1000:7.1f} ms  errors {errors:<4} CPU/req app {r['app_cpu_ms']:5.2f} ms "
            f"+ PG {r['pg_cpu_ms']:5.2f} ms  (n={r['requests']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=5, help="gunicorn workers for both apps (default 5)")
    ap.add_argument("--worker-class", default="sync", choices=("sync", "gthread"))
    ap.add_argument("--threads", type=int, default=8, help="threads per gthread worker")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run (default 10)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up load before each measured run")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--read-tasks", type=int, default=200_000, help="human_task rows behind the inbox")
    ap.add_argument("--emflow-tasks", type=int, default=5000, help="emflow instances prepared per round")
    ap.add_argument("--bare-tasks", type=int, default=12000, help="bare instances prepared per round")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of both stacks, alternating which goes first; ratios are per round, and the "
                         "median round is reported (default 3)")
    ap.add_argument("--order", default="bare,emflow", help="which stack runs first in round 1 (default bare,emflow)")
    ap.add_argument("--quick", action="store_true", help="short runs, fewer rows: a smoke test")
    ap.add_argument("--keep", action="store_true", help=f"keep the database {DB_NAME} and the work folder")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    if args.quick:
        args.duration, args.warmup, args.read_tasks, args.rounds = 4.0, 2.0, 100_000, min(args.rounds, 2)
        args.emflow_tasks, args.bare_tasks = 2500, 5000
    B.banner(f"bench_http: emflow vs bare Flask+gunicorn+PostgreSQL, {args.workers} {args.worker_class} workers"
             f"{f' x {args.threads} threads' if args.worker_class == 'gthread' else ''}, wrk -t{args.wrk_threads} "
             f"-c{args.connections} -d{args.duration:g}s")
    tmp = Path(tempfile.mkdtemp(prefix="emflow_bench_http_"))
    try:
        prep = prepare(args, tmp)
        print(f"prepared in {prep['prep_s']:.0f} s: {prep['emflow_tasks']} emflow tasks, {prep['bare_tasks']} bare "
              f"instances ({prep['state_bytes']} bytes of stock JSON each), {args.read_tasks:,} task rows, "
              f"{args.users} users", flush=True)
        rounds = []
        order = args.order.split(",")
        for r in range(args.rounds):
            results = {}
            for name in order if r % 2 == 0 else order[::-1]:  # alternate who runs first: drift hits both
                results[name] = run_stack(args, name, prep, tmp, r)
                print(f"  round {r + 1}: {name} done (load average {B.loadavg()})", flush=True)
            rounds.append(results)
        done_server = server_side_completions(prep["url"])
        breakdown = inprocess_breakdown(prep, tmp, 30 if args.quick else 100)
    finally:
        B.clean_up(args.keep, DB_NAME, tmp)

    for r, results in enumerate(rounds):
        e, b = results["emflow"], results["bare"]
        print()
        print(f"round {r + 1} of {len(rounds)}")
        print("completions (POST …/complete)")
        print(line("bare Flask+Spiff+PostgreSQL", b["complete"]))
        print(line("emflow", e["complete"]))
        print("inbox reads (GET tasks?scope=mine)")
        print(line("bare Flask+PostgreSQL", b["read"]))
        print(line("emflow", e["read"]))
        for name, res in results.items():
            for phase in ("complete", "read"):
                if res[phase]["exhausted_threads"]:
                    print(f"  WARNING: {name} {phase}: {res[phase]['exhausted_threads']} wrk thread(s) ran out of "
                          f"tasks; raise --{name}-tasks")
            if res["server_errors"]:
                print(f"  {name} server log: {res['server_errors']}")
        print(f"  ratios this round: completions {ratio(results, 'complete'):.2f}x, "
              f"reads {ratio(results, 'read'):.2f}x")
    wrk_ok = sum(res["emflow"]["complete"]["requests"] - res["emflow"]["complete"]["non2xx"] for res in rounds)
    print(f"  emflow tasks completed in the database: {done_server} (warm-up + measured; wrk counted {wrk_ok} "
          f"successful measured requests)")
    # The round with the median ratio stands for the run (each round's stacks ran back to back).
    mid_c = median_round(rounds, "complete")
    mid_r = median_round(rounds, "read")
    rc, rr = ratio(mid_c, "complete"), ratio(mid_r, "read")
    all_c = ", ".join(f"{ratio(x, 'complete'):.2f}" for x in rounds)
    all_r = ", ".join(f"{ratio(x, 'read'):.2f}" for x in rounds)
    e, b = mid_c["emflow"], mid_c["bare"]
    er, br = mid_r["emflow"], mid_r["bare"]
    print()
    print(f"RATIO completions emflow/bare = {rc:.2f}x  (target >= 0.7x): {B.verdict(rc >= 0.7)}   "
          f"p95 {e['complete']['p95_us'] / b['complete']['p95_us']:.2f}x, p99 "
          f"{e['complete']['p99_us'] / b['complete']['p99_us']:.2f}x of bare   "
          f"(median of {len(rounds)} rounds: {all_c})")
    print(f"RATIO inbox reads emflow/bare  = {rr:.2f}x  (target >= 0.8x): {B.verdict(rr >= 0.8)}   "
          f"p95 {er['read']['p95_us'] / br['read']['p95_us']:.2f}x, "
          f"p99 {er['read']['p99_us'] / br['read']['p99_us']:.2f}x of bare   (median of {len(rounds)} rounds: {all_r})")
    print(f"floors of performance-reference §3.2 (>= 250 completions/s, >= 700 reads/s per 2 vCPU): completions "
          f"{e['complete']['rps']:.0f}/s {B.verdict(e['complete']['rps'] >= 250)}, reads {er['read']['rps']:.0f}/s "
          f"{B.verdict(er['read']['rps'] >= 700)}")
    print(f"reference bare stack (performance-reference §2): ~558 completions/s, ~1,453 reads/s; this run's bare "
          f"stack (median rounds): {b['complete']['rps']:.0f}/s and {br['read']['rps']:.0f}/s")
    print()
    print_breakdown(breakdown)
    print(f"load average at the end: {B.loadavg()}")
    print("BENCHRESULT " + json.dumps({"rounds": [{name: {k: res[name][k] for k in ("complete", "read")}
                                                    for name in ("emflow", "bare")} for res in rounds],
                                        "ratio_complete": rc, "ratio_read": rr}))


if __name__ == "__main__":
    main()
