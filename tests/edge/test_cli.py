"""The ``emflow edge`` commands: wired into the console script's parser, and ``check`` on good and bad files."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run([sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_emflow_parser_has_the_edge_commands():
    from webapp.cli import build_parser

    parser = build_parser()
    for command in ("run", "simulate", "check"):
        args = parser.parse_args(["edge", command, "--config", "site.toml"])
        assert args.config == "site.toml" and callable(args.func)


def test_check_accepts_the_example_and_names_line_and_key_of_an_error(tmp_path):
    example = ROOT / "edge" / "examples" / "plant-modbus.toml"
    ok = run("check", "--config", str(example))
    assert ok.returncode == 0 and "ok (2 devices" in ok.stdout
    bad = tmp_path / "site.toml"
    bad.write_text(example.read_text(encoding="utf-8").replace('data_type = "int16"', 'data_type = "int8"'),
                   encoding="utf-8")
    line = next(n for n, text in enumerate(bad.read_text(encoding="utf-8").splitlines(), 1) if "int8" in text)
    failed = run("check", "--config", str(bad))
    assert failed.returncode == 2
    assert failed.stderr.startswith(f"site.toml line {line}: devices.tank_farm.points.t101_temperature.data_type: "
                                    "'int8' is not one of")
