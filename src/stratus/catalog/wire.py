"""Unity Catalog wire models: metastore ORM objects to and from the OSS REST API's JSON shapes.

Pure functions, no Flask: the field names and types are exactly those of the Unity Catalog OSS
OpenAPI document (``CatalogInfo``, ``SchemaInfo``, ``TableInfo``/``ColumnInfo``, ``VolumeInfo``,
``PermissionsList``, ``GetMetastoreSummaryResponse``). Absent values are left out rather than
sent as ``null`` (the spec has no nullable fields), timestamps are epoch milliseconds and
properties are string-to-string maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from stratus.catalog import models as m
from stratus.catalog.errors import InvalidArgument

# The spec's Privilege enum. Stratus also knows APPLY TAG, MANAGE, WRITE VOLUME and ALL
# PRIVILEGES; those are accepted on input but left out of UC responses, because the official
# client rejects any privilege outside this enum when it deserializes a PermissionsList.
UC_PRIVILEGES = (
    "CREATE CATALOG",
    "USE CATALOG",
    "CREATE SCHEMA",
    "USE SCHEMA",
    "CREATE TABLE",
    "SELECT",
    "MODIFY",
    "CREATE FUNCTION",
    "EXECUTE",
    "CREATE VOLUME",
    "READ VOLUME",
    "CREATE MODEL",
    "CREATE EXTERNAL LOCATION",
    "READ FILES",
    "WRITE FILES",
    "CREATE EXTERNAL TABLE",
    "CREATE EXTERNAL VOLUME",
    "CREATE MANAGED STORAGE",
    "CREATE STORAGE CREDENTIAL",
)
TABLE_TYPES = ("MANAGED", "EXTERNAL", "STREAMING_TABLE", "MATERIALIZED_VIEW", "METRIC_VIEW", "VIEW")
DATA_SOURCE_FORMATS = ("DELTA", "CSV", "JSON", "AVRO", "PARQUET", "ORC", "TEXT")
COLUMN_TYPE_NAMES = (
    "BOOLEAN",
    "BYTE",
    "SHORT",
    "INT",
    "LONG",
    "FLOAT",
    "DOUBLE",
    "DATE",
    "TIMESTAMP",
    "TIMESTAMP_NTZ",
    "STRING",
    "BINARY",
    "DECIMAL",
    "INTERVAL",
    "ARRAY",
    "STRUCT",
    "MAP",
    "VARIANT",
    "CHAR",
    "NULL",
    "USER_DEFINED_TYPE",
    "TABLE_TYPE",
)
COLUMN_FIELDS = (
    "name",
    "type_text",
    "type_json",
    "type_name",
    "type_precision",
    "type_scale",
    "type_interval_type",
    "position",
    "comment",
    "nullable",
    "partition_index",
)
# ColumnTypeName -> (SQL type text, Delta/Spark JSON type name) for the simple types; the
# others (ARRAY, STRUCT, MAP, INTERVAL, ...) must come with their own type_text and type_json.
_SIMPLE_TYPES = {
    "BOOLEAN": ("boolean", "boolean"),
    "BYTE": ("tinyint", "byte"),
    "SHORT": ("smallint", "short"),
    "INT": ("int", "integer"),
    "LONG": ("bigint", "long"),
    "FLOAT": ("float", "float"),
    "DOUBLE": ("double", "double"),
    "DATE": ("date", "date"),
    "TIMESTAMP": ("timestamp", "timestamp"),
    "TIMESTAMP_NTZ": ("timestamp_ntz", "timestamp_ntz"),
    "STRING": ("string", "string"),
    "BINARY": ("binary", "binary"),
    "VARIANT": ("variant", "variant"),
}


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def properties(value: Mapping[str, Any] | None) -> dict[str, str]:
    """A SecurablePropertiesMap: every value a string."""
    out: dict[str, str] = {}
    for k, v in (value or {}).items():
        out[str(k)] = v if isinstance(v, str) else orjson.dumps(v).decode()
    return out


def _audit_fields(obj: Any) -> dict[str, Any]:
    return {
        "owner": obj.owner,
        "created_at": m.epoch_ms(obj.created_at),
        "created_by": obj.created_by,
        "updated_at": m.epoch_ms(obj.updated_at),
        "updated_by": obj.updated_by,
    }


# ---- securables --------------------------------------------------------------------------
def catalog_info(c: m.Catalog) -> dict[str, Any]:
    return _compact(
        {
            "name": c.name,
            "comment": c.comment,
            "properties": properties(c.properties),
            **_audit_fields(c),
            "id": c.id,
            "storage_root": c.storage_root,
        }
    )


def schema_info(s: m.Schema) -> dict[str, Any]:
    return _compact(
        {
            "name": s.name,
            "catalog_name": s.catalog.name,
            "comment": s.comment,
            "properties": properties(s.properties),
            "full_name": s.full_name,
            **_audit_fields(s),
            "schema_id": s.id,
        }
    )


def column_info(col: Mapping[str, Any]) -> dict[str, Any]:
    """A stored column as a ColumnInfo (only the spec's fields)."""
    return _compact({k: col.get(k) for k in COLUMN_FIELDS})


def table_info(t: m.Table) -> dict[str, Any]:
    columns = sorted(t.columns or [], key=lambda c: c.get("position", 0))
    return _compact(
        {
            "name": t.name,
            "catalog_name": t.schema.catalog.name,
            "schema_name": t.schema.name,
            "table_type": t.table_type,
            "data_source_format": t.data_source_format,
            "columns": [column_info(c) for c in columns],
            "storage_location": t.storage_location,
            "comment": t.comment,
            "properties": properties(t.properties),
            "view_definition": (t.properties or {}).get("stratus.view_definition"),
            **_audit_fields(t),
            "table_id": t.id,
        }
    )


def volume_info(v: m.Volume) -> dict[str, Any]:
    return _compact(
        {
            "catalog_name": v.schema.catalog.name,
            "schema_name": v.schema.name,
            "name": v.name,
            "comment": v.comment or None,  # the spec's minLength is 1
            **_audit_fields(v),
            "volume_id": v.id,
            "volume_type": v.volume_type,
            "storage_location": v.storage_location,
            "full_name": v.full_name,
        }
    )


def metastore_summary(ms: m.Metastore) -> dict[str, Any]:
    return {"metastore_id": ms.id}


# ---- grants ------------------------------------------------------------------------------
def privilege_assignments(
    grants: Mapping[str, Iterable[str]],
    *,
    principal: str | None = None,
    uc_only: bool = True,
) -> list[dict[str, Any]]:
    """[{principal, privileges}] sorted by principal; ``uc_only`` keeps the spec's enum only
    (and drops principals left with nothing)."""
    order = {p: i for i, p in enumerate(UC_PRIVILEGES)}
    out = []
    for who in sorted(grants):
        if principal is not None and who != principal:
            continue
        privs = set(grants[who])
        if uc_only:
            privs &= set(UC_PRIVILEGES)
        if privs:
            ranked = sorted(privs, key=lambda p: (order.get(p, len(order)), p))
            out.append({"principal": who, "privileges": ranked})
    return out


def permissions_list(
    grants: Mapping[str, Iterable[str]], principal: str | None = None
) -> dict[str, Any]:
    return {"privilege_assignments": privilege_assignments(grants, principal=principal)}


# ---- tags --------------------------------------------------------------------------------
def tag_list(tags: Sequence[m.Tag]) -> dict[str, Any]:
    return {
        "tags": [
            {"key": t.key, "value": t.value, "column_name": t.column_name or None} for t in tags
        ]
    }


# ---- input -------------------------------------------------------------------------------
def column_from_wire(col: Mapping[str, Any], index: int) -> dict[str, Any]:
    """A ColumnInfo from a CreateTable request as stored: type_text and type_json derived for
    simple types when absent, position defaulting to the list index."""
    where = f"columns[{index}]"
    name = col.get("name")
    if not isinstance(name, str) or not name or len(name) > 255:
        raise InvalidArgument(
            f"{where}.name must be 1 to 255 characters", parameter=f"{where}.name"
        )
    type_name = col.get("type_name")
    if type_name not in COLUMN_TYPE_NAMES:
        raise InvalidArgument(
            f"{where}.type_name {type_name!r} must be one of {', '.join(COLUMN_TYPE_NAMES)}",
            parameter=f"{where}.type_name",
        )
    nullable = col.get("nullable")
    nullable = True if nullable is None else nullable
    type_text = col.get("type_text")
    type_json = col.get("type_json")
    if type_name == "DECIMAL":
        precision = col.get("type_precision") or 10
        scale = col.get("type_scale") or 0
        if not 1 <= precision <= 38 or not 0 <= scale <= precision:
            raise InvalidArgument(
                f"{where}: DECIMAL needs 1 <= type_precision <= 38 and 0 <= type_scale <= "
                "type_precision",
                parameter=f"{where}.type_precision",
            )
        json_type = f"decimal({precision},{scale})"
        type_text = type_text or json_type
    elif type_name in _SIMPLE_TYPES:
        type_text = type_text or _SIMPLE_TYPES[type_name][0]
        json_type = _SIMPLE_TYPES[type_name][1]
    else:
        if not type_text or not type_json:
            raise InvalidArgument(
                f"{where}: type_text and type_json are required for {type_name} columns",
                parameter=f"{where}.type_json",
            )
        json_type = None
    if type_json is None:
        type_json = orjson.dumps(
            {"name": name, "type": json_type, "nullable": nullable, "metadata": {}}
        ).decode()
    else:
        try:
            orjson.loads(type_json)
        except orjson.JSONDecodeError:
            raise InvalidArgument(
                f"{where}.type_json must be JSON text", parameter=f"{where}.type_json"
            ) from None
    position = col.get("position")
    return _compact(
        {
            "name": name,
            "type_name": type_name,
            "type_text": type_text,
            "type_json": type_json,
            "type_precision": col.get("type_precision"),
            "type_scale": col.get("type_scale"),
            "type_interval_type": col.get("type_interval_type"),
            "position": index if position is None else position,
            "comment": col.get("comment"),
            "nullable": nullable,
            "partition_index": col.get("partition_index"),
        }
    )


def columns_from_wire(columns: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validate a CreateTable's columns: unique names, positions and partition indexes."""
    out = [column_from_wire(c, i) for i, c in enumerate(columns)]
    for what, key in (("name", "name"), ("position", "position")):
        seen: set[Any] = set()
        for i, c in enumerate(out):
            value = c[key].lower() if key == "name" else c[key]
            if value in seen:
                raise InvalidArgument(
                    f"columns[{i}].{what} {c[key]!r} is used twice",
                    parameter=f"columns[{i}].{what}",
                )
            seen.add(value)
    parts = sorted(c["partition_index"] for c in out if "partition_index" in c)
    if parts != list(range(len(parts))):
        raise InvalidArgument(
            "partition_index values must be 0, 1, 2, ... without gaps or repeats",
            parameter="columns.partition_index",
        )
    return sorted(out, key=lambda c: c["position"])
