"""Arrow types as Unity Catalog column types (type_name, type_text, type_json)."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa


def uc_type(t: pa.DataType) -> tuple[str, str, str]:
    """(ColumnTypeName, type_text, Delta/Spark JSON type name)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "STRING", "string", "string"
    if pa.types.is_float64(t):
        return "DOUBLE", "double", "double"
    if pa.types.is_float32(t):
        return "FLOAT", "float", "float"
    if pa.types.is_int64(t):
        return "LONG", "bigint", "long"
    if pa.types.is_int32(t):
        return "INT", "int", "integer"
    if pa.types.is_int16(t):
        return "SHORT", "smallint", "short"
    if pa.types.is_int8(t):
        return "BYTE", "tinyint", "byte"
    if pa.types.is_boolean(t):
        return "BOOLEAN", "boolean", "boolean"
    if pa.types.is_date(t):
        return "DATE", "date", "date"
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return "TIMESTAMP_NTZ", "timestamp_ntz", "timestamp_ntz"
        return "TIMESTAMP", "timestamp", "timestamp"
    if pa.types.is_binary(t):
        return "BINARY", "binary", "binary"
    if pa.types.is_decimal(t):
        text = f"decimal({t.precision},{t.scale})"
        return "DECIMAL", text, text
    return "STRING", str(t), "string"


def column_info(field: pa.Field, position: int, partition_index: int | None) -> dict[str, Any]:
    name, text, json_type = uc_type(field.type)
    info: dict[str, Any] = {
        "name": field.name,
        "type_name": name,
        "type_text": text,
        "type_json": orjson.dumps(
            {"name": field.name, "type": json_type, "nullable": field.nullable, "metadata": {}}
        ).decode(),
        "position": position,
        "nullable": field.nullable,
    }
    if partition_index is not None:
        info["partition_index"] = partition_index
    return info


_FROM_UC: dict[str, pa.DataType] = {
    "STRING": pa.string(),
    "DOUBLE": pa.float64(),
    "FLOAT": pa.float32(),
    "LONG": pa.int64(),
    "INT": pa.int32(),
    "SHORT": pa.int16(),
    "BYTE": pa.int8(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "TIMESTAMP_NTZ": pa.timestamp("us"),
    "BINARY": pa.binary(),
}


def arrow_type(column: dict[str, Any]) -> pa.DataType:
    """The Arrow type of a UC ColumnInfo dict (unknown/complex types read as strings)."""
    name = str(column.get("type_name") or "STRING").upper()
    if name == "DECIMAL":
        precision = int(column.get("type_precision") or 38)
        scale = int(column.get("type_scale") or 0)
        return pa.decimal128(precision, scale)
    return _FROM_UC.get(name, pa.string())


def arrow_schema(columns: list[dict[str, Any]]) -> pa.Schema:
    ordered = sorted(columns, key=lambda c: c.get("position", 0))
    return pa.schema([pa.field(c["name"], arrow_type(c), c.get("nullable", True)) for c in ordered])
