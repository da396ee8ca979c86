"""The script sandbox: known escapes are refused clearly, ordinary scripts work, limits hold."""
from __future__ import annotations

import datetime
import decimal
import json
import re
import sys

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow

from engine.bpmn.parser import EmflowParser
from engine.bpmn.sandbox import (
    MODULES,
    SandboxEnvironment,
    SandboxViolation,
    ScriptTimeout,
    check_source,
    compile_sandboxed,
)
from engine.bpmn.scripting import ScriptEngine
from engine.errors import ScriptError


@pytest.fixture
def env():
    return SandboxEnvironment(time_limit=0.2)


def run(env, script: str, **data) -> dict:
    """Execute a script against task data and return the data afterwards."""
    env.execute(script, data)
    return data


# -- escapes ---------------------------------------------------------------------------------------

def test_dunder_import_is_refused_at_compile_time(env):
    with pytest.raises(SyntaxError, match=r'"__import__" is an invalid variable name'):
        run(env, "os = __import__('os')")


def test_subclasses_walk_is_refused(env):
    with pytest.raises(SyntaxError, match=r"__subclasses__.*invalid attribute name"):
        env.evaluate("().__class__.__base__.__subclasses__()", {})


def test_open_is_not_available(env):
    with pytest.raises(NameError, match="'open' is not defined"):
        env.evaluate("open('/etc/passwd').read()", {})


def test_attribute_walk_to_globals_is_refused(env):
    with pytest.raises(SyntaxError, match=r'"__globals__" is an invalid attribute name'):
        run(env, "def f():\n    pass\ng = f.__globals__")


def test_getattr_to_globals_is_refused(env):
    with pytest.raises(AttributeError, match=r'"__globals__" is an invalid attribute name'):
        run(env, "def f():\n    pass\ng = getattr(f, '__globals__')")


@pytest.mark.parametrize("script", ["import os", "from os import path", "import subprocess", "import sys"])
def test_import_of_a_module_outside_the_allow_list_is_refused(env, script):
    with pytest.raises(SandboxViolation, match=r"import of '\w+' is not allowed \(allowed: datetime, decimal"):
        run(env, script)


@pytest.mark.parametrize(("module", "attribute"), [("json", "codecs"), ("re", "functools"), ("datetime", "sys")])
def test_an_allowed_module_does_not_lead_to_other_modules(env, module, attribute):
    real = {"json": json, "re": re, "datetime": datetime}[module]
    assert hasattr(real, attribute), "the real module has it: the facade must hide it"
    with pytest.raises(SandboxViolation, match=f"module '{module}' has no allowed attribute '{attribute}'"):
        run(env, f"import {module}\nx = {module}.{attribute}")


def test_allowed_modules_are_read_only(env):
    with pytest.raises(SandboxViolation, match="module 'json' is read-only"):
        run(env, "import json\njson.loads = None")
    assert MODULES["json"].loads is json.loads


def test_str_format_cannot_reach_attributes(env):
    with pytest.raises(NotImplementedError, match="format"):
        env.evaluate("'{0.__class__}'.format(1)", {})


def test_generator_frames_are_refused(env):
    with pytest.raises(SyntaxError, match="gi_frame"):
        env.evaluate("(x for x in []).gi_frame", {})


def test_compile_errors_read_as_plain_text():
    problem = check_source("x = ().__class__.__base__", "exec")
    assert problem is not None
    assert not problem.startswith("(")
    assert '"__class__" is an invalid attribute name' in problem
    assert '"__base__" is an invalid attribute name' in problem


def test_check_source_accepts_ordinary_code():
    assert check_source("total = sum(x['amount'] for x in items)", "exec") is None
    assert check_source("total > 1000 and kind == 'big'", "eval") is None


# -- what scripts may do -----------------------------------------------------------------------------

def test_datetime_works(env):
    data = run(env, "import datetime\ndue = datetime.date(2026, 1, 30) + datetime.timedelta(days=3)")
    assert data["due"] == datetime.date(2026, 2, 2)


def test_math_works(env):
    assert run(env, "import math\nr = math.sqrt(16) + math.floor(2.7)")["r"] == 6.0


def test_decimal_works(env):
    data = run(env, "import decimal\nv = decimal.Decimal('2.345').quantize("
                    "decimal.Decimal('0.01'), rounding=decimal.ROUND_HALF_UP)")
    assert data["v"] == decimal.Decimal("2.35")


def test_re_works(env):
    data = run(env, "import re\nok = bool(re.fullmatch(r'\\d{6}', code))\nparts = re.split(',', 'a,b')", code="450100")
    assert data["ok"] is True and data["parts"] == ["a", "b"]


def test_json_works(env):
    data = run(env, "import json\nparsed = json.loads(raw)\ntext = json.dumps({'a': 1})", raw='{"x": [1, 2]}')
    assert data["parsed"] == {"x": [1, 2]} and data["text"] == '{"a": 1}'


def test_from_import_of_an_allowed_module_works(env):
    assert run(env, "from math import sqrt\ny = sqrt(9)")["y"] == 3.0


def test_builtins_for_aggregates_work(env):
    data = run(env, "s = sum(xs)\nlo = min(xs)\nhi = max(xs)\nordered = sorted(xs, reverse=True)", xs=[3, 1, 2])
    assert (data["s"], data["lo"], data["hi"], data["ordered"]) == (6, 1, 3, [3, 2, 1])


def test_dict_and_list_writes_work(env):
    data = run(env, "d = {}\nd['a'] = 1\nd.update(b=2)\nl = [0]\nl[0] = 5\nl.append(6)\ndel d['b']")
    assert data["d"] == {"a": 1} and data["l"] == [5, 6]


def test_augmented_assignment_of_names_works(env):
    data = run(env, "n += 1\nn *= 3\ns += '!'", n=1, s="hi")
    assert data["n"] == 6 and data["s"] == "hi!"


def test_augmented_assignment_of_items_is_refused_clearly(env):
    """A RestrictedPython rule: ``d[k] += 1`` must be written ``d[k] = d[k] + 1``."""
    with pytest.raises(SyntaxError, match="Augmented assignment of object items"):
        run(env, "d['a'] += 1", d={"a": 1})


def test_unpacking_loops_and_comprehensions_work(env):
    data = run(env, "a, b = 1, 2\nkeys = [k for k, v in sorted(d.items()) if v]\nfor i, x in enumerate(keys):\n"
                    "    last = (i, x)", d={"x": 1, "y": 0, "z": 2})
    assert (data["a"], data["b"], data["keys"], data["last"]) == (1, 2, ["x", "z"], (1, "z"))


def test_small_powers_repetitions_and_ranges_work(env):
    assert env.evaluate("2 ** 100", {}) == 2 ** 100
    assert env.evaluate("pow(3, 10 ** 9, 7)", {}) == pow(3, 10 ** 9, 7)
    assert env.evaluate("len([0] * 1000 + list(range(10)))", {}) == 1010


def test_expressions_see_task_data(env):
    assert env.evaluate("amount > 1000 and dept in ('it', 'finance')", {"amount": 5000, "dept": "it"}) is True


def test_helpers_are_offered_but_not_stored_in_task_data():
    env = SandboxEnvironment({"double": lambda n: n * 2}, time_limit=1)
    data = run(env, "import math\nx = double(4)\nf = lambda y: y")
    assert data == {"x": 8}


def test_task_data_may_not_shadow_a_global():
    env = SandboxEnvironment({"double": lambda n: n * 2}, time_limit=1)
    with pytest.raises(ValueError, match="double"):
        run(env, "x = 1", double=3)


# -- limits ------------------------------------------------------------------------------------------

def test_time_limit_stops_an_empty_infinite_loop(env):
    with pytest.raises(ScriptTimeout, match="time limit of 0.2 s"):
        run(env, "while True: pass")


def test_time_limit_stops_a_busy_loop(env):
    with pytest.raises(ScriptTimeout):
        run(env, "x = 0\nwhile True:\n    x += 1\n    y = [x] * 10")


def test_time_limit_stops_an_endless_condition(env):
    with pytest.raises(ScriptTimeout):
        env.evaluate("all(True for _ in iter(int, 1))", {})


def test_the_tracer_is_restored_after_a_script(env):
    before = sys.gettrace()
    with pytest.raises(ScriptTimeout):
        run(env, "while True: pass")
    run(env, "x = 1")
    assert sys.gettrace() is before


@pytest.mark.parametrize(("expression", "message"), [
    ("2 ** 100000", "exponent 100000 is too large"),
    ("[1] * 10 ** 7", "sequence repetition too large"),
    ("'ab' * 10 ** 6", "sequence repetition too large"),
    ("range(10 ** 9)", "range of 1000000000 items exceeds the limit"),
    ("1 << 100000", "shift 100000 is too large"),
    ("pow(2, 100000)", "exponent 100000 is too large"),
    ("(10 ** 1000) ** 10000", "power result too large"),
    ("'a'.ljust(10 ** 9)", "width too large"),
    ("'a'.zfill(10 ** 9)", "width too large"),
    ("'%1000000000d' % 5", "format width too large"),
    ("'%*d' % (10 ** 9, 5)", "format width too large or computed"),
    ("big + big", "concatenation too large"),
])
def test_size_guards_stop_huge_results(env, expression, message):
    with pytest.raises(SandboxViolation, match=message):
        env.evaluate(expression, {"big": [0] * 600_000})


def test_factorial_is_bounded_because_the_time_limit_cannot_stop_a_c_call(env):
    assert env.evaluate("math.factorial(5)", {"math": MODULES["math"]}) == 120
    with pytest.raises(SandboxViolation, match="factorial"):
        env.evaluate("math.factorial(10 ** 6)", {"math": MODULES["math"]})


@pytest.mark.parametrize("source", ["f'{1:>1000000000}'", "f'{1:{n}}'"])
def test_fstring_widths_are_checked_when_compiled(source):
    with pytest.raises(SyntaxError, match="format"):
        compile_sandboxed(source, "eval")


def test_ordinary_padding_formatting_and_addition_work(env):
    assert env.evaluate("['ab'.ljust(4), '%3d' % 7, f'{7:>3}', 'a' + 'b', [1] + [2], 1 + 2]", {}) == \
        ["ab  ", "  7", "  7", "ab", [1, 2], 3]


def test_size_guards_apply_to_augmented_assignment(env):
    with pytest.raises(SandboxViolation, match="sequence repetition too large"):
        run(env, "xs = [1]\nxs *= 10 ** 7")


# -- in a workflow: errors name the task -------------------------------------------------------------

BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="defs"
    targetNamespace="https://emflow.example/test">
  <bpmn:process id="sandboxed" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="calc"/>
    <bpmn:scriptTask id="calc" name="Compute total"><bpmn:script>{script}</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f1" sourceRef="calc" targetRef="gw"/>
    <bpmn:exclusiveGateway id="gw" name="Large amount?" default="f_small"/>
    <bpmn:sequenceFlow id="f_large" sourceRef="gw" targetRef="end">
      <bpmn:conditionExpression>{condition}</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_small" sourceRef="gw" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


def workflow(script: str = "total = 1", condition: str = "total &gt; 0") -> BpmnWorkflow:
    parser = EmflowParser()
    parser.add_bpmn_bytes(BPMN.format(script=script, condition=condition).encode(), "sandboxed.bpmn")
    return BpmnWorkflow(parser.get_spec("sandboxed"), script_engine=ScriptEngine(time_limit=0.2))


def test_a_harmless_workflow_runs_to_the_end():
    wf = workflow()
    wf.do_engine_steps()
    assert wf.is_completed() and wf.data == {"total": 1}


@pytest.mark.parametrize("script", [
    "import os",
    "x = ().__class__.__base__.__subclasses__()",
    "f = open('/etc/passwd')",
    "import json\nc = json.codecs",
    "while True: pass",
])
def test_an_escaping_script_task_raises_a_script_error_naming_the_task(script):
    wf = workflow(script=script)
    with pytest.raises(ScriptError) as caught:
        wf.do_engine_steps()
    assert "Script in task 'Compute total' (calc)" in caught.value.message
    assert caught.value.params["task"] == "calc"
    assert not wf.is_completed()


def test_a_refused_script_says_so():
    wf = workflow(script="import os")
    with pytest.raises(ScriptError, match=r"refused by the sandbox: import of 'os' is not allowed"):
        wf.do_engine_steps()


@pytest.mark.parametrize("condition", [
    "__import__('os').system('true')",
    "().__class__.__base__",
    "open('/etc/passwd')",
    "getattr(total, '__class__')",
])
def test_an_escaping_gateway_condition_raises_a_script_error_naming_the_gateway(condition):
    wf = workflow(condition=condition)
    with pytest.raises(ScriptError) as caught:
        wf.do_engine_steps()
    assert "Expression in task 'Large amount?' (gw)" in caught.value.message
    assert caught.value.params == {"task": "gw", "source": condition}
