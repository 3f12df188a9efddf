"""Table specs for any table in the metastore (built-in ones come from the registry)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from stratus.catalog import models as m
from stratus.catalog import registry
from stratus.catalog.metastore import MetastoreService
from stratus.catalog.registry import TableSpec
from stratus.catalog.types import arrow_schema, column_info

KEY_PROPERTY = "stratus.key"  # comma-separated key columns, for upserts and stable paging


def spec_from_table(table: m.Table) -> TableSpec:
    columns = list(table.columns or [])
    parts = sorted(
        (c for c in columns if c.get("partition_index") is not None),
        key=lambda c: c["partition_index"],
    )
    key = tuple(k for k in (table.properties or {}).get(KEY_PROPERTY, "").split(",") if k)
    return TableSpec(
        full_name=table.full_name,
        schema=arrow_schema(columns),
        key=key,
        partition_by=[c["name"] for c in parts],
        sort_by=key,
        comment=table.comment or "",
    )


def resolve_spec(metastore: MetastoreService, full_name: str) -> TableSpec:
    """The spec of ``full_name``: built-ins by their fixed layout, others from the metastore."""
    try:
        return registry.resolve(full_name) if full_name.count(".") == 2 else _missing(full_name)
    except registry.UnknownTableError:
        return spec_from_table(metastore.get_table(full_name))


def _missing(full_name: str) -> TableSpec:
    raise registry.UnknownTableError(full_name)


def columns_of(
    schema: pa.Schema, partition_by: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Unity Catalog ColumnInfo dicts for an Arrow schema."""
    parts = list(partition_by or [])
    return [
        column_info(f, i, parts.index(f.name) if f.name in parts else None)
        for i, f in enumerate(schema)
    ]


def register_spec(
    metastore: MetastoreService,
    spec: TableSpec,
    owner: str,
    location: str,
    properties: dict[str, str] | None = None,
) -> m.Table:
    """Register a table Stratus itself writes (a built-in table, a job's output) from its spec:
    the one place its catalog entry is derived from the spec (the caller authorized it)."""
    catalog, schema, name = spec.full_name.split(".")
    return metastore.create_table(
        catalog,
        schema,
        name,
        owner,
        columns=columns_of(spec.schema, spec.partition_by),
        storage_location=location,
        comment=spec.comment,
        properties=properties,
    )
