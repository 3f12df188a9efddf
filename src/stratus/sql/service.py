"""SQL on the lakehouse: Databricks SQL statements, governed like the REST API.

``SqlService.execute(text, parameters, who)`` parses one statement (:mod:`stratus.sql.parse`),
checks the caller's privileges exactly as the REST API does, and runs it:

=========================  ===================================================================
statement                  needs
=========================  ===================================================================
SELECT (joins, CTEs, ...)  USE CATALOG + USE SCHEMA + SELECT on every table read
CREATE SCHEMA              USE CATALOG + CREATE SCHEMA on the catalog
CREATE TABLE [AS SELECT]   USE CATALOG + USE SCHEMA + CREATE TABLE on the schema (the creator
                           owns the table), plus SELECT on what the query reads
INSERT INTO                MODIFY on the table, plus SELECT on what a query reads
DROP TABLE                 ownership (of it or a container) or MANAGE
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
import shutil
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from stratus.catalog import registry
from stratus.catalog.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from stratus.catalog.metastore import PRIVILEGES, check_name
from stratus.catalog.registry import TableSpec
from stratus.catalog.specs import KEY_PROPERTY
from stratus.engine.local import duck_type
from stratus.lineage.model import ColumnEdge, LineageEvent
from stratus.security.authz import Identity
from stratus.security.governance import ADMIN, LOCAL_ADMIN
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
from stratus.sql.types import arrow_from_sql, column_dict, storable, type_text
from stratus.tables.protect import PII_TAG

if TYPE_CHECKING:
    from stratus.context import Stratus

log = logging.getLogger(__name__)
DEFAULT_CATALOG, DEFAULT_SCHEMA = "main", "default"
MIXED_PII = "pii"  # the kind of a column derived from PII columns of different kinds
MAX_TAG_VALUE = 1000
# which privileges make sense where (as the REST API)
APPLICABLE: dict[str, frozenset[str]] = {
    "metastore": frozenset(PRIVILEGES),
    "catalog": frozenset(PRIVILEGES) - {"CREATE CATALOG"},
    "schema": frozenset(PRIVILEGES) - {"CREATE CATALOG", "USE CATALOG", "CREATE SCHEMA"},
    "table": frozenset({"SELECT", "MODIFY", "APPLY TAG", "UNMASK", "MANAGE", "ALL PRIVILEGES"}),
    "volume": frozenset({"READ VOLUME", "WRITE VOLUME", "APPLY TAG", "MANAGE", "ALL PRIVILEGES"}),
}
BUILTIN_TABLES = frozenset(t.full_name for t in registry.builtin_tables())


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
    def __init__(self, stratus: Stratus) -> None:
        self.stratus = stratus
        self.settings = stratus.settings
        self.tables = stratus.tables
        self.lakehouse = stratus.lakehouse
        self.metastore = stratus.governance.metastore
        self.authz = stratus.governance.authorizer
        self.protector = stratus.tables.protector
        self.reader = Reader(stratus.lakehouse, stratus.engine, stratus.tables.protector)
        self._db = secured_database(stratus.storage)
        self._lock = threading.Lock()
        self._default_ready = False
        self._info: dict[str, tuple[TableSpec, dict[str, str]]] = {}
        self._info_generation = -1

    @classmethod
    def from_stratus(cls, stratus: Stratus) -> SqlService:
        return cls(stratus)

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
            p.CREATE_TABLE: self._create_table,
            p.CREATE_TABLE_AS_SELECT: self._ctas,
            p.INSERT: self._insert,
            p.DROP_TABLE: self._drop,
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

    def _ensure_default(self, full_name: str) -> None:
        """``main.default`` exists once anything is created in or listed from it."""
        if self._default_ready or full_name.split(".")[:2] != [DEFAULT_CATALOG, DEFAULT_SCHEMA]:
            return
        try:
            self.metastore.get_schema("main.default")
        except NotFound:
            with contextlib.suppress(AlreadyExists):
                self.metastore.create_schema(
                    DEFAULT_CATALOG, DEFAULT_SCHEMA, ADMIN, comment="Default schema"
                )
            self.authz.refresh()
        self._default_ready = True

    # ---- authorization (as the REST API) -------------------------------------------------
    def _see(self, who: Identity, kind: str, name: str) -> None:
        if not self.authz.can_see(who, kind, name):
            raise NotFound(f"{kind} {name or 'metastore'} does not exist")

    def _use(self, who: Identity, kind: str, name: str) -> None:
        self._see(who, kind, name)
        self.authz.require_use(who, kind, name)

    def _manage(self, who: Identity, kind: str, name: str) -> None:
        self._use(who, kind, name)
        self.authz.require(who, kind, name, ["OWNER", "MANAGE"])

    def _create_in_schema(self, who: Identity, schema: str, privilege: str) -> None:
        catalog = schema.split(".")[0]
        self.authz.require(who, "catalog", catalog, "USE CATALOG")
        self.authz.require(who, "schema", schema, "USE SCHEMA")
        self.authz.require(who, "schema", schema, privilege)
        if catalog == "system":
            raise PermissionDenied("catalog system is read-only: nothing can be created in it")

    def _writable(self, full_name: str, doing: str) -> None:
        if full_name in BUILTIN_TABLES or full_name.split(".")[0] == "system":
            raise PermissionDenied(
                f"table {full_name} is built in and cannot be {doing} with SQL "
                "(weather tables are written by `stratus ingest`)"
            )

    def _sources(self, query: exp.Expression, who: Identity) -> list[Source]:
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
                self.authz.require_table(reader, full_name, "SELECT")
                allowed.add((full_name, reader.name))
            version = timetravel.pinned(node)
            src = found.get((full_name, version and version.text()))
            if src is None:
                spec, pii = self._table_info(full_name)
                held = self.authz.privileges(who, "table", full_name)
                src = Source(full_name, spec, pii, unmask=bool({"UNMASK", "OWNER"} & held))
                if version is not None:
                    timetravel.pin(self, src, version)
                found[(full_name, version and version.text())] = src
            src.nodes.append(node)
            catalog, schema, name = full_name.split(".")
            if node.args.get("alias") is None:
                node.set("alias", exp.TableAlias(this=exp.to_identifier(node.name)))
            node.set("this", exp.to_identifier(name))
            node.set("db", exp.to_identifier(schema))
            node.set("catalog", exp.to_identifier(catalog))
        return views.Sources(found.values(), used)

    def _table_info(self, full_name: str) -> tuple[TableSpec, dict[str, str]]:
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

    def _run(self) -> Run:
        return Run(self._db, self._lock, self.settings.sql_timeout_seconds)

    # ---- SELECT --------------------------------------------------------------------------
    def _select(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        query = stmt.ast
        assert query is not None
        values = bind(query, params)
        sources = self._sources(query, who)
        with self._run() as run:
            self.reader.load(run, sources, query, values)
            rewrite(sources)
            data, truncated = run.rows(
                query.sql(dialect="duckdb"), values, self.settings.sql_max_rows
            )
        return SqlResult(sid, stmt.kind, data, truncated=truncated)

    def _query_table(
        self, run: Run, query: exp.Expression, sources: list[Source], values: Mapping
    ) -> pa.Table:
        self.reader.load(run, sources, query, values)
        rewrite(sources)
        return run.table(query.sql(dialect="duckdb"), values)

    # ---- lineage -------------------------------------------------------------------------
    def _edges(
        self, query: exp.Expression, sources: list[Source], targets: Sequence[str] | None
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

    def _inherited_pii(
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

    def _event(
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

    def _lineage_call(self, method: str, event: LineageEvent, *args: Any) -> None:
        if method == "start":
            self.stratus.lineage.start(event)  # before any work: a failure here stops it
            return
        try:
            getattr(self.stratus.lineage, method)(event, *args)
        except Exception:
            log.exception("lineage %s of statement %s not reported", method, event.run_id)

    # ---- CREATE SCHEMA -------------------------------------------------------------------
    def _create_schema(
        self, sid: str, stmt: p.Statement, params: Parameters, who: Identity
    ) -> SqlResult:
        full_name = self.resolve_schema(stmt.args["name"])
        catalog, schema = full_name.split(".")
        check_name(schema, "schema")
        self.authz.require(who, "catalog", catalog, "USE CATALOG")
        self.authz.require(who, "catalog", catalog, "CREATE SCHEMA")
        if catalog == "system":
            raise PermissionDenied("catalog system is read-only: nothing can be created in it")
        try:
            self.metastore.create_schema(catalog, schema, who.name, comment=stmt.args["comment"])
        except AlreadyExists:
            if not stmt.args["if_not_exists"]:
                raise
        self.authz.refresh()
        return SqlResult(sid, stmt.kind, _empty(), table=None)

    # ---- CREATE TABLE --------------------------------------------------------------------
    def _prepare_create(self, stmt: p.Statement, who: Identity) -> tuple[str, bool]:
        """The new table's name, authorized; True if it exists and IF NOT EXISTS says skip."""
        full_name = self.resolve_table(stmt.args["name"])
        catalog, schema, name = full_name.split(".")
        check_name(name, "table")
        self._ensure_default(full_name)
        self._create_in_schema(who, f"{catalog}.{schema}", "CREATE TABLE")
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
        self.metastore.create_table(
            catalog,
            schema_name,
            name,
            who.name,
            columns=columns,
            storage_location=self.lakehouse.storage.table_url(f"{catalog}/{schema_name}/{name}"),
            comment=comment,
            properties=dict(properties),
        )
        self.authz.refresh()
        return self.tables.spec(full_name)

    def _unregister(self, full_name: str) -> None:
        with contextlib.suppress(NotFound):
            self.metastore.delete_table(full_name)
        self.authz.refresh()

    def _remove_location(self, spec: TableSpec) -> None:
        """Delete the Delta table at a table's location (its log and files): what a dropped
        table leaves behind must not reappear in a new table of the same name."""
        url = self.lakehouse.url(spec)
        storage = self.lakehouse.storage
        if storage.is_local:
            shutil.rmtree(storage.local_path(url), ignore_errors=True)
        else:
            from deltalake.fs import DeltaStorageHandler

            handler = DeltaStorageHandler(url, storage.options)
            handler.delete_dir_contents("", accept_root_dir=True, missing_dir_ok=True)
        self.lakehouse.invalidate(spec)

    def _write_new(self, spec: TableSpec, data: pa.Table) -> int:
        """The first version of a new table, in one commit."""
        pii = self.protector.pii_columns(spec.full_name)
        physical = self.protector.physical_spec(spec, pii)
        self.lakehouse.invalidate(physical)
        if self.lakehouse.table(physical) is not None:  # left by a table dropped elsewhere
            self._remove_location(physical)
        if data.num_rows == 0:
            self.lakehouse.ensure(physical)
            return 0
        return self.tables._overwrite(physical, self.protector.encrypt(spec, data, pii))

    def _create_table(
        self, sid: str, stmt: p.Statement, params: Parameters, who: Identity
    ) -> SqlResult:
        full_name, skip = self._prepare_create(stmt, who)
        if skip:
            return SqlResult(sid, stmt.kind, _empty(), table=full_name)
        fields = []
        for col in stmt.args["columns"]:
            nullable = not any(
                isinstance(c.kind, exp.NotNullColumnConstraint) for c in col.constraints
            )
            comment = next(
                (
                    c.kind.this.name
                    for c in col.constraints
                    if isinstance(c.kind, exp.CommentColumnConstraint)
                ),
                None,
            )
            fields.append(
                pa.field(
                    col.name,
                    arrow_from_sql(col.args["kind"], col.name),
                    nullable,
                    metadata={"comment": comment} if comment else None,
                )
            )
        spec = self._register(
            full_name,
            pa.schema(fields),
            who,
            stmt.args["partition_by"],
            stmt.args["comment"],
            stmt.args["properties"],
        )
        try:
            self._write_new(spec, spec.schema.empty_table())
        except Exception:
            self._unregister(full_name)
            raise
        return SqlResult(sid, stmt.kind, _empty(), table=full_name)

    def _ctas(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        full_name, skip = self._prepare_create(stmt, who)
        if skip:
            return SqlResult(sid, stmt.kind, _empty(), table=full_name)
        query: exp.Expression = stmt.args["query"]
        values = bind(query, params)
        sources = self._sources(query, who)
        names, edges = self._edges(query, sources, None)
        event = self._event(sid, stmt.text, who, full_name, sources, edges, None)
        if sources:
            self._lineage_call("start", event)
        try:
            with self._run() as run:
                data = self._query_table(run, query, sources, values)
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
                inherited = self._inherited_pii(edges, sources)
                _check_pii_layout(full_name, spec, inherited)
                table_id = self.metastore.get_table(full_name).id
                for column, kind in inherited.items():
                    if column in data.column_names:
                        self.metastore.set_tags("table", table_id, {PII_TAG: kind}, column=column)
                self._write_new(spec, data)
            except Exception:
                self._unregister(full_name)
                raise
        except Exception as exc:
            if sources:
                self._lineage_call("fail", event, _reason(exc))
            raise
        if sources:
            done = replace(event, column_edges=edges, target_schema=_schema_pairs(spec.schema))
            self._lineage_call("complete", done)
        return SqlResult(sid, stmt.kind, _empty(), affected_rows=data.num_rows, table=full_name)

    # ---- INSERT --------------------------------------------------------------------------
    def _insert(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        full_name = self.resolve_table(stmt.args["name"])
        self.authz.require_table(who, full_name, "MODIFY")
        self._writable(full_name, "written")
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
            sources = self._sources(source, who)
            _, edges = self._edges(source, sources, targets)
        event = self._event(sid, stmt.text, who, full_name, sources, edges, spec.schema)
        if sources:
            self._lineage_call("start", event)
        try:
            affected = self._insert_rows(full_name, spec, targets, source, sources, values, edges)
        except Exception as exc:
            if sources:
                self._lineage_call("fail", event, _reason(exc))
            raise
        if sources:
            self._lineage_call("complete", event)
        return SqlResult(sid, stmt.kind, _empty(), affected_rows=affected, table=full_name)

    def _insert_rows(
        self,
        full_name: str,
        spec: TableSpec,
        targets: list[str],
        source: exp.Expression,
        sources: list[Source],
        values: Mapping,
        edges: Sequence[ColumnEdge],
    ) -> int:
        with self._run() as run:
            incoming = self._query_table(run, source, sources, values)
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
        inherited = self._inherited_pii(edges, sources)
        _check_pii_layout(full_name, spec, {c: k for c, k in inherited.items() if c not in pii})
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
    def _drop(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        full_name = self.resolve_table(stmt.args["name"])
        try:
            self._manage(who, "table", full_name)
            self.metastore.get_table(full_name)
        except NotFound:
            if stmt.args["if_exists"]:
                return SqlResult(sid, stmt.kind, _empty(), table=full_name)
            raise
        self._writable(full_name, "dropped")
        spec = self.tables.spec(full_name)
        self.metastore.delete_table(full_name)
        self.authz.refresh()
        self._remove_location(spec)  # managed tables: the data goes with the table
        return SqlResult(sid, stmt.kind, _empty(), table=full_name)

    # ---- tags ----------------------------------------------------------------------------
    def _tags(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        kind = stmt.args["securable_type"]
        name = self._securable_name(kind, stmt.args["name"])
        column: str | None = stmt.args["column"]
        tags: dict[str, str | None] = stmt.args["tags"]
        for key, value in tags.items():
            if not key or len(key) > 255 or "," in key:
                raise InvalidArgument(f"tag key {key!r}: 1 to 255 characters without ','")
            if value is not None and len(value) > MAX_TAG_VALUE:
                raise InvalidArgument(f"tag {key}: values are at most {MAX_TAG_VALUE} characters")
        self._use(who, kind, name)
        self.authz.require(who, kind, name, ["APPLY TAG", "OWNER"])
        obj = self.metastore.securable(kind, name)
        if column is not None:
            by_lower = {c.get("name", "").lower(): c.get("name") for c in obj.columns or []}
            if column.lower() not in by_lower:
                raise InvalidArgument(f"table {name} has no column {column!r}")
            column = by_lower[column.lower()]
        target = name if kind == "table" else None
        if stmt.kind == p.SET_TAGS:
            rest = dict(tags)
            if column is not None and PII_TAG in rest:
                kind_ = rest.pop(PII_TAG) or PII_TAG
                self._pii_change(name, column, kind_)
            if rest:
                self.metastore.set_tags(kind, obj.id, rest, column)
        else:
            keys = list(tags)
            if column is not None and PII_TAG in keys:
                if not who.is_admin:
                    raise PermissionDenied(
                        f"{who.name} cannot remove the pii tag: it decrypts the column "
                        "(metastore admins only)"
                    )
                self._pii_change(name, column, None)
                keys.remove(PII_TAG)
            if keys:
                self.metastore.unset_tags(kind, obj.id, keys, column)
        return SqlResult(sid, stmt.kind, _empty(), table=target)

    def _pii_change(self, table: str, column: str, kind: str | None) -> None:
        if table in BUILTIN_TABLES:
            raise InvalidArgument(f"{table} is a built-in table: its columns cannot be PII")
        if kind is not None:
            _check_pii_layout(table, self.tables.spec(table), {column: kind})
        self.tables.set_pii(table, column, kind)

    # ---- GRANT / REVOKE ------------------------------------------------------------------
    def _grant(self, sid: str, stmt: p.Statement, params: Parameters, who: Identity) -> SqlResult:
        kind = stmt.args["securable_type"]
        name = self._securable_name(kind, stmt.args["name"])
        privileges: list[str] = stmt.args["privileges"]
        granting = stmt.kind == p.GRANT
        for priv in privileges:
            if priv not in PRIVILEGES:
                raise InvalidArgument(f"unknown privilege {priv}", parameter="statement")
            if granting and priv not in APPLICABLE[kind]:
                raise InvalidArgument(f"{priv} cannot be granted on a {kind}")
        if kind != "metastore":
            self._see(who, kind, name)
        self.authz.require(who, kind, name, ["OWNER", "MANAGE"])
        obj = self.metastore.securable(kind, name)
        op = "add" if granting else "remove"
        if not granting and "ALL PRIVILEGES" in privileges:  # as Databricks: every privilege
            privileges = list(PRIVILEGES)
        changes = [
            {"principal": who_, "add": [], "remove": [], op: privileges}
            for who_ in stmt.args["principals"]
        ]
        self.metastore.update_grants(kind, obj.id, changes)
        self.authz.refresh()
        return SqlResult(sid, stmt.kind, _empty(), table=name if kind == "table" else None)

    # ---- DESCRIBE / SHOW -----------------------------------------------------------------
    def _describe(
        self, sid: str, stmt: p.Statement, params: Parameters, who: Identity
    ) -> SqlResult:
        full_name = self.resolve_table(stmt.args["name"])
        self._use(who, "table", full_name)
        table = self.metastore.get_table(full_name)
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
        self._ensure_default(schema)
        catalog, schema_name = schema.split(".")
        self.authz.require(who, "catalog", catalog, "USE CATALOG")
        self.authz.require(who, "schema", schema, "USE SCHEMA")
        names: list[str] = []
        token = None
        while True:
            page = self.metastore.list_tables(catalog, schema_name, 10_000, token)
            names += [t.name for t in page.items]
            token = page.next_page_token
            if not token:
                break
        pattern = stmt.args["pattern"]
        rows = [
            (schema_name, n, False)
            for n in names
            if self.authz.can_see(who, "table", f"{schema}.{n}") and _like(n, pattern)
        ]
        return SqlResult(sid, stmt.kind, _rows(["database", "tableName", "isTemporary"], rows))

    def _show_schemas(
        self, sid: str, stmt: p.Statement, params: Parameters, who: Identity
    ) -> SqlResult:
        parts = stmt.args["container"]
        if parts and len(parts) != 1:
            raise InvalidArgument("SHOW SCHEMAS IN names a catalog")
        catalog = parts[0] if parts else DEFAULT_CATALOG
        self.authz.require(who, "catalog", catalog, "USE CATALOG")
        names: list[str] = []
        token = None
        while True:
            page = self.metastore.list_schemas(catalog, 10_000, token)
            names += [s.name for s in page.items]
            token = page.next_page_token
            if not token:
                break
        pattern = stmt.args["pattern"]
        rows = [
            (n,)
            for n in names
            if self.authz.can_see(who, "schema", f"{catalog}.{n}") and _like(n, pattern)
        ]
        return SqlResult(sid, stmt.kind, _rows(["databaseName"], rows))


# ---- helpers ----------------------------------------------------------------------------------
def _check_pii_layout(table: str, spec: TableSpec, pii: Mapping[str, str]) -> None:
    """PII columns are encrypted with a fresh nonce per value: they cannot be partition
    columns (one folder per ciphertext) or keys (matched and ordered in plaintext)."""
    for column in pii:
        if column in spec.partition_by:
            raise InvalidArgument(
                f"column {column} of {table} would hold PII, but it is a partition column "
                "(PII is encrypted: partition by another column)",
                parameter="statement",
            )
        if column in spec.key:
            raise InvalidArgument(
                f"column {column} of {table} would hold PII, but it is a key column "
                "(keys cannot be PII: use a surrogate key)",
                parameter="statement",
            )


def _cte_names(tree: exp.Expression) -> set[str]:
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
