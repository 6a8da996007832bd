"""Band-math expressions from clients (TiTiler's ``expression=``), checked before numexpr sees them.

numexpr evaluates an expression string with Python's ``eval`` over its own node objects, so every
operation between two plain numbers runs in Python while the GIL is held: ``10**10**10`` computes
a ten-billion-digit integer and the process never answers again. Here the expression is parsed with
``ast`` and rebuilt from an allow-list: band names, numbers of bounded size, the arithmetic and
comparison operators and numexpr's element-wise functions. Length, node count and depth are
bounded; a power's exponent must be a small literal; every constant sub-expression is folded here,
in floats, and refused when it overflows or divides by zero. What numexpr then receives is the
canonical text of the checked tree (ASCII, one part per output band), never the client's string.
"""

from __future__ import annotations

import ast
import math
import operator
import re

from numexpr.expressions import functions as _NUMEXPR_FUNCTIONS

MAX_LENGTH = 512  # characters of the whole expression (all ';'-separated parts)
MAX_PARTS = 4  # output bands: an image has at most four (RGBA)
MAX_NODES = 200  # syntax-tree nodes over all parts
MAX_DEPTH = 32  # nesting of parentheses, calls and unary operators (a chain a+b+c is one level)
MAX_EXPONENT = 64  # largest |literal exponent| of '**'
MAX_INT = 2**53  # largest |integer| a literal or a folded integer constant may have (exact in float64)
MAX_FLOAT = 1e300  # largest |float| a literal or a folded constant may have

# numexpr's element-wise functions and their number of arguments (reductions, strings and complex
# numbers are left out: they change shapes or types the tiler cannot render).
_ARITY = {
    "abs": 1, "arccos": 1, "arccosh": 1, "arcsin": 1, "arcsinh": 1, "arctan": 1, "arctanh": 1,
    "ceil": 1, "cos": 1, "cosh": 1, "exp": 1, "expm1": 1, "floor": 1, "isfinite": 1, "isinf": 1,
    "isnan": 1, "log": 1, "log10": 1, "log1p": 1, "log2": 1, "round": 1, "sign": 1, "signbit": 1,
    "sin": 1, "sinh": 1, "sqrt": 1, "tan": 1, "tanh": 1, "trunc": 1,
    "arctan2": 2, "copysign": 2, "fmod": 2, "hypot": 2, "maximum": 2, "minimum": 2, "nextafter": 2,
    "where": 3,
}
FUNCTIONS: dict[str, int] = {name: n for name, n in _ARITY.items() if name in _NUMEXPR_FUNCTIONS}

_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%", ast.Pow: "**",
           ast.BitAnd: "&", ast.BitOr: "|"}
_UNARY = {ast.USub: "-", ast.UAdd: "+", ast.Invert: "~"}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_BAND = re.compile(r"b([1-9][0-9]{0,3})")
_TEXT = re.compile(r"[A-Za-z0-9_+\-*/%&|~<>=!().,; \t]*")

ALLOWED = ("band names b1..bN, numbers, + - * / % ** & | ~, comparisons (< <= > >= == !=) and the "
           "functions " + ", ".join(sorted(FUNCTIONS)))


class ExpressionError(ValueError):
    """An expression that is refused; the message names what is wrong."""


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _snippet(text: str, node: ast.AST) -> str:
    return _short(ast.get_source_segment(text, node) or type(node).__name__, 40)


class _Checker:
    """Walks one part's tree: allow-list, bounds, constant folding."""

    def __init__(self, text: str, bands: int, nodes: int) -> None:
        self.text, self.bands, self.nodes = text, bands, nodes
        self.uses_band = False

    def fail(self, node: ast.AST, why: str):
        raise ExpressionError(f"expression {_short(self.text)!r}: {why} (at {_snippet(self.text, node)!r})")

    def check(self, node: ast.AST, depth: int = 0) -> int | float | None:
        """Check ``node``; returns its value when it is a constant (folded in Python, bounded), else None."""
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.fail(node, f"more than {MAX_NODES} terms")
        if depth > MAX_DEPTH:
            self.fail(node, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, ast.Constant):
            return self._number(node)
        if isinstance(node, ast.Name):
            return self._band(node)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            value = self.check(node.operand, depth + 1)
            if value is None:
                return None
            if isinstance(node.op, ast.Invert):
                if not isinstance(value, int):
                    self.fail(node, "'~' of a non-integer constant")
                return ~value
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self._binary(node, depth)
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
                self.fail(node, "chained comparisons are not allowed: write (a < b) & (b < c)")
            left = self.check(node.left, depth + 1)
            right = self.check(node.comparators[0], depth + 1)
            return None if left is None or right is None else int(_COMPARE[type(node.ops[0])](left, right))
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        if isinstance(node, ast.BoolOp):
            self.fail(node, "'and' / 'or' are not allowed: use & and | between comparisons")
        if isinstance(node, ast.Attribute):
            self.fail(node, "attribute access is not allowed")
        if isinstance(node, ast.Subscript):
            self.fail(node, "indexing is not allowed")
        if isinstance(node, ast.BinOp):
            self.fail(node, f"operator {type(node.op).__name__} is not allowed; allowed: {ALLOWED}")
        self.fail(node, f"{type(node).__name__} is not allowed; allowed: {ALLOWED}")

    def _number(self, node: ast.Constant) -> int | float:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(node, "only numbers are allowed as constants (no strings, booleans or complex numbers)")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(node, "numbers must be finite (no nan or inf)")
        self._bounded(node, value)
        return value

    def _bounded(self, node: ast.AST, value: int | float) -> None:
        if isinstance(value, int) and abs(value) > MAX_INT:
            self.fail(node, "integer constant beyond +-2**53")
        if isinstance(value, float) and (not math.isfinite(value) or abs(value) > MAX_FLOAT):
            self.fail(node, f"constant beyond +-{MAX_FLOAT:g}")

    def _band(self, node: ast.Name) -> None:
        match = _BAND.fullmatch(node.id)
        if not match:
            if node.id in FUNCTIONS:
                self.fail(node, f"{node.id!r} is a function: call it, e.g. {node.id}(b1)")
            self.fail(node, f"unknown name {node.id!r}: the only names are the bands, and every part must use a "
                            f"band, b1..b{self.bands} (numbers must be finite: no nan or inf)")
        if int(match.group(1)) > self.bands:
            self.fail(node, f"the layer has {self.bands} band(s) (b1..b{self.bands}); there is no band {match.group(1)}")
        self.uses_band = True
        return None

    def _binary(self, node: ast.BinOp, depth: int) -> int | float | None:
        op = type(node.op)
        if op is ast.Pow:
            exponent = node.right
            literal = exponent.operand if isinstance(exponent, ast.UnaryOp) and type(exponent.op) in (
                ast.USub, ast.UAdd) else exponent
            if not (isinstance(literal, ast.Constant) and type(literal.value) in (int, float)):
                self.fail(node, "the exponent of '**' must be a number written out (e.g. b1**2)")
            if abs(literal.value) > MAX_EXPONENT:
                self.fail(node, f"exponent {literal.value} is too large: |exponent| must be at most {MAX_EXPONENT}")
        # a left-nested chain (b1+b2+b3...) stays at one level: only the right operand nests deeper
        left = self.check(node.left, depth)
        right = self.check(node.right, depth + 1)
        if op in (ast.Div, ast.Mod) and right == 0:
            self.fail(node, "division by zero")
        if left is None or right is None:
            return None
        # both sides are numbers: numexpr would compute this in Python, so it is computed here first
        # (in floats, so that nothing can grow without bound) and refused if it cannot be.
        try:
            if op is ast.Pow and left < 0 and not float(right).is_integer():
                self.fail(node, "a negative number to a fractional power is not a real number")
            if op in (ast.BitAnd, ast.BitOr):
                if not (isinstance(left, int) and isinstance(right, int)):
                    self.fail(node, "'&' and '|' need integers or comparisons")
                value = left & right if op is ast.BitAnd else left | right
            else:
                value = {ast.Add: float.__add__, ast.Sub: float.__sub__, ast.Mult: float.__mul__,
                         ast.Div: float.__truediv__, ast.Mod: float.__mod__,
                         ast.Pow: float.__pow__}[op](float(left), float(right))
                if isinstance(left, int) and isinstance(right, int) and op is not ast.Div and not (
                        op is ast.Pow and right < 0):
                    self._bounded(node, value)  # an integer result: bounded as an integer
                    value = int(value)
        except ZeroDivisionError:
            self.fail(node, "division by zero")
        except OverflowError:
            self.fail(node, f"constant beyond +-{MAX_FLOAT:g}")
        self._bounded(node, value)
        return value

    def _call(self, node: ast.Call, depth: int) -> None:
        if not isinstance(node.func, ast.Name):
            self.fail(node, "only plain function names can be called")
        name = node.func.id
        if name not in FUNCTIONS:
            self.fail(node, f"unknown function {name!r}; allowed: {', '.join(sorted(FUNCTIONS))}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            self.fail(node, f"{name}() takes plain arguments only")
        if len(node.args) != FUNCTIONS[name]:
            self.fail(node, f"{name}() takes {FUNCTIONS[name]} argument(s), not {len(node.args)}")
        for arg in node.args:
            self.check(arg, depth + 1)
        return None


def check_length(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise ExpressionError(f"{name} is {len(value)} characters long; at most {limit} are accepted")


def validate_expression(expression: str, bands: int) -> list[str]:
    """The checked parts of ``expression`` (one per output band) as canonical numexpr text; raises
    ExpressionError naming the problem. Every part must use at least one band."""
    check_length("expression", expression, MAX_LENGTH)
    if not expression.isascii() or not _TEXT.fullmatch(expression):
        bad = next(c for c in expression if not (c.isascii() and _TEXT.fullmatch(c)))
        raise ExpressionError(f"expression contains the character {bad!r} ({ord(bad):#06x}); only ASCII band math "
                              f"is accepted: {ALLOWED}")
    parts = [p.strip() for p in expression.split(";") if p.strip()]
    if not parts:
        raise ExpressionError("expression is empty")
    if len(parts) > MAX_PARTS:
        raise ExpressionError(f"expression has {len(parts)} parts; at most {MAX_PARTS} (one per output band)")
    out, nodes = [], 0
    for part in parts:
        try:
            tree = ast.parse(part, mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            why = getattr(exc, "msg", None) or type(exc).__name__
            raise ExpressionError(f"expression {_short(part)!r} is not valid band math: {why}") from None
        checker = _Checker(part, bands, nodes)
        checker.check(tree.body)
        nodes = checker.nodes
        if not checker.uses_band:
            raise ExpressionError(f"expression {_short(part)!r}: every part must use a band, b1..b{bands}")
        out.append(ast.unparse(tree.body))
    return out
