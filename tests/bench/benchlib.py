"""Shared helpers for the benchmark scripts in tests/bench/ (not a test module; pytest never collects it).

- PostgreSQL scratch databases named ``emflow_bench_*``: create, migrate with the real schema
  (``engine.schema.upgrade``), load the demo organisation, deploy the benchmark processes through
  ``engine.deploy``.
- The benchmark processes (BPMN + forms), built here so the benchmarks do not depend on the shipped ones.
- Bulk data (users, groups, instances, human tasks, candidates) generated inside PostgreSQL with
  ``INSERT … SELECT generate_series``.
- Percentiles, formatting, machine description.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the scripts run as files; make `engine` and `webapp` importable
    sys.path.insert(0, str(REPO))

PG_BASE = os.environ.get("EMFLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "Bench2026x"
APPROVAL = "bench_approval"
LOOP = "bench_loop"
SEQ_MI = "bench_seq_mi"


# -- databases ---------------------------------------------------------------------------------------
def pg_url(name: str, driver: str = "postgresql+psycopg") -> str:
    return make_url(PG_BASE).set(drivername=driver, database=name).render_as_string(hide_password=False)


def pg_admin(*statements: str) -> None:
    """Statements on the maintenance database (CREATE/DROP DATABASE need autocommit)."""
    engine = create_engine(pg_url(make_url(PG_BASE).database or "postgres"), isolation_level="AUTOCOMMIT",
                           poolclass=NullPool)
    with engine.connect() as c:
        for statement in statements:
            c.execute(text(statement))
    engine.dispose()


def db_exists(name: str) -> bool:
    engine = create_engine(pg_url(make_url(PG_BASE).database or "postgres"), poolclass=NullPool)
    with engine.connect() as c:
        found = c.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
    engine.dispose()
    return bool(found)


def create_db(name: str) -> str:
    assert name.startswith("emflow_bench_"), name
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    return pg_url(name)


def drop_db(name: str) -> None:
    assert name.startswith("emflow_bench_"), name
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_config(url: str, instance_path: Path, **overrides):
    from engine.config import Config

    instance_path.mkdir(parents=True, exist_ok=True)
    return Config.from_env({}, database_url=url, instance_path=instance_path,
                           secret_key=overrides.pop("secret_key", "bench-secret-key"), **overrides)


def setup_emflow(name: str, instance_path: Path, bundles: Iterable = (), fresh: bool = True):
    """A database with the real schema, the demo organisation and the given bundles deployed.
    Returns (config, Database, {bundle key: version id})."""
    from engine import calendar, clock, schema
    from engine.connectors import Registry
    from engine.db import Database
    from engine.demo import load_org
    from engine.deploy import deploy
    from engine.versions import VERSIONS

    clock.install()
    url = create_db(name) if fresh else pg_url(name)
    config = make_config(url, instance_path)
    schema.upgrade(config)
    db = Database(config)
    versions = {}
    with db.transaction() as s:
        users = load_org(s, PASSWORD)
        operations = Registry.discover().operations()
        for bundle in bundles:
            version, _ = deploy(s, bundle, users["admin"], operations)
            versions[bundle.key] = version.id
    VERSIONS.clear()
    calendar.invalidate()
    return config, db, versions


def load_user(session, username: str):
    """A user as the web layer holds it: loaded with roles, groups and unit, usable after the session."""
    from sqlalchemy import select

    from engine.models import User

    user = session.scalar(select(User).where(User.username == username))
    assert user is not None, username
    _ = user.roles, user.groups, user.unit
    return user


# -- processes -----------------------------------------------------------------------------------------
NS = ('xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
      'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" '
      'targetNamespace="https://emflow.example/bench"')


def _bpmn(process_id: str, body: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<bpmn:definitions {NS} id="{process_id}_defs">\n'
            f'<bpmn:process id="{process_id}" isExecutable="true">\n{body}\n</bpmn:process>\n</bpmn:definitions>\n')


def _user_task(task_id: str, name: str, form: str, rule: str, value: str, inner: str = "") -> str:
    return (f'<bpmn:userTask id="{task_id}" name="{name}"><bpmn:extensionElements><spiffworkflow:properties>'
            f'<spiffworkflow:property name="formJsonSchemaFilename" value="{form}"/>'
            f"<spiffworkflow:property name=\"{rule}\" value='{value}'/>"
            f"</spiffworkflow:properties></bpmn:extensionElements>{inner}</bpmn:userTask>")


def _flow(fid: str, source: str, target: str, condition: str | None = None) -> str:
    if condition is None:
        return f'<bpmn:sequenceFlow id="{fid}" sourceRef="{source}" targetRef="{target}"/>'
    return (f'<bpmn:sequenceFlow id="{fid}" sourceRef="{source}" targetRef="{target}">'
            f"<bpmn:conditionExpression>{condition}</bpmn:conditionExpression></bpmn:sequenceFlow>")


def _form(title: str, properties: dict, required: list[str] | None = None, readonly: list[str] | None = None) -> str:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, "type": "object",
              "properties": properties, "required": required or [],
              "ui": {"order": list(properties), "readonly": readonly or []}}
    return json.dumps(schema, ensure_ascii=False, indent=1)


OPINION = {"type": "string", "title": "意见", "maxLength": 2000}

# A small approval: submit (initiator) -> review (li.na; approve or return) -> archive (office clerks' group).
APPROVAL_BPMN = _bpmn(APPROVAL, "\n".join([
    '<bpmn:startEvent id="start"/>',
    '<bpmn:exclusiveGateway id="merge"/>',
    _user_task("submit", "提交申请", "submit.schema.json", "assignee", "initiator"),
    _user_task("review", "审核", "review.schema.json", "assignee", 'user("li.na")'),
    '<bpmn:exclusiveGateway id="decide" default="to_archive"/>',
    _user_task("archive", "归档", "archive.schema.json", "candidates", 'group("office_clerks")'),
    '<bpmn:endEvent id="end"/>',
    _flow("f_start", "start", "merge"),
    _flow("f_merge", "merge", "submit"),
    _flow("f_submit", "submit", "review"),
    _flow("f_review", "review", "decide"),
    _flow("to_return", "decide", "merge", "decision == 'return'"),
    _flow("to_archive", "decide", "archive"),
    _flow("f_archive", "archive", "end"),
]))
APPROVAL_FORMS = {
    "submit.schema.json": _form("提交申请", {
        "title": {"type": "string", "title": "标题", "minLength": 2, "maxLength": 200},
        "amount": {"type": "number", "title": "金额", "minimum": 0},
        "reason": {"type": "string", "title": "事由", "maxLength": 2000},
        "opinion": OPINION}, required=["title", "amount"]),
    "review.schema.json": _form("审核", {
        "title": {"type": "string", "title": "标题"},
        "amount": {"type": "number", "title": "金额"},
        "decision": {"type": "string", "title": "审核意见", "enum": ["approve", "return"]},
        "opinion": OPINION}, required=["decision"], readonly=["title", "amount"]),
    "archive.schema.json": _form("归档", {
        "archive_no": {"type": "string", "title": "档案号", "maxLength": 50},
        "opinion": OPINION}, required=["archive_no"]),
}
SUBMIT_DATA = {"title": "关于采购应急救援物资的请示", "amount": 128000, "reason": "汛期备勤，补充救生衣和冲锋舟。",
               "opinion": "请审核"}
REVIEW_DATA = {"decision": "approve", "opinion": "同意"}

NOTE_FORM = _form("处理", {"note": {"type": "string", "title": "说明", "maxLength": 4000}, "opinion": OPINION})

# A loop of returns: the user task loops back to itself through an exclusive gateway until rounds >= wanted.
LOOP_BPMN = _bpmn(LOOP, "\n".join([
    '<bpmn:startEvent id="start"/>',
    '<bpmn:scriptTask id="init" name="init"><bpmn:script>rounds = 0</bpmn:script></bpmn:scriptTask>',
    '<bpmn:exclusiveGateway id="merge"/>',
    _user_task("work", "办理", "note.schema.json", "assignee", "initiator"),
    '<bpmn:scriptTask id="count" name="count"><bpmn:script>rounds += 1</bpmn:script></bpmn:scriptTask>',
    '<bpmn:exclusiveGateway id="check" default="back"/>',
    '<bpmn:endEvent id="end"/>',
    _flow("f0", "start", "init"), _flow("f1", "init", "merge"), _flow("f2", "merge", "work"),
    _flow("f3", "work", "count"), _flow("f4", "count", "check"),
    _flow("done", "check", "end", "rounds &gt;= wanted"), _flow("back", "check", "merge"),
]))

# A sequential multi-instance user task with `wanted` instances (逐级审批 with a very long list).
SEQ_MI_BPMN = _bpmn(SEQ_MI, "\n".join([
    '<bpmn:startEvent id="start"/>',
    _user_task("approve", "逐级审批", "note.schema.json", "assignee", "initiator",
               '<bpmn:multiInstanceLoopCharacteristics isSequential="true">'
               "<bpmn:loopCardinality>wanted</bpmn:loopCardinality>"
               "</bpmn:multiInstanceLoopCharacteristics>"),
    '<bpmn:endEvent id="end"/>',
    _flow("f0", "start", "approve"), _flow("f1", "approve", "end"),
]))


def bundle(key: str):
    from engine.deploy import Bundle

    if key == APPROVAL:
        return Bundle(key=APPROVAL, name="基准审批", files={f"{APPROVAL}.bpmn": APPROVAL_BPMN, **APPROVAL_FORMS},
                      category="bench")
    if key == LOOP:
        return Bundle(key=LOOP, name="基准循环", files={f"{LOOP}.bpmn": LOOP_BPMN, "note.schema.json": NOTE_FORM},
                      category="bench")
    if key == SEQ_MI:
        return Bundle(key=SEQ_MI, name="基准串行多实例",
                      files={f"{SEQ_MI}.bpmn": SEQ_MI_BPMN, "note.schema.json": NOTE_FORM}, category="bench")
    raise KeyError(key)


def stock_spec(bpmn_text: str, process_id: str):
    """The spec as plain SpiffWorkflow parses it (SpiffBpmnParser, no emflow classes)."""
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser

    parser = SpiffBpmnParser()
    parser.add_bpmn_str(bpmn_text.encode("utf-8"), "bench.bpmn")
    return parser.get_spec(process_id), parser.get_subprocess_specs(process_id)


def stock_serializer():
    from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
    from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))


# -- bulk data ---------------------------------------------------------------------------------------------
def bulk_org(conn, n_users: int, n_groups: int) -> tuple[int, int]:
    """``n_users`` staff users bench.u00001… in the demo units/regions and ``n_groups`` candidate groups;
    every user is in one group, a third in a second. Returns (first, last) user id."""
    units = [r[0] for r in conn.execute(text("SELECT id FROM unit ORDER BY id"))]
    regions = [r[0] for r in conn.execute(text("SELECT region_code FROM unit ORDER BY id"))]
    conn.execute(text("""
        INSERT INTO "user" (username, name, title, phone, unit_id, region_code, enterprise_id, password_hash,
                            is_superuser, is_active, failed_logins, token_version, created_at)
        SELECT 'bench.u' || lpad(i::text, 5, '0'), '用户' || i, '科员', '', (CAST(:units AS int[]))[1 + i % :nu],
               (CAST(:regions AS text[]))[1 + i % :nu], NULL, '', false, true, 0, 0, now()
        FROM generate_series(1, :n) AS i"""), {"units": units, "regions": regions, "nu": len(units), "n": n_users})
    first, last = conn.execute(text("SELECT min(id), max(id) FROM \"user\" WHERE username LIKE 'bench.u%'")).one()
    conn.execute(text("""INSERT INTO "group" (code, name) SELECT 'bench_g' || lpad(g::text, 4, '0'), '基准组' || g
                         FROM generate_series(1, :g) AS g"""), {"g": n_groups})
    conn.execute(text("""
        INSERT INTO group_member (group_id, user_id)
        SELECT g.id, u.id FROM "user" u JOIN "group" g ON g.code = 'bench_g' || lpad((1 + u.id % :g)::text, 4, '0')
        WHERE u.username LIKE 'bench.u%'
        UNION
        SELECT g.id, u.id FROM "user" u
        JOIN "group" g ON g.code = 'bench_g' || lpad((1 + (u.id * 7 + 3) % :g)::text, 4, '0')
        WHERE u.username LIKE 'bench.u%' AND u.id % 3 = 0"""), {"g": n_groups})
    return first, last


def bulk_tasks(conn, process_key: str, version_id: int, n_tasks: int, first_user: int, last_user: int,
               open_per_user: int = 30, group_open: int = 6000, user_cand_open: int = 3000,
               busy_users: int = 20, busy_open: int = 300, tasks_per_instance: int = 5) -> dict:
    """``n_tasks`` human_task rows over n_tasks/tasks_per_instance instances:

    - open and assigned: about ``open_per_user`` per user (random), plus ``busy_users`` users with ``busy_open`` more
    - open and offered to a candidate group (``group_open``), or to three candidate users (``user_cand_open``)
    - 2 % cancelled; everything else completed (by its assignee, over the last two years)
    - 15 % of the completed tasks were offered to a group first (their task_candidate rows remain, as in the engine)
    """
    n_users = last_user - first_user + 1
    n_inst = max(1, n_tasks // tasks_per_instance)
    p = {"pk": process_key, "vid": version_id, "u0": first_user, "nu": n_users, "ni": n_inst}
    conn.execute(text("""
        INSERT INTO process_instance (process_key, version_id, status, business_key, title, region_code, enterprise_id,
            initiator_id, unit_id, state, lock_version, last_event_hash, event_count, created_at, updated_at,
            completed_elements, active_elements)
        SELECT :pk, :vid, CASE WHEN i % 10 = 0 THEN 'running' ELSE 'completed' END, 'BK-' || i,
               '关于第' || i || '号应急物资采购的请示', '450000', NULL, :u0 + (i % :nu), NULL, '{}', 1, '', 0,
               now() - make_interval(days => (i % 730)), now(), '[]'::jsonb, '[]'::jsonb
        FROM generate_series(1, :ni) AS i"""), p)
    inst0 = conn.scalar(text("SELECT min(id) FROM process_instance WHERE business_key LIKE 'BK-%'"))
    p["i0"] = inst0
    n_busy = busy_users * busy_open
    n_open = n_users * open_per_user
    n_group, n_ucand = group_open, user_cand_open
    n_cancel = n_tasks // 50
    bounds = {}
    edge = 0
    for label, count in (("open", n_open), ("busy", n_busy), ("group", n_group), ("ucand", n_ucand),
                         ("cancelled", n_cancel)):
        bounds[label] = (edge + 1, edge + count)
        edge += count
    bounds["completed"] = (edge + 1, n_tasks)
    assert edge < n_tasks, "too few tasks for the open ones"
    p.update({f"{k}_lo": v[0] for k, v in bounds.items()})
    p.update({f"{k}_hi": v[1] for k, v in bounds.items()})
    p.update(n=n_tasks, bo=busy_open)
    # One pass; the random user is drawn once per row (r), the age once per row (a).
    conn.execute(text("""
        INSERT INTO human_task (id, instance_id, process_key, process_name, instance_title, bpmn_id, name, form_key,
            state, assignee_id, region_code, enterprise_id, created_at, claimed_at, completed_by_id, completed_at,
            opinion)
        SELECT gen_random_uuid()::text, :i0 + (i % :ni), :pk, '基准审批',
               '关于第' || (i % :ni) || '号应急物资采购的请示',
               b.bpmn_id, b.name, b.bpmn_id || '.schema.json',
               CASE WHEN i <= :ucand_hi THEN 'open' WHEN i <= :cancelled_hi THEN 'cancelled' ELSE 'completed' END,
               CASE WHEN i <= :open_hi THEN r.uid
                    WHEN i <= :busy_hi THEN :u0 + ((i - :busy_lo) / :bo)
                    WHEN i <= :ucand_hi THEN NULL
                    WHEN i <= :cancelled_hi THEN CASE WHEN i % 2 = 0 THEN r.uid END
                    ELSE r.uid END,
               '450000', NULL,
               CASE WHEN i <= :ucand_hi THEN now() - a.age * interval '30 days'
                    ELSE now() - a.age * interval '730 days' END,
               NULL,
               CASE WHEN i >= :completed_lo THEN r.uid END,
               CASE WHEN i >= :completed_lo THEN now() - a.age * interval '730 days' + interval '5 hours' END,
               CASE WHEN i >= :completed_lo AND i % 3 = 0 THEN '同意' END
        FROM generate_series(1, :n) AS i
        CROSS JOIN LATERAL (SELECT :u0 + floor(random() * :nu)::int + (i - i) AS uid) AS r
        CROSS JOIN LATERAL (SELECT random() + (i - i) AS age) AS a
        CROSS JOIN LATERAL (SELECT CASE WHEN i BETWEEN :group_lo AND :group_hi THEN 3
                                        WHEN i BETWEEN :ucand_lo AND :ucand_hi THEN 2
                                        ELSE 1 + i % 3 END AS k) AS kind
        CROSS JOIN LATERAL (SELECT (ARRAY['submit','review','archive'])[kind.k] AS bpmn_id,
                                   (ARRAY['提交申请','审核','归档'])[kind.k] AS name) AS b"""), p)
    # Candidates: open group tasks -> one group; open user-candidate tasks -> three users;
    # 15 % of completed tasks keep the group row they were offered with.
    n_groups = conn.scalar(text("SELECT count(*) FROM \"group\" WHERE code LIKE 'bench_g%'"))
    g0 = conn.scalar(text("SELECT min(id) FROM \"group\" WHERE code LIKE 'bench_g%'"))
    p.update(g0=g0, ng=n_groups)
    conn.execute(text("""
        INSERT INTO task_candidate (task_id, group_id)
        SELECT id, :g0 + floor(random() * :ng)::int FROM human_task
        WHERE state = 'open' AND assignee_id IS NULL AND bpmn_id = 'archive'
           OR state = 'completed' AND random() < 0.15"""), p)
    conn.execute(text("""
        INSERT INTO task_candidate (task_id, user_id)
        SELECT t.id, :u0 + floor(random() * :nu)::int FROM human_task t CROSS JOIN generate_series(1, 3)
        WHERE t.state = 'open' AND t.assignee_id IS NULL AND t.bpmn_id = 'review'"""), p)
    return {"instances": n_inst, "tasks": n_tasks, **{k: v[1] - v[0] + 1 for k, v in bounds.items()}}


def analyze(url: str, tables: Iterable[str]) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as c:
        for table in tables:
            c.execute(text(f'VACUUM ANALYZE "{table}"'))
    engine.dispose()


# -- statistics and output ---------------------------------------------------------------------------------
def pct(values: list[float], p: float) -> float:
    """Percentile with linear interpolation (p in 0..100)."""
    if not values:
        return float("nan")
    data = sorted(values)
    k = (len(data) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "median": statistics.median(values) if values else float("nan"),
            "p95": pct(values, 95), "p99": pct(values, 99), "mean": statistics.fmean(values) if values else 0.0,
            "min": min(values) if values else float("nan")}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f} ms"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · nproc {os.cpu_count()} · {cpu_model()} · "
            f"Python {platform.python_version()} · load average {load}")


def loadavg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def banner(title: str) -> None:
    print("=" * 100)
    print(title)
    print(machine())
    print("=" * 100, flush=True)


class Stopwatch:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.perf_counter() - self.t0
        return False


def stop_server(proc: subprocess.Popen, log: Path) -> list[str]:
    """Stop a server started in its own process group; the first error lines of its log."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line for line in lines if "Error" in line or "Traceback" in line][:5]


def clean_up(keep: bool, db_name: str, folder: Path) -> None:
    """Drop the scratch database and the work folder, unless told to keep them (then say where they are)."""
    if keep:
        print(f"kept {db_name} and {folder}")
        return
    drop_db(db_name)
    shutil.rmtree(folder, ignore_errors=True)
