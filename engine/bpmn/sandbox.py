"""Sandboxed evaluation of BPMN scripts and expressions.

SpiffWorkflow runs scripts and conditions through bare ``exec``/``eval``. We compile them with
RestrictedPython (no underscore names, no attribute walks to ``__globals__`` or ``__subclasses__``),
offer only allow-listed builtins and module facades, guard the operators that can allocate without
bound, and stop a script that runs past its time limit.
"""
from __future__ import annotations

import ast
import builtins
import datetime
import decimal
import json
import math
import operator
import re
import sys
import time
from functools import lru_cache
from types import CodeType

from RestrictedPython import RestrictingNodeTransformer, compile_restricted, safe_builtins
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr,
)
from SpiffWorkflow.bpmn.script_engine import TaskDataEnvironment

MAX_SEQUENCE = 1_000_000
MAX_EXPONENT = 10_000
MAX_SHIFT = 10_000
MAX_POWER_BITS = 1_000_000  # a power's result size: the exponent limit alone lets (10**1000)**10000 through


class SandboxViolation(Exception):
    """Raised when a script tries something the sandbox does not allow."""


class ScriptTimeout(SandboxViolation):
    """Raised inside a script that ran past its time limit."""


class ModuleFacade:
    """A read-only view of an allow-listed module: only the named public attributes."""

    _guarded_writes = False  # never written through full_write_guard

    def __init__(self, module, names, **replacements):
        object.__setattr__(self, "_name", module.__name__)
        object.__setattr__(self, "_attrs", {n: getattr(module, n) for n in names} | replacements)

    def __getattr__(self, name):
        try:
            return self._attrs[name]
        except KeyError:
            raise SandboxViolation(f"module '{self._name}' has no allowed attribute '{name}'") from None

    def __setattr__(self, name, value):
        raise SandboxViolation(f"module '{self._name}' is read-only")

    def __repr__(self):
        return f"<module {self._name} (sandboxed)>"


def _guarded_factorial(n):
    if not isinstance(n, int) or n > 10_000:
        raise SandboxViolation("factorial() argument too large (limit 10000)")
    return math.factorial(n)


MODULES = {
    "datetime": ModuleFacade(datetime, ["date", "datetime", "time", "timedelta", "timezone"]),
    "math": ModuleFacade(math, [n for n in dir(math) if not n.startswith("_")], factorial=_guarded_factorial),
    "decimal": ModuleFacade(decimal, ["Decimal", "ROUND_HALF_UP", "ROUND_HALF_EVEN", "ROUND_DOWN",
                                      "ROUND_UP", "ROUND_FLOOR", "ROUND_CEILING", "InvalidOperation"]),
    "re": ModuleFacade(re, ["match", "fullmatch", "search", "sub", "subn", "split", "findall", "escape",
                            "compile", "IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S"]),
    "json": ModuleFacade(json, ["loads", "dumps", "JSONDecodeError"]),
}


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level != 0 or name not in MODULES:
        raise SandboxViolation(f"import of '{name}' is not allowed (allowed: {', '.join(sorted(MODULES))})")
    return MODULES[name]


def _check_size(value):
    if isinstance(value, (str, bytes, list, tuple)) and len(value) > MAX_SEQUENCE:
        raise SandboxViolation(f"result too large ({len(value)} items; limit {MAX_SEQUENCE})")
    return value


def _guarded_binop(op, left, right):
    """Run * ** << with limits, so one expression cannot exhaust memory or CPU."""
    if op == "**" and isinstance(left, int) and isinstance(right, int):
        if abs(right) > MAX_EXPONENT:
            raise SandboxViolation(f"exponent {right} is too large")
        if right > 0 and abs(left).bit_length() * right > MAX_POWER_BITS:
            raise SandboxViolation(f"power result too large (about {abs(left).bit_length() * right} bits)")
    if op == "<<" and isinstance(right, int) and right > MAX_SHIFT:
        raise SandboxViolation(f"shift {right} is too large")
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_SEQUENCE:
                raise SandboxViolation(f"sequence repetition too large ({len(seq) * n} items)")
    if op == "+" and isinstance(left, (str, bytes, list, tuple)) and isinstance(right, (str, bytes, list, tuple)) \
            and len(left) + len(right) > MAX_SEQUENCE:
        raise SandboxViolation(f"concatenation too large ({len(left) + len(right)} items)")
    if op == "%" and isinstance(left, (str, bytes)):
        _check_format_widths(left)
    return _check_size(_BINOPS[op](left, right))


_BINOPS = {"*": operator.mul, "**": operator.pow, "<<": operator.lshift, "+": operator.add, "%": operator.mod}
_WIDTH = re.compile(r"%[-+ #0]*(\*|\d+)")


def _check_format_widths(template) -> None:
    """'%10000000d' % x would allocate in one C call: refuse huge or computed widths."""
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    for match in _WIDTH.finditer(text):
        if match.group(1) == "*" or int(match.group(1)) > MAX_SEQUENCE:
            raise SandboxViolation("format width too large or computed")


_PADDING_METHODS = {"ljust", "rjust", "center", "zfill", "expandtabs"}


def _guarded_getattr(obj, name, default=None, getattr=getattr):
    """safer_getattr, plus width checks on the str methods that pad (a C call the time limit cannot stop)."""
    value = safer_getattr(obj, name, default, getattr)
    if isinstance(obj, (str, bytes)) and name in _PADDING_METHODS:
        def padded(width=8, *args):
            if not isinstance(width, int) or width > MAX_SEQUENCE:
                raise SandboxViolation(f"{name}() width too large")
            return value(width, *args)
        return padded
    return value

_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor,
}


def _inplacevar(op, left, right):
    if op in ("*=", "**=", "<<="):
        return _guarded_binop(op[:-1], left, right)
    return _check_size(_INPLACE[op](left, right))


def _guarded_pow(base, exp, mod=None):
    """The pow() builtin under the same limits as ``**`` (a modulus keeps the result small)."""
    if mod is None:
        return _guarded_binop("**", base, exp)
    return pow(base, exp, mod)


def _limited_range(*args):
    r = range(*args)
    if len(r) > MAX_SEQUENCE:
        raise SandboxViolation(f"range of {len(r)} items exceeds the limit of {MAX_SEQUENCE}")
    return r


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's policy plus guards on the operators that can allocate without bound."""

    _GUARDED = {ast.Mult: "*", ast.Pow: "**", ast.LShift: "<<", ast.Add: "+", ast.Mod: "%"}

    def visit_FormattedValue(self, node):
        """f-string format specs: constant widths within limits only (no {x:{n}} computed widths)."""
        spec = node.format_spec
        if spec is not None:
            for part in spec.values:
                if not isinstance(part, ast.Constant):
                    self.error(node, "computed format specifications are not allowed in f-strings")
                elif any(int(d) > MAX_SEQUENCE for d in re.findall(r"\d+", str(part.value))):
                    self.error(node, "format width too large in f-string")
        return self.node_contents_visit(node)

    def visit_BinOp(self, node):
        node = self.node_contents_visit(node)
        symbol = self._GUARDED.get(type(node.op))
        if symbol is None:
            return node
        call = ast.Call(func=ast.Name("_binop_", ast.Load()),
                        args=[ast.Constant(symbol), node.left, node.right], keywords=[])
        return ast.fix_missing_locations(ast.copy_location(call, node))


_SAFE_EXTRA = ["sum", "min", "max", "sorted", "reversed", "enumerate", "zip", "map", "filter", "any", "all",
               "list", "dict", "set", "frozenset", "tuple", "iter", "next", "hasattr"]

BUILTINS = dict(safe_builtins)
BUILTINS.update({name: getattr(builtins, name) for name in _SAFE_EXTRA})
BUILTINS.update({"range": _limited_range, "pow": _guarded_pow, "getattr": _guarded_getattr,
                 "__import__": _guarded_import})

GUARDS = {
    "__builtins__": BUILTINS,
    "_getattr_": _guarded_getattr,
    "_getitem_": operator.getitem,
    "_getiter_": iter,
    "_write_": full_write_guard,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_inplacevar_": _inplacevar,
    "_binop_": _guarded_binop,
}


@lru_cache(maxsize=4096)
def compile_sandboxed(source: str, mode: str) -> CodeType:
    """Compile a script (mode 'exec') or an expression (mode 'eval') under the restricted policy."""
    try:
        return compile_restricted(source, filename="<script>", mode=mode, policy=_Policy)
    except SyntaxError as exc:
        if isinstance(exc.msg, tuple):  # RestrictedPython reports all its findings as one tuple
            raise SyntaxError("; ".join(exc.msg)) from None
        raise


def check_source(source: str, mode: str) -> str | None:
    """Return why the source is refused at deploy time, or None if it compiles and imports nothing forbidden."""
    try:
        compile_sandboxed(source, mode)
    except SyntaxError as exc:
        return str(exc.msg if exc.msg else exc)
    for node in ast.walk(ast.parse(source, mode=mode)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            if name not in MODULES:
                return f"import of '{name}' is not allowed (allowed: {', '.join(sorted(MODULES))})"
    return None


def run_with_deadline(fn, seconds: float):
    """Call fn(); a script line executed after ``seconds`` raises ScriptTimeout."""
    deadline = time.monotonic() + seconds

    def check(frame, event, arg):
        if time.monotonic() > deadline:
            raise ScriptTimeout(f"script exceeded its time limit of {seconds:g} s")
        return check

    def tracer(frame, event, arg):
        # Only the script's own frames are traced, per opcode: a one-line `while True: pass`
        # emits no line events, and our trusted helpers should not pay for tracing.
        if frame.f_code.co_filename != "<script>":
            return None
        frame.f_trace_opcodes = True
        return check(frame, event, arg)

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        return fn()
    finally:
        sys.settrace(previous)


class SandboxEnvironment(TaskDataEnvironment):
    """A TaskDataEnvironment that compiles restricted code, with a time limit and helper globals."""

    def __init__(self, helpers: dict | None = None, time_limit: float = 2.0):
        super().__init__(dict(helpers or {}))
        self.time_limit = time_limit

    def _globals(self, external_context):
        g = dict(GUARDS)
        g.update(self.globals)
        g.update(external_context or {})
        return g

    def evaluate(self, expression, context, external_context=None):
        code = compile_sandboxed(expression, "eval")
        scope = self._globals(external_context)
        scope.update(context)
        return run_with_deadline(lambda: eval(code, scope), self.time_limit)  # noqa: S307 - restricted code

    def execute(self, script, context, external_context=None):
        self.check_for_overwrite(context, external_context or {})
        code = compile_sandboxed(script, "exec")
        injected = self._globals(external_context)
        context.update(injected)
        try:
            run_with_deadline(lambda: exec(code, context), self.time_limit)  # noqa: S102 - restricted code
        finally:
            for key in list(context):
                value = context[key]
                if key in injected or callable(value) or isinstance(value, ModuleFacade):
                    context.pop(key)
        return True
