"""Running queries: parameters bound, governed tables made readable, DuckDB under limits.

Statements run in a DuckDB database of their own that cannot touch files except the
lakehouse's (``enable_external_access`` off, ``allowed_directories`` = the lakehouse root,
configuration locked, Python replacement scans off), each on a fresh cursor that a timer
interrupts at the time limit. The tables a query reads are registered on that cursor under
generated names, and the query's table references are rewritten to them in sqlglot's tree:

* a table without PII columns becomes a view over its (pruned) Parquet files;
* a table with PII columns is read, then passed through ``ColumnProtector.reveal`` (decrypted
  for a caller with UNMASK or ownership, masked otherwise) and registered as an Arrow table,
  so filters, joins and aggregates only ever see what the caller may see.

Parameters (``:name`` and ``?``) become DuckDB prepared-statement parameters; their values are
never part of the SQL text.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import heapq
import re
import threading
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from stratus.catalog.errors import InvalidArgument
from stratus.catalog.registry import TableSpec
from stratus.engine import LocalEngine, TableScan
from stratus.engine.local import duck_type, io_failure
from stratus.lakehouse.storage import Storage, unavailable
from stratus.lakehouse.tables import Lakehouse
from stratus.sql.errors import SqlExecutionError, SqlTimeout
from stratus.tables.protect import ColumnProtector

Scalar = str | int | float | bool | None
_USER_ERRORS = (
    duckdb.BinderException,
    duckdb.CatalogException,
    duckdb.ConversionException,
    duckdb.InvalidInputException,
    duckdb.OutOfRangeException,
    duckdb.ParserException,
    duckdb.NotImplementedException,
    duckdb.TypeMismatchException,
    duckdb.ConstraintException,
    duckdb.PermissionException,
    duckdb.InvalidTypeException,
    duckdb.DataError,
)
BATCH_ROWS = 65_536
# execute() + Arrow (a prepared statement, run once) is about twice as fast here as sql() +
# Arrow, which DuckDB recommends in this warning; the extra copy it mentions is cheap
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---- the database -----------------------------------------------------------------------------
def secured_database(storage: Storage) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that can read the lakehouse's files and nothing else."""
    db = duckdb.connect(":memory:")
    if storage.is_local:
        root = storage.local_path(storage.root).rstrip("/") + "/"
        db.execute(f"SET allowed_directories = [{_sql_str(root)}]")
    db.execute("SET enable_external_access = false")
    db.execute("SET autoinstall_known_extensions = false")
    db.execute("SET autoload_known_extensions = false")
    db.execute("SET GLOBAL TimeZone = 'UTC'")
    db.execute("SET GLOBAL python_enable_replacements = false")
    db.execute("SET GLOBAL parquet_metadata_cache = true")
    db.execute("SET lock_configuration = true")
    return db


class Watchdog:
    """One thread that interrupts statements whose time is up (cheaper than a timer thread
    per statement)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, Run]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None

    def watch(self, run: Run) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._due, (run.deadline, self._seq, run))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="sql-watchdog")
                self._thread.daemon = True
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        with self._cond:
            while True:
                while self._due and self._due[0][2].closed:
                    heapq.heappop(self._due)
                if not self._due:
                    self._cond.wait(timeout=60)
                    if not self._due:
                        self._thread = None
                        return
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(timeout=wait)
                    continue
                _, _, run = heapq.heappop(self._due)
                run._interrupt()


WATCHDOG = Watchdog()


class Run:
    """One statement's cursor and time limit. When the limit passes, the watchdog interrupts
    whatever DuckDB is doing; every later step sees the deadline too."""

    def __init__(self, db: duckdb.DuckDBPyConnection, lock: threading.Lock, timeout: float):
        with lock:
            self.con = db.cursor()
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.timed_out = False
        self.closed = False
        self.names: dict[str, str] = {}  # generated relation name -> what to call it in errors
        WATCHDOG.watch(self)

    def _interrupt(self) -> None:
        if not self.closed:
            self.timed_out = True
            with contextlib.suppress(duckdb.Error):
                self.con.interrupt()

    def close(self) -> None:
        self.closed = True
        self.con.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self) -> None:
        if self.timed_out or time.monotonic() >= self.deadline:
            self.timed_out = True
            raise self._timeout()

    def _timeout(self) -> SqlTimeout:
        return SqlTimeout(
            f"the statement ran longer than {self.timeout:g} s and was cancelled "
            "(STRATUS_SQL_TIMEOUT_SECONDS)"
        )

    def _error(self, exc: duckdb.Error) -> Exception:
        if isinstance(exc, duckdb.InterruptException) or self.timed_out:
            return self._timeout()
        if io_failure(exc):  # the object store is down: 503 (StorageError), not a user error
            return unavailable("cannot read table files", exc)
        if isinstance(exc, _USER_ERRORS):
            message = str(exc).split("\n\nLINE ")[0].strip()
            for generated, shown in self.names.items():
                message = message.replace(generated, shown)
            return SqlExecutionError(message, parameter="statement")
        return exc

    def _narrow(self, table: pa.Table) -> pa.Table:
        """DuckDB's HUGEINT (``sum`` of integers) arrives as decimal(38,0): as bigint, as in
        Databricks, when every value fits."""
        for i, f in enumerate(table.schema):
            if pa.types.is_decimal(f.type) and f.type.precision == 38 and f.type.scale == 0:
                try:
                    narrowed = pc.cast(table.column(i), pa.int64())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    continue
                table = table.set_column(i, pa.field(f.name, pa.int64()), narrowed)
        return table

    def execute(self, sql: str) -> None:
        """Internal statements (views over files): no parameters, no results."""
        try:
            self.con.execute(sql)
        except duckdb.Error as exc:
            raise self._error(exc) from None

    def table(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        self.check()
        try:
            result = self.con.execute(sql, dict(params) if params else None)
            return self._narrow(result.to_arrow_table())
        except duckdb.Error as exc:
            raise self._error(exc) from None

    def rows(
        self, sql: str, params: Mapping[str, Any] | None, max_rows: int
    ) -> tuple[pa.Table, bool]:
        """At most ``max_rows`` rows, and whether there were more."""
        self.check()
        try:
            result = self.con.execute(sql, dict(params) if params else None)
            reader = result.to_arrow_reader(min(BATCH_ROWS, max_rows + 1))
            if reader is None:  # a statement without a result set
                return pa.table({}), False
            batches, count = [], 0
            for batch in reader:
                batches.append(batch)
                count += batch.num_rows
                if count > max_rows:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema)
        except duckdb.Error as exc:
            raise self._error(exc) from None
        table = self._narrow(table)
        if table.num_rows > max_rows:
            return table.slice(0, max_rows), True
        return table, False

    def register(self, name: str, data: Any, shown: str) -> None:
        self.con.register(name, data)
        self.names[name] = shown


# ---- parameters -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameters:
    named: dict[str, tuple[Scalar, str | None]] = field(default_factory=dict)  # name -> (v, type)
    positional: list[Scalar] = field(default_factory=list)

    @classmethod
    def of(cls, raw: Any) -> Parameters:
        """``{"name": value}``, ``[value, ...]`` (for ``?``) or Databricks'
        ``[{"name": ..., "value": ..., "type": ...}]``."""
        if raw is None:
            return cls()
        if isinstance(raw, Mapping):
            return cls(named={str(k): (_scalar(k, v), None) for k, v in raw.items()})
        if isinstance(raw, list):
            if raw and all(isinstance(p, Mapping) for p in raw):
                named: dict[str, tuple[Scalar, str | None]] = {}
                for p in raw:
                    if not isinstance(p.get("name"), str) or not p["name"]:
                        raise InvalidArgument(
                            "each parameter object needs a name", parameter="parameters"
                        )
                    kind = p.get("type")
                    if kind is not None and not isinstance(kind, str):
                        raise InvalidArgument("a parameter type is a string", parameter="type")
                    named[p["name"]] = (_scalar(p["name"], p.get("value")), kind)
                return cls(named=named)
            return cls(positional=[_scalar(str(i + 1), v) for i, v in enumerate(raw)])
        raise InvalidArgument(
            "parameters must be an object (for :name) or an array (for ?)", parameter="parameters"
        )


def _scalar(name: Any, value: Any) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise InvalidArgument(
        f"parameter {name}: only strings, numbers, booleans and null can be bound",
        parameter="parameters",
    )


def bind(tree: exp.Expr, params: Parameters) -> dict[str, Scalar]:
    """Replace every placeholder in ``tree`` by a generated DuckDB parameter; its values."""
    placeholders = list(tree.find_all(exp.Placeholder))
    if not placeholders:
        return {}
    positional = [p for p in placeholders if not p.this]
    named = [p for p in placeholders if p.this]
    values: dict[str, Scalar] = {}
    if positional:
        if params.named and not params.positional:
            raise InvalidArgument(
                "the statement uses ? placeholders: send parameters as an array",
                parameter="parameters",
            )
        if len(positional) != len(params.positional):
            raise InvalidArgument(
                f"the statement has {len(positional)} ? placeholder(s) but "
                f"{len(params.positional)} parameter(s) were given",
                parameter="parameters",
            )
        # order the ?s as they appear in the text (the tree's order differs, e.g. for CTEs)
        marks = [f"stratusq{i}x" for i in range(len(positional))]
        for p, mark in zip(positional, marks, strict=True):
            p.set("this", mark)
        text = tree.sql(dialect="databricks")
        order = sorted(range(len(positional)), key=lambda i: text.find(marks[i]))
        for n, i in enumerate(order):
            values[f"p{n + 1}"] = params.positional[n]
            positional[i].replace(exp.Placeholder(this=f"p{n + 1}"))
    for p in named:
        name = str(p.this)
        if name not in params.named:
            raise InvalidArgument(f"parameter :{name} has no value", parameter="parameters")
        value, kind = params.named[name]
        generated = f"n{len(values) + 1}"
        values[generated] = value
        node: exp.Expr = exp.Placeholder(this=generated)
        if kind:
            try:
                node = exp.Cast(this=node, to=exp.DataType.build(kind, dialect="databricks"))
            except Exception:
                raise InvalidArgument(
                    f"parameter {name}: unknown type {kind!r}", parameter="parameters"
                ) from None
        p.replace(node)
    return values


# ---- reading governed tables ------------------------------------------------------------------
@dataclass
class Source:
    """A table a query reads, as the caller may see it."""

    full_name: str
    spec: TableSpec
    pii: dict[str, str]
    unmask: bool
    nodes: list[exp.Table] = field(default_factory=list)
    files: list[str] | None = None  # pinned data files (VERSION AS OF); None: the latest
    view: str = field(default_factory=lambda: f"__stratus_{uuid.uuid4().hex[:12]}")


class Reader:
    def __init__(
        self,
        lakehouse: Lakehouse,
        engine: LocalEngine,
        protector: ColumnProtector,
    ) -> None:
        self.lakehouse = lakehouse
        self.engine = engine
        self.protector = protector

    def load(self, run: Run, sources: Sequence[Source], query: exp.Expr, values: Mapping) -> None:
        """Register every source on the run's cursor under its generated name."""
        for src in sources:
            run.check()
            files = self._files(src, values)
            if not src.pii:
                self.relation(run, src.view, src.spec, files, src.full_name)
                continue
            physical = self.protector.physical_spec(src.spec, src.pii)
            raw_name = src.view + "_raw"
            self.relation(run, raw_name, physical, files, src.full_name)
            wanted = _needed_columns(query, src.spec)
            cols = ", ".join(_ident(c) for c in wanted)
            raw = run.table(f"SELECT {cols} FROM {raw_name}")
            shown = self.protector.reveal(src.spec, raw, src.pii, unmasked=src.unmask)
            run.register(src.view, shown, src.full_name)

    def relation(
        self, run: Run, name: str, spec: TableSpec, files: Sequence[str], shown: str
    ) -> None:
        """Register ``files`` of ``spec`` in ``run`` as the relation ``name`` (``shown`` in
        errors)."""
        if not files:
            empty = pa.table({f.name: pa.array([], f.type) for f in spec.schema})
            run.register(name, empty, shown)
            return
        storage = self.lakehouse.storage
        if not storage.is_local:  # object storage: a PyArrow dataset over delta-rs's file system
            self.engine.relation_sql(name, TableScan(spec, files), run.con)
            run.names[name] = shown
            return
        paths = ", ".join(_sql_str(storage.local_path(f)) for f in files)
        if spec.partition_by:
            types = ", ".join(
                f"{_sql_str(c)}: {duck_type(spec.schema.field(c).type)}" for c in spec.partition_by
            )
            options = f"hive_partitioning = true, hive_types = {{{types}}}"
        else:
            options = "hive_partitioning = false"
        cols = ", ".join(_ident(f.name) for f in spec.schema)
        run.execute(
            f"CREATE TEMP VIEW {_ident(name)} AS SELECT {cols} FROM read_parquet([{paths}], "
            f"{options})"
        )
        run.names[name] = shown

    def _files(self, src: Source, values: Mapping) -> list[str]:
        if src.files is not None:
            return src.files
        partition: dict[str, list[Any]] = {}
        ranges: dict[str, tuple[object, object]] = {}
        if len(src.nodes) == 1:
            partition, ranges = _prune_hints(src.nodes[0], src.spec, src.pii, values)
        physical = self.protector.physical_spec(src.spec, src.pii) if src.pii else src.spec
        try:
            return self.lakehouse.prune(physical, partition or None, ranges or None)
        except TypeError:  # statistics of a type the hint cannot be compared with
            return self.lakehouse.prune(physical)


def _needed_columns(query: exp.Expr, spec: TableSpec) -> list[str]:
    """Columns of ``spec`` the query may use (all when it selects ``*`` or joins NATURALly);
    only these are decrypted."""
    names = list(spec.schema.names)
    for star in query.find_all(exp.Star):
        if not isinstance(star.parent, exp.Count):
            return names
    for join in query.find_all(exp.Join):
        if join.args.get("method") or "NATURAL" in str(join.args.get("kind") or "").upper():
            return names
    used = {i.name.lower() for i in query.find_all(exp.Identifier)}
    wanted = [n for n in names if n.lower() in used]
    return wanted or names[:1]


# ---- pruning hints ----------------------------------------------------------------------------
def _constant(node: exp.Expr, values: Mapping) -> tuple[bool, Any]:
    if isinstance(node, exp.Paren):
        return _constant(node.this, values)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return True, node.this
        try:
            return True, int(node.this)
        except ValueError:
            try:
                return True, decimal.Decimal(node.this)
            except decimal.InvalidOperation:
                return False, None
    if isinstance(node, exp.Placeholder) and str(node.this) in values:
        return True, values[str(node.this)]
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal | exp.Placeholder):
        return _constant(node.this, values)
    return False, None


def _typed(value: Any, t: pa.DataType) -> Any:
    if value is None:
        return None
    try:
        if isinstance(value, decimal.Decimal) and not pa.types.is_decimal(t):
            value = float(value) if pa.types.is_floating(t) else value
            if pa.types.is_integer(t):
                if value != int(value):
                    return None
                value = int(value)
        return pa.scalar(value).cast(t).as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError):
        return None


_RANGE_TYPES = (pa.types.is_integer, pa.types.is_floating, pa.types.is_date, pa.types.is_string)


def _prune_hints(
    table: exp.Table, spec: TableSpec, pii: Mapping[str, str], values: Mapping
) -> tuple[dict[str, list[Any]], dict[str, tuple[object, object]]]:
    """Partition values and column ranges a table's rows must have for the WHERE clause of
    the query block it is read in (top-level AND conditions on its non-PII columns only)."""
    holder = table.parent
    select = holder.parent if isinstance(holder, exp.From | exp.Join) else None
    if not isinstance(select, exp.Select) or select.args.get("where") is None:
        return {}, {}
    alone = not select.args.get("joins")
    alias = table.alias_or_name.lower()
    by_lower = {n.lower(): n for n in spec.schema.names}

    def column_of(node: exp.Expr) -> str | None:
        if not isinstance(node, exp.Column):
            return None
        if node.table and node.table.lower() != alias:
            return None
        if not node.table and not alone:
            return None
        name = by_lower.get(node.name.lower())
        return name if name is not None and name not in pii else None

    equal: dict[str, list[Any]] = {}
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    condition = select.args["where"].this
    parts = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
    for part in parts:
        if isinstance(part, exp.EQ | exp.GTE | exp.GT | exp.LTE | exp.LT):
            left, right = part.this, part.expression
            col, flipped = column_of(left), False
            if col is None:
                col, flipped, left, right = column_of(right), True, right, left
            ok, value = _constant(right, values)
            if col is None or not ok:
                continue
            typed = _typed(value, spec.schema.field(col).type)
            if typed is None:
                continue
            if isinstance(part, exp.EQ):
                equal.setdefault(col, [typed])
            elif isinstance(part, exp.GTE | exp.GT) != flipped:
                lows.setdefault(col, typed)
            else:
                highs.setdefault(col, typed)
        elif isinstance(part, exp.In) and not part.args.get("query"):
            col = column_of(part.this)
            consts = [_constant(e, values) for e in part.expressions]
            if col is None or not consts or not all(ok for ok, _ in consts):
                continue
            typed_all = [_typed(v, spec.schema.field(col).type) for _, v in consts]
            if all(t is not None for t in typed_all):
                equal.setdefault(col, typed_all)
        elif isinstance(part, exp.Between):
            col = column_of(part.this)
            (ok_lo, lo), (ok_hi, hi) = (
                _constant(part.args["low"], values),
                _constant(part.args["high"], values),
            )
            if col is None or not (ok_lo and ok_hi):
                continue
            t = spec.schema.field(col).type
            lo, hi = _typed(lo, t), _typed(hi, t)
            if lo is not None and hi is not None:
                lows.setdefault(col, lo)
                highs.setdefault(col, hi)
    partition: dict[str, list[Any]] = {}
    ranges: dict[str, tuple[object, object]] = {}
    for col, vals in equal.items():
        t = spec.schema.field(col).type
        if col in spec.partition_by:
            if pa.types.is_string(t) or pa.types.is_integer(t) or pa.types.is_date(t):
                # the log's partition values come typed (or as text): match either form
                texts = [v.isoformat() if isinstance(v, dt.date) else str(v) for v in vals]
                partition[col] = [*vals, *texts]
        elif any(check(t) for check in _RANGE_TYPES):
            ranges[col] = (min(vals), max(vals))
    for col in set(lows) & set(highs):
        t = spec.schema.field(col).type
        if col not in spec.partition_by and col not in ranges and any(c(t) for c in _RANGE_TYPES):
            ranges[col] = (lows[col], highs[col])
    return partition, ranges


# ---- rewriting --------------------------------------------------------------------------------
def rewrite(sources: Sequence[Source]) -> None:
    """Point every table reference at its source's generated relation (aliases kept)."""
    for src in sources:
        for node in src.nodes:
            if node.args.get("alias") is None:
                node.set("alias", exp.TableAlias(this=exp.to_identifier(node.name)))
            node.set("this", exp.to_identifier(src.view, quoted=True))
            node.set("db", None)
            node.set("catalog", None)


def valid_column_name(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)) and len(name) <= 255


__all__ = ["Parameters", "Reader", "Run", "Source", "bind", "rewrite", "secured_database"]
