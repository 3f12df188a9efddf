"""SQL on the lakehouse: Databricks SQL statements, governed like the REST API.

``SqlService.execute(text, parameters, who)`` parses one statement (:mod:`stratus.sql.parse`),
and runs it; catalog changes go through :class:`~stratus.catalog.commands.CatalogCommands`, so
privileges and rules are exactly the REST API's:

=========================  ===================================================================
statement                  needs
=========================  ===================================================================
SELECT (joins, CTEs, ...)  USE CATALOG + USE SCHEMA + SELECT on every table read
CREATE SCHEMA              USE CATALOG + CREATE SCHEMA on the catalog
CREATE TABLE [AS SELECT]   USE CATALOG + USE SCHEMA + CREATE TABLE on the schema (the creator
                           owns the table), plus SELECT on what the query reads
INSERT INTO                MODIFY on the table, plus SELECT on what a query reads
DROP TABLE                 ownership (of it or a container) or MANAGE; a MANAGED table's
                           data is deleted with it, an EXTERNAL table's stays
ALTER ... SET/UNSET TAGS   APPLY TAG or ownership (removing a ``pii`` tag: admins only)
GRANT / REVOKE             ownership or MANAGE on the securable
DESCRIBE / SHOW TABLES     USE CATALOG + USE SCHEMA (and only visible tables are listed)
=========================  ===================================================================

An object the caller cannot see is reported as not found; a missing privilege as permission
denied naming it. Names resolve with the default catalog ``main`` and schema ``default``
(created on first use). Reads go through :mod:`stratus.sql.execution`, which applies PII masks
before the query runs. Writes are one Delta commit each (INSERT into a table with a key
upserts on it, like ingest; without a key it appends), registered in the catalog; PII columns
are encrypted. A column derived from PII-tagged columns (by its direct column lineage) is
tagged with the same kind before it is written, so CREATE TABLE AS SELECT and INSERT ...
SELECT never copy PII into plaintext. Statements that read tables and write one report a
lineage event (``stratus.lineage``: start before, complete or fail after).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from stratus.catalog.commands import is_builtin
from stratus.catalog.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from stratus.catalog.metastore import check_name
from stratus.catalog.registry import TableSpec
from stratus.catalog.specs import KEY_PROPERTY
from stratus.engine.local import duck_type
from stratus.lakehouse import origin
from stratus.lineage.model import ColumnEdge, LineageEvent
from stratus.security.actions import Resource
from stratus.security.authz import Identity
from stratus.security.governance import LOCAL_ADMIN
from stratus.sql import handlers, timetravel, views
from stratus.sql import parse as p
from stratus.sql.errors import SqlExecutionError, SqlSyntaxError, UnsupportedStatement
from stratus.sql.execution import (
    Parameters,
    Reader,
    Run,
    Source,
    bind,
    rewrite,
    secured_database,
    valid_column_name,
)
from stratus.sql.lineage_edges import DIRECT, LineageUnavailable, column_edges
from stratus.sql.types import column_dict, fields_of, storable, type_text
from stratus.tables.protect import PII_TAG
from stratus.tables.service import check_pii_layout

if TYPE_CHECKING:
    from stratus.catalog.commands import CatalogCommands
    from stratus.catalog.metastore import MetastoreService
    from stratus.config import Settings
    from stratus.engine import LocalEngine
    from stratus.lakehouse.storage import Storage
    from stratus.lakehouse.tables import Lakehouse
    from stratus.lineage.model import LineageSink
    from stratus.security.authz import Authorizer
    from stratus.tables.service import TableService

log = logging.getLogger(__name__)
DEFAULT_CATALOG, DEFAULT_SCHEMA = "main", "default"
MIXED_PII = "pii"  # the kind of a column derived from PII columns of different kinds


@dataclass
class SqlResult:
    statement_id: str
    statement_type: str
    data: pa.Table
    truncated: bool = False
    affected_rows: int | None = None
    table: str | None = None  # the table created, written, dropped or described

    def envelope(self) -> dict[str, Any]:
        return {
            "statement_id": self.statement_id,
            "statement_type": self.statement_type,
            "columns": [{"name": f.name, "type": type_text(f.type)} for f in self.data.schema],
            "row_count": self.data.num_rows,
            "truncated": self.truncated,
            "affected_rows": self.affected_rows,
            "table": self.table,
        }


def _check_parts(parts: Sequence[str]) -> None:
    """A quoted name part (`a.b`) may hold what a name cannot: '.' would change its meaning."""
    for part in parts:
        if not part or "." in part:
            raise InvalidArgument(f"{part!r} is not a valid name: names cannot contain '.'")


def _empty() -> pa.Table:
    return pa.table({})


def _rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> pa.Table:
    data = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
    return pa.table(
        {c: pa.array(v, pa.bool_() if c == "isTemporary" else pa.string()) for c, v in data.items()}
    )


class SqlService:
    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        lakehouse: Lakehouse,
        engine: LocalEngine,
        tables: TableService,
        metastore: MetastoreService,
        authorizer: Authorizer,
        catalog: CatalogCommands,
        lineage: LineageSink,
    ) -> None:
        self.settings = settings
        self.tables = tables
        self.lakehouse = lakehouse
        self.metastore = metastore
        self.authz = authorizer
        self.catalog = catalog
        self.lineage = lineage
        self.protector = tables.protector
        self.reader = Reader(lakehouse, engine, tables.protector)
        self._db = secured_database(storage)
        self._lock = threading.Lock()
        self._default_ready = False
        self._info: dict[str, tuple[TableSpec, dict[str, str]]] = {}
        self._info_generation = -1

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()

    # ---- entry points --------------------------------------------------------------------
    def parse(self, text: str) -> p.Statement:
        try:
            return p.parse(text)
        except RecursionError:  # sqlglot's parser recurses once per nesting level
            raise SqlSyntaxError("the statement is nested too deeply") from None

    def execute(self, text: str, parameters: Any = None, who: Identity = LOCAL_ADMIN) -> SqlResult:
        return self.run(self.parse(text), parameters, who)

    def run(self, stmt: p.Statement, parameters: Any, who: Identity) -> SqlResult:
        params = Parameters.of(parameters)
        sid = str(uuid.uuid4())
        handler = {
            p.SELECT: self._select,
            p.CREATE_SCHEMA: self._create_schema,
            p.CREATE_TABLE: self.create_table,
            p.CREATE_TABLE_AS_SELECT: self.ctas,
            p.INSERT: self.insert,
            p.DROP_TABLE: self.drop,
            p.SET_TAGS: self._tags,
            p.UNSET_TAGS: self._tags,
            p.GRANT: self._grant,
            p.REVOKE: self._grant,
            p.DESCRIBE: self._describe,
            p.SHOW_TABLES: self._show_tables,
            p.SHOW_SCHEMAS: self._show_schemas,
        }.get(stmt.kind)
        handler = handlers.route(self, stmt) or handler  # DML, views, time travel, maintenance
        assert handler is not None
        try:
            with origin.committing_as(who.name, sid):
                result: SqlResult = handler(sid, stmt, params, who)
        except RecursionError:  # rewriting or printing a deeply nested tree
            raise UnsupportedStatement("expressions nested this deeply") from None
        return result

    def securable(self, stmt: p.Statement) -> tuple[str | None, str | None]:
        """What the statement is about, for the audit log (no side effects)."""
        try:
            if stmt.kind == p.SELECT and stmt.ast is not None:
                ctes = _cte_names(stmt.ast)
                for t in stmt.ast.find_all(exp.Table):
                    if not _is_cte(t, ctes):
                        return "table", self.resolve_table(_table_parts(t))
                return None, None
            if stmt.kind in (p.SHOW_TABLES,):
                parts = stmt.args.get("container")
                return "schema", self.resolve_schema(parts) if parts else "main.default"
            if stmt.kind == p.SHOW_SCHEMAS:
                parts = stmt.args.get("container")
                return "catalog", parts[0] if parts else DEFAULT_CATALOG
            if stmt.kind == p.CREATE_SCHEMA:
                return "schema", self.resolve_schema(stmt.args["name"])
            if stmt.kind in (p.GRANT, p.REVOKE, p.SET_TAGS, p.UNSET_TAGS):
                kind = stmt.args["securable_type"]
                return kind, self._securable_name(kind, stmt.args["name"])
            return "table", self.resolve_table(stmt.args["name"])
        except (InvalidArgument, KeyError):
            return None, None

    # ---- names ---------------------------------------------------------------------------
    def resolve_table(self, parts: Sequence[str]) -> str:
        _check_parts(parts)
        if len(parts) == 1:
            parts = (DEFAULT_CATALOG, DEFAULT_SCHEMA, *parts)
        elif len(parts) == 2:
            parts = (DEFAULT_CATALOG, *parts)
        if len(parts) != 3:
            raise InvalidArgument(f"{'.'.join(parts)}: a table name has at most 3 parts")
        return ".".join(parts)

    def resolve_schema(self, parts: Sequence[str]) -> str:
        _check_parts(parts)
        if len(parts) == 1:
            parts = (DEFAULT_CATALOG, *parts)
        if len(parts) != 2:
            raise InvalidArgument(f"{'.'.join(parts)}: a schema name is [catalog.]schema")
        return ".".join(parts)

    def _securable_name(self, kind: str, parts: Sequence[str]) -> str:
        if kind == "metastore":
            return ""
        if kind == "catalog":
            if len(parts) != 1:
                raise InvalidArgument(f"{'.'.join(parts)}: a catalog name has one part")
            return parts[0]
        if kind == "schema":
            return self.resolve_schema(parts)
        return self.resolve_table(parts)

    def ensure_default(self, full_name: str) -> None:
        """``main.default`` exists once anything is created in or listed from it."""
        if self._default_ready or full_name.split(".")[:2] != [DEFAULT_CATALOG, DEFAULT_SCHEMA]:
            return
        try:
            self.metastore.get_schema("main.default")
        except NotFound:
            with contextlib.suppress(AlreadyExists):
                self.catalog.create_schema(
                    LOCAL_ADMIN, DEFAULT_CATALOG, DEFAULT_SCHEMA, comment="Default schema"
                )
        self._default_ready = True

    def check_writable(self, full_name: str, doing: str) -> None:
        """Refuse INSERT (``doing="written"``) and CREATE OR REPLACE on built-in tables."""
        if not is_builtin("table", full_name):
            return
        if full_name.split(".")[0] == "system":
            raise PermissionDenied(
                f"table {full_name} is built in and cannot be {doing} with SQL "
                "(Stratus itself writes the system tables)"
            )
        raise PermissionDenied(
            f"table {full_name} is built in and cannot be {doing} with SQL: with MODIFY on it, "
            "MERGE adds or changes its rows and UPDATE and DELETE change them "
            "(`stratus ingest` loads files into it)"
        )

    def sources(self, query: exp.Expr, who: Identity) -> list[Source]:
        """Every catalog table ``query`` reads, resolved and authorized (SELECT) before any
        data is read; their references are rewritten to full names."""
        used = views.expand(self, query, who)  # a view's tables are read with its owner's rights
        ctes = _cte_names(query)
        found: dict[tuple[str, str | None], Source] = {}
        allowed: set[tuple[str, str]] = set()
        for node in list(query.find_all(exp.Table)):
            if _is_cte(node, ctes):
                continue
            full_name = self.resolve_table(_table_parts(node))
            reader: Identity = node.meta.get(views.READ_AS, who)
            if (full_name, reader.name) not in allowed:
                self.authz.require(reader, "table.read", Resource("table", full_name))
                allowed.add((full_name, reader.name))
            version = timetravel.pinned(node)
            pin = version.text() if version is not None else None
            src = found.get((full_name, pin))
            if src is None:
                spec, pii = self.table_info(full_name)
                unmask = self.authz.allowed(who, "table.unmask", Resource("table", full_name))
                src = Source(full_name, spec, pii, unmask=unmask)
                if version is not None:
                    timetravel.pin(self, src, version)
                found[(full_name, pin)] = src
            src.nodes.append(node)
            catalog, schema, name = full_name.split(".")
            if node.args.get("alias") is None:
                node.set("alias", exp.TableAlias(this=exp.to_identifier(node.name)))
            node.set("this", exp.to_identifier(name))
            node.set("db", exp.to_identifier(schema))
            node.set("catalog", exp.to_identifier(catalog))
        return views.Sources(found.values(), used)

    def table_info(self, full_name: str) -> tuple[TableSpec, dict[str, str]]:
        """A table's spec and PII columns, cached until the metastore's generation moves (tags,
        tables and grants all move it; the authorizer notices within its check interval)."""
        generation = self.authz.snapshot().generation
        with self._lock:
            if self._info_generation != generation:
                self._info.clear()
                self._info_generation = generation
            found = self._info.get(full_name)
        if found is None:
            found = (self.tables.spec(full_name), self.protector.pii_columns(full_name))
            with self._lock:
                if self._info_generation == generation:
                    self._info[full_name] = found
        return found

    def new_run(self) -> Run:
        return Run(self._db, self._lock, self.settings.sql_timeout_seconds)

    # ---- SELECT --------------------------------------------------------------------------
    def _select(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        query = stmt.ast
        assert query is not None
        values = bind(query, params)
        sources = self.sources(query, who)
        with self.new_run() as run:
            self.reader.load(run, sources, query, values)
            rewrite(sources)
            data, truncated = run.rows(
                query.sql(dialect="duckdb"), values, self.settings.sql_max_rows
            )
        return SqlResult(sid, stmt.kind, data, truncated=truncated)

    def query_table(
        self, run: Run, query: exp.Expr, sources: list[Source], values: Mapping
    ) -> pa.Table:
        self.reader.load(run, sources, query, values)
        rewrite(sources)
        return run.table(query.sql(dialect="duckdb"), values)

    # ---- lineage -------------------------------------------------------------------------
    def edges_of(
        self, query: exp.Expr, sources: list[Source], targets: Sequence[str] | None
    ) -> tuple[list[str], tuple[ColumnEdge, ...]]:
        schemas = {s.full_name: {f.name: type_text(f.type) for f in s.spec.schema} for s in sources}
        try:
            return column_edges(query, schemas, targets)
        except LineageUnavailable as exc:
            if any(s.pii for s in sources):
                raise SqlExecutionError(
                    "cannot work out which columns come from PII columns, so the result cannot "
                    f"be protected: {exc}",
                    parameter="statement",
                ) from None
            log.warning("no column lineage for a statement: %s", exc)
            return [], ()

    def inherited_pii(
        self, edges: Sequence[ColumnEdge], sources: Sequence[Source]
    ) -> dict[str, str]:
        """Target column -> PII kind from its DIRECT sources (``pii`` if they differ)."""
        pii = {s.full_name: s.pii for s in sources}
        kinds: dict[str, set[str]] = {}
        for e in edges:
            if e.transformation in DIRECT:
                kind = pii.get(e.source_table, {}).get(e.source_column)
                if kind:
                    kinds.setdefault(e.target_column, set()).add(kind)
        return {c: next(iter(k)) if len(k) == 1 else MIXED_PII for c, k in kinds.items()}

    def lineage_event(
        self,
        sid: str,
        text: str,
        who: Identity,
        target: str,
        sources: Sequence[Source],
        edges: tuple[ColumnEdge, ...],
        schema: pa.Schema | None,
    ) -> LineageEvent:
        return LineageEvent(
            run_id=sid,
            job_name="sql",
            entity_type="SQL",
            principal=who.name,
            event_time=dt.datetime.now(dt.UTC),
            target_table=target,
            source_tables=views.source_tables(sources),
            column_edges=edges,
            sql=text,
            target_schema=_schema_pairs(schema) if schema is not None else (),
        )

    @contextlib.contextmanager
    def lineage_run(self, event: LineageEvent, *, report: bool = True) -> Iterator[None]:
        """A statement's lineage run around its work: started before it, failed (with the
        reason) if it raises, completed after it; nothing is reported unless ``report`` (a
        statement that reads no table has no lineage)."""
        if report:
            self.report_lineage("start", event)
        try:
            yield
        except Exception as exc:
            if report:
                self.report_lineage("fail", event, _reason(exc))
            raise
        if report:
            self.report_lineage("complete", event)

    def report_lineage(self, method: str, event: LineageEvent, *args: Any) -> None:
        if method == "start":
            self.lineage.start(event)  # before any work: a failure here stops it
            return
        try:
            getattr(self.lineage, method)(event, *args)
        except Exception:
            log.exception("lineage %s of statement %s not reported", method, event.run_id)

    # ---- CREATE SCHEMA -------------------------------------------------------------------
    def _create_schema(
        self, sid: str, stmt: p.Statement, params: Parameters, who: Identity
    ) -> SqlResult:
        full_name = self.resolve_schema(stmt.args["name"])
        catalog, schema = full_name.split(".")
        try:
            self.catalog.create_schema(who, catalog, schema, comment=stmt.args["comment"])
        except AlreadyExists:
            if not stmt.args["if_not_exists"]:
                raise
        return SqlResult(sid, stmt.kind, _empty(), table=None)

    # ---- CREATE TABLE --------------------------------------------------------------------
    def _prepare_create(self, stmt: p.Statement, who: Identity) -> tuple[str, bool]:
        """The new table's name, authorized; True if it exists and IF NOT EXISTS says skip."""
        full_name = self.resolve_table(stmt.args["name"])
        catalog, schema, name = full_name.split(".")
        check_name(name, "table")
        self.ensure_default(full_name)
        self.catalog.require(who, "schema.create_table", "schema", f"{catalog}.{schema}")
        try:
            self.metastore.get_table(full_name)
        except NotFound:
            return full_name, False
        if stmt.args["if_not_exists"]:
            return full_name, True
        raise AlreadyExists(f"table {full_name} already exists")

    def _register(
        self,
        full_name: str,
        schema: pa.Schema,
        who: Identity,
        partition_by: Sequence[str],
        comment: str | None,
        properties: Mapping[str, str],
    ) -> TableSpec:
        names = [f.name for f in schema]
        lowered = [n.lower() for n in names]
        for n in names:
            if not valid_column_name(n):
                raise InvalidArgument(
                    f"column name {n!r} is not valid: use letters, digits and _ (give "
                    "expressions an alias: ... AS name)",
                    parameter="statement",
                )
            if lowered.count(n.lower()) > 1:
                raise InvalidArgument(f"column {n!r} appears twice", parameter="statement")
        for c in partition_by:
            if c not in names:
                raise InvalidArgument(f"PARTITIONED BY names {c!r}, which is not a column")
        if len(partition_by) >= len(names):
            raise InvalidArgument("a table needs at least one column that is not a partition")
        key = [k for k in properties.get(KEY_PROPERTY, "").split(",") if k]
        missing = [k for k in key if k not in names]
        if missing:
            raise InvalidArgument(f"{KEY_PROPERTY} names unknown column(s) {', '.join(missing)}")
        catalog, schema_name, name = full_name.split(".")
        columns = [
            column_dict(f, i, partition_by.index(f.name) if f.name in partition_by else None)
            for i, f in enumerate(schema)
        ]
        self.catalog.create_table(
            who,
            catalog,
            schema_name,
            name,
            columns=columns,
            comment=comment,
            properties=properties,
        )
        return self.tables.spec(full_name)

    def _unregister(self, full_name: str) -> None:
        """Undo a registration whose first write failed (the system undoes its own step)."""
        with contextlib.suppress(NotFound):
            self.catalog.drop(LOCAL_ADMIN, "table", full_name, if_exists=True)

    def create_table(
        self, sid: str, stmt: p.Statement, params: Parameters, who: Identity
    ) -> SqlResult:
        full_name, skip = self._prepare_create(stmt, who)
        if skip:
            return SqlResult(sid, stmt.kind, _empty(), table=full_name)
        fields = fields_of(stmt.args["columns"])
        spec = self._register(
            full_name,
            pa.schema(fields),
            who,
            stmt.args["partition_by"],
            stmt.args["comment"],
            stmt.args["properties"],
        )
        try:
            self.tables.write_new(spec, spec.schema.empty_table())
        except Exception:
            self._unregister(full_name)
            raise
        return SqlResult(sid, stmt.kind, _empty(), table=full_name)

    def ctas(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        full_name, skip = self._prepare_create(stmt, who)
        if skip:
            return SqlResult(sid, stmt.kind, _empty(), table=full_name)
        query: exp.Expr = stmt.args["query"]
        values = bind(query, params)
        sources = self.sources(query, who)
        names, edges = self.edges_of(query, sources, None)
        event = self.lineage_event(sid, stmt.text, who, full_name, sources, edges, None)
        if sources:
            self.report_lineage("start", event)
        try:
            with self.new_run() as run:
                data = self.query_table(run, query, sources, values)
                run.check()
            fields = [pa.field(f.name, storable(f.name, f.type)) for f in data.schema]
            data = data.cast(pa.schema(fields))
            if names and len(names) == len(fields) and names != data.column_names:
                rename = dict(zip(names, data.column_names, strict=True))
                edges = tuple(replace(e, target_column=rename[e.target_column]) for e in edges)
            spec = self._register(
                full_name,
                data.schema,
                who,
                stmt.args["partition_by"],
                stmt.args["comment"],
                stmt.args["properties"],
            )
            try:
                inherited = self.inherited_pii(edges, sources)
                check_pii_layout(full_name, spec, inherited, parameter="statement")
                table_id = self.metastore.get_table(full_name).id
                for column, kind in inherited.items():
                    if column in data.column_names:
                        self.metastore.set_tags("table", table_id, {PII_TAG: kind}, column=column)
                self.tables.write_new(spec, data)
            except Exception:
                self._unregister(full_name)
                raise
        except Exception as exc:
            if sources:
                self.report_lineage("fail", event, _reason(exc))
            raise
        if sources:
            done = replace(event, column_edges=edges, target_schema=_schema_pairs(spec.schema))
            self.report_lineage("complete", done)
        return SqlResult(sid, stmt.kind, _empty(), affected_rows=data.num_rows, table=full_name)

    # ---- INSERT --------------------------------------------------------------------------
    def insert(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        full_name = self.resolve_table(stmt.args["name"])
        self.authz.require(who, "table.modify", Resource("table", full_name))
        self.check_writable(full_name, "written")
        spec = self.tables.spec(full_name)
        names = list(spec.schema.names)
        by_lower = {n.lower(): n for n in names}
        targets = names
        if stmt.args["columns"] is not None:
            targets = []
            for c in stmt.args["columns"]:
                if c.lower() not in by_lower:
                    raise InvalidArgument(f"{full_name} has no column {c!r}", parameter="statement")
                targets.append(by_lower[c.lower()])
            if len(set(targets)) != len(targets):
                raise InvalidArgument("a column is named twice", parameter="statement")
        tree = stmt.ast
        assert isinstance(tree, exp.Insert)
        source = tree.expression
        values = bind(source, params)
        sources: list[Source] = []
        edges: tuple[ColumnEdge, ...] = ()
        if not isinstance(source, exp.Values):
            sources = self.sources(source, who)
            _, edges = self.edges_of(source, sources, targets)
        event = self.lineage_event(sid, stmt.text, who, full_name, sources, edges, spec.schema)
        with self.lineage_run(event, report=bool(sources)):
            affected = self._insert_rows(full_name, spec, targets, source, sources, values, edges)
        return SqlResult(sid, stmt.kind, _empty(), affected_rows=affected, table=full_name)

    def _insert_rows(
        self,
        full_name: str,
        spec: TableSpec,
        targets: list[str],
        source: exp.Expr,
        sources: list[Source],
        values: Mapping,
        edges: Sequence[ColumnEdge],
    ) -> int:
        with self.new_run() as run:
            incoming = self.query_table(run, source, sources, values)
            if incoming.num_columns != len(targets):
                raise SqlExecutionError(
                    f"INSERT gives {incoming.num_columns} value(s) per row for "
                    f"{len(targets)} column(s) ({', '.join(targets)})",
                    parameter="statement",
                )
            positional = incoming.rename_columns([f"c{i}" for i in range(len(targets))])
            run.register("__stratus_incoming", positional, "the inserted rows")
            casts = []
            for f in spec.schema:
                typ = duck_type(f.type)
                if f.name in targets:
                    casts.append(f'CAST(c{targets.index(f.name)} AS {typ}) AS "{f.name}"')
                else:
                    casts.append(f'CAST(NULL AS {typ}) AS "{f.name}"')
            data = run.table(f"SELECT {', '.join(casts)} FROM __stratus_incoming")
            run.check()
        for f in spec.schema:
            if not f.nullable and data.column(f.name).null_count:
                raise SqlExecutionError(
                    f"column {f.name} is NOT NULL but the INSERT gives it null",
                    parameter="statement",
                )
        data = data.cast(spec.schema)
        if data.num_rows == 0:
            return 0
        pii = self.protector.pii_columns(full_name)
        inherited = self.inherited_pii(edges, sources)
        check_pii_layout(
            full_name,
            spec,
            {c: k for c, k in inherited.items() if c not in pii},
            parameter="statement",
        )
        for column, kind in inherited.items():
            if column not in pii:  # PII flowing into a plaintext column: protect it first
                self.tables.set_pii(full_name, column, kind)
                pii = self.protector.pii_columns(full_name)
        physical = self.protector.physical_spec(spec, pii)
        encrypted = self.protector.encrypt(spec, data, pii)
        if spec.key:
            keys = data.select(list(spec.key))
            if keys.group_by(list(spec.key)).aggregate([]).num_rows != keys.num_rows:
                raise SqlExecutionError(
                    f"the INSERT gives several rows with the same key ({', '.join(spec.key)})",
                    parameter="statement",
                )
            result = self.lakehouse.merge(physical, encrypted)
            return result.inserted + result.updated
        self.lakehouse.append(physical, encrypted)
        return data.num_rows

    # ---- DROP TABLE ----------------------------------------------------------------------
    def drop(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        full_name = self.resolve_table(stmt.args["name"])
        # a MANAGED table's data goes with it, an EXTERNAL table's stays (as the REST API)
        self.catalog.drop(who, "table", full_name, if_exists=stmt.args["if_exists"])
        return SqlResult(sid, stmt.kind, _empty(), table=full_name)

    # ---- tags ----------------------------------------------------------------------------
    def _tags(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        kind = stmt.args["securable_type"]
        name = self._securable_name(kind, stmt.args["name"])
        column: str | None = stmt.args["column"]
        tags: dict[str, str | None] = stmt.args["tags"]
        if stmt.kind == p.SET_TAGS:
            self.catalog.set_tags(who, kind, name, tags, column)
        else:
            self.catalog.unset_tags(who, kind, name, list(tags), column)
        return SqlResult(sid, stmt.kind, _empty(), table=name if kind == "table" else None)

    # ---- GRANT / REVOKE ------------------------------------------------------------------
    def _grant(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        kind = stmt.args["securable_type"]
        name = self._securable_name(kind, stmt.args["name"])
        principals, privileges = stmt.args["principals"], stmt.args["privileges"]
        self.catalog.grant(who, kind, name, principals, privileges, revoke=stmt.kind == p.REVOKE)
        return SqlResult(sid, stmt.kind, _empty(), table=name if kind == "table" else None)

    # ---- DESCRIBE / SHOW -----------------------------------------------------------------
    def _describe(
        self, sid: str, stmt: p.Statement, params: Parameters, who: Identity
    ) -> SqlResult:
        full_name = self.resolve_table(stmt.args["name"])
        table = self.catalog.get(who, "table", full_name)
        rows = [
            (c["name"], c.get("type_text") or str(c.get("type_name", "")).lower(), c.get("comment"))
            for c in sorted(table.columns or [], key=lambda c: c.get("position", 0))
        ]
        return SqlResult(
            sid, stmt.kind, _rows(["col_name", "data_type", "comment"], rows), table=full_name
        )

    def _show_tables(
        self, sid: str, stmt: p.Statement, params: Parameters, who: Identity
    ) -> SqlResult:
        parts = stmt.args["container"]
        schema = self.resolve_schema(parts) if parts else "main.default"
        self.ensure_default(schema)
        schema_name = schema.split(".")[1]
        tables, _ = self.catalog.list_visible(who, "table", schema)
        pattern = stmt.args["pattern"]
        rows = [(schema_name, t.name, False) for t in tables if _like(t.name, pattern)]
        return SqlResult(sid, stmt.kind, _rows(["database", "tableName", "isTemporary"], rows))

    def _show_schemas(
        self, sid: str, stmt: p.Statement, params: Parameters, who: Identity
    ) -> SqlResult:
        parts = stmt.args["container"]
        if parts and len(parts) != 1:
            raise InvalidArgument("SHOW SCHEMAS IN names a catalog")
        catalog = parts[0] if parts else DEFAULT_CATALOG
        schemas, _ = self.catalog.list_visible(who, "schema", catalog)
        pattern = stmt.args["pattern"]
        rows = [(s.name,) for s in schemas if _like(s.name, pattern)]
        return SqlResult(sid, stmt.kind, _rows(["databaseName"], rows))


# ---- helpers ----------------------------------------------------------------------------------
def _cte_names(tree: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def _is_cte(table: exp.Table, ctes: set[str]) -> bool:
    return not table.args.get("db") and table.name.lower() in ctes


def _table_parts(table: exp.Table) -> tuple[str, ...]:
    return tuple(part.name for part in table.parts)


def _schema_pairs(schema: pa.Schema) -> tuple[tuple[str, str], ...]:
    return tuple((f.name, type_text(f.type)) for f in schema)


def _like(name: str, pattern: str | None) -> bool:
    """Databricks SHOW ... LIKE: ``*`` any characters, ``|`` alternatives, case-insensitive."""
    if not pattern:
        return True
    return any(fnmatch.fnmatchcase(name.lower(), alt.strip().lower()) for alt in pattern.split("|"))


def _reason(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


__all__ = ["SqlResult", "SqlService", "UnsupportedStatement"]
