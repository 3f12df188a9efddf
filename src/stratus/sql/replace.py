"""``CREATE OR REPLACE TABLE t (...)`` and ``CREATE OR REPLACE TABLE t AS SELECT ...``.

A table that does not exist yet is created as by CREATE TABLE. An existing one stays the same
table (as in Databricks): its owner, grants, tags and history are kept, and its new schema and
rows are one Delta commit (an overwrite with the new schema), so ``VERSION AS OF`` an earlier
version still reads the old rows where the columns match. It needs MODIFY on the table (plus
SELECT on what the query reads). PII tags stay on the columns that keep their name; columns
made from PII columns are tagged with their kind before anything is written. The catalog
change is undone if the write fails.
"""

from __future__ import annotations

from dataclasses import replace as dc_replace
from typing import TYPE_CHECKING

import pyarrow as pa
from sqlglot import exp

from stratus.catalog.errors import InvalidArgument
from stratus.catalog.specs import KEY_PROPERTY
from stratus.security.actions import Resource
from stratus.security.authz import Identity
from stratus.sql import parse as p
from stratus.sql.errors import SqlSyntaxError
from stratus.sql.execution import Parameters, bind, valid_column_name
from stratus.sql.types import column_dict, fields_of, storable
from stratus.tables.protect import PII_TAG
from stratus.tables.service import check_pii_layout

if TYPE_CHECKING:
    from stratus.sql.service import SqlResult, SqlService


def replace_table(
    svc: SqlService, sid: str, stmt: p.Statement, params: Parameters, who: Identity
) -> SqlResult:
    from stratus.sql.service import SqlResult

    if stmt.args["if_not_exists"]:
        raise SqlSyntaxError("CREATE OR REPLACE TABLE ... IF NOT EXISTS: choose one")
    full_name = svc.resolve_table(stmt.args["name"])
    try:
        table = svc.metastore.get_table(full_name)
        svc.authz.require(who, "table.modify", Resource("table", full_name))
    except Exception:  # not there (or not visible): created as by CREATE TABLE
        fresh = p.Statement(stmt.kind, stmt.text, stmt.ast, {**stmt.args, "replace": False})
        if stmt.kind == p.CREATE_TABLE:
            return svc.create_table(sid, fresh, params, who)
        return svc.ctas(sid, fresh, params, who)
    svc.check_writable(full_name, "replaced")
    if table.table_type == "VIEW":
        raise InvalidArgument(f"{full_name} is a view: CREATE OR REPLACE VIEW replaces views")
    old_spec = svc.tables.spec(full_name)
    old_pii = svc.protector.pii_columns(full_name)
    sources: list = []
    edges: tuple = ()
    if stmt.kind == p.CREATE_TABLE:
        schema = pa.schema(fields_of(stmt.args["columns"]))
        data = schema.empty_table()
    else:
        query: exp.Expr = stmt.args["query"]
        values = bind(query, params)
        sources = svc.sources(query, who)
        names, edges = svc.edges_of(query, sources, None)
        with svc.new_run() as run:
            data = svc.query_table(run, query, sources, values)
            run.check()
        fields = [pa.field(f.name, storable(f.name, f.type)) for f in data.schema]
        data = data.cast(pa.schema(fields))
        schema = data.schema
    names = list(schema.names)
    lowered = [n.lower() for n in names]
    for n in names:
        if not valid_column_name(n) or lowered.count(n.lower()) > 1:
            raise InvalidArgument(f"column name {n!r} is not valid or appears twice")
    partition_by = list(stmt.args["partition_by"])
    if any(c not in names for c in partition_by) or len(partition_by) >= len(names):
        raise InvalidArgument("PARTITIONED BY names columns of the table (and not all of them)")
    properties = dict(stmt.args["properties"])
    key = [k for k in properties.get(KEY_PROPERTY, "").split(",") if k]
    if any(k not in names for k in key):
        raise InvalidArgument(f"{KEY_PROPERTY} names unknown column(s)")
    inherited = svc.inherited_pii(edges, sources)
    pii = {c: k for c, k in old_pii.items() if c in names} | inherited
    spec = dc_replace(
        old_spec, schema=schema, key=tuple(key), partition_by=partition_by, sort_by=tuple(key)
    )
    check_pii_layout(full_name, spec, pii, parameter="statement")
    if not stmt.args["properties"] and old_spec.key and set(old_spec.key) <= set(names):
        spec = dc_replace(spec, key=old_spec.key, sort_by=old_spec.key)
    event = svc.lineage_event(sid, stmt.text, who, full_name, sources, edges, schema)
    old_columns = list(table.columns or [])
    columns = [
        column_dict(f, i, partition_by.index(f.name) if f.name in partition_by else None)
        for i, f in enumerate(schema)
    ]
    with svc.lineage_run(event, report=bool(sources)):
        svc.metastore.set_columns(full_name, who.name, columns)
        if stmt.args["comment"] is not None or properties:
            svc.metastore.update_table(
                full_name, who.name, comment=stmt.args["comment"], properties=properties or None
            )
        for column in old_pii:
            if column not in pii:
                svc.metastore.unset_tags("table", table.id, [PII_TAG], column)
        for column, kind in pii.items():
            if old_pii.get(column) != kind:
                svc.metastore.set_tags("table", table.id, {PII_TAG: kind}, column=column)
        try:
            physical = svc.protector.physical_spec(spec, pii)
            rows = svc.protector.encrypt(spec, data.cast(schema), pii)
            svc.lakehouse.overwrite(physical, rows, replace_schema=True)
        except Exception:
            svc.metastore.set_columns(full_name, who.name, old_columns)
            for column, kind in old_pii.items():
                svc.metastore.set_tags("table", table.id, {PII_TAG: kind}, column=column)
            for column in pii:
                if column not in old_pii:
                    svc.metastore.unset_tags("table", table.id, [PII_TAG], column)
            raise
        finally:
            svc.authz.refresh()
    return SqlResult(sid, stmt.kind, pa.table({}), affected_rows=data.num_rows, table=full_name)


__all__ = ["replace_table"]
