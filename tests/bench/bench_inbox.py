"""Benchmark (2): inbox queries with 1,000,000 human_task rows and 3,000 users on PostgreSQL.

The data is generated inside PostgreSQL (INSERT … SELECT generate_series) on the real schema: 3,000 staff users
in 150 candidate groups; 200,000 instances; 1,000,000 human tasks, of which about 30 open tasks per user (plus
20 busy users with 300 more each), 6,000 open tasks offered to a group and 3,000 offered to three users,
2 % cancelled and the rest completed over two years (15 % of those keep the group candidate row they were
offered with, as the engine leaves it).

Timed, each in its own read session as the web layer does: ``engine.tasks.inbox(scope=mine|group|done)``
(first page of 20 and the total) and ``engine.tasks.counts`` for random users: p50/p95/p99. The busiest users
are reported separately. Then EXPLAIN (ANALYZE, BUFFERS) of every statement the engine sent for one user,
captured from the SQLAlchemy cursor, with the indexes each plan uses.

    .venv/bin/python tests/bench/bench_inbox.py [--samples 400] [--tasks 1000000] [--quick] [--keep] [--reuse]

--reuse keeps using emflow_bench_inbox if it already holds the data (generation takes about a minute);
--keep leaves the database in place at the end.
"""
from __future__ import annotations

import argparse
import random
import re
import tempfile
import time
from pathlib import Path

import benchlib as B
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.pool import NullPool

DB_NAME = "emflow_bench_inbox"
SCOPES = ("mine", "group", "done")


def generate(url: str, n_tasks: int, n_users: int) -> dict:
    engine = create_engine(url, poolclass=NullPool)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        first, last = B.bulk_org(conn, n_users, n_groups=150)
        version_id = conn.scalar(text("SELECT id FROM process_version WHERE process_key = :k"), {"k": B.APPROVAL})
        scale = n_tasks / 1_000_000  # the open share stays ~10 % at any size
        info = B.bulk_tasks(conn, B.APPROVAL, version_id, n_tasks, first, last,
                            open_per_user=max(3, round(30 * scale)), group_open=round(6000 * scale),
                            user_cand_open=round(3000 * scale), busy_open=max(10, round(300 * scale)))
    t1 = time.perf_counter()
    B.analyze(url, ["user", "group", "group_member", "process_instance", "human_task", "task_candidate"])
    t2 = time.perf_counter()
    engine.dispose()
    info.update(users=n_users, insert_s=t1 - t0, analyze_s=t2 - t1)
    return info


def data_profile(url: str) -> dict:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        out = dict(c.execute(text("SELECT state, count(*) FROM human_task GROUP BY state")).all())
        out["task_candidate"] = c.scalar(text("SELECT count(*) FROM task_candidate"))
        out["users"] = c.scalar(text("SELECT count(*) FROM \"user\" WHERE username LIKE 'bench.u%'"))
        per_user = c.execute(text("""
            SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY n), max(n) FROM (
              SELECT count(*) AS n FROM human_task WHERE state = 'open' AND assignee_id IS NOT NULL
              GROUP BY assignee_id) x""")).one()
        out["open_per_user_p50_p99_max"] = (per_user[0][0], per_user[0][1], per_user[1])
        out["done_per_user_median"] = c.scalar(text("""
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY n) FROM (
              SELECT count(*) AS n FROM human_task WHERE completed_by_id IS NOT NULL GROUP BY completed_by_id) x"""))
        out["size"] = c.scalar(text("SELECT pg_size_pretty(pg_total_relation_size('human_task'))"))
    engine.dispose()
    return out


def time_calls(db, users, fn, samples: int, rng: random.Random) -> list[float]:
    times = []
    for _ in range(samples):
        user = rng.choice(users)
        t0 = time.perf_counter()
        with db.session() as s:
            fn(s, user)
        times.append(time.perf_counter() - t0)
    return times


def explain_all(db, user) -> list[tuple[str, str, str]]:
    """Run each inbox call once for ``user``, capture the SQL sent, and EXPLAIN (ANALYZE, BUFFERS) it."""
    from engine import tasks

    captured: list[tuple[str, str, object]] = []
    label = {"value": ""}

    def before(conn, cursor, statement, parameters, context, executemany):
        captured.append((label["value"], statement, parameters))

    event.listen(db.read_engine, "before_cursor_execute", before)
    try:
        for scope in SCOPES:
            label["value"] = f"inbox(scope={scope})"
            with db.session() as s:
                tasks.inbox(s, user, scope)
        label["value"] = "counts"
        with db.session() as s:
            tasks.counts(s, user)
    finally:
        event.remove(db.read_engine, "before_cursor_execute", before)
    plans = []
    with db.read_engine.connect() as conn:
        for name, statement, params in captured:
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).all()
            plans.append((name, statement, "\n".join(r[0] for r in rows)))
        conn.rollback()
    return plans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=1_000_000, help="human_task rows (default 1,000,000)")
    ap.add_argument("--users", type=int, default=3000, help="users (default 3,000)")
    ap.add_argument("--samples", type=int, default=400, help="timed calls per query (default 400)")
    ap.add_argument("--quick", action="store_true", help="200,000 rows and 100 samples")
    ap.add_argument("--keep", action="store_true", help=f"keep the database {DB_NAME}")
    ap.add_argument("--reuse", action="store_true", help=f"reuse {DB_NAME} if it holds the data already")
    ap.add_argument("--seed", type=int, default=20261129)
    args = ap.parse_args()
    if args.quick:
        args.tasks, args.samples = 200_000, 100
    B.banner(f"bench_inbox: inbox queries over {args.tasks:,} human tasks and {args.users:,} users (PostgreSQL)")

    from engine import tasks
    from engine.db import Database
    from engine.models import User
    from engine.versions import VERSIONS

    tmp = Path(tempfile.mkdtemp(prefix="emflow_bench_inbox_"))
    reuse = False
    if args.reuse and B.db_exists(DB_NAME):
        engine = create_engine(B.pg_url(DB_NAME), poolclass=NullPool)
        with engine.connect() as c:
            have = c.scalar(text("SELECT count(*) FROM human_task"))
        engine.dispose()
        reuse = have == args.tasks
    if reuse:
        config = B.make_config(B.pg_url(DB_NAME), tmp)
        db = Database(config)
        print(f"reusing {DB_NAME} ({args.tasks:,} tasks)")
    else:
        config, db, _ = B.setup_emflow(DB_NAME, tmp, [B.bundle(B.APPROVAL)])
        info = generate(config.database_url, args.tasks, args.users)
        print(f"generated in {info['insert_s']:.1f} s (+ VACUUM ANALYZE {info['analyze_s']:.1f} s): "
              f"{info['instances']:,} instances, {info['tasks']:,} tasks; open assigned {info['open']:,} "
              f"+ busy {info['busy']:,}, open group {info['group']:,}, open user-candidates {info['ucand']:,}, "
              f"cancelled {info['cancelled']:,}, completed {info['completed']:,}")
    VERSIONS.clear()
    try:
        profile = data_profile(config.database_url)
        print(f"data: {profile}")
        rng = random.Random(args.seed)
        with db.session() as s:
            users = list(s.scalars(select(User).where(User.username.like("bench.u%")).order_by(User.id)))
            for u in users:
                _ = u.roles, u.groups, u.unit
        busy = users[:20]

        calls = {f"inbox(scope={scope})": (lambda sc: (lambda s, u: tasks.inbox(s, u, sc)))(scope) for scope in SCOPES}
        calls["counts"] = tasks.counts
        # Warm the connection pool, the plan caches and the shared buffers a little (equally for every query).
        for fn in calls.values():
            time_calls(db, users, fn, 30, rng)
        results = {}
        for name, fn in calls.items():
            results[name] = time_calls(db, users, fn, args.samples, rng)
        busy_results = {name: time_calls(db, busy, fn, max(50, args.samples // 4), rng) for name, fn in calls.items()}

        print()
        print(f"{'query (random users)':<28}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}   n")
        for name, values in results.items():
            s = B.summary(values)
            print(f"{name:<28}{s['median'] * 1000:>8.2f}ms{s['p95'] * 1000:>8.2f}ms{s['p99'] * 1000:>8.2f}ms"
                  f"{max(values) * 1000:>8.2f}ms   {s['n']}")
        print(f"{'query (20 busiest users)':<28}")
        for name, values in busy_results.items():
            s = B.summary(values)
            print(f"{name:<28}{s['median'] * 1000:>8.2f}ms{s['p95'] * 1000:>8.2f}ms{s['p99'] * 1000:>8.2f}ms"
                  f"{max(values) * 1000:>8.2f}ms   {s['n']}")
        worst = max(B.pct(v, 95) for v in results.values())
        print(f"\nSLO (performance-reference §3.4: p95 <= 1 s for normal operations): worst p95 {worst * 1000:.1f} ms "
              f"-> {B.verdict(worst <= 1.0)}")

        sample_user = users[len(users) // 2]
        print()
        print(f"EXPLAIN (ANALYZE, BUFFERS) of every statement the engine sent for user {sample_user.username} "
              f"(id {sample_user.id}, groups {[g.code for g in sample_user.groups]}):")
        seq_scans = []
        for name, statement, plan in explain_all(db, sample_user):
            indexes = sorted(set(re.findall(r"(?:Index|Index Only|Bitmap Index) Scan (?:Backward )?(?:using|on) (\w+)",
                                            plan)))
            seqs = sorted(set(re.findall(r"Seq Scan on (\w+)", plan)))
            seq_scans += [(name, t) for t in seqs]
            print("-" * 100)
            print(f"[{name}] {' '.join(statement.split())[:300]}")
            print(f"  indexes used: {', '.join(indexes) or 'none'}; sequential scans: {', '.join(seqs) or 'none'}")
            print("  " + plan.replace("\n", "\n  "))
        print("-" * 100)
        big = [(n, t) for n, t in seq_scans if t in ("human_task", "task_candidate", "process_instance")]
        print(f"Sequential scans of the big tables (human_task, task_candidate, process_instance): "
              f"{big or 'none'}")
    finally:
        db.dispose()
        if not args.keep:
            B.drop_db(DB_NAME)
    print(f"load average at the end: {B.loadavg()}")


if __name__ == "__main__":
    main()
