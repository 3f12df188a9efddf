"""Views: ``CREATE [OR REPLACE] VIEW``, ``DROP VIEW``, and reading them (Unity Catalog rules).

A view is a catalog object (``table_type`` VIEW, listed by the Unity Catalog API) holding its
query, with every table name fully qualified, in the ``stratus.view_definition`` property,
and its output columns. Creating one needs CREATE TABLE on the schema and SELECT on what the
query reads; the creator owns it. Lineage records source -> view (column level).

Reading: a reader needs SELECT on the view only. Each reference to a view is replaced by its
query (``expand``), whose tables are then authorized as the view's owner (the owner's rights
over the sources) while PII masks follow the reader: a column is decrypted only for a reader
holding UNMASK on the source table (or owning it), so a view never unmasks anything. Views of
views expand in turn. A statement that reads a view and writes a table records lineage from
the base tables the view reads, with their PII kinds carried into the written columns.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
from sqlglot import exp

from stratus.catalog.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from stratus.catalog.metastore import check_name
from stratus.security.actions import Resource
from stratus.security.authz import Identity
from stratus.sql import parse as p
from stratus.sql.errors import UnsupportedStatement
from stratus.sql.execution import Parameters, Source
from stratus.sql.types import column_dict, storable
from stratus.tables.protect import PII_TAG

if TYPE_CHECKING:
    from stratus.sql.service import SqlResult, SqlService

READ_AS = "stratus_read_as"  # exp.Table meta: the identity whose SELECT the reference needs
VIEW_DEFINITION = "stratus.view_definition"
MAX_DEPTH = 16

_cache_lock = threading.Lock()
_cache: dict[int, tuple[int, dict[str, tuple[str, str] | None]]] = {}


def _view_of(svc: SqlService, full_name: str) -> tuple[str, str] | None:
    """(definition, owner) if ``full_name`` is a view, cached per metastore generation."""
    generation = svc.authz.snapshot().generation
    key = id(svc)
    with _cache_lock:
        gen, known = _cache.get(key, (-1, {}))
        if gen != generation:
            known = {}
            _cache[key] = (generation, known)
        if full_name in known:
            return known[full_name]
    try:
        table = svc.metastore.get_table(full_name)
    except NotFound:
        return None  # not cached: the reference fails as not found where it is resolved
    props = table.properties or {}
    found = None
    if table.table_type == "VIEW" and VIEW_DEFINITION in props:
        found = (props[VIEW_DEFINITION], table.owner)
    with _cache_lock:
        known[full_name] = found
    return found


def _owner(svc: SqlService, name: str) -> Identity:
    try:
        return svc.authz.identity(svc.metastore.get_principal(name))
    except NotFound:
        raise PermissionDenied(f"the owner of a view ({name}) no longer exists") from None


def _cte_names(tree: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def expand(svc: SqlService, query: exp.Expr, who: Identity) -> list[str]:
    """Replace every view reference in ``query`` by the view's query; the views read."""
    used: list[str] = []
    for _ in range(MAX_DEPTH):
        ctes = _cte_names(query)
        changed = False
        for node in list(query.find_all(exp.Table)):
            if not node.args.get("db") and node.name.lower() in ctes:
                continue
            if not isinstance(node.this, exp.Identifier):
                continue
            try:
                full_name = svc.resolve_table(tuple(part.name for part in node.parts))
            except InvalidArgument:
                continue
            view = _view_of(svc, full_name)
            if view is None:
                continue
            reader: Identity = node.meta.get(READ_AS, who)
            svc.authz.require(reader, "table.read", Resource("table", full_name))
            if node.args.get("version") is not None:
                raise UnsupportedStatement(f"time travel on a view ({full_name})")
            definition, owner = view
            inner = p.parse(definition).ast
            assert inner is not None
            as_owner = _owner(svc, owner)
            for t in inner.find_all(exp.Table):
                t.meta[READ_AS] = as_owner
            alias = node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(node.name))
            node.replace(exp.Subquery(this=inner, alias=alias.copy()))
            used.append(full_name)
            changed = True
        if not changed:
            return used
    raise UnsupportedStatement(f"views nested more than {MAX_DEPTH} deep (or a view cycle)")


class Sources(list):
    """The sources of a query, and the views it reads through (for table lineage)."""

    def __init__(self, items: Iterable[Source], views: Sequence[str] = ()) -> None:
        super().__init__(items)
        self.views = tuple(dict.fromkeys(views))


def source_tables(sources: Sequence[Source]) -> tuple[str, ...]:
    """Table lineage: the tables read, and the views they were read through (source -> view
    -> reader; the view's own lineage links it to its sources)."""
    names = [s.full_name for s in sources]
    return tuple(dict.fromkeys([*names, *getattr(sources, "views", ())]))


def _qualified(svc: SqlService, query: exp.Expr) -> exp.Expr:
    """A copy of ``query`` with every table name fully qualified (the stored definition)."""
    tree = query.copy()
    ctes = _cte_names(tree)
    for node in tree.find_all(exp.Table):
        if not node.args.get("db") and node.name.lower() in ctes:
            continue
        catalog, schema, name = svc.resolve_table(tuple(part.name for part in node.parts)).split(
            "."
        )
        node.set("this", exp.to_identifier(name))
        node.set("db", exp.to_identifier(schema))
        node.set("catalog", exp.to_identifier(catalog))
    return tree


def create_view(svc: SqlService) -> Callable[..., SqlResult]:
    def run(sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        from stratus.sql.service import SqlResult

        full_name = svc.resolve_table(stmt.args["name"])
        catalog, schema, name = full_name.split(".")
        check_name(name, "view")
        svc.ensure_default(full_name)
        svc.catalog.require(who, "schema.create_table", "schema", f"{catalog}.{schema}")
        existing = None
        with contextlib.suppress(NotFound):
            existing = svc.metastore.get_table(full_name)
        if existing is not None:
            if stmt.args["if_not_exists"]:
                return SqlResult(sid, stmt.kind, pa.table({}), table=full_name)
            if not stmt.args["replace"]:
                raise AlreadyExists(f"view {full_name} already exists")
            if existing.table_type != "VIEW" or VIEW_DEFINITION not in (existing.properties or {}):
                raise InvalidArgument(f"{full_name} is a table, not a view: DROP TABLE it first")
            svc.catalog.require(who, "securable.manage", "table", full_name)
        query: exp.Expr = stmt.args["query"]
        definition = _qualified(svc, query)
        if full_name in {
            svc.resolve_table(tuple(x.name for x in t.parts))
            for t in definition.find_all(exp.Table)
        }:
            raise InvalidArgument(f"view {full_name} cannot read itself", parameter="statement")
        columns = stmt.args["columns"]
        if columns is not None:  # CREATE VIEW v (a, b): the outputs renamed
            inner = cast(exp.Query, definition).subquery("v")  # a view is defined by a query
            inner.set(
                "alias",
                exp.TableAlias(
                    this=exp.to_identifier("v"),
                    columns=[exp.to_identifier(c, quoted=True) for c in columns],
                ),
            )
            definition = exp.select("*").from_(inner)
        text = definition.sql(dialect="databricks")
        probe = p.parse(text).ast
        assert probe is not None
        sources = svc.sources(probe, who)  # SELECT on every source, as the creator
        _, edges = svc.edges_of(probe, sources, None)
        view_query = cast(exp.Query, probe)  # the text printed from the query above
        shape = exp.select("*").from_(view_query.subquery("__view", copy=False), copy=False)
        shape = shape.limit(0, copy=False)
        with svc.new_run() as r:
            data = svc.query_table(r, shape, sources, {})
        fields = [pa.field(f.name, storable(f.name, f.type)) for f in data.schema]
        if len({f.name.lower() for f in fields}) != len(fields):
            raise InvalidArgument(
                "a view's columns need distinct names (use AS)", parameter="statement"
            )
        info = [column_dict(f, i, None) for i, f in enumerate(fields)]
        event = svc.lineage_event(sid, stmt.text, who, full_name, sources, edges, pa.schema(fields))
        with svc.lineage_run(event, report=bool(sources)):
            if existing is None:
                svc.catalog.create_table(
                    who,
                    catalog,
                    schema,
                    name,
                    columns=info,
                    table_type="VIEW",
                    comment=stmt.args["comment"],
                    properties={VIEW_DEFINITION: text},
                )
            else:
                svc.metastore.update_table(
                    full_name,
                    who.name,
                    properties={VIEW_DEFINITION: text},
                    comment=stmt.args["comment"],
                )
                svc.metastore.set_columns(full_name, who.name, info)
            view_id = svc.metastore.get_table(full_name).id
            inherited = svc.inherited_pii(edges, sources)
            old = {t.column_name for t in svc.metastore.tags("table", view_id) if t.key == PII_TAG}
            stale = [c for c in old if c and c not in inherited]
            for column in stale:
                svc.metastore.unset_tags("table", view_id, [PII_TAG], column)
            for column, kind in inherited.items():  # what the catalog says the view exposes
                svc.metastore.set_tags("table", view_id, {PII_TAG: kind}, column=column)
            svc.authz.refresh()
        return SqlResult(sid, stmt.kind, pa.table({}), table=full_name)

    return run


def drop_view(svc: SqlService) -> Callable[..., SqlResult]:
    def run(sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        from stratus.sql.service import SqlResult

        full_name = svc.resolve_table(stmt.args["name"])
        try:
            svc.catalog.require(who, "securable.manage", "table", full_name)
            table = svc.metastore.get_table(full_name)
        except NotFound:
            if stmt.args["if_exists"]:
                return SqlResult(sid, stmt.kind, pa.table({}), table=full_name)
            raise
        if table.table_type != "VIEW" or VIEW_DEFINITION not in (table.properties or {}):
            raise InvalidArgument(f"{full_name} is not a view (DROP TABLE drops tables)")
        svc.catalog.drop(who, "table", full_name)  # a view has no data to purge
        return SqlResult(sid, stmt.kind, pa.table({}), table=full_name)

    return run


def not_as_table(
    svc: SqlService, stmt: p.Statement, who: Identity, handler: Callable[..., SqlResult]
) -> Callable[..., SqlResult]:
    """``handler`` unless the statement's table is a view the caller can see (then a 400)."""
    try:
        full_name = svc.resolve_table(stmt.args["name"])
    except InvalidArgument:
        return handler
    if _view_of(svc, full_name) is not None and svc.authz.can_see(who, "table", full_name):
        verb = "INSERT INTO" if stmt.kind == p.INSERT else "DROP TABLE"
        hint = "change its tables" if stmt.kind == p.INSERT else "use DROP VIEW"
        raise InvalidArgument(f"{full_name} is a view: {verb} works on tables ({hint})")
    return handler


def definition_of(properties: dict[str, Any] | None) -> str | None:
    return (properties or {}).get(VIEW_DEFINITION)


__all__ = ["READ_AS", "VIEW_DEFINITION", "create_view", "definition_of", "drop_view", "expand"]
