"""``emflow edge run|simulate --config FILE``: added to the emflow console script by ``add_commands``."""
from __future__ import annotations

import argparse
import logging
import os
import sys


def _load(path: str):
    # Imported here so that ``emflow --help`` does not pay for pymodbus and asyncua.
    from .config import ConfigError, load

    try:
        return load(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        raise SystemExit(2) from exc


def cmd_run(args: argparse.Namespace) -> int:
    """Run the collector daemon."""
    from .daemon import run

    run(_load(args.config))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Serve the configured points from local simulators."""
    from .simulator import simulate

    simulate(_load(args.config))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a config file."""
    config = _load(args.config)
    print(f"{args.config}: ok ({len(config.devices)} devices, {len(config.points())} points)")
    return 0


def add_commands(subparsers) -> None:
    """Add the ``edge`` subcommand (run, simulate, check) to an argparse subparsers object."""
    edge = subparsers.add_parser("edge", help="the on-site collector daemon")
    sub = edge.add_subparsers(dest="edge_command", required=True)
    for name, func, help_ in (("run", cmd_run, "collect readings and send them to the platform"),
                              ("simulate", cmd_simulate, "serve the configured points from local simulators"),
                              ("check", cmd_check, "validate a config file")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", required=True, help="the gateway's TOML file")
        p.set_defaults(func=func)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m edge``), without the web app's imports."""
    logging.basicConfig(level=os.environ.get("EMFLOW_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="emflow")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["edge", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
