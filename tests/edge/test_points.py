"""Decoding every data type in every byte/word order, scale/offset, and the report-on-change decision."""
import math

import pytest

from edge.points import DATA_TYPES, Reporter, coerce, decode_registers, encode_registers, iso, scaled, unscaled

ORDERS = [("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")]
SAMPLES = {"int16": [-32768, -2, 0, 1234, 32767], "uint16": [0, 1, 40000, 65535],
           "int32": [-(2**31), -70000, 0, 123456789, 2**31 - 1], "uint32": [0, 70000, 2**32 - 1],
           "float32": [-1.5, 0.0, 23.5, 2.0**100], "float64": [-1e-300, 0.0, 1234.5678901234, 1e300],
           "bool": [False, True]}


@pytest.mark.parametrize("data_type", list(DATA_TYPES))
@pytest.mark.parametrize(("byte_order", "word_order"), ORDERS)
def test_every_type_round_trips_in_every_order(data_type, byte_order, word_order):
    for value in SAMPLES[data_type]:
        regs = encode_registers(value, data_type, byte_order, word_order)
        assert all(0 <= r <= 0xFFFF for r in regs)
        assert decode_registers(regs, data_type, byte_order, word_order) == value


@pytest.mark.parametrize(("byte_order", "word_order", "registers"), [
    ("big", "big", [0x3F80, 0x0000]),        # ABCD
    ("little", "big", [0x803F, 0x0000]),     # BADC
    ("big", "little", [0x0000, 0x3F80]),     # CDAB
    ("little", "little", [0x0000, 0x803F]),  # DCBA
])
def test_float32_one_in_the_four_orders(byte_order, word_order, registers):
    assert decode_registers(registers, "float32", byte_order, word_order) == 1.0
    assert encode_registers(1.0, "float32", byte_order, word_order) == registers


def test_known_integer_layouts():
    assert decode_registers([0xFFFE], "int16") == -2
    assert decode_registers([0xFEFF], "int16", byte_order="little") == -2
    assert decode_registers([0x0001, 0x0002], "uint32") == 0x00010002
    assert decode_registers([0x0002, 0x0001], "uint32", word_order="little") == 0x00010002
    assert decode_registers([0x4093, 0x4A45, 0x84FC, 0xD47C], "float64") == pytest.approx(1234.56789)
    assert decode_registers([0b100], "bool", bit=2) is True
    assert decode_registers([0b100], "bool", bit=1) is False


def test_wrong_register_count_is_an_error():
    with pytest.raises(ValueError, match="float32 needs 2"):
        decode_registers([1], "float32")


def test_scale_offset_and_their_inverse():
    assert scaled(215, 0.1) == pytest.approx(21.5)
    assert scaled(215, 1, -15) == 200 and isinstance(scaled(215, 1.0, 0.0), int)
    assert scaled(True, 10, 5) is True
    assert scaled(float("nan")) is None and scaled(float("inf")) is None
    assert unscaled(21.5, "int16", 0.1) == 215
    assert unscaled(1e9, "uint16") == 65535 and unscaled(-5, "uint16") == 0
    assert unscaled(3.25, "float32", 0.5, 1.0) == pytest.approx(4.5)


def test_coerce_opcua_values():
    assert coerce(3.9, "int16") == 3
    assert coerce(1, "bool") is True
    assert coerce("x", "float32") is None and coerce(None, "float64") is None
    assert coerce(math.inf, "float64") is None


def test_iso_timestamps_are_utc_with_milliseconds():
    from datetime import datetime, timedelta, timezone
    moment = datetime(2026, 11, 29, 16, 15, 2, 123456, tzinfo=timezone(timedelta(hours=8)))
    assert iso(moment) == "2026-11-29T08:15:02.123Z"


def test_deadband_compares_with_the_last_reported_value():
    r = Reporter(deadband=0.5, heartbeat=0)
    assert r.should_report(10.0, "good", 0)        # first sample
    assert not r.should_report(10.4, "good", 1)    # within the deadband
    assert not r.should_report(10.5, "good", 2)    # exactly the deadband is not beyond it
    assert r.should_report(10.6, "good", 3)        # slow drift adds up against the last *reported* value
    assert not r.should_report(10.2, "good", 4)
    assert r.should_report(10.2, "bad", 5)         # a quality change is always reported
    assert r.should_report(None, "offline", 6)
    assert r.should_report(10.2, "good", 7)        # back online


def test_zero_deadband_reports_every_change_and_bools_flip():
    r = Reporter(deadband=0, heartbeat=0)
    assert r.should_report(1, "good", 0)
    assert not r.should_report(1, "good", 1)
    assert r.should_report(2, "good", 2)
    b = Reporter(deadband=5, heartbeat=0)
    assert b.should_report(False, "good", 0)
    assert b.should_report(True, "good", 1)        # a deadband never hides a bool change
    assert not b.should_report(True, "good", 2)


def test_heartbeat_reports_an_unchanged_value_when_due():
    r = Reporter(deadband=1.0, heartbeat=60)
    assert r.should_report(5.0, "good", 100.0)
    assert not r.due(159.9) and not r.should_report(5.0, "good", 159.9)
    assert r.due(160.0) and r.should_report(5.0, "good", 160.0)
    assert not r.should_report(5.0, "good", 161.0)  # the period restarts at the last report
    assert r.should_report(5.0, "good", 220.0)
    assert not Reporter(heartbeat=0).due(1e9)
