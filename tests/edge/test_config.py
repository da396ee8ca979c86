"""Config loading: defaults, validation errors that name the line and the key, and the shipped examples."""
from pathlib import Path

import pytest

from edge.config import ConfigError, key_lines, load, parse

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "edge" / "examples").glob("*.toml"))

GOOD = """\
[gateway]
id = "gw-01"

[platform]
url = "https://platform.example"
token_env = "EMFLOW_GATEWAY_TOKEN"

[outbox]
path = "outbox.sqlite"

[devices.boiler]
protocol = "modbus_tcp"
host = "10.0.0.5"

[devices.boiler.points.level]
address = 3
data_type = "float32"
"""


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, source="site.toml")
    return info.value.errors


def test_examples_exist_and_validate():
    assert {p.name for p in EXAMPLES} >= {"plant-modbus.toml", "tailings-opcua.toml"}
    for path in EXAMPLES:
        config = load(path)
        assert config.devices and config.points()
        text = path.read_text(encoding="utf-8")
        assert "token =" not in text.replace("token_env", "").replace("token_file", "")  # no inline secrets
    plant = load(EXAMPLES[[p.name for p in EXAMPLES].index("plant-modbus.toml")])
    assert {d.protocol for d in plant.devices} == {"modbus_tcp", "modbus_rtu"}
    dam = load(EXAMPLES[[p.name for p in EXAMPLES].index("tailings-opcua.toml")])
    assert {d.mode for d in dam.devices} == {"poll", "subscribe"}


def test_defaults_and_relative_paths(tmp_path):
    config = parse(GOOD, base=tmp_path)
    assert config.gateway == "gw-01" and config.platform.transport == "http"
    assert config.outbox.path == tmp_path / "outbox.sqlite" and config.outbox.policy == "drop_oldest"
    assert config.health_path == tmp_path / "outbox.health.json"
    point = config.points()[0]
    assert (point.tag, point.register, point.byte_order, point.word_order, point.scale) == \
        ("boiler.level", "holding", "big", "big", 1.0)
    assert config.topic == "emflow/gw-01/telemetry"


def test_token_comes_from_env_or_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EMFLOW_GATEWAY_TOKEN", " secret-1 ")
    assert parse(GOOD).platform.token() == "secret-1"
    (tmp_path / "t").write_text("secret-2\n")
    config = parse(GOOD.replace('token_env = "EMFLOW_GATEWAY_TOKEN"', 'token_file = "t"'), base=tmp_path)
    assert config.platform.token() == "secret-2"


def test_every_transport_needs_a_credential():
    text = GOOD.replace('token_env = "EMFLOW_GATEWAY_TOKEN"\n', "")
    assert any("the http transport needs a credential" in e for e in errors(text))
    mqtt = text.replace('url = "https://platform.example"', 'url = "mqtts://broker.example"\ntransport = "mqtt"')
    assert any("the mqtt transport needs a credential" in e for e in errors(mqtt))


def test_bad_data_type_names_line_and_key():
    text = GOOD.replace('data_type = "float32"', 'data_type = "int8"')
    assert errors(text) == ["site.toml line 17: devices.boiler.points.level.data_type: 'int8' is not one of "
                            "'int16', 'uint16', 'int32', 'uint32', 'float32', 'float64', 'bool'"]


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('host = "10.0.0.5"', 'host = 5', "site.toml line 13: devices.boiler.host: 5 must be str"),
    ('host = "10.0.0.5"', '', "site.toml line 11: devices.boiler.host: missing (required)"),
    ('address = 3', 'address = -1', "site.toml line 16: devices.boiler.points.level.address: -1 must be at least 0"),
    ('address = 3', 'adress = 3', "site.toml line 16: devices.boiler.points.level.adress: unknown key"),
    ('path = "outbox.sqlite"', 'path = "o.sqlite"\npolicy = "drop_all"',
     "site.toml line 10: outbox.policy: 'drop_all' is not one of 'drop_oldest', 'drop_newest'"),
    ('token_env = "EMFLOW_GATEWAY_TOKEN"', 'token = "abc"',
     "site.toml line 6: platform.token: no inline secrets"),
    ('url = "https://platform.example"', 'url = "ftp://x"', "site.toml line 5: platform.url: 'ftp://x' must be"),
    ('protocol = "modbus_tcp"', 'protocol = "bacnet"', "site.toml line 12: devices.boiler.protocol: 'bacnet'"),
    ('data_type = "float32"', 'data_type = "float32"\nregister = "coil"',
     "site.toml line 17: devices.boiler.points.level.data_type: 'float32': a coil point is always 'bool'"),
    ('[devices.boiler.points.level]\naddress = 3\ndata_type = "float32"\n',
     'points.level = { address = 3, data_type = "real" }\n',
     "site.toml line 15: devices.boiler.points.level.data_type: 'real' is not one of"),
])
def test_errors_name_line_and_key(old, new, expected):
    found = errors(GOOD.replace(old, new))
    assert any(e.startswith(expected) for e in found), found


def test_all_errors_are_reported_at_once():
    text = GOOD.replace('id = "gw-01"', 'id = "gw 01"').replace('address = 3', 'address = 70000')
    found = errors(text)
    assert len(found) == 2
    assert found[0].startswith("site.toml line 2: gateway.id")
    assert found[1].startswith("site.toml line 16: devices.boiler.points.level.address: 70000 is beyond")


def test_opcua_and_rtu_specific_keys():
    text = GOOD.replace('protocol = "modbus_tcp"\nhost = "10.0.0.5"',
                        'protocol = "opcua"\nendpoint = "opc.tcp://10.0.0.9:4840/"\nmode = "push"')
    found = errors(text)
    assert "site.toml line 14: devices.boiler.mode: 'push' is not one of 'poll', 'subscribe'" in found
    assert any("devices.boiler.points.level.node: missing" in e for e in found)
    assert any("devices.boiler.points.level.address: OPC UA points use 'node'" in e for e in found)
    rtu = GOOD.replace('protocol = "modbus_tcp"\nhost = "10.0.0.5"',
                       'protocol = "modbus_rtu"\nserial_port = "/dev/ttyS1"\nparity = "X"')
    assert errors(rtu) == ["site.toml line 14: devices.boiler.parity: 'X' is not one of 'N', 'E', 'O'"]


def test_toml_syntax_error_and_missing_tables():
    assert errors("gateway = [")[0].startswith("site.toml: ")
    found = errors('[gateway]\nid = "x"\n')
    assert {e.split(": ")[1] for e in found} == {"platform", "outbox", "devices"}


def test_key_lines_handles_comments_quotes_and_inline_tables():
    lines = key_lines('# c\n[a."b.c"]  # x\nk = "v # not a comment"\nt = { x = 1, y = 2 }\n[[arr]]\nz = 1\n')
    assert lines[("a", "b.c")] == 2 and lines[("a", "b.c", "k")] == 3
    assert lines[("a", "b.c", "t", "y")] == 4 and lines[("arr", "z")] == 6


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.toml")
