"""Benchmark: service-bus gateway overhead per proxied call, and service-task round trips through the job queue.

1. A local REST service (tests/outside.py) is called N times directly with httpx, then N times through
   ``POST /api/v1/services/duty/QueryDuty`` on ``emflow serve`` (API-key check, permission, rate limit,
   schema validation, secret resolution, the http connector, and the call log written per call).
   Sequential latency (p50/p95) and concurrent throughput are reported with their ratios.
2. Service-task round trip: a process start → service task (``docnumber/Allocate``, so no outside latency)
   → user task. The figure is the time from the instance row's creation to the user task's row, i.e. the
   outbox write, the worker's wake-up, the connector call, and the result applied in its own transaction.

Runs on the embedded default (SQLite file, worker threads in the server) unless ``--pg`` is given
(PostgreSQL scratch database ``emflow_bench_gateway``; without Redis the server still uses its own threads).

    .venv/bin/python tests/bench/bench_gateway.py [--calls 500] [--clients 8] [--pg] [--quick]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchlib as B  # also puts the repository on sys.path
import httpx

from engine import bus, connectors, schema, secrets
from engine.connectors import Registry
from engine.db import Database
from engine.demo import deploy_all, load_org
from engine.deploy import Bundle, deploy
from engine.models import HumanTask, ProcessInstance
from tests.outside import OutsideSystem

PASSWORD = "Bench2026x"
ROUND_TRIP = "bench_service_roundtrip"
ROUND_TRIP_BPMN = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="{ROUND_TRIP}" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:serviceTask id="number" name="编号"><bpmn:extensionElements>
      <spiffworkflow:serviceTaskOperator id="docnumber/Allocate" resultVariable="doc">
        <spiffworkflow:parameters><spiffworkflow:parameter id="prefix" type="str" value="'桂应急测'"/>
        </spiffworkflow:parameters></spiffworkflow:serviceTaskOperator></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:userTask id="check" name="核对"><bpmn:extensionElements><spiffworkflow:properties>
      <spiffworkflow:property name="formJsonSchemaFilename" value="note.schema.json"/>
      <spiffworkflow:property name="assignee" value="initiator"/></spiffworkflow:properties>
    </bpmn:extensionElements></bpmn:userTask>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="number"/>
    <bpmn:sequenceFlow id="f2" sourceRef="number" targetRef="check"/>
    <bpmn:sequenceFlow id="f3" sourceRef="check" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>"""
NOTE = '{"type": "object", "title": "备注", "properties": {"note": {"type": "string", "title": "备注"}}}'


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def prepare(url: str, instance: Path, outside: OutsideSystem):
    """Schema, demo organisation, the round-trip process, the duty service and a consumer; returns its key."""
    config = B.make_config(url, instance)
    schema.upgrade(config)
    db = Database(config)
    registry = Registry.discover()
    with db.transaction() as s:
        load_org(s, PASSWORD)
        deploy_all(s, config, registry=registry)
        admin = B.load_user(s, "admin")
        deploy(s, Bundle(key=ROUND_TRIP, name="往返测试", files={f"{ROUND_TRIP}.bpmn": ROUND_TRIP_BPMN,
                                                                "note.schema.json": NOTE}), admin,
               registry.operations())
        secrets.put(s, config, "duty_token", "bench-token-123456")
        bus.save_service(s, registry, admin, "duty", "值班系统", "rest", {
            "base_url": outside.url, "auth": {"scheme": "bearer", "token": {"$secret": "duty_token"}},
            "operations": {"QueryDuty": {"method": "GET", "path": "/duty/{region}",
                                         "params": {"type": "object", "required": ["region"],
                                                    "properties": {"region": {"type": "string"}}}}}})
        connectors.configure(s, config, registry, admin, "http", {"allowed_hosts": [outside.host]})
        _row, key = bus.save_consumer(s, admin, "bench", ["duty/*"], rate_per_minute=100_000)
    return config, db, key


def serve(config, instance: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMFLOW_")}
    env.update(EMFLOW_DATABASE_URL=config.database_url, EMFLOW_INSTANCE_PATH=str(instance),
               EMFLOW_SECRET_KEY="bench-secret-key")
    log = open(instance / "serve.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen([str(Path(sys.executable).parent / "emflow"), "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/login", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit((instance / "serve.log").read_text()[-3000:])


def sequential(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append((time.perf_counter() - t) * 1000)
    return out


def concurrent(make_call, clients: int, per_client: int) -> float:
    """Calls per second with ``clients`` threads, each with its own connection."""
    def worker():
        call = make_call()
        for _ in range(per_client):
            call()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    return clients * per_client / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--round-trips", type=int, default=100)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of the embedded SQLite file")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.round_trips = 100, 30
    instance = Path(tempfile.mkdtemp(prefix="emflow-bench-gateway-"))
    url = B.create_db("emflow_bench_gateway") if args.pg else f"sqlite:///{instance / 'emflow.sqlite'}"
    with OutsideSystem() as outside:
        config, db, key = prepare(url, instance, outside)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = serve(config, instance, port)
        base = f"http://127.0.0.1:{port}"
        try:
            def direct_client():
                client = httpx.Client()
                return lambda: client.get(f"{outside.url}/duty/450100",
                                          headers={"Authorization": "Bearer x"}).raise_for_status()

            def gateway_client():
                client = httpx.Client(headers={"X-API-Key": key})
                return lambda: client.post(f"{base}/api/v1/services/duty/QueryDuty",
                                           json={"region": "450100"}).raise_for_status()

            for make in (direct_client, gateway_client):  # warm up both paths
                sequential(make(), 20)
            direct = sequential(direct_client(), args.calls)
            gateway = sequential(gateway_client(), args.calls)
            per_client = max(10, args.calls // args.clients)
            direct_rps = concurrent(direct_client, args.clients, per_client)
            gateway_rps = concurrent(gateway_client, args.clients, per_client)

            token = httpx.post(f"{base}/api/v1/auth/token", json={"username": "zhang.wei", "password": PASSWORD}
                               ).json()["access_token"]
            api = httpx.Client(headers={"Authorization": f"Bearer {token}"})
            started = []
            for _ in range(args.round_trips):  # one at a time: latency, not a queue building up
                instance_id = api.post(f"{base}/api/v1/process-instances",
                                       json={"process_key": ROUND_TRIP}).json()["id"]
                started.append(instance_id)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    with db.session() as s:
                        if s.query(HumanTask.id).filter(HumanTask.instance_id == instance_id).first():
                            break
                    time.sleep(0.005)
            with db.session() as s:
                created = dict(s.query(ProcessInstance.id, ProcessInstance.created_at)
                               .filter(ProcessInstance.id.in_(started)))
                reached = dict(s.query(HumanTask.instance_id, HumanTask.created_at)
                               .filter(HumanTask.instance_id.in_(started)))
            trips = [(reached[i] - created[i]).total_seconds() * 1000 for i in started if i in reached]
        finally:
            proc.terminate()
            proc.wait(10)
    store = "PostgreSQL" if args.pg else "SQLite (embedded default)"
    print(f"store: {store}; {args.calls} sequential calls, {args.clients} concurrent clients")
    print(f"direct   p50 {pct(direct, .5):6.2f} ms  p95 {pct(direct, .95):6.2f} ms  {direct_rps:7.0f} calls/s")
    print(f"gateway  p50 {pct(gateway, .5):6.2f} ms  p95 {pct(gateway, .95):6.2f} ms  {gateway_rps:7.0f} calls/s")
    print(f"gateway overhead per call (p50): {pct(gateway, .5) - pct(direct, .5):.2f} ms; "
          f"latency ratio {pct(gateway, .5) / pct(direct, .5):.1f}x; throughput ratio {gateway_rps / direct_rps:.2f}x")
    print(f"service-task round trip ({len(trips)}/{len(started)} reached the user task): "
          f"p50 {pct(trips, .5):.1f} ms  p95 {pct(trips, .95):.1f} ms  max {max(trips):.1f} ms")
    if args.pg:
        B.drop_db("emflow_bench_gateway")


if __name__ == "__main__":
    main()
