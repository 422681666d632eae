"""CQL2 (text or JSON) to a bound SQL condition over a registered collection.

Parsing is the ``cql2`` library's (the reference CQL2 grammar); it yields CQL2 JSON, which
this module walks. Property names are looked up in the registry (unknown ones are a 400),
literals become bound parameters, and operand types are checked, so a filter can only ever
compare what the collection exposes.

Supported: basic CQL2 (and/or/not, comparisons, IS NULL), LIKE/BETWEEN/IN, CASEI,
property-to-property comparisons, arithmetic (+ - * /), the spatial predicates S_INTERSECTS,
S_EQUALS, S_DISJOINT, S_TOUCHES, S_WITHIN, S_OVERLAPS, S_CROSSES, S_CONTAINS (on the
collection's 2D indexed geometry), and all temporal predicates over instants and intervals
(the queryable ``datetime`` is each feature's own time or validity interval).
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import cql2

from service.core.errors import BadRequest
from service.features.binds import Binds
from service.features.crs import Crs
from service.features.params import parse_instant
from service.features.registry import Collection

Operand = tuple[str, str]  # (sql, kind)

_CMP = {"=": "=", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ARITH = {"+": "+", "-": "-", "*": "*", "/": "/", "%": "%", "div": "div", "^": "^"}
_SPATIAL = {
    "s_intersects": "ST_Intersects", "s_equals": "ST_Equals", "s_disjoint": "ST_Disjoint",
    "s_touches": "ST_Touches", "s_within": "ST_Within", "s_overlaps": "ST_Overlaps",
    "s_crosses": "ST_Crosses", "s_contains": "ST_Contains",
}
# CQL2 temporal predicates over intervals A=[as,ae] and B=[bs,be] (instants: start = end)
_TEMPORAL = {
    "t_after": "{as_} > {be}",
    "t_before": "{ae} < {bs}",
    "t_contains": "{as_} < {bs} AND {ae} > {be}",
    "t_disjoint": "({ae} < {bs} OR {as_} > {be})",
    "t_during": "{as_} > {bs} AND {ae} < {be}",
    "t_equals": "{as_} = {bs} AND {ae} = {be}",
    "t_finishedby": "{as_} < {bs} AND {ae} = {be}",
    "t_finishes": "{as_} > {bs} AND {ae} = {be}",
    "t_intersects": "{as_} <= {be} AND {ae} >= {bs}",
    "t_meets": "{ae} = {bs}",
    "t_metby": "{as_} = {be}",
    "t_overlappedby": "{as_} > {bs} AND {as_} < {be} AND {ae} > {be}",
    "t_overlaps": "{as_} < {bs} AND {ae} > {bs} AND {ae} < {be}",
    "t_startedby": "{as_} = {bs} AND {ae} > {be}",
    "t_starts": "{as_} = {bs} AND {ae} < {be}",
}
_NUMERIC = frozenset({"integer", "number"})
_SQL_TYPE = {"integer": "bigint", "number": "double precision", "string": "text",
             "boolean": "boolean", "datetime": "timestamptz", "date": "date"}
MAX_DEPTH = 50
MAX_NODES = 2_000
MAX_TEXT_NESTING = 64
MAX_JSON_NESTING = 128
# cql2-text tokens that matter for nesting: string literals (with '' inside), parentheses,
# commas, operator characters and words; everything else (numbers, spaces) is skipped
_TEXT_TOKEN = re.compile(r"'[^']*(?:''[^']*)*'?|[(),]|[-+*/%^=<>!|]|[A-Za-z_][A-Za-z0-9_.:]*")
_WORD_OPERATORS = frozenset({"not", "like", "in", "is", "between", "div"})
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]')


def parse(text: str, lang: str | None) -> dict[str, Any]:
    """Parse a filter in cql2-text (default) or cql2-json into CQL2 JSON."""
    lang = (lang or "cql2-text").lower()
    if len(text) > 20_000:
        raise BadRequest("filter is too long (over 20000 characters)")
    try:
        if lang in ("cql2-text", "cql-text"):  # GDAL 3.6 says cql-text for the same syntax
            if text_nesting(text) > MAX_TEXT_NESTING:
                raise BadRequest(
                    f"filter nests too deeply (over {MAX_TEXT_NESTING} levels of parentheses, "
                    "NOT, signs or chained operators); simplify it, e.g. use IN for a list of "
                    "values")
            expr = cql2.parse_text(text)
        elif lang in ("cql2-json", "cql-json"):
            if json_nesting(text) > MAX_JSON_NESTING:
                raise BadRequest(f"filter nests too deeply (over {MAX_JSON_NESTING} levels of "
                                 "JSON arrays and objects); simplify it")
            expr = cql2.parse_json(text)
        else:
            raise BadRequest(f"filter-lang {lang!r} is not supported; use cql2-text or "
                             "cql2-json")
        tree = expr.to_json()
    except BadRequest:
        raise
    except Exception as exc:  # the parser's own message says where and what it expected
        message = " ".join(str(exc).split())
        raise BadRequest(f"filter is not valid {lang}: {message[:400]}") from None
    if not isinstance(tree, dict) and not isinstance(tree, bool):
        raise BadRequest("filter must be a boolean expression")
    return tree


def text_nesting(text: str) -> int:
    """An upper bound on how deep the cql2 parser recurses on ``text``, in one linear pass.

    The parser (cql2, Rust) recurses once per parenthesis, per prefix operator (unary minus,
    NOT) and per operator of a chain it folds into a left-deep tree (``1+1+...``,
    ``1=1=...``), and overflows the thread's stack, killing the process, at about 1,500
    nested parentheses or 3,000 to 9,000 operators; its depth check comes only after
    parsing. So the depth is bounded here before the parser sees the text: a group's depth is
    its parent's depth at its opening parenthesis plus one, and every operator counts one more
    until a comma, AND or OR starts a new operand (the parser keeps AND and OR lists flat).
    Parentheses and words inside string literals do not count. Over-counting is harmless:
    the bound only has to stay far below the depth that overflows and far above any real
    filter's.
    """
    deepest = depth = ops = 0
    opened: list[tuple[int, int]] = []
    for match in _TEXT_TOKEN.finditer(text):
        token = match.group()
        first = token[0]
        if first == "'":
            continue
        if first == "(":
            opened.append((depth, ops))
            depth, ops = depth + ops + 1, 0
        elif first == ")":
            if opened:
                depth, ops = opened.pop()
        elif first == ",":
            ops = 0
        elif first.isalpha() or first == "_":
            word = token.lower()
            if word in ("and", "or"):
                ops = 0
            elif word in _WORD_OPERATORS:
                ops += 1
        else:
            ops += 1
        deepest = max(deepest, depth + ops)
    return deepest


def json_nesting(text: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped), in one
    linear pass: cql2 turns deep JSON into a deep expression tree, refused before parsing."""
    deepest = depth = 0
    for match in _JSON_TOKEN.finditer(text):
        first = match.group()[0]
        if first in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif first in "]}":
            depth -= 1
    return deepest


class Compiler:
    def __init__(self, collection: Collection, binds: Binds, filter_crs: Crs) -> None:
        self.c = collection
        self.binds = binds
        self.filter_crs = filter_crs
        self.nodes = 0

    # --- entry -------------------------------------------------------------------------
    def condition(self, node: Any, depth: int = 0) -> str:
        sql, kind = self.operand(node, depth)
        if kind not in ("boolean", "null"):
            raise BadRequest(f"filter must be a condition, not a {kind} value")
        return sql

    # --- walk --------------------------------------------------------------------------
    def operand(self, node: Any, depth: int) -> Operand:
        self.nodes += 1
        if depth > MAX_DEPTH or self.nodes > MAX_NODES:
            raise BadRequest("filter is too deeply nested or too large")
        if isinstance(node, bool):
            return ("TRUE" if node else "FALSE"), "boolean"
        if node is None:
            return "NULL", "null"
        if isinstance(node, int | float):
            if isinstance(node, float) and node.is_integer() and abs(node) < 2**53:
                return self.binds.add(int(node), "bigint"), "integer"
            return self.binds.add(node, "double precision"), "number"
        if isinstance(node, str):
            return self.binds.add(node, "text"), "string"
        if isinstance(node, list):
            raise BadRequest("a list is only allowed as the right side of IN")
        if not isinstance(node, dict):
            raise BadRequest(f"unexpected value in filter: {node!r}")
        if "property" in node:
            return self.prop(node["property"])
        if "timestamp" in node:
            return self.binds.add(parse_instant(node["timestamp"], "TIMESTAMP")[0],
                                  "timestamptz"), "datetime"
        if "date" in node:
            return self.binds.add(_date(node["date"]), "date"), "date"
        if "interval" in node:
            raise BadRequest("INTERVAL is only allowed in temporal predicates")
        if "bbox" in node or "type" in node:
            return self.geometry_literal(node), "geometry"
        if "op" in node:
            return self.op(str(node["op"]).lower(), node.get("args") or [], depth)
        raise BadRequest(f"unexpected element in filter: {json.dumps(node)[:200]}")

    def prop(self, name: str) -> Operand:
        if name in ("geometry", self.c.geometry_column):
            return self.c.filter_geom, "geometry"
        if name == "datetime" and self.c.temporal:
            start, _ = self.c.interval_sql
            return start, "datetime"
        if name == "id":
            return self.c.fid, self.c.id_type
        prop = self.c.props_by_name.get(name)
        if prop is None or not prop.queryable:
            raise BadRequest(f"unknown property {name!r} in filter; queryables of "
                             f"{self.c.id}: see /collections/{self.c.id}/queryables")
        return prop.expr, prop.type

    def op(self, op: str, args: list[Any], depth: int) -> Operand:
        d = depth + 1
        if op in ("and", "or"):
            if len(args) < 2:
                raise BadRequest(f"{op.upper()} needs at least two operands")
            parts = [self.condition(a, d) for a in args]
            return "(" + f" {op.upper()} ".join(parts) + ")", "boolean"
        if op == "not":
            self._arity(op, args, 1)
            return f"(NOT {self.condition(args[0], d)})", "boolean"
        if op in _CMP:
            self._arity(op, args, 2)
            left, right = self.comparable(args[0], args[1], op, d)
            return f"({left} {_CMP[op]} {right})", "boolean"
        if op == "isnull":
            self._arity(op, args, 1)
            return f"({self.operand(args[0], d)[0]} IS NULL)", "boolean"
        if op == "like":
            self._arity(op, args, 2)
            left, lk = self.operand(args[0], d)
            right, rk = self.operand(args[1], d)
            if lk != "string" or rk != "string":
                raise BadRequest("LIKE compares text with a text pattern")
            return f"({left} LIKE {right})", "boolean"
        if op == "between":
            self._arity(op, args, 3)
            value, kind = self.operand(args[0], d)
            low, lk = self.operand(args[1], d)
            high, hk = self.operand(args[2], d)
            if not {kind, lk, hk} <= _NUMERIC:
                raise BadRequest("BETWEEN works on numbers")
            return f"({value} BETWEEN {low} AND {high})", "boolean"
        if op == "in":
            self._arity(op, args, 2)
            if not isinstance(args[1], list) or not args[1]:
                raise BadRequest("IN needs a non-empty list")
            value, kind = self.operand(args[0], d)
            items = []
            for item in args[1]:
                sql, ik = self.operand(item, d)
                _check_kinds(kind, ik, "IN")
                items.append(sql)
            return f"({value} IN ({', '.join(items)}))", "boolean"
        if op == "casei":
            self._arity(op, args, 1)
            sql, kind = self.operand(args[0], d)
            if kind != "string":
                raise BadRequest("CASEI takes text")
            return f"lower({sql})", "string"
        if op in _ARITH:
            self._arity(op, args, 2)
            left, lk = self.operand(args[0], d)
            right, rk = self.operand(args[1], d)
            if lk not in _NUMERIC or rk not in _NUMERIC:
                raise BadRequest(f"{op} works on numbers")
            if op == "/":  # never divide by zero inside the database
                return f"({left}::double precision / NULLIF({right}, 0))", "number"
            if op == "%":
                return f"mod({left}::numeric, NULLIF({right}, 0)::numeric)", "number"
            if op == "div":
                return f"div({left}::numeric, NULLIF({right}, 0)::numeric)", "integer"
            if op == "^":
                return f"power({left}::double precision, {right})", "number"
            return f"({left} {op} {right})", "number" if "number" in (lk, rk) else "integer"
        if op in _SPATIAL:
            self._arity(op, args, 2)
            a, ak = self.operand(args[0], d)
            b, bk = self.operand(args[1], d)
            if ak != "geometry" or bk != "geometry":
                raise BadRequest(f"{op.upper()} compares two geometries")
            return f"{_SPATIAL[op]}({a}, {b})", "boolean"
        if op in _TEMPORAL:
            self._arity(op, args, 2)
            as_, ae = self.temporal(args[0], d)
            bs, be = self.temporal(args[1], d)
            return "(" + _TEMPORAL[op].format(as_=as_, ae=ae, bs=bs, be=be) + ")", "boolean"
        raise BadRequest(f"operator or function {op!r} is not supported by this server")

    # --- helpers -----------------------------------------------------------------------
    def comparable(self, a: Any, b: Any, op: str, depth: int) -> tuple[str, str]:
        left, lk = self.operand(a, depth)
        right, rk = self.operand(b, depth)
        # a plain string compared with a date-time property: read it as a timestamp
        # (GDAL sends `field > '2024-01-01T00:00:00Z'`)
        if lk in ("datetime", "date") and rk == "string" and isinstance(b, str):
            right, rk = self.binds.add(parse_instant(b, "filter value")[0], "timestamptz"), lk
        elif rk in ("datetime", "date") and lk == "string" and isinstance(a, str):
            left, lk = self.binds.add(parse_instant(a, "filter value")[0], "timestamptz"), rk
        _check_kinds(lk, rk, op)
        return left, right

    def temporal(self, node: Any, depth: int) -> tuple[str, str]:
        if isinstance(node, dict) and "interval" in node:
            ends = node["interval"]
            if not isinstance(ends, list) or len(ends) != 2:
                raise BadRequest("INTERVAL needs a start and an end")
            start = self._end(ends[0], lower=True, depth=depth)
            end = self._end(ends[1], lower=False, depth=depth)
            return start, end
        if isinstance(node, dict) and node.get("property") == "datetime" and self.c.temporal:
            return self.c.interval_sql
        sql, kind = self.operand(node, depth)
        if kind not in ("datetime", "date"):
            raise BadRequest(f"temporal predicates compare times, not a {kind} value")
        if kind == "date":
            sql = f"({sql})::timestamptz"
        return sql, sql

    def _end(self, value: Any, *, lower: bool, depth: int) -> str:
        if value == "..":
            return "'-infinity'::timestamptz" if lower else "'infinity'::timestamptz"
        if isinstance(value, str):
            start, end = parse_instant(value, "INTERVAL end")
            return self.binds.add(start if lower else end, "timestamptz")
        sql, kind = self.operand(value, depth)
        if kind not in ("datetime", "date"):
            raise BadRequest("INTERVAL ends must be times")
        return sql

    def geometry_literal(self, node: dict[str, Any]) -> str:
        srid = self.filter_crs.srid
        if "bbox" in node:
            box = node["bbox"]
            if not isinstance(box, list) or len(box) not in (4, 6) or not all(
                    isinstance(v, int | float) for v in box):
                raise BadRequest("BBOX needs 4 or 6 numbers")
            x1, y1, x2, y2 = (box[0], box[1], box[3], box[4]) if len(box) == 6 else box
            if self.filter_crs.north_first:
                x1, y1, x2, y2 = y1, x1, y2, x2
            if x1 > x2 or y1 > y2:
                raise BadRequest("BBOX lower corner must not exceed the upper corner")
            geom = (f"ST_MakeEnvelope({self.binds.add(x1, 'double precision')}, "
                    f"{self.binds.add(y1, 'double precision')}, "
                    f"{self.binds.add(x2, 'double precision')}, "
                    f"{self.binds.add(y2, 'double precision')}, {srid})")
        else:
            text = json.dumps(node)
            if len(text) > 1_000_000:
                raise BadRequest("geometry in the filter is too large")
            geom = f"ST_SetSRID(ST_GeomFromGeoJSON({self.binds.add(text, 'text')}), {srid})"
            if self.filter_crs.north_first:
                geom = f"ST_FlipCoordinates({geom})"
        if srid != 4326:
            geom = f"ST_Transform({geom}, 4326)"
        return f"ST_Force2D({geom})"

    @staticmethod
    def _arity(op: str, args: list[Any], n: int) -> None:
        if len(args) != n:
            raise BadRequest(f"{op.upper()} takes {n} argument(s), got {len(args)}")


def _check_kinds(a: str, b: str, op: str) -> None:
    if "null" in (a, b) or a == b or {a, b} <= _NUMERIC or {a, b} == {"datetime", "date"}:
        return
    raise BadRequest(f"cannot compare a {a} with a {b} ({op})")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise BadRequest(f"DATE {text!r} is not YYYY-MM-DD") from None


def compile_filter(tree: Any, collection: Collection, binds: Binds, filter_crs: Crs) -> str:
    return Compiler(collection, binds, filter_crs).condition(tree)

