"""The ``emflow`` command: init, demo, deploy, serve, up, worker, scheduler, mqtt-bridge."""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import shlex
import signal
import string
import sys
import time
from pathlib import Path

import edge.cli
from engine import clock, schema
from engine.config import Config

log = logging.getLogger("emflow")


def _config() -> Config:
    try:
        return Config.from_env()
    except ValueError as exc:  # a bad EMFLOW_* value: say which, without a traceback
        raise SystemExit(f"emflow: {exc}") from None


def cmd_init(args) -> int:
    config = _config()
    schema.upgrade(config)
    print(f"Schema is up to date: {_safe_url(config.database_url)}")
    return 0


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _demo(config: Config, password: str, url: str | None = None) -> tuple[list, object]:
    from engine.connectors import Registry
    from engine.db import Database
    from engine.demo import USERS, deploy_all, load_org
    from engine.monitoring import DEMO_USERS, load_demo_gateway

    schema.upgrade(config)
    db = Database(config)
    try:
        with db.transaction() as s:
            users = load_org(s, password)
            deployed = deploy_all(s, config, users["admin"], Registry.discover())
            gateway = load_demo_gateway(s, config, users["admin"], url=url)
    finally:
        db.dispose()
    for key, version, created in deployed:
        print(f"  process {key}: version {version}{' (new)' if created else ''}")
    return [*USERS, *DEMO_USERS], gateway


def _program() -> str:
    """How the user called emflow (e.g. .venv/bin/emflow), so the printed commands run as they are."""
    called = sys.argv[0] if sys.argv and Path(sys.argv[0]).name == "emflow" else "emflow"
    return shlex.quote(called)


def _print_edge_demo(gateway, url: str) -> None:
    """Tell the user how to feed the demo gateway, or how to give it a new credential when its file is gone."""
    if gateway is None:
        return
    if not gateway.credential_ok:
        print(f"\nThe demo gateway {gateway.code} is registered, but {gateway.token_path} is missing or holds an old "
              "credential. A credential is shown only once, so it is not replaced here. To issue a new one (the old "
              f"one stops working), call POST {url}/api/v1/gateways/{gateway.gateway_id}/token as admin and save the "
              f"token it returns in {gateway.token_path} (mode 600).")
    config = shlex.quote(str(gateway.config_path))
    print(f"\nSensor demo: feed gateway {gateway.code} (simulated readings; alarms appear under 预警), "
          "each in its own terminal:")
    print(f"  {_program()} edge simulate --config {config}\n  {_program()} edge run --config {config}")
    if gateway.url and gateway.url != url.rstrip("/"):
        print(f"  ({gateway.config_path.name} sends to {gateway.url}: edit its [platform] url to match this server)")


def cmd_demo(args) -> int:
    config = _config()
    users, gateway = _demo(config, args.password)
    print(f"Demo organisation loaded: {len(users)} users, password as given.")
    _print_edge_demo(gateway, config.public_url)
    return 0


def cmd_deploy(args) -> int:
    from engine.connectors import Registry
    from engine.db import Database
    from engine.deploy import bundle_from_dir, deploy
    from engine.errors import DeployError

    config = _config()
    db = Database(config)
    registry = Registry.discover()
    status = 0
    try:
        for path in args.paths:
            try:
                with db.transaction() as s:
                    version, created = deploy(s, bundle_from_dir(Path(path), config.forms_dir), None,
                                              registry.operations())
                print(f"{path}: {version.process_key} version {version.version}"
                      f"{' deployed' if created else ' unchanged'} (sha256 {version.sha256[:12]})")
            except DeployError as exc:
                print(f"{path}: rejected: {exc.message}", file=sys.stderr)
                status = 1
    finally:
        db.dispose()
    return status


def _serve(config: Config, host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    from . import create_app

    embedded = config.embedded

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            # Embedded mode keeps one process: its job and timer threads must exist exactly once.
            self.cfg.set("workers", 1 if embedded else workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", 120)
            self.cfg.set("accesslog", "-" if os.environ.get("EMFLOW_ACCESS_LOG") else None)

        def load(self):
            return create_app(config, start_background=embedded)

    Server().run()


def cmd_serve(args) -> int:
    config = _config()
    mode = "embedded (SQLite, in-process jobs and timers)" if config.embedded else "PostgreSQL/Redis"
    print(f"emflow on http://{args.host}:{args.port}/ — {mode}", flush=True)
    _serve(config, args.host, args.port, args.workers, args.threads)
    return 0


def _password() -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(12))
        if any(c.isdigit() for c in candidate) and any(c.isalpha() for c in candidate):
            return candidate


def cmd_up(args) -> int:
    config = _config()
    password = args.password or _password()
    print(f"Setting up emflow in {config.instance_path} ({_safe_url(config.database_url)})")
    host = "localhost" if args.host in ("0.0.0.0", "127.0.0.1") else args.host  # noqa: S104 - display only
    # Where the demo gateway's collector sends: EMFLOW_PUBLIC_URL if set, else the address served here.
    local = "127.0.0.1" if args.host in ("0.0.0.0", "127.0.0.1", "localhost") else args.host  # noqa: S104
    url = config.public_url if os.environ.get("EMFLOW_PUBLIC_URL") else f"http://{local}:{args.port}"
    users, gateway = _demo(config, password, url=url)
    print(f"\nemflow is starting at http://{host}:{args.port}/\n\nDemo logins (password: {password}):")
    for username, name, title, *_rest in users:
        print(f"  {username:<12} {name}  {title}")
    _print_edge_demo(gateway, url)
    print(flush=True)
    _serve(config, args.host, args.port, args.workers, args.threads)
    return 0


def cmd_worker(args) -> int:
    from redis import Redis
    from rq import Queue, SimpleWorker

    config = _config()
    if config.embedded:
        print("emflow worker needs EMFLOW_REDIS_URL (embedded mode runs jobs inside emflow serve)", file=sys.stderr)
        return 2
    connection = Redis.from_url(config.redis_url)
    # Jobs run in this process (no fork per job), so database connections are reused between jobs.
    # A worker that dies mid-job leaves the job's lease to expire; the scheduler then relays it again.
    SimpleWorker([Queue(args.queue, connection=connection)], connection=connection).work(with_scheduler=False)
    return 0


def cmd_scheduler(args) -> int:
    from redis import Redis
    from rq import Queue

    from engine.connectors import Registry
    from engine.db import Database
    from engine.jobs import relay, scheduler_pass

    config = _config()
    if config.embedded:
        print("emflow scheduler needs EMFLOW_REDIS_URL (embedded mode schedules inside emflow serve)",
              file=sys.stderr)
        return 2
    clock.install()
    db = Database(config)
    registry = Registry.discover()
    queue = Queue(args.queue, connection=Redis.from_url(config.redis_url))
    stop = False

    def _stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"emflow scheduler: relaying jobs to RQ queue '{args.queue}', firing timers, task timeouts, alarm delays "
          "and OA polls", flush=True)
    while not stop:
        try:
            relay(db, config, queue)
        except Exception:  # noqa: BLE001 - the loop outlives any one failure; it is logged
            log.exception("relaying jobs failed")
        scheduler_pass(db, config, registry)
        time.sleep(config.scheduler_interval)
    db.dispose()
    return 0


def cmd_mqtt_bridge(args) -> int:
    import threading

    from engine.db import Database
    from engine.mqttbridge import Bridge

    config = _config()
    clock.install()
    db = Database(config)
    try:
        # Credentials come from the environment only: a command line is visible to every user of the host.
        bridge = Bridge(db, config, args.broker, topic_filter=args.topic, client_id=args.client_id,
                        username=os.environ.get("EMFLOW_MQTT_USERNAME", ""),
                        password=os.environ.get("EMFLOW_MQTT_PASSWORD", ""), ca_file=args.ca_file,
                        stats_interval=args.stats_interval)
    except ValueError as exc:
        print(f"emflow mqtt-bridge: {exc}", file=sys.stderr)
        db.dispose()
        return 2
    # The bridge runs in its own thread so the signal handler (main thread) never runs inside its locks.
    worker = threading.Thread(target=bridge.run, name="mqtt-bridge")

    def _stop(*_):
        bridge.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"emflow mqtt-bridge: {args.broker} topic {args.topic} client id {args.client_id} → "
          f"{_safe_url(config.database_url)}", flush=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.5)
    db.dispose()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emflow", description="emflow BPMN workflow platform")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create or upgrade the database schema").set_defaults(func=cmd_init)
    p = sub.add_parser("demo", help="load the demo organisation and deploy every process")
    p.add_argument("--password", required=True, help="password for every demo user")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("deploy", help="deploy process folders (processes/<key>/)")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_deploy)
    for name, func, help_ in (("serve", cmd_serve, "run the web server"),
                              ("up", cmd_up, "init, load the demo, and serve (the quick start)")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=5000)
        p.add_argument("--workers", type=int, default=max(2, (os.cpu_count() or 1) * 2))
        p.add_argument("--threads", type=int, default=8)
        if name == "up":
            p.add_argument("--password", help="password for the demo users (default: a random one, printed)")
        p.set_defaults(func=func)
    for name, func, help_ in (("worker", cmd_worker, "run an RQ worker for service-task jobs"),
                              ("scheduler", cmd_scheduler, "relay jobs to RQ and fire due timers")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--queue", default="emflow")
        p.set_defaults(func=func)
    p = sub.add_parser("mqtt-bridge", help="ingest edge telemetry from an MQTT broker "
                                           "(EMFLOW_MQTT_USERNAME / EMFLOW_MQTT_PASSWORD for the broker login)")
    p.add_argument("--broker", required=True, help="mqtt://host[:port] or mqtts://host[:port] (TLS)")
    p.add_argument("--topic", default="emflow/+/telemetry", help="subscription; its '+' level is the gateway code")
    p.add_argument("--client-id", default="emflow-mqtt-bridge",
                   help="fixed, so the broker keeps the session and queues messages while the bridge is down")
    p.add_argument("--ca-file", default=None, help="CA certificate for mqtts (default: the system's)")
    p.add_argument("--stats-interval", type=float, default=60.0, help="seconds between count log lines")
    p.set_defaults(func=cmd_mqtt_bridge)
    edge.cli.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("EMFLOW_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
