"""A whitelist over Python's syntax tree: the calls of a canvas program as plain values.

Only ``canvas = Canvas()`` and calls of ``canvas.set_global_description`` and
``canvas.add_local_description`` with literal arguments are accepted; every other construct is
refused with its place and a plain reason. Nothing is ever executed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from omost_schema.errors import CanvasCodeError
from omost_schema.limits import MAX_DETAILED_DESCRIPTIONS

GLOBAL_METHOD = "set_global_description"
LOCAL_METHOD = "add_local_description"

#: Argument names of each method, in Omost's signature order.
SIGNATURES: dict[str, tuple[str, ...]] = {
    GLOBAL_METHOD: ("description", "detailed_descriptions", "tags", "HTML_web_color_name"),
    LOCAL_METHOD: (
        "location",
        "offset",
        "area",
        "distance_to_viewer",
        "description",
        "detailed_descriptions",
        "tags",
        "atmosphere",
        "style",
        "quality_meta",
        "HTML_web_color_name",
    ),
}

Value = str | int | float | list[str]

# Words for refused constructs, so a person reading the error knows what was found.
_STATEMENT_WORDS: dict[type[ast.AST], str] = {
    ast.Import: "imports are not allowed",
    ast.ImportFrom: "imports are not allowed",
    ast.FunctionDef: "function definitions are not allowed",
    ast.AsyncFunctionDef: "function definitions are not allowed",
    ast.ClassDef: "class definitions are not allowed",
    ast.For: "loops are not allowed",
    ast.AsyncFor: "loops are not allowed",
    ast.While: "loops are not allowed",
    ast.If: "if statements are not allowed",
    ast.With: "with statements are not allowed",
    ast.Try: "try statements are not allowed",
    ast.Delete: "del statements are not allowed",
    ast.Global: "global statements are not allowed",
    ast.Nonlocal: "nonlocal statements are not allowed",
}
_EXPRESSION_WORDS: dict[type[ast.AST], str] = {
    ast.Lambda: "lambdas are not allowed",
    ast.JoinedStr: "f-strings are not allowed; write a plain string",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Name: "names cannot be used as values; write the value itself",
    ast.Attribute: "attribute access is not allowed",
    ast.Call: "calls are not allowed here",
    ast.Starred: "starred arguments are not allowed",
    ast.Subscript: "indexing is not allowed",
    ast.BinOp: "operators are not allowed; write the value itself",
    ast.BoolOp: "operators are not allowed; write the value itself",
    ast.Compare: "comparisons are not allowed",
    ast.IfExp: "conditional expressions are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Dict: "dictionaries are not allowed",
    ast.Set: "sets are not allowed",
    ast.Tuple: "tuples are not allowed; use a list of strings",
    ast.Constant: "a value on its own does nothing",
}


@dataclass
class Place:
    """A 1-based line and 1-based character column in the parsed code."""

    line: int
    column: int


@dataclass
class Argument:
    """One argument of a call: its value and where it and its list items are."""

    value: Value
    place: Place
    item_places: list[Place] = field(default_factory=list)


@dataclass
class CallSite:
    """One accepted method call of the program."""

    method: str
    place: Place
    arguments: dict[str, Argument]
    positional: bool = False


class _Places:
    """Convert ``ast`` positions (UTF-8 byte columns) to 1-based character columns."""

    def __init__(self, code: str) -> None:
        self._lines = code.split("\n")

    def of(self, node: ast.AST) -> Place:
        line = getattr(node, "lineno", 1)
        byte_column = getattr(node, "col_offset", 0)
        text = self._lines[line - 1] if 0 < line <= len(self._lines) else ""
        if text.isascii():
            return Place(line, byte_column + 1)
        prefix = text.encode("utf-8")[:byte_column].decode("utf-8", errors="replace")
        return Place(line, len(prefix) + 1)

    def error(self, node: ast.AST, message: str) -> CanvasCodeError:
        place = self.of(node)
        return CanvasCodeError(message, place.line, place.column)


def _refusal(node: ast.AST) -> str:
    for kind, words in {**_STATEMENT_WORDS, **_EXPRESSION_WORDS}.items():
        if isinstance(node, kind):
            return words
    return f"{type(node).__name__} is not allowed"


def _literal(node: ast.expr, places: _Places) -> Value:
    """Return the value of a literal argument: a string, a number or a list of strings."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise places.error(node, f"{value!r} is not allowed; expected a string, number or list")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = node.operand
        number = operand.value if isinstance(operand, ast.Constant) else None
        if isinstance(number, int | float) and not isinstance(number, bool):
            return -number if isinstance(node.op, ast.USub) else number
        raise places.error(node, "operators are not allowed; write the value itself")
    if isinstance(node, ast.List):
        if len(node.elts) > MAX_DETAILED_DESCRIPTIONS:
            raise places.error(node, f"a list may hold at most {MAX_DETAILED_DESCRIPTIONS} strings")
        items: list[str] = []
        for item in node.elts:
            if not (isinstance(item, ast.Constant) and isinstance(item.value, str)):
                raise places.error(item, f"list items must be strings; {_refusal(item)}")
            items.append(item.value)
        return items
    raise places.error(node, _refusal(node))


def _is_canvas_constructor(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Name)
        and statement.targets[0].id == "canvas"
        and isinstance(statement.value, ast.Call)
        and isinstance(statement.value.func, ast.Name)
        and statement.value.func.id == "Canvas"
        and not statement.value.args
        and not statement.value.keywords
    )


def _method_of(call: ast.Call, places: _Places) -> str:
    func = call.func
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
        raise places.error(
            call,
            "only canvas.set_global_description(...) and canvas.add_local_description(...)"
            " may be called",
        )
    if func.value.id != "canvas" or func.attr not in SIGNATURES:
        raise places.error(
            call,
            f"{func.value.id}.{func.attr}(...) is not allowed; only canvas.set_global_description"
            "(...) and canvas.add_local_description(...) may be called",
        )
    return func.attr


def _call_site(call: ast.Call, places: _Places, *, strict: bool) -> CallSite:
    method = _method_of(call, places)
    signature = SIGNATURES[method]
    arguments: dict[str, Argument] = {}
    for node in call.args:
        if isinstance(node, ast.Starred):
            raise places.error(node, "starred arguments are not allowed")
    if call.args and strict:
        raise places.error(call.args[0], "write arguments as keywords (name=value)")
    if len(call.args) > len(signature):
        raise places.error(call.args[len(signature)], f"{method} takes {len(signature)} arguments")
    for name, node in zip(signature, call.args, strict=False):
        arguments[name] = _argument(node, places)
    for keyword in call.keywords:
        if keyword.arg is None:
            raise places.error(keyword, "**keyword arguments are not allowed")
        if keyword.arg not in signature:
            raise places.error(
                keyword,
                f"{method} has no argument {keyword.arg!r}; expected {', '.join(signature)}",
            )
        if keyword.arg in arguments:
            raise places.error(keyword, f"argument {keyword.arg!r} is given twice")
        arguments[keyword.arg] = _argument(keyword.value, places)
    missing = [name for name in signature if name not in arguments]
    if missing:
        raise places.error(call, f"{method} is missing argument(s): {', '.join(missing)}")
    return CallSite(method, places.of(call), arguments, positional=bool(call.args))


def _argument(node: ast.expr, places: _Places) -> Argument:
    value = _literal(node, places)
    items = [places.of(item) for item in node.elts] if isinstance(node, ast.List) else []
    return Argument(value, places.of(node), items)


def program_calls(tree: ast.Module, code: str, *, strict: bool, max_calls: int) -> list[CallSite]:
    """Return the method calls of a canvas program, refusing anything else.

    Args:
        tree: The parsed module.
        code: Its text (to turn byte columns into character columns).
        strict: Refuse positional arguments.
        max_calls: Most method calls accepted.

    Returns:
        The calls in program order, each with all of its method's arguments.

    Raises:
        CanvasCodeError: For any statement or value outside the whitelist.
    """
    places = _Places(code)
    calls: list[CallSite] = []
    for index, statement in enumerate(tree.body):
        if _is_canvas_constructor(statement):
            if index != 0:
                raise places.error(statement, "canvas = Canvas() may only be the first statement")
            continue
        if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)):
            what = statement.value if isinstance(statement, ast.Expr) else statement
            if isinstance(statement, ast.Assign | ast.AugAssign | ast.AnnAssign):
                raise places.error(
                    statement, "assignments other than canvas = Canvas() are not allowed"
                )
            raise places.error(statement, f"only canvas method calls are allowed: {_refusal(what)}")
        if len(calls) >= max_calls:
            raise places.error(statement, f"too many calls: a canvas has at most {max_calls}")
        calls.append(_call_site(statement.value, places, strict=strict))
    return calls
