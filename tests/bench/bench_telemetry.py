"""Benchmark (5): telemetry ingest over HTTP, emflow versus a bare Flask + gunicorn + PostgreSQL stack.

N gateways (default 50) with M points each (default 40, every point with lolo/lo/hi/hihi limits) post batches of B
readings (default 100) concurrently, one closed loop per gateway, as the edge collector does (one batch in flight per
gateway; each reading has a fresh id and the next seq of its point). Both apps run under the same gunicorn command
line as bench_http.py (5 sync workers), on the same machine, in the same run, against the same PostgreSQL database
(emflow_bench_telemetry). The two apps get the very same bodies.

- emflow: ``POST /api/v1/telemetry`` with the gateway's credential (``engine.telemetry.ingest``: the gateway by its
  token hash, the gateway row locked, the batch's points looked up, ``INSERT … ON CONFLICT DO NOTHING`` of the new
  readings, latest values updated, every reading run through its point's limits, alarms raised or returned, the
  gateway's status block stored, alarm processes started).
- bare (bare_telemetry_app.py): the token's hash looked up, ``INSERT … ON CONFLICT DO NOTHING`` of the batch into a
  plain table with a unique reading_id, COMMIT.

Phases per stack: warm-up, then D seconds of fresh batches, then D seconds of the same batches posted again (all
duplicates). emflow also runs D seconds of fresh batches with no limit crossings, which shows what alarms cost.
A share of the readings (``--alarm-share``, default 0.2 %) is outside a limit (alternately above hi and below lo);
the point's next reading is back inside, so each crossing raises an alarm (the first time for a point and condition:
a new alarm and an ``alarm_closure`` process) or re-activates it, and then returns it (the return is delivered to the
alarm's process as a message).

The load generator is Python (2 processes, one thread per gateway) rather than wrk: it waits for every answer, so
the rows stored in each phase can be compared exactly with the readings the answers accepted. Its own CPU is
reported. No target in the issue: the emflow/bare ratio is reported.

    .venv/bin/python tests/bench/bench_telemetry.py [--gateways 50] [--points 40] [--batch 100] [--duration 15]
                                                    [--alarm-share 0.002] [--warmup 3] [--quick] [--keep]
"""
from __future__ import annotations

import argparse
import cProfile
import http.client
import json
import multiprocessing
import os
import pstats
import random
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import benchlib as B
from bench_http import CLK_TCK, checkpoint, children, cpu_seconds, free_port, gunicorn_cmd, pg_backends, wait_ready
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

DB_NAME = "emflow_bench_telemetry"
HERE = Path(__file__).resolve().parent
SECRET = "bench-telemetry-secret-key"
REDIS_URL = os.environ.get("EMFLOW_BENCH_REDIS", "redis://127.0.0.1:6379/14")
DEVICES = 4
LIMITS = {"lolo": 10.0, "lolo_grade": 2, "lo": 20.0, "lo_grade": 3, "hi": 80.0, "hi_grade": 3, "hihi": 90.0,
          "hihi_grade": 2, "deadband": 1.0, "on_delay_s": 0.0, "off_delay_s": 0.0}
HI_CROSSING, LO_CROSSING = 85.0, 15.0  # above hi (below hihi), below lo (above lolo)
CROSSING_MARKS = (f'"value":{HI_CROSSING},'.encode(), f'"value":{LO_CROSSING},'.encode())
PATHS = {"emflow": "/api/v1/telemetry", "bare": "/bare/telemetry"}


# -- the readings ------------------------------------------------------------------------------------------------------
def point_names(m: int) -> list[str]:
    return [f"dev{k % DEVICES + 1}.p{k:03d}" for k in range(m)]


class Batches:
    """Deterministic batches: batch b of gateway g holds readings k = b*B … b*B+B-1 of that gateway; reading k is of
    point k % M with seq k // M + 1 (so each point's seq increases), id '<g>-<k>', ts = base + seq seconds, a value
    of 40-60 inside every limit, or with probability ``share`` a value outside hi or lo. The same (g, b, share) gives
    the same body byte for byte, so a resend is exact."""

    def __init__(self, batch: int, points: int, base_ts: int):
        self.batch, self.points, self.base_ts = batch, points, base_ts
        self.names = point_names(points)
        self.status = json.dumps({"devices": {f"dev{d + 1}": "online" for d in range(min(DEVICES, points))},
                                  "dropped": 0, "backlog": 0, "oldest_backlog_ts": None,
                                  "readings_per_minute": 600.0}, separators=(",", ":"))
        self._ts: dict[int, str] = {}

    def ts(self, seq: int) -> str:
        value = self._ts.get(seq)
        if value is None:
            value = self._ts[seq] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.base_ts + seq))
        return value

    def body(self, code: str, g: int, b: int, share: float) -> bytes:
        rng = random.Random(g * 1_000_003 + b)
        parts = []
        k0 = b * self.batch
        for k in range(k0, k0 + self.batch):
            seq = k // self.points + 1
            u, v = rng.random(), rng.random()
            value = (HI_CROSSING if seq % 2 else LO_CROSSING) if u < share else round(40.0 + 20.0 * v, 3)
            parts.append(f'{{"id":"{g:03d}-{k:09d}","point":"{self.names[k % self.points]}","seq":{seq},'
                         f'"ts":"{self.ts(seq)}","value":{value},"quality":"good","historical":false}}')
        return (f'{{"gateway":"{code}","readings":[{",".join(parts)}],"status":{self.status}}}').encode()


# -- setup -------------------------------------------------------------------------------------------------------------
def prepare(args, tmp: Path) -> dict:
    """Schema, demo org, alarm_closure deployed, N gateways of the demo plant with M points each, the bare tables."""
    from bare_telemetry_app import SCHEMA
    from sqlalchemy import select

    from engine import monitoring
    from engine.deploy import bundle_from_dir
    from engine.models import Enterprise

    t0 = time.perf_counter()
    paths = B.make_config("sqlite://", tmp / "paths")
    closure = bundle_from_dir(paths.processes_dir / "alarm_closure", paths.forms_dir)
    config, db, _ = B.setup_emflow(DB_NAME, tmp / "setup", [closure])
    gateways = []
    names = point_names(args.points)
    with db.transaction() as s:
        admin = B.load_user(s, "admin")
        plant = s.scalar(select(Enterprise).where(Enterprise.credit_code == "91450102MA5K000001"))
        assert plant is not None and plant.duty_user_id is not None, "the demo plant and its duty person"
        for g in range(args.gateways):
            code = f"bench-gw-{g:03d}"
            gateway, token = monitoring.create_gateway(s, admin, code, plant.id, f"基准网关{g}")
            for k, name in enumerate(names):
                monitoring.upsert_point(s, gateway, {"name": name, "label": f"测点{k}", "indicator_code": "YW",
                                                     "unit": "m", **LIMITS})
            gateways.append({"g": g, "code": code, "token": token})
    db.dispose()
    url = config.database_url
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
        conn.execute(text("INSERT INTO bare_gateway (code, token_hash) VALUES (:code, :h)"),
                     [{"code": gw["code"], "h": monitoring.hash_token(gw["token"])} for gw in gateways])
    engine.dispose()
    B.analyze(url, ["gateway", "point", "device", "bare_gateway", "reading", "bare_reading", "alarm"])
    return {"url": url, "gateways": gateways, "prep_s": time.perf_counter() - t0,
            "base_ts": int(time.time()) - 86400}


# -- the load generator ------------------------------------------------------------------------------------------------
def _load_process(port: int, path: str, specs: list[dict], batches: Batches, go, start, duration: float, queue):
    """One thread per gateway, each a closed loop of POSTs until the deadline; the last answer is always awaited."""
    results = []
    lock = threading.Lock()

    def worker(spec: dict) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Authorization": f"Bearer {spec['token']}", "Content-Type": "application/json"}
        lat, acc, dup, unk, errors, samples, sent, crossings = [], 0, 0, 0, 0, [], [], 0
        cycle, i = spec["batches"], 0  # resend: cycle through these batch numbers
        b = spec.get("start", 0)
        go.wait()
        deadline = start.value + duration
        last = start.value
        while time.monotonic() < deadline:
            if cycle is not None:
                b = cycle[i % len(cycle)]
                i += 1
            body = batches.body(spec["code"], spec["g"], b, spec["share"])
            t0 = time.monotonic()
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                data = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                status, data = 0, repr(exc).encode()
            t1 = time.monotonic()
            lat.append(t1 - t0)
            last = t1
            if status == 200:
                answer = json.loads(data)
                acc += len(answer["accepted"]) - len(answer["unknown"])
                dup += len(answer["duplicates"])
                unk += len(answer["unknown"])
                sent.append(b)  # answered 200: stored (or already stored), so a resend is all duplicates
                crossings += body.count(CROSSING_MARKS[0]) + body.count(CROSSING_MARKS[1])
            else:
                errors += 1
                if len(samples) < 3:
                    samples.append(f"{status}: {data[:200]!r}")
            if cycle is None:
                b += 1
        conn.close()
        with lock:
            results.append({"g": spec["g"], "lat": lat, "accepted": acc, "duplicates": dup, "unknown": unk,
                            "errors": errors, "samples": samples, "sent": sent, "last": last, "crossings": crossings,
                            "next": b if cycle is None else None})

    threads = [threading.Thread(target=worker, args=(spec,)) for spec in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(results)


def run_load(args, port: int, stack: str, prep: dict, batches: Batches, duration: float, share: float,
             resend: dict | None = None, on_start=None) -> dict:
    """Every gateway posts for ``duration`` seconds: fresh batches from prep['next'][stack][g] on, or (resend) the
    batches of an earlier phase again, cyclically. Returns counts, latencies, wall time, and the batches sent."""
    ctx = multiprocessing.get_context("fork")
    go, start, queue = ctx.Event(), ctx.Value("d", 0.0), ctx.Queue()
    specs = []
    for gw in prep["gateways"]:
        spec = {"g": gw["g"], "code": gw["code"], "token": gw["token"], "share": share, "batches": None}
        if resend is None:
            spec["start"] = prep["next"][stack][gw["g"]]
        else:
            spec["batches"] = resend[gw["g"]] or [0]
            spec["share"] = resend["share"]
        specs.append(spec)
    groups = [specs[i::args.clients] for i in range(args.clients)]
    procs = [ctx.Process(target=_load_process, args=(port, PATHS[stack], grp, batches, go, start, duration, queue))
             for grp in groups if grp]
    before_children = os.times()
    for p in procs:
        p.start()
    time.sleep(0.5)  # let the threads reach go.wait()
    state = on_start() if on_start else None
    start.value = time.monotonic()
    go.set()
    results = [r for _ in procs for r in queue.get(timeout=duration + 300)]
    for p in procs:
        p.join()
    after_children = os.times()
    end = max(r["last"] for r in results)
    wall = max(end - start.value, 1e-9)
    lat = [x for r in results for x in r["lat"]]
    out = {"wall": wall, "requests": len(lat), "accepted": sum(r["accepted"] for r in results),
           "duplicates": sum(r["duplicates"] for r in results), "unknown": sum(r["unknown"] for r in results),
           "errors": sum(r["errors"] for r in results), "crossings": sum(r["crossings"] for r in results),
           "samples": [s for r in results for s in r["samples"]][:3],
           "p50": B.pct(lat, 50), "p95": B.pct(lat, 95), "p99": B.pct(lat, 99),
           "sent": {r["g"]: r["sent"] for r in results}, "state": state,
           "client_cpu": (after_children.children_user + after_children.children_system
                          - before_children.children_user - before_children.children_system)}
    out["readings"] = out["accepted"] + out["duplicates"]
    out["rps"] = out["requests"] / wall
    out["readings_ps"] = out["readings"] / wall
    if resend is None:
        for r in results:
            prep["next"][stack][r["g"]] = r["next"]
    return out


# -- the stacks --------------------------------------------------------------------------------------------------------
def count_rows(url: str, table: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        n = c.scalar(text(f"SELECT count(*) FROM {table}"))
    engine.dispose()
    return n


def alarm_marks(url: str) -> dict:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        marks = {"event": c.scalar(text("SELECT coalesce(max(id), 0) FROM alarm_event")),
                 "alarms": c.scalar(text("SELECT count(*) FROM alarm")),
                 "instances": c.scalar(text("SELECT count(*) FROM process_instance "
                                            "WHERE process_key = 'alarm_closure'")),
                 "jobs": c.scalar(text("SELECT count(*) FROM job"))}
    engine.dispose()
    return marks


def alarm_activity(url: str, before: dict) -> dict:
    after = alarm_marks(url)
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        kinds = dict(c.execute(text("SELECT kind, count(*) FROM alarm_event WHERE id > :m GROUP BY kind"),
                               {"m": before["event"]}).all())
    engine.dispose()
    return {"kinds": kinds, "new_alarms": after["alarms"] - before["alarms"],
            "processes": after["instances"] - before["instances"], "jobs": after["jobs"] - before["jobs"]}


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores; /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def measured(args, port: int, stack: str, prep: dict, batches: Batches, gunicorn_pid: int, table: str,
             share: float, resend: dict | None = None) -> dict:
    """One measured phase: CHECKPOINT, CPU of the workers and the PostgreSQL backends around the load, rows before
    and after."""
    url = prep["url"]
    checkpoint(url)
    rows_before = count_rows(url, table)
    marks = alarm_marks(url) if stack == "emflow" else None
    workers = children(gunicorn_pid)
    backends = pg_backends(url)
    snap = {}

    def on_start():
        snap["before"] = cpu_seconds(workers), cpu_seconds(backends)
        snap["busy"] = machine_busy()

    result = run_load(args, port, stack, prep, batches, args.duration, share, resend, on_start)
    backends_after = set(backends) | set(pg_backends(url))
    after = cpu_seconds(workers), cpu_seconds(backends_after)
    result["busy"] = machine_busy() - snap["busy"]
    before = snap["before"]
    result["app_cpu"] = sum(after[0].get(p, 0) - before[0].get(p, 0) for p in after[0])
    result["pg_cpu"] = sum(after[1].get(p, 0) - before[1].get(p, 0) for p in after[1])
    result["rows_before"] = rows_before
    result["rows_after"] = count_rows(url, table)
    result["alarms"] = alarm_activity(url, marks) if marks is not None else None
    result["share"] = share
    return result


def run_stack(args, stack: str, prep: dict, batches: Batches, tmp: Path) -> dict:
    port = free_port()
    log = tmp / f"{stack}-gunicorn.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMFLOW_", "BARE_"))}
    if stack == "emflow":
        env.update(EMFLOW_DATABASE_URL=prep["url"].replace("postgresql+psycopg://", "postgresql://"),
                   EMFLOW_REDIS_URL=REDIS_URL, EMFLOW_SECRET_KEY=SECRET, EMFLOW_INSTANCE_PATH=str(tmp / "instance"))
        cmd, cwd, ready, table = gunicorn_cmd(args, "webapp:create_app()", port, log), B.REPO, PATHS[stack], "reading"
    else:
        env.update(BARE_DATABASE_URL=prep["url"])
        cmd, cwd, ready, table = gunicorn_cmd(args, "bare_telemetry_app:create_app()", port, log), HERE, \
            "/bare/health", "bare_reading"
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    out = {"table": table}
    try:
        wait_ready(port, ready, proc)
        out["warmup"] = run_load(args, port, stack, prep, batches, args.warmup, args.alarm_share)
        out["fresh"] = measured(args, port, stack, prep, batches, proc.pid, table, args.alarm_share)
        if stack == "emflow" and not args.no_quiet_series:
            out["quiet"] = measured(args, port, stack, prep, batches, proc.pid, table, 0.0)
        resend = {**out["fresh"]["sent"], "share": args.alarm_share}
        out["resend"] = measured(args, port, stack, prep, batches, proc.pid, table, args.alarm_share, resend)
    finally:
        out["server_errors"] = B.stop_server(proc, log)
    out["rows_total"] = count_rows(prep["url"], table)
    out["accepted_total"] = sum(out[k]["accepted"] for k in ("warmup", "fresh", "quiet", "resend") if k in out)
    return out


# -- in-process: where the time goes -------------------------------------------------------------------------------
def inprocess(args, prep: dict, batches: Batches, tmp: Path, n: int) -> dict:
    """emflow's ingest in this process, one batch at a time (no server, no concurrency): time per batch through the
    engine alone (with a breakdown and the SQL statements), through Flask's test client (the whole request), and a
    cProfile of the engine path grouped by package."""
    from bench_engine_overhead import Breakdown
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from engine import alarms, messages, monitoring, telemetry
    from engine.db import Database
    from webapp import create_app

    config = B.make_config(prep["url"], tmp / "inprocess", secret_key=SECRET, redis_url=REDIS_URL)
    db = Database(config)
    gws = prep["gateways"]
    nxt = prep["next"]["emflow"]

    def bodies(count: int, share: float) -> list[tuple[dict, bytes]]:
        out = []
        for i in range(count):
            gw = gws[i % len(gws)]
            out.append((gw, batches.body(gw["code"], gw["g"], nxt[gw["g"]], share)))
            nxt[gw["g"]] += 1
        return out

    def ingest(gw: dict, body: bytes) -> dict:
        with db.transaction() as s:
            gateway = monitoring.gateway_by_token(s, gw["token"])
            return telemetry.ingest(s, config, gateway, json.loads(body))

    for gw, body in bodies(2 * len(gws), args.alarm_share):  # warm-up
        ingest(gw, body)
    results = {}

    # 1. engine only, timed, with and without crossings
    for label, share in (("engine, with crossings", args.alarm_share), ("engine, no crossings", 0.0)):
        items = bodies(n, share)
        marks = alarm_marks(prep["url"])
        times = []
        for gw, body in items:
            t0 = time.perf_counter()
            ingest(gw, body)
            times.append(time.perf_counter() - t0)
        results[label] = B.summary(times)
        results[label]["crossings"] = sum(1 for _, body in items for r in json.loads(body)["readings"]
                                          if r["value"] in (HI_CROSSING, LO_CROSSING))
        results[label]["alarms"] = alarm_activity(prep["url"], marks)

    # 2. breakdown (exclusive times) and SQL statements, no crossings, then with crossings
    bd = Breakdown()
    bd.wrap(monitoring, "gateway_by_token", "gateway by token hash (SELECT)")
    bd.wrap(telemetry, "parse", "parse and validate the body")
    bd.wrap(Session, "refresh", "lock the gateway row (SELECT … FOR UPDATE)")
    bd.wrap(telemetry, "_insert_new", "INSERT … ON CONFLICT DO NOTHING RETURNING")
    bd.wrap(alarms.Evaluator, "readings", "alarm evaluation (Evaluator.readings)")
    bd.wrap(alarms.Evaluator, "start_processes", "alarm processes started (alarm_closure)")
    bd.wrap(alarms, "returned", "alarm returns (message to the process)")
    bd.wrap(messages, "deliver_to", "alarm returns (message to the process)")
    bd.wrap(Session, "flush", "ORM flush (point and gateway UPDATEs)")
    bd.wrap(Session, "commit", "ORM flush (point and gateway UPDATEs)")
    bd.wrap(telemetry, "ingest", "ingest: point lookup, answer, bookkeeping")
    engine = db.write_engine
    statements = {"n": 0}
    by_statement: dict[str, list] = defaultdict(lambda: [0, 0.0])
    current = {}

    def before(_conn, _cursor, statement, _params, _context, many):
        statements["n"] += 1
        words = statement.split()
        table = next((words[i + 1] for i, w in enumerate(words) if w in ("FROM", "INTO", "UPDATE")), "?")
        current["label"] = f"{words[0]} {table}{' (executemany)' if many else ''}"
        current["t0"] = time.perf_counter()
        bd.enter("SQL round trips (all statements)")

    def after(*_a):
        bd.exit()
        entry = by_statement[current["label"]]
        entry[0] += 1
        entry[1] += time.perf_counter() - current["t0"]

    original_commit = engine.dialect.do_commit

    def do_commit(dbapi_connection):
        bd.enter("COMMIT round trip (WAL flush)")
        try:
            return original_commit(dbapi_connection)
        finally:
            bd.exit()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    engine.dialect.do_commit = do_commit
    try:
        for label, share in (("breakdown, no crossings", 0.0), ("breakdown, with crossings", args.alarm_share)):
            items = bodies(n, share)
            bd.reset()
            statements["n"] = 0
            by_statement.clear()
            t0 = time.perf_counter()
            for gw, body in items:
                ingest(gw, body)
            total = (time.perf_counter() - t0) / n
            results[label] = (total, {k: v / n for k, v in bd.totals.items()}, statements["n"] / n,
                              {k: (c / n, t / n) for k, (c, t) in by_statement.items()})
    finally:
        bd.undo()
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
        engine.dialect.do_commit = original_commit

    # 3. the whole request through Flask's test client
    app = create_app(config)
    client = app.test_client()
    items = bodies(n, 0.0)
    times = []
    for gw, body in items:
        t0 = time.perf_counter()
        response = client.post(PATHS["emflow"], data=body, content_type="application/json",
                               headers={"Authorization": f"Bearer {gw['token']}"})
        times.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
    results["request (Flask test client), no crossings"] = B.summary(times)
    app.extensions["emflow"].db.dispose()

    # 4. cProfile of the engine path, no crossings
    items = bodies(n, 0.0)
    profile = cProfile.Profile()
    profile.enable()
    for gw, body in items:
        ingest(gw, body)
    profile.disable()
    db.dispose()
    stats = pstats.Stats(profile)
    groups: dict[str, float] = defaultdict(float)
    total = 0.0
    top = []
    for (filename, line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
        total += tt
        groups[_package(filename)] += tt
        top.append((tt, _short(filename), line, func))
    top.sort(reverse=True)
    results["profile"] = {"total": total / n, "groups": {k: v / n for k, v in groups.items()},
                          "top": [(tt / n, f, ln, fn) for tt, f, ln, fn in top[:15]]}
    return results


def _package(filename: str) -> str:
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C: json, re, …)"
    path = filename.replace("\\", "/")
    for marker, name in (("/site-packages/sqlalchemy/", "SQLAlchemy"), ("/site-packages/psycopg", "psycopg"),
                         ("/site-packages/SpiffWorkflow/", "SpiffWorkflow"), ("/engine/", "emflow engine"),
                         ("/lib/python3", "Python stdlib")):
        if marker in path:
            return name
    return "other"


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# -- output --------------------------------------------------------------------------------------------------------
def line(name: str, r: dict) -> str:
    cpu_app = r["app_cpu"] / max(1, r["readings"]) * 1e6
    cpu_pg = r["pg_cpu"] / max(1, r["readings"]) * 1e6
    return (f"  {name:<34}{r['readings_ps']:>9.0f} readings/s {r['rps']:>7.1f} req/s  p50 {r['p50'] * 1000:6.1f} ms  "
            f"p95 {r['p95'] * 1000:6.1f} ms  p99 {r['p99'] * 1000:6.1f} ms  errors {r['errors']:<3} "
            f"CPU/1,000 readings app {cpu_app:6.1f} ms + PG {cpu_pg:5.1f} ms  (n={r['requests']})")


def check_rows(name: str, phase: str, r: dict) -> bool:
    stored = r["rows_after"] - r["rows_before"]
    ok = stored == r["accepted"]
    print(f"  {name} {phase}: rows stored {stored:,}, readings accepted {r['accepted']:,}, duplicates "
          f"{r['duplicates']:,}: {'OK' if ok else 'MISMATCH'}")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gateways", type=int, default=50, help="gateways posting concurrently (default 50)")
    ap.add_argument("--points", type=int, default=40, help="points per gateway (default 40)")
    ap.add_argument("--batch", type=int, default=100, help="readings per request (default 100)")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per measured phase (default 15)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up load per stack (default 3)")
    ap.add_argument("--alarm-share", type=float, default=0.002,
                    help="share of readings outside a limit (default 0.002 = 0.2 %%)")
    ap.add_argument("--workers", type=int, default=5, help="gunicorn workers for both apps (default 5)")
    ap.add_argument("--worker-class", default="sync", choices=("sync", "gthread"))
    ap.add_argument("--threads", type=int, default=8, help="threads per gthread worker")
    ap.add_argument("--clients", type=int, default=2, help="load generator processes (default 2)")
    ap.add_argument("--order", default="bare,emflow", help="which stack runs first (default bare,emflow)")
    ap.add_argument("--profile-batches", type=int, default=200, help="batches per in-process measurement")
    ap.add_argument("--no-quiet-series", action="store_true", help="skip emflow's run without limit crossings")
    ap.add_argument("--quick", action="store_true", help="short phases, fewer gateways and points: a smoke test")
    ap.add_argument("--keep", action="store_true", help=f"keep the database {DB_NAME} and the work folder")
    args = ap.parse_args()
    if args.quick:
        args.gateways, args.points = min(args.gateways, 20), min(args.points, 20)
        args.duration, args.warmup, args.profile_batches = 4.0, 1.5, 60
    B.banner(f"bench_telemetry: emflow ingest vs bare Flask+gunicorn+PostgreSQL, {args.workers} {args.worker_class} "
             f"workers, {args.gateways} gateways x {args.points} points, {args.batch} readings per batch, "
             f"{args.duration:g} s per phase, {args.alarm_share:.2%} of readings outside a limit")
    tmp = Path(tempfile.mkdtemp(prefix="emflow_bench_telemetry_"))
    try:
        prep = prepare(args, tmp)
        prep["next"] = {stack: {gw["g"]: 0 for gw in prep["gateways"]} for stack in PATHS}
        batches = Batches(args.batch, args.points, prep["base_ts"])
        sample = batches.body(prep["gateways"][0]["code"], 0, 0, 0.0)
        print(f"prepared in {prep['prep_s']:.0f} s: {args.gateways} gateways, {args.gateways * args.points:,} points "
              f"with lolo/lo/hi/hihi limits, alarm_closure deployed; a batch body is {len(sample):,} bytes",
              flush=True)
        results = {}
        for stack in args.order.split(","):
            results[stack] = run_stack(args, stack, prep, batches, tmp)
            print(f"  {stack} done (load average {B.loadavg()})", flush=True)
        breakdown = inprocess(args, prep, batches, tmp, args.profile_batches)
        print(f"  in-process measurements done (load average {B.loadavg()})", flush=True)
    finally:
        B.clean_up(args.keep, DB_NAME, tmp)

    e, b = results["emflow"], results["bare"]
    print()
    print(f"fresh batches ({args.batch} new readings each; {args.gateways} gateways, one batch in flight per gateway)")
    print(line("bare Flask+Core+PostgreSQL", b["fresh"]))
    print(line(f"emflow, {args.alarm_share:.2%} crossings", e["fresh"]))
    if "quiet" in e:
        print(line("emflow, no crossings", e["quiet"]))
    print("resend (the measured fresh batches posted again: all duplicates)")
    print(line("bare Flask+Core+PostgreSQL", b["resend"]))
    print(line("emflow", e["resend"]))
    print()
    print("rows stored vs readings accepted (exact: every answer is awaited)")
    ok = True
    for name, r in (("bare", b), ("emflow", e)):
        for phase in ("warmup", "fresh", "quiet", "resend"):
            if phase in r and "rows_after" in r[phase]:
                ok &= check_rows(name, phase, r[phase])
        total_ok = r["rows_total"] == r["accepted_total"]
        ok &= total_ok
        print(f"  {name} table {r['table']}: {r['rows_total']:,} rows afterwards, {r['accepted_total']:,} readings "
              f"accepted in all phases (warm-up included): {'OK' if total_ok else 'MISMATCH'}")
        new_on_resend = r["resend"]["accepted"] + r["resend"]["rows_after"] - r["resend"]["rows_before"]
        print(f"  {name} resend: {r['resend']['duplicates']:,} duplicates acknowledged, {new_on_resend} new "
              f"(accepted + rows): {'OK' if new_on_resend == 0 else 'NOT OK'}")
        ok &= new_on_resend == 0
        for phase in ("warmup", "fresh", "quiet", "resend"):
            if phase in r and r[phase]["errors"]:
                print(f"  WARNING: {name} {phase}: {r[phase]['errors']} failed requests, e.g. {r[phase]['samples']}")
                ok = False
        if r["server_errors"]:
            print(f"  {name} server log: {r['server_errors']}")
    print(f"  all checks: {'OK' if ok else 'FAILED'}")
    print()
    print("alarm activity in emflow's measured phases (from alarm_event, alarm, process_instance, job)")
    for phase in ("fresh", "quiet"):
        if phase in e:
            a = e[phase]["alarms"]
            print(f"  {phase:<6} ({e[phase]['share']:.2%}): {e[phase]['accepted']:,} readings in "
                  f"{e[phase]['wall']:.1f} s, {e[phase]['crossings']} outside a limit; "
                  f"events {dict(sorted(a['kinds'].items()))}; new alarms {a['new_alarms']}, "
                  f"alarm_closure processes started {a['processes']}, jobs queued {a['jobs']}")
    print("machine CPU during the measured phases (all cores, /proc/stat) vs what this benchmark's processes used")
    for name, r in (("bare", b), ("emflow", e)):
        for phase in ("fresh", "quiet", "resend"):
            if phase in r:
                x = r[phase]
                ours = x["app_cpu"] + x["pg_cpu"] + x["client_cpu"]
                print(f"  {name:<6} {phase:<6}: busy {x['busy']:5.1f} s of {os.cpu_count() * x['wall']:5.1f} s; "
                      f"app {x['app_cpu']:5.1f} + PG backends {x['pg_cpu']:4.1f} + load generator "
                      f"{x['client_cpu']:4.1f} s; the rest {x['busy'] - ours:4.1f} s (kernel, PostgreSQL's own "
                      f"processes, anything else)")
    client_ms = {k: e[k]["client_cpu"] / max(1, e[k]["requests"]) * 1000 for k in ("fresh", "resend")}
    client_ms_b = {k: b[k]["client_cpu"] / max(1, b[k]["requests"]) * 1000 for k in ("fresh", "resend")}
    print(f"  load generator CPU per request: bare {client_ms_b['fresh']:.2f} ms fresh / {client_ms_b['resend']:.2f} "
          f"ms resend, emflow {client_ms['fresh']:.2f} / {client_ms['resend']:.2f} ms (not counted in CPU/1,000)")
    print()
    rf = e["fresh"]["readings_ps"] / b["fresh"]["readings_ps"]
    rr = e["resend"]["readings_ps"] / b["resend"]["readings_ps"]
    print(f"RATIO fresh readings/s emflow/bare = {rf:.2f}x  (no target: ratio reported)   p95 "
          f"{e['fresh']['p95'] / b['fresh']['p95']:.2f}x of bare")
    if "quiet" in e:
        rq = e["quiet"]["readings_ps"] / b["fresh"]["readings_ps"]
        print(f"RATIO fresh readings/s emflow/bare, no crossings = {rq:.2f}x  (ratio reported)")
    print(f"RATIO resend readings/s emflow/bare = {rr:.2f}x  (ratio reported)")
    print("emflow does more per batch: finds the gateway's points (one SELECT), locks the gateway row (SELECT … FOR "
          "UPDATE), updates every point's latest value and evaluation state (one UPDATE per point in the batch), runs "
          "each reading through the point's limits, raises/returns alarms (alarm and alarm_event rows, an "
          "alarm_closure process per new alarm, a message to the process per return), stores the gateway's status "
          "block and last-seen time (UPDATE gateway), answers through flask-smorest; its reading table has one more "
          "index (point_id, ts).")
    print()
    print(f"emflow ingest in-process (one batch of {args.batch} at a time, {args.profile_batches} batches per line):")
    for label in ("engine, with crossings", "engine, no crossings", "request (Flask test client), no crossings"):
        s = breakdown[label]
        print(f"  {label:<44} median {s['median'] * 1000:6.2f} ms  p95 {s['p95'] * 1000:6.2f} ms  mean "
              f"{s['mean'] * 1000:6.2f} ms per batch = {s['mean'] / args.batch * 1e6:5.0f} µs per reading")
    with_c, without = breakdown["engine, with crossings"], breakdown["engine, no crossings"]
    a = with_c["alarms"]
    extra = (with_c["mean"] - without["mean"]) * args.profile_batches / max(1, with_c["crossings"])
    print(f"  with crossings: {with_c['crossings']} readings outside a limit in {args.profile_batches} batches; "
          f"events {dict(sorted(a['kinds'].items()))}, new alarms {a['new_alarms']}, processes {a['processes']}; "
          f"≈ {extra * 1000:.1f} ms more per crossing (mean difference x batches / crossings)")
    for label in ("breakdown, no crossings", "breakdown, with crossings"):
        total, parts, sql, per_statement = breakdown[label]
        print(f"  {label}: {total * 1000:.2f} ms per batch, {sql:.1f} SQL statements per batch (exclusive times):")
        for name, value in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"    {name:<52} {value * 1000:7.2f} ms")
        print("    SQL statements by kind (count and time per batch, round trip included):")
        for name, (count, value) in sorted(per_statement.items(), key=lambda kv: -kv[1][1])[:8]:
            print(f"      {name:<50} {count:5.2f} x {value * 1000:7.2f} ms")
    prof = breakdown["profile"]
    print(f"  cProfile, no crossings: {prof['total'] * 1000:.2f} ms per batch under the profiler; by package "
          f"(own time):")
    for name, value in sorted(prof["groups"].items(), key=lambda kv: -kv[1]):
        print(f"    {name:<28} {value * 1000:7.2f} ms  {value / prof['total']:5.1%}")
    print("  top functions by own time (per batch):")
    for tt, filename, ln, func in prof["top"]:
        print(f"    {tt * 1000:7.3f} ms  {func}  ({filename}:{ln})")
    print(f"load average at the end: {B.loadavg()}")
    print("BENCHRESULT " + json.dumps({s: {k: {f: v for f, v in r[k].items() if f not in ("sent", "state")}
                                           for k in ("fresh", "quiet", "resend") if k in r}
                                       for s, r in results.items()}, default=str))


if __name__ == "__main__":
    main()
