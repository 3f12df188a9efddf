"""The Delta Sharing wire format, without HTTP: predicates, file pruning, schemas, statistics.

* Predicates come from three places and share one tree (:class:`Cmp`, :class:`In`,
  :class:`IsNull`, :class:`And`, :class:`Or`, :class:`Not`): a share table's row filter and the
  protocol's ``predicateHints`` (a small SQL subset, :func:`parse_sql`) and its
  ``jsonPredicateHints`` (:func:`parse_json`).
* :func:`evaluate` decides, for one data file, whether a predicate holds for all its rows
  (True), for none (False) or maybe (None), from its partition values (exact) and its min/max
  statistics. Hints prune files whose result is False; the share's row filter, which may only
  name partition columns, keeps exactly the files whose result is True.
* :func:`sharing_schema` turns a Delta schema into the protocol's ``schemaString``;
  :func:`stats_json` and :func:`partition_value` serialise what the protocol's file lines carry.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa


class PredicateError(ValueError):
    """A predicate that cannot be parsed or names something it may not."""


# ---- the tree ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Col:
    name: str


@dataclass(frozen=True)
class Lit:
    value: Any  # str, int, float, bool or None; coerced to the column's type when evaluated


@dataclass(frozen=True)
class Cmp:
    op: str  # = <> < <= > >=
    column: str
    value: Any


@dataclass(frozen=True)
class In:
    column: str
    values: tuple[Any, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    column: str
    negated: bool = False


@dataclass(frozen=True)
class And:
    children: tuple[Any, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    child: Any


Predicate = Cmp | In | IsNull | And | Or | Not
_FLIP = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def columns_of(pred: Any) -> set[str]:
    if isinstance(pred, Cmp | In | IsNull):
        return {pred.column}
    if isinstance(pred, And | Or):
        return set().union(*(columns_of(c) for c in pred.children))
    if isinstance(pred, Not):
        return columns_of(pred.child)
    return set()


# ---- SQL subset ------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^']|'')*')
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<op><>|!=|<=|>=|==|=|<|>)
      | (?P<punct>[(),])
      | (?P<qid>"(?:[^"]|"")+"|`(?:[^`]|``)+`)
      | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "IN", "TRUE", "FALSE"}
MAX_PREDICATE_LENGTH = 10_000


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise PredicateError(f"cannot parse {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        # every alternative of _TOKEN is a named group, so a match always sets lastgroup
        # every alternative of _TOKEN is a named group, so a match always sets lastgroup
        raw = m.group(kind)  # type: ignore[arg-type]
        if kind == "str":
            out.append(("lit", raw[1:-1].replace("''", "'")))
        elif kind == "num":
            out.append(("lit", float(raw) if any(c in raw for c in ".eE") else int(raw)))
        elif kind == "op":
            out.append(("op", {"!=": "<>", "==": "="}.get(raw, raw)))
        elif kind == "punct":
            out.append((raw, raw))
        elif kind == "qid":
            q = raw[0]
            out.append(("id", raw[1:-1].replace(q + q, q)))
        elif raw.upper() in _KEYWORDS:
            word = raw.upper()
            if word in ("TRUE", "FALSE"):
                out.append(("lit", word == "TRUE"))
            else:
                out.append((word, word))
        else:
            out.append(("id", raw))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_PREDICATE_LENGTH:
            raise PredicateError("predicate is too long")
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def take(self, kind: str | None = None) -> tuple[str, Any]:
        if self.i >= len(self.toks):
            raise PredicateError("unexpected end of predicate")
        tok = self.toks[self.i]
        if kind is not None and tok[0] != kind:
            raise PredicateError(f"expected {kind}, found {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        if not self.toks:
            raise PredicateError("empty predicate")
        node = self.disjunction()
        if self.i != len(self.toks):
            raise PredicateError(f"unexpected {self.toks[self.i][1]!r}")
        return node

    def disjunction(self) -> Any:
        parts = [self.conjunction()]
        while self.peek() == "OR":
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conjunction(self) -> Any:
        parts = [self.negation()]
        while self.peek() == "AND":
            self.take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def negation(self) -> Any:
        if self.peek() == "NOT":
            self.take()
            return Not(self.negation())
        if self.peek() == "(":
            self.take()
            node = self.disjunction()
            self.take(")")
            return node
        return self.comparison()

    def comparison(self) -> Any:
        kind, left = self.take()
        if kind == "lit":  # 'foo' < col
            _, op = self.take("op")
            _, column = self.take("id")
            return Cmp(_FLIP[op], column, left)
        if kind != "id":
            raise PredicateError(f"expected a column, found {left!r}")
        nxt = self.peek()
        if nxt == "op":
            _, op = self.take()
            k, value = self.take()
            if k == "NULL":
                value = None
            elif k != "lit":
                raise PredicateError("comparisons are between a column and a constant")
            return Cmp(op, left, value)
        if nxt == "IS":
            self.take()
            negated = self.peek() == "NOT"
            if negated:
                self.take()
            self.take("NULL")
            return IsNull(left, negated)
        negated = nxt == "NOT"
        if negated:
            self.take()
        if self.peek() == "IN":
            self.take()
            self.take("(")
            values = [self.take("lit")[1]]
            while self.peek() == ",":
                self.take()
                values.append(self.take("lit")[1])
            self.take(")")
            return In(left, tuple(values), negated)
        raise PredicateError(f"expected a comparison after {left!r}")


def parse_sql(text: str) -> Any:
    """``col = 'x' AND (n >= 3 OR d IS NULL) AND c IN ('a', 'b')`` -> a predicate tree."""
    if not isinstance(text, str):
        raise PredicateError("a predicate must be a string")
    return _Parser(text).parse()


# ---- JSON predicates -----------------------------------------------------------------------
_JSON_CMP = {
    "equal": "=",
    "lessThan": "<",
    "lessThanOrEqual": "<=",
    "greaterThan": ">",
    "greaterThanOrEqual": ">=",
}
MAX_JSON_DEPTH = 64


def parse_json(text: str | Mapping[str, Any]) -> Any:
    """A ``jsonPredicateHints`` document (the protocol's op tree) -> a predicate tree."""
    try:
        doc = orjson.loads(text) if isinstance(text, str | bytes) else text
    except orjson.JSONDecodeError:
        raise PredicateError("jsonPredicateHints is not JSON") from None
    return _json_node(doc, 0)


def _json_leaf(node: Any) -> tuple[str, Any]:
    if not isinstance(node, Mapping):
        raise PredicateError("an operand must be an object")
    op = node.get("op")
    if op == "column" and isinstance(node.get("name"), str):
        return "col", node["name"]
    if op == "literal":
        return "lit", _typed_literal(node.get("value"), node.get("valueType"))
    raise PredicateError(f"operand op {op!r} must be column or literal")


def _typed_literal(value: Any, value_type: Any) -> Any:
    if value is None:
        return None
    try:
        if value_type in ("int", "long"):
            return int(value)
        if value_type in ("float", "double"):
            return float(value)
        if value_type == "bool":
            return value if isinstance(value, bool) else str(value).lower() == "true"
        if value_type == "date":
            return dt.date.fromisoformat(str(value))
    except ValueError:
        raise PredicateError(f"{value!r} is not a {value_type}") from None
    return str(value)


def _json_node(node: Any, depth: int) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise PredicateError("jsonPredicateHints is nested too deeply")
    if not isinstance(node, Mapping):
        raise PredicateError("a predicate must be an object")
    op = node.get("op")
    children = node.get("children") or []
    if not isinstance(children, list):
        raise PredicateError("children must be a list")
    if op in ("and", "or"):
        if len(children) < 2:
            raise PredicateError(f"{op} needs at least two children")
        parts = tuple(_json_node(c, depth + 1) for c in children)
        return And(parts) if op == "and" else Or(parts)
    if op == "not":
        if len(children) != 1:
            raise PredicateError("not needs one child")
        return Not(_json_node(children[0], depth + 1))
    if op == "isNull":
        if len(children) != 1:
            raise PredicateError("isNull needs one child")
        kind, name = _json_leaf(children[0])
        if kind != "col":
            raise PredicateError("isNull applies to a column")
        return IsNull(name)
    if op in _JSON_CMP:
        if len(children) != 2:
            raise PredicateError(f"{op} needs two children")
        (k1, v1), (k2, v2) = _json_leaf(children[0]), _json_leaf(children[1])
        sym = _JSON_CMP[op]
        if k1 == "col" and k2 == "lit":
            return Cmp(sym, v1, v2)
        if k1 == "lit" and k2 == "col":
            return Cmp(_FLIP[sym], v2, v1)
        raise PredicateError(f"{op} compares a column with a literal")
    raise PredicateError(f"unsupported op {op!r}")


# ---- evaluation against one file -------------------------------------------------------------
@dataclass
class FileEntry:
    """One data file of a table version (paths relative to the table root)."""

    path: str
    size: int
    partition: dict[str, str | None]
    num_records: int | None = None
    min_values: dict[str, Any] = field(default_factory=dict)
    max_values: dict[str, Any] = field(default_factory=dict)
    null_count: dict[str, int | None] = field(default_factory=dict)
    modification_time: int | None = None


# string statistics may be truncated prefixes: a max this long is not a safe upper bound
_STRING_STAT_LIMIT = 32


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def coerce(value: Any, t: pa.DataType | None) -> Any:
    """A literal, partition value or statistic as a Python value comparable for type ``t``."""
    if value is None:
        return None
    if t is None:
        return value
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return value if isinstance(value, str) else str(value)
    if pa.types.is_boolean(t):
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if pa.types.is_integer(t):
        if isinstance(value, bool):
            raise TypeError("bool is not an integer")
        return int(value) if not isinstance(value, float) else value
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return float(value)
    if pa.types.is_date(t):
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        return dt.date.fromisoformat(str(value)[:10])
    if pa.types.is_timestamp(t):
        if isinstance(value, dt.datetime):
            return _naive_utc(value)
        if isinstance(value, dt.date):
            return dt.datetime.combine(value, dt.time())
        return _naive_utc(parse_timestamp(str(value)))
    return value


T, F, N = "T", "F", "N"  # a row's SQL outcome: true, false, null
ANY = frozenset({T, F, N})
Outcomes = frozenset[str]


def _sql_and(a: str, b: str) -> str:
    if F in (a, b):
        return F
    return T if a == b == T else N


def _sql_or(a: str, b: str) -> str:
    if T in (a, b):
        return T
    return F if a == b == F else N


_SQL_NOT = {T: F, F: T, N: N}


def _cmp_outcomes(op: str, v: Any, mn: Any, mx: Any, nulls: int | None) -> Outcomes:
    """What ``col op v`` may yield for the rows of a file whose non-null values lie in
    [mn, mx] (None: unknown bound) and which has ``nulls`` NULLs (None: unknown)."""
    lo_known, hi_known = mn is not None, mx is not None
    if op == "=":
        can_t = not ((lo_known and v < mn) or (hi_known and v > mx))
        can_f = not (lo_known and hi_known and mn == mx == v)
    elif op == "<>":
        can_t = not (lo_known and hi_known and mn == mx == v)
        can_f = not ((lo_known and v < mn) or (hi_known and v > mx))
    elif op == "<":
        can_t = not (lo_known and mn >= v)
        can_f = not (hi_known and mx < v)
    elif op == "<=":
        can_t = not (lo_known and mn > v)
        can_f = not (hi_known and mx <= v)
    elif op == ">":
        can_t = not (hi_known and mx <= v)
        can_f = not (lo_known and mn > v)
    elif op == ">=":
        can_t = not (hi_known and mx < v)
        can_f = not (lo_known and mn >= v)
    else:
        return ANY
    out = {o for o, ok in ((T, can_t), (F, can_f), (N, nulls != 0)) if ok}
    return frozenset(out)


def _exact(op: str, actual: Any, v: Any) -> bool:
    if op == "=":
        return bool(actual == v)
    if op == "<>":
        return bool(actual != v)
    if op == "<":
        return bool(actual < v)
    if op == "<=":
        return bool(actual <= v)
    if op == ">":
        return bool(actual > v)
    return bool(actual >= v)


def outcomes(pred: Any, entry: FileEntry, types: Mapping[str, pa.DataType]) -> Outcomes:
    """The SQL outcomes (T, F, N) ``pred`` may have for the rows of one file: exact for
    partition columns, bounded by min/max/null-count statistics otherwise."""
    try:
        return _outcomes(pred, entry, types)
    except (TypeError, ValueError, decimal.InvalidOperation):
        return ANY


def evaluate(pred: Any, entry: FileEntry, types: Mapping[str, pa.DataType]) -> bool | None:
    """True: every row of the file satisfies ``pred``; False: none does; None: unknown."""
    found = outcomes(pred, entry, types)
    if found == {T}:
        return True
    return False if T not in found else None


def _combine(children: Sequence[Outcomes], op: Any) -> Outcomes:
    acc: set[str] = set(children[0])
    for child in children[1:]:
        acc = {op(a, b) for a in acc for b in child}
    return frozenset(acc)


def _outcomes(pred: Any, e: FileEntry, types: Mapping[str, pa.DataType]) -> Outcomes:
    if isinstance(pred, And | Or):
        kids = [_outcomes(c, e, types) for c in pred.children]
        return _combine(kids, _sql_and if isinstance(pred, And) else _sql_or)
    if isinstance(pred, Not):
        return frozenset(_SQL_NOT[o] for o in _outcomes(pred.child, e, types))
    column = pred.column
    if column not in types:
        return ANY
    t = types[column]
    if column in e.partition:  # one value for the whole file: an exact answer
        raw = e.partition[column]
        actual = None if raw in (None, "") else coerce(raw, t)
        if isinstance(pred, IsNull):
            return frozenset({T if (actual is None) != pred.negated else F})
        if actual is None:
            return frozenset({N})
        if isinstance(pred, In):
            values = [coerce(v, t) for v in pred.values]
            if any(v is not None and actual == v for v in values):
                return frozenset({F if pred.negated else T})
            if any(v is None for v in values):
                return frozenset({N})
            return frozenset({T if pred.negated else F})
        if pred.value is None:
            return frozenset({N})
        return frozenset({T if _exact(pred.op, actual, coerce(pred.value, t)) else F})
    nulls = e.null_count.get(column)
    n = e.num_records
    if isinstance(pred, IsNull):
        can_null = nulls != 0
        can_value = nulls is None or n is None or nulls < n
        yes, no = (F, T) if pred.negated else (T, F)
        return frozenset({o for o, ok in ((yes, can_null), (no, can_value)) if ok})
    if n is not None and nulls is not None and n > 0 and nulls == n:
        return frozenset({N})  # every value is NULL
    mn = coerce(e.min_values.get(column), t)
    mx = coerce(e.max_values.get(column), t)
    if isinstance(mx, str) and len(mx) >= _STRING_STAT_LIMIT:
        mx = None  # possibly truncated: not an upper bound
    if isinstance(mn, str) and len(mn) > _STRING_STAT_LIMIT:
        mn = mn[:_STRING_STAT_LIMIT]
    if isinstance(pred, In):
        eqs = [
            _cmp_outcomes("=", coerce(v, t), mn, mx, nulls) if v is not None else frozenset({N})
            for v in pred.values
        ]
        found = _combine(eqs, _sql_or)
        return frozenset(_SQL_NOT[o] for o in found) if pred.negated else found
    if pred.value is None:
        return frozenset({N})
    return _cmp_outcomes(pred.op, coerce(pred.value, t), mn, mx, nulls)


def matches_exactly(pred: Any, entry: FileEntry, types: Mapping[str, pa.DataType]) -> bool:
    """Every row of the file satisfies ``pred`` (how a share's row filter keeps files)."""
    return outcomes(pred, entry, types) == {T}


def prune(
    entries: Iterable[FileEntry],
    hints: Sequence[Any],
    types: Mapping[str, pa.DataType],
) -> list[FileEntry]:
    """The files that may hold rows satisfying every hint (best effort: unknown keeps)."""
    return [e for e in entries if all(T in outcomes(h, e, types) for h in hints)]


def limit_files(entries: Sequence[FileEntry], limit: int | None) -> list[FileEntry]:
    """The first files whose record counts reach ``limit`` (files without counts are kept)."""
    if limit is None:
        return list(entries)
    out: list[FileEntry] = []
    seen = 0
    for e in entries:
        if seen >= limit:
            break
        out.append(e)
        if e.num_records is not None:
            seen += e.num_records
    return out


# ---- reading add actions ---------------------------------------------------------------------
def file_entries(add_actions: pa.Table) -> list[FileEntry]:
    """``DeltaTable.get_add_actions(flatten=True)`` as :class:`FileEntry` objects."""
    cols = add_actions.column_names
    parts = [c.removeprefix("partition.") for c in cols if c.startswith("partition.")]
    mins = [c.removeprefix("min.") for c in cols if c.startswith("min.")]
    maxs = [c.removeprefix("max.") for c in cols if c.startswith("max.")]
    nulls = [c.removeprefix("null_count.") for c in cols if c.startswith("null_count.")]
    data = add_actions.to_pydict()
    out = []
    for i in range(add_actions.num_rows):
        out.append(
            FileEntry(
                path=data["path"][i],
                size=int(data["size_bytes"][i]),
                partition={p: partition_value(data[f"partition.{p}"][i]) for p in parts},
                num_records=data["num_records"][i] if "num_records" in data else None,
                min_values={c: data[f"min.{c}"][i] for c in mins},
                max_values={c: data[f"max.{c}"][i] for c in maxs},
                null_count={c: data[f"null_count.{c}"][i] for c in nulls},
                modification_time=data.get("modification_time", [None] * (i + 1))[i],
            )
        )
    out.sort(key=lambda e: e.path)
    return out


def partition_value(value: Any) -> str | None:
    """A partition value in the protocol's serialisation (strings; None for NULL)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return _naive_utc(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _stat(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return _naive_utc(value).isoformat(timespec="milliseconds") + "Z"
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return None
    return value


def stats_json(entry: FileEntry) -> str | None:
    """The protocol's per-file statistics string (``numRecords``, min/max, null counts)."""
    if entry.num_records is None:
        return None
    doc: dict[str, Any] = {"numRecords": entry.num_records}
    for key, values in (
        ("minValues", entry.min_values),
        ("maxValues", entry.max_values),
        ("nullCount", entry.null_count),
    ):
        kept = {c: _stat(v) for c, v in values.items() if v is not None}
        doc[key] = {c: v for c, v in kept.items() if v is not None}
    return orjson.dumps(doc).decode()


def file_id(table_id: str, path: str) -> str:
    """A stable id for a file of a table (the same file always has the same id)."""
    return hashlib.sha256(f"{table_id}\n{path}".encode()).hexdigest()[:32]


# ---- schemas and timestamps ------------------------------------------------------------------
def _sharing_type(t: Any) -> Any:
    if isinstance(t, str):
        return "timestamp" if t == "timestamp_ntz" else t
    if isinstance(t, dict):
        out = dict(t)
        if out.get("type") == "struct":
            out["fields"] = [_sharing_field(f) for f in out.get("fields", [])]
        for key in ("elementType", "keyType", "valueType"):
            if key in out:
                out[key] = _sharing_type(out[key])
        return out
    return t


def _sharing_field(f: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": f["name"],
        "type": _sharing_type(f["type"]),
        "nullable": f.get("nullable", True),
        "metadata": {k: v for k, v in (f.get("metadata") or {}).items() if k == "comment"},
    }


def sharing_schema(delta_schema_json: str) -> str:
    """The protocol's ``schemaString`` for a Delta schema: the protocol's ``timestamp`` has no
    time zone, so Delta's ``timestamp_ntz`` is sent as ``timestamp`` (clients read the Parquet
    values as they are); column metadata other than comments is left out."""
    doc = orjson.loads(delta_schema_json)
    return orjson.dumps(
        {"type": "struct", "fields": [_sharing_field(f) for f in doc.get("fields", [])]}
    ).decode()


def parse_timestamp(text: str) -> dt.datetime:
    """``2022-01-01T00:00:00Z``, ``2022-01-01 00:00:00[.fff]``, with an offset or none (UTC)."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty timestamp")
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 timestamp") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def ndjson(lines: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


__all__ = [
    "And",
    "Cmp",
    "FileEntry",
    "In",
    "IsNull",
    "Not",
    "Or",
    "PredicateError",
    "evaluate",
    "file_entries",
    "limit_files",
    "matches_exactly",
    "outcomes",
    "parse_json",
    "parse_sql",
    "parse_timestamp",
    "prune",
    "sharing_schema",
    "stats_json",
]
