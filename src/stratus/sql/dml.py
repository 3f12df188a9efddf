"""MERGE INTO, UPDATE and DELETE on governed tables, each one Delta commit (a delta-rs MERGE).

How a statement runs:

1. The target needs MODIFY (and SELECT when the statement reads its rows: a WHERE, an ON, SET
   expressions); every other table read (MERGE's source, subqueries) needs SELECT, as in a
   query. System tables cannot be changed; views cannot be written.
2. The target is read at its current version into DuckDB as the caller may see it: PII
   columns decrypted for a holder of UNMASK (or the owner), masked otherwise, plus the
   original physical values of every row (``__o_<column>``: ciphertext and equality tokens of
   PII columns). For a caller who sees a PII column masked, ``column = constant`` and
   ``column IN (constants)`` compare equality tokens instead, so such a WHERE still finds rows.
3. One DuckDB query per kind of row works out what changes: the rows to update (with their new
   values, cast to the column types), delete or insert. New values of PII columns are
   encrypted. An expression that reads a PII column the caller sees masked, or that copies a
   PII column into a plaintext one, is refused: it would write masks, or leak plaintext.
4. delta-rs merges those rows into the table version that was read, matching the original
   physical values of every column (null-safe), in one commit tagged with the SQL operation.
   Any failure before that commit leaves the table as it was; a concurrent commit to the same
   files fails the statement (409) instead of losing rows.

Lineage: an event names the tables read and the target, with column edges for UPDATE and MERGE
(the SET and INSERT expressions traced like a query, ON / WHERE as FILTER/JOIN edges).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from stratus.catalog.errors import InvalidArgument, PermissionDenied
from stratus.catalog.registry import TableSpec
from stratus.engine.local import duck_type
from stratus.lakehouse import operations as ops
from stratus.lineage.model import ColumnEdge
from stratus.security.actions import Resource
from stratus.security.authz import Identity
from stratus.sql import parse as p
from stratus.sql import parse_ext
from stratus.sql.errors import SqlExecutionError, UnsupportedStatement
from stratus.sql.execution import (
    Parameters,
    Run,
    Source,
    _constant,
    _prune_hints,
    bind,
    rewrite,
)
from stratus.sql.lineage_edges import DIRECT
from stratus.tables.protect import token_column

if TYPE_CHECKING:
    from stratus.sql.service import SqlResult, SqlService

RID = "__rid"
CLAUSE = "__clause"
_Node = TypeVar("_Node", bound=exp.Expr)
# clause numbers: WHEN MATCHED 1.., WHEN NOT MATCHED BY SOURCE 50.., WHEN NOT MATCHED 100..
BY_SOURCE, INSERTS = 50, 100


def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _col(alias: str, name: str) -> exp.Column:
    return exp.Column(this=_ident(name), table=exp.to_identifier(alias))


@dataclass
class Target:
    full_name: str
    spec: TableSpec
    pii: dict[str, str]
    physical: TableSpec
    version: int
    unmask: bool
    alias: str

    def column(self, name: str, what: str) -> str:
        for f in self.spec.schema:
            if f.name.lower() == name.lower():
                return f.name
        raise InvalidArgument(
            f"{what}: {self.full_name} has no column {name!r}", parameter="statement"
        )

    def hidden(self) -> list[exp.Expr]:
        """The original physical values of the row, as ``__o_<physical column>``."""
        out: list[exp.Expr] = []
        for f in self.physical.schema:
            inner = (
                ops.original(f.name)
                if f.name in self.pii or _is_token(f.name, self.pii)
                else f.name
            )
            out.append(exp.alias_(_col(self.alias, inner), ops.original(f.name), quoted=True))
        return out


def _is_token(name: str, pii: Mapping[str, str]) -> bool:
    return any(name == token_column(c) for c in pii)


class Dml:
    def __init__(self, svc: SqlService) -> None:
        self.svc = svc

    # ---- shared ------------------------------------------------------------------------
    def _target(self, stmt: p.Statement, who: Identity, reads: bool) -> Target:
        svc = self.svc
        full_name = svc.resolve_table(stmt.args["name"])
        verb = stmt.kind
        svc.authz.require(who, "table.modify", Resource("table", full_name))
        if reads:
            svc.authz.require(who, "table.read", Resource("table", full_name))
        if full_name.split(".")[0] == "system":
            raise PermissionDenied(f"{full_name} is a system table: {verb} cannot change it")
        table = svc.metastore.get_table(full_name)
        if table.table_type == "VIEW":
            raise UnsupportedStatement(f"{verb} on a view ({full_name}): change its tables")
        spec = svc.tables.spec(full_name)
        pii = svc.protector.pii_columns(full_name)
        physical = svc.protector.physical_spec(spec, pii)
        version = svc.lakehouse.version(physical)
        if version is None:
            svc.lakehouse.ensure(physical)
            version = svc.lakehouse.version(physical) or 0
        held = svc.authz.privileges(who, "table", full_name)
        alias = stmt.ast.this.alias_or_name if stmt.ast is not None else full_name
        return Target(
            full_name, spec, pii, physical, version, bool({"UNMASK", "OWNER"} & held), alias
        )

    def _target_files(
        self,
        target: Target,
        src: Source,
        values: Mapping[str, Any],
        only: dict[str, list[Any]] | None = None,
    ) -> list[str]:
        """The files of the version read that can hold the rows a WHERE selects (partition
        values and min/max statistics, as for queries) or a MERGE's ON can match (``only``:
        the partition values its source gives), else all of them."""
        svc = self.svc
        lake = svc.lakehouse
        if lake.version(target.physical) == target.version:
            partition: dict[str, list[Any]] = {}
            ranges: dict[str, tuple[object, object]] = {}
            if only:
                partition = {c: [*v, *(str(x) for x in v)] for c, v in only.items()}
            elif len(src.nodes) == 1:
                partition, ranges = _prune_hints(src.nodes[0], target.spec, target.pii, values)
            if partition or ranges:
                try:
                    files = lake.prune(target.physical, partition or None, ranges or None)
                except TypeError:  # statistics the hint cannot be compared with
                    files = None
                if files is not None and lake.version(target.physical) == target.version:
                    return files
        return ops.snapshot(lake, target.physical, target.version).files

    def _load_target(
        self,
        run: Run,
        target: Target,
        src: Source,
        values: Mapping[str, Any],
        only: dict[str, list[Any]] | None = None,
    ) -> None:
        """The target's rows at the version read, as the caller sees them, with originals."""
        svc = self.svc
        files = self._target_files(target, src, values, only)
        raw_name = src.view + "_raw"
        svc.reader.relation(run, raw_name, target.physical, files, target.full_name)
        raw = run.table(f'SELECT * FROM "{raw_name}"')
        columns: dict[str, Any] = {}
        if target.pii:
            shown = svc.protector.reveal(
                target.spec, raw.select(list(target.pii)), target.pii, unmasked=target.unmask
            )
        for f in target.spec.schema:
            columns[f.name] = shown.column(f.name) if f.name in target.pii else raw.column(f.name)
        for name in target.pii:
            columns[ops.original(name)] = raw.column(name)
            columns[ops.original(token_column(name))] = raw.column(token_column(name))
        columns[RID] = pa.array(range(raw.num_rows), pa.int64())
        run.register(src.view, pa.table(columns), target.full_name)

    def _tokens(self, target: Target, tree: exp.Expr, values: dict[str, Any]) -> exp.Expr:
        """``pii_column = constant`` -> token comparison, for callers who see it masked (a
        copy of ``tree``)."""
        if target.unmask or not target.pii:
            return tree
        root = exp.Paren(this=tree.copy())
        by_lower = {c.lower(): c for c in target.pii}

        def pii_column(node: exp.Expr) -> str | None:
            if not isinstance(node, exp.Column) or (node.table and node.table != target.alias):
                return None
            return by_lower.get(node.name.lower())

        def tokens_for(column: str, constants: Sequence[exp.Expr]) -> exp.Expr | None:
            out: list[exp.Expr] = []
            for c in constants:
                ok, value = _constant(c, values)
                if not ok or value is None:
                    return None
                for tok in self.svc.protector.tokens(target.spec, column, value):
                    name = f"tok{len(values)}"
                    values[name] = tok
                    out.append(exp.Placeholder(this=name))
            original = ops.original(token_column(column))
            return exp.In(this=_col(target.alias, original), expressions=out)

        for node in list(root.find_all(exp.EQ, exp.In)):
            if isinstance(node, exp.EQ):
                left, right = node.this, node.expression
                col = pii_column(left)
                if col is None:
                    col, left, right = pii_column(right), right, left
                found = tokens_for(col, [right]) if col else None
            else:
                col = pii_column(node.this)
                found = None
                if col and not node.args.get("query"):
                    found = tokens_for(col, list(node.expressions))
            if found is not None:
                node.replace(found)
        return root.this

    def _cast(self, value: exp.Expr, field: pa.Field, name: str) -> exp.Expr:
        to = exp.DataType.build(duck_type(field.type), dialect="duckdb")
        return exp.alias_(exp.Cast(this=exp.Paren(this=value.copy()), to=to), name, quoted=True)

    def _physical_values(
        self, target: Target, data: pa.Table, prefix: str, columns: Sequence[str], clause: int
    ) -> tuple[dict[str, pa.Array], dict[str, str]]:
        mine = pc.equal(data.column(CLAUSE), clause)
        """New logical values ``<prefix><column>`` -> physical source columns and the
        delta-rs assignments ``{physical column: source expression}``."""
        out: dict[str, pa.Array] = {}
        assign: dict[str, str] = {}
        for name in columns:
            f = target.spec.schema.field(name)
            values = data.column(prefix + name)
            try:
                values = values.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SqlExecutionError(f"column {name}: {exc}", parameter="statement") from None
            if not f.nullable and values.filter(mine).null_count:
                raise SqlExecutionError(
                    f"column {name} is NOT NULL but the statement gives it null",
                    parameter="statement",
                )
            plain = values.combine_chunks()
            if name in target.pii:
                cipher = self.svc.protector.cipher(target.full_name, name, f.type)
                pairs = [(name, cipher.encrypt(plain)), (token_column(name), cipher.token(plain))]
            else:
                pairs = [(name, plain)]
            for physical, array in pairs:
                key = f"__v{clause}_{physical}"
                out[key] = array
                assign[physical] = f"s.`{key}`"
        return out, assign

    def _check_flows(
        self, target: Target, edges: Sequence[ColumnEdge], sources: Sequence[Source]
    ) -> None:
        by_name = {s.full_name: s for s in sources}
        for e in edges:
            if e.transformation not in DIRECT:
                continue
            src = by_name.get(e.source_table)
            kind = src.pii.get(e.source_column) if src else None
            if src is None or not kind:
                continue
            if not src.unmask:
                raise PermissionDenied(
                    f"the value of {e.target_column} reads PII column {e.source_column} of "
                    f"{e.source_table}, which you see masked (writing it needs UNMASK)"
                )
            if e.target_column not in target.pii:
                raise InvalidArgument(
                    f"{e.target_column} of {target.full_name} is not PII but would receive PII "
                    f"column {e.source_table}.{e.source_column}: tag it first (ALTER TABLE ... "
                    f"ALTER COLUMN {e.target_column} SET TAGS ('pii' = '{kind}'))",
                    parameter="statement",
                )

    def _run_change(
        self,
        sid: str,
        stmt: p.Statement,
        who: Identity,
        target: Target,
        queries: list[exp.Select],
        lineage: exp.Select | None,
        lineage_targets: list[str],
        values: dict[str, Any],
        build: Any,
        probe: exp.Select | None = None,
    ) -> dict[str, int]:
        svc = self.svc
        carrier = exp.Tuple(expressions=[*queries, *([probe] if probe is not None else [])])
        sources = svc.sources(carrier, who)
        edges: tuple[ColumnEdge, ...] = ()
        lineage_sources = sources
        if lineage is not None:
            lineage_sources = svc.sources(lineage, who)
            _, edges = svc.edges_of(lineage, lineage_sources, lineage_targets)
            self._check_flows(target, edges, lineage_sources)
        tsrc = next(s for s in sources if s.full_name == target.full_name)
        others = [s for s in sources if s is not tsrc]
        event = svc.lineage_event(
            sid, stmt.text, who, target.full_name, sources, edges, target.spec.schema
        )
        with svc.lineage_run(event):
            with svc.new_run() as run:
                svc.reader.load(run, others, carrier, values)
                only = None
                if probe is not None and not any(
                    node is t for node in tsrc.nodes for t in probe.find_all(exp.Table)
                ):
                    rewrite(others)
                    only = _partition_values(run.table(probe.sql(dialect="duckdb"), values))
                self._load_target(run, target, tsrc, values, only)
                rewrite(sources)
                results = [run.table(q.sql(dialect="duckdb"), values) for q in queries]
                run.check()
            changes = build(results)
            counts = ops.apply_changes(
                svc.lakehouse, target.physical, target.version, changes, stmt.kind
            )
        return counts

    # ---- UPDATE ------------------------------------------------------------------------
    def update(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        tree, values, stmt = _parsed(stmt, params, exp.Update)
        target = self._target(stmt, who, reads=True)
        sets = [(target.column(c, "UPDATE SET"), e) for c, e in stmt.args["sets"]]
        if len({c for c, _ in sets}) != len(sets):
            raise InvalidArgument("UPDATE sets a column twice", parameter="statement")
        where = stmt.args["where"]
        lineage = exp.select(*[exp.alias_(e.copy(), c) for c, e in sets]).from_(tree.this.copy())
        if where is not None:
            lineage = lineage.where(where.copy())
            where = self._tokens(target, where, values)
        table = tree.this.copy()
        q = exp.select(
            exp.alias_(exp.Literal.number(1), CLAUSE),
            *target.hidden(),
            *[self._cast(e, target.spec.schema.field(c), f"__n_{c}") for c, e in sets],
        ).from_(table)
        if where is not None:
            q = q.where(where.copy())

        def build(results: list[pa.Table]) -> ops.ChangeSet:
            data = _distinct(results[0], target)
            new, assign = self._physical_values(target, data, "__n_", [c for c, _ in sets], 1)
            source = _source(data, target, new)
            return ops.ChangeSet(source, list(target.physical.schema.names), updates=[(1, assign)])

        counts = self._run_change(
            sid, stmt, who, target, [q], lineage, [c for c, _ in sets], values, build
        )
        return self._result(sid, stmt, target, counts["updated"], counts)

    # ---- DELETE ------------------------------------------------------------------------
    def delete(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        tree, values, stmt = _parsed(stmt, params, exp.Delete)
        where = stmt.args["where"]
        target = self._target(stmt, who, reads=where is not None)
        if where is None:  # every row: a plain Delta DELETE, no rows read
            event = self.svc.lineage_event(sid, stmt.text, who, target.full_name, [], (), None)
            with self.svc.lineage_run(event):
                deleted = ops.delete_all(self.svc.lakehouse, target.physical)
            return self._result(sid, stmt, target, deleted, {"deleted": deleted})
        where = self._tokens(target, where, values)
        q = exp.select(exp.alias_(exp.Literal.number(1), CLAUSE), *target.hidden()).from_(
            tree.this.copy()
        )
        if where is not None:
            q = q.where(where.copy())

        def build(results: list[pa.Table]) -> ops.ChangeSet:
            data = _distinct(results[0], target)
            return ops.ChangeSet(
                _source(data, target, {}), list(target.physical.schema.names), deletes=[1]
            )

        counts = self._run_change(sid, stmt, who, target, [q], None, [], values, build)
        return self._result(sid, stmt, target, counts["deleted"], counts)

    # ---- MERGE -------------------------------------------------------------------------
    def merge(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        tree, values, stmt = _parsed(stmt, params, exp.Merge)
        target = self._target(stmt, who, reads=True)
        alias, salias = target.alias, stmt.args["source_alias"]
        if alias.lower() == salias.lower():
            raise InvalidArgument("MERGE: the target and the source need different aliases")
        on: exp.Expr = stmt.args["on"]
        clauses: list[parse_ext.Clause] = stmt.args["clauses"]
        plain_on = on.copy()
        on = self._tokens(target, on, values)
        for c in clauses:
            if c.condition is not None:
                c.condition = self._tokens(target, c.condition, values)
        names = list(target.spec.schema.names)

        def source_node() -> exp.Expr:
            return stmt.args["source"].copy()

        # (clause number, clause, assignments {column: expression})
        plan: list[tuple[int, parse_ext.Clause, list[tuple[str, exp.Expr]]]] = []
        counters = {"matched": 1, "not_matched_by_source": BY_SOURCE, "not_matched": INSERTS}
        for c in clauses:
            number = counters[c.match]
            counters[c.match] += 1
            if number % 50 == 49:
                raise UnsupportedStatement("more than 48 WHEN clauses of one kind in a MERGE")
            assign: list[tuple[str, exp.Expr]] = []
            if c.action == "update":
                pairs = c.sets if c.sets is not None else [(n, _col(salias, n)) for n in names]
                assign = [(target.column(n, "MERGE ... UPDATE SET"), e) for n, e in pairs]
            elif c.action == "insert":
                if c.values is None:
                    assign = [(n, _col(salias, n)) for n in names]
                else:
                    cols = c.columns if c.columns is not None else names
                    if len(cols) != len(c.values):
                        raise SqlExecutionError(
                            f"INSERT gives {len(c.values)} value(s) for {len(cols)} column(s)",
                            parameter="statement",
                        )
                    given = {
                        target.column(n, "MERGE ... INSERT"): v
                        for n, v in zip(cols, c.values, strict=True)
                    }
                    assign = [(n, given.get(n, exp.Null())) for n in names]
            if len({n for n, _ in assign}) != len(assign):
                raise InvalidArgument("a MERGE clause sets a column twice", parameter="statement")
            plan.append((number, c, assign))

        def case(kind: str) -> exp.Expr:
            ifs = [
                exp.If(
                    this=(c.condition.copy() if c.condition is not None else exp.true()),
                    true=exp.Literal.number(n),
                )
                for n, c, _ in plan
                if c.match == kind
            ]
            return exp.alias_(exp.Case(ifs=ifs, default=exp.Literal.number(0)), CLAUSE)

        def assignments(kind: str) -> list[exp.Expr]:
            return [
                self._cast(e, target.spec.schema.field(n), f"__n{num}_{n}")
                for num, c, assign in plan
                if c.match == kind
                for n, e in assign
            ]

        queries: list[exp.Select] = []
        kinds: list[str] = []
        if any(c.match == "matched" for c in clauses):
            q = (
                exp.select(
                    _col(alias, RID), case("matched"), *target.hidden(), *assignments("matched")
                )
                .from_(tree.this.copy())
                .join(source_node(), on=on.copy())
            )
            queries.append(q)
            kinds.append("matched")
        if any(c.match == "not_matched" for c in clauses):
            exists = exp.select("1").from_(tree.this.copy()).where(on.copy())
            q = exp.select(case("not_matched"), *assignments("not_matched")).from_(source_node())
            queries.append(q.where(exp.Not(this=exp.Exists(this=exists))))
            kinds.append("not_matched")
        if any(c.match == "not_matched_by_source" for c in clauses):
            exists = exp.select("1").from_(source_node()).where(on.copy())
            q = exp.select(
                case("not_matched_by_source"),
                *target.hidden(),
                *assignments("not_matched_by_source"),
            ).from_(tree.this.copy())
            queries.append(q.where(exp.Not(this=exp.Exists(this=exists))))
            kinds.append("not_matched_by_source")
        probe = None
        if not any(c.match == "not_matched_by_source" for c in clauses):
            keys = _partition_equalities(plain_on, target, salias)
            if keys:
                probe = exp.select(*[exp.alias_(e.copy(), c, quoted=True) for c, e in keys])
                probe = probe.from_(source_node()).distinct()
        written = [
            (n, e) for _, c, assign in plan for n, e in assign if not isinstance(e, exp.Null)
        ]
        lineage = None
        if written:
            lineage = (
                exp.select(*[exp.alias_(e.copy(), n) for n, e in written])
                .from_(tree.this.copy())
                .join(source_node(), on=plain_on.copy())
            )

        def build(results: list[pa.Table]) -> ops.ChangeSet:
            parts: list[pa.Table] = []
            updates: list[tuple[int, dict[str, str]]] = []
            deletes: list[int] = []
            inserts: list[tuple[int, dict[str, str]]] = []
            for kind, data in zip(kinds, results, strict=True):
                data = data.filter(pc.greater(data.column(CLAUSE), 0))
                if kind == "matched" and data.num_rows:
                    rids = data.column(RID)
                    if pc.count_distinct(rids).as_py() != len(rids):
                        raise SqlExecutionError(
                            "MERGE: a target row is matched by more than one source row, so "
                            "which change applies is ambiguous (make the ON condition match at "
                            "most one source row per target row)",
                            parameter="statement",
                        )
                    data = data.drop_columns([RID])
                new: dict[str, pa.Array] = {}
                for num, c, assign in plan:
                    if c.match != kind:
                        continue
                    if c.action == "delete":
                        deletes.append(num)
                        continue
                    vals, sets = self._physical_values(
                        target, data, f"__n{num}_", [n for n, _ in assign], num
                    )
                    new.update(vals)
                    (inserts if c.action == "insert" else updates).append((num, sets))
                if kind == "not_matched":
                    parts.append(_inserted(data, new))
                else:
                    parts.append(_source(data, target, new))
            source = pa.concat_tables(parts, promote_options="permissive")
            for f in target.physical.schema:  # only inserts: the originals are all null
                name = ops.original(f.name)
                if name not in source.column_names:
                    source = source.append_column(name, pa.nulls(source.num_rows, f.type))
            return ops.ChangeSet(
                source, list(target.physical.schema.names), updates, deletes, inserts
            )

        counts = self._run_change(
            sid, stmt, who, target, queries, lineage, [n for n, _ in written], values, build, probe
        )
        total = counts["updated"] + counts["deleted"] + counts["inserted"]
        return self._result(sid, stmt, target, total, counts)

    def _result(
        self, sid: str, stmt: p.Statement, target: Target, affected: int, counts: Mapping[str, int]
    ) -> SqlResult:
        from stratus.sql.service import SqlResult

        columns: dict[str, list[int]] = {"num_affected_rows": [affected]}
        if stmt.kind == p.MERGE:
            columns |= {
                "num_updated_rows": [counts["updated"]],
                "num_deleted_rows": [counts["deleted"]],
                "num_inserted_rows": [counts["inserted"]],
            }
        data = pa.table({k: pa.array(v, pa.int64()) for k, v in columns.items()})
        return SqlResult(sid, stmt.kind, data, affected_rows=affected, table=target.full_name)


def _partition_equalities(
    on: exp.Expr, target: Target, source_alias: str
) -> list[tuple[str, exp.Expr]]:
    """``t.p = <source expression>`` conjuncts of an ON condition, for partition columns p."""
    parts = list(on.flatten()) if isinstance(on, exp.And) else [on]
    by_lower = {c.lower(): c for c in target.spec.partition_by}
    out: dict[str, exp.Expr] = {}
    for part in parts:
        if not isinstance(part, exp.EQ):
            continue
        for mine, other in ((part.this, part.expression), (part.expression, part.this)):
            if not isinstance(mine, exp.Column) or mine.table.lower() != target.alias.lower():
                continue
            column = by_lower.get(mine.name.lower())
            tables = {c.table.lower() for c in other.find_all(exp.Column)}
            if column and tables == {source_alias.lower()} and column not in out:
                out[column] = other
    return list(out.items())


def _partition_values(found: pa.Table) -> dict[str, list[Any]] | None:
    """The partition values a MERGE's source can match (few, and no NULL: the files of other
    partitions cannot hold a row the ON condition matches)."""
    if found.num_rows > 1000:
        return None
    out: dict[str, list[Any]] = {}
    for name in found.column_names:
        values = found.column(name).to_pylist()
        if all(v is not None for v in values):
            out[name] = list(dict.fromkeys(values))
    return out or None


def _distinct(data: pa.Table, target: Target) -> pa.Table:
    """Identical rows of a table without PII (whose ciphertexts make rows unique) are changed
    by one source row: several would match each of them."""
    if target.pii or data.num_rows < 2:
        return data
    return data.group_by(data.column_names, use_threads=False).aggregate([])


def _source(data: pa.Table, target: Target, new: Mapping[str, pa.Array]) -> pa.Table:
    columns: dict[str, Any] = {CLAUSE: data.column(CLAUSE).cast(pa.int32())}
    for f in target.physical.schema:
        name = ops.original(f.name)
        columns[name] = data.column(name).cast(f.type)
    columns.update(new)
    return pa.table(columns)


def _inserted(data: pa.Table, new: Mapping[str, pa.Array]) -> pa.Table:
    return pa.table({CLAUSE: data.column(CLAUSE).cast(pa.int32()), **new})


def _parsed(
    stmt: p.Statement, params: Parameters, node: type[_Node]
) -> tuple[_Node, dict[str, Any], p.Statement]:
    """A DML statement's tree, its bound parameters and its checked parts."""
    tree = stmt.ast
    assert isinstance(tree, node)
    return tree, bind(tree, params), parse_ext.dml(tree, stmt.text)


__all__ = ["Dml"]
