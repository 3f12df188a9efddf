"""Column lineage of a query: which source columns each output column is made from.

The query (Databricks dialect, every table reference already fully qualified) is qualified by
sqlglot's optimizer against the source tables' schemas (stars expanded, every column bound to
its source), then each output column is traced through sqlglot's scopes (CTEs, subqueries,
set operations) down to base-table columns:

* ``IDENTITY``: the value is copied (only plain column references on the way),
* ``AGGREGATION``: an aggregate function is on the way (``max(calories)``),
* ``TRANSFORMATION``: anything else computed (``upper(name)``, ``price * 2``).

Indirect edges (optional, on by default) record columns that select rows rather than make
values: ``JOIN`` (join conditions), ``FILTER`` (WHERE, HAVING, QUALIFY) and ``GROUP_BY``; each
applies to every output column, except where that pair already has a direct edge (one edge per
source/target pair).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope

from stratus.lineage.model import ColumnEdge

IDENTITY, TRANSFORMATION, AGGREGATION = "IDENTITY", "TRANSFORMATION", "AGGREGATION"
JOIN, FILTER, GROUP_BY = "JOIN", "FILTER", "GROUP_BY"
DIRECT = (IDENTITY, TRANSFORMATION, AGGREGATION)  # in increasing strength
_RANK = {k: i for i, k in enumerate(DIRECT)}


class LineageUnavailable(ValueError):
    """The query could not be analysed (sqlglot could not qualify or trace it)."""


def column_edges(
    query: exp.Expr,
    schemas: Mapping[str, Mapping[str, str]],
    target_columns: Sequence[str] | None = None,
    *,
    indirect: bool = True,
) -> tuple[list[str], tuple[ColumnEdge, ...]]:
    """The query's output column names and its column edges.

    ``schemas`` maps each source table's full name to ``{column: type text}``.
    ``target_columns``, when given, names the outputs by position (an INSERT's column list or
    the created table's columns); otherwise the query's own output names are used.
    """
    tables = {name.lower(): name for name in schemas}
    columns = {name.lower(): {c.lower(): c for c in cols} for name, cols in schemas.items()}
    nested: dict[str, Any] = {}
    for name, cols in schemas.items():
        catalog, schema, leaf = name.lower().split(".")
        nested.setdefault(catalog, {}).setdefault(schema, {})[leaf] = {
            c.lower(): (t or "string") for c, t in cols.items()
        }
    try:
        qualified = qualify(
            query.copy(),
            dialect="databricks",
            schema=nested,
            validate_qualify_columns=False,
            quote_identifiers=False,
            identify=False,
        )
        root = build_scope(qualified)
    except Exception as exc:  # sqlglot raises several error types; all mean "cannot analyse"
        raise LineageUnavailable(str(exc)) from None
    if root is None or not isinstance(qualified, exp.Query):
        raise LineageUnavailable("not a query")
    names = list(qualified.named_selects)
    targets = (
        list(target_columns) if target_columns and len(target_columns) == len(names) else names
    )

    def source_of(table: exp.Table) -> str | None:
        key = ".".join(p.name.lower() for p in table.parts)
        return tables.get(key)

    def real_column(table: str, column: str) -> str:
        return columns[table.lower()].get(column.lower(), column)

    edges: dict[tuple[str, str, str], str] = {}
    for index, target in enumerate(targets):
        for table_node, column, kind in _trace_output(root, index, IDENTITY):
            table = source_of(table_node)
            if table is None:
                continue
            key = (table, real_column(table, column), target)
            if key not in edges or _RANK[kind] > _RANK[edges[key]]:
                edges[key] = kind
    if indirect:
        selecting: dict[tuple[str, str], str] = {}
        for scope in root.traverse():
            for kind, expression in _row_selectors(scope.expression):
                for col in _columns(expression):
                    for table_node, column in _base_columns(scope, col):
                        table = source_of(table_node)
                        if table is not None:
                            selecting.setdefault((table, real_column(table, column)), kind)
        for target in targets:
            for (table, column), kind in selecting.items():
                edges.setdefault((table, column, target), kind)
    out = tuple(
        ColumnEdge(source_table=t, source_column=c, target_column=target, transformation=k)
        for (t, c, target), k in edges.items()
    )
    return targets, out


# ---- tracing ----------------------------------------------------------------------------------
def _set_children(scope: Scope) -> list[Scope]:
    return list(getattr(scope, "set_operation_scopes", None) or getattr(scope, "union_scopes", []))


def _projections(scope: Scope, index: int | None, name: str | None) -> Iterator[tuple[Scope, Any]]:
    """The projection(s) an output refers to: by position at the top, by name below (every
    branch of a set operation)."""
    expression = scope.expression
    if isinstance(expression, exp.SetOperation):
        if index is None:  # branches line up by position; the first one names the columns
            lowered = [n.lower() for n in expression.named_selects]
            if (name or "").lower() not in lowered:
                return
            index, name = lowered.index((name or "").lower()), None
        for child in _set_children(scope):
            yield from _projections(child, index, name)
        return
    if not isinstance(expression, exp.Select):
        return
    selects = expression.selects
    if index is not None:
        if index < len(selects):
            yield scope, selects[index]
        return
    for projection in selects:
        if projection.alias_or_name.lower() == (name or "").lower():
            yield scope, projection
            return


def _kind(expression: exp.Expr) -> str:
    if isinstance(expression, exp.Column):
        return IDENTITY
    if expression.find(exp.AggFunc) is not None:
        return AGGREGATION
    return TRANSFORMATION


def _columns(expression: exp.Expr) -> Iterator[exp.Column]:
    """Column references in ``expression``, not inside nested queries (other scopes)."""
    for node in expression.walk(prune=lambda n: isinstance(n, exp.Query) and n is not expression):
        if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
            yield node


def _trace_output(
    scope: Scope, index: int | None, kind: str, name: str | None = None, depth: int = 0
) -> Iterator[tuple[exp.Table, str, str]]:
    if depth > 64:
        return
    for where, projection in _projections(scope, index, name):
        value = projection.unalias()
        here = _kind(value)
        strongest = here if _RANK[here] > _RANK[kind] else kind
        for col in _columns(value):
            source = where.sources.get(col.table)
            if isinstance(source, exp.Table):
                yield source, col.name, strongest
            elif isinstance(source, Scope):
                yield from _trace_output(source, None, strongest, col.name, depth + 1)


def _base_columns(scope: Scope, col: exp.Column, depth: int = 0) -> Iterator[tuple[exp.Table, str]]:
    source = scope.sources.get(col.table)
    if isinstance(source, exp.Table):
        yield source, col.name
    elif isinstance(source, Scope) and depth < 64:
        for table, column, _ in _trace_output(source, None, IDENTITY, col.name, depth + 1):
            yield table, column


def _row_selectors(expression: exp.Expr) -> Iterator[tuple[str, exp.Expr]]:
    if not isinstance(expression, exp.Select):
        return
    for join in expression.args.get("joins") or []:
        if join.args.get("on") is not None:
            yield JOIN, join.args["on"]
    for key in ("where", "having", "qualify"):
        clause = expression.args.get(key)
        if clause is not None:
            yield FILTER, clause
    group = expression.args.get("group")
    if group is not None:
        yield GROUP_BY, group


__all__ = ["LineageUnavailable", "column_edges"]
