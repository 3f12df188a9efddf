"""Types between Databricks SQL, Arrow (what tables store) and DuckDB (what runs queries)."""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp
from sqlglot.expressions.datatypes import DType as DT

from stratus.catalog.types import uc_type
from stratus.sql.errors import UnsupportedStatement

_FROM_SQL: dict[DT, pa.DataType] = {
    DT.TINYINT: pa.int8(),
    DT.SMALLINT: pa.int16(),
    DT.INT: pa.int32(),
    DT.BIGINT: pa.int64(),
    DT.FLOAT: pa.float32(),
    DT.DOUBLE: pa.float64(),
    DT.BOOLEAN: pa.bool_(),
    DT.DATE: pa.date32(),
    DT.TEXT: pa.string(),
    DT.VARCHAR: pa.string(),
    DT.CHAR: pa.string(),
    DT.NVARCHAR: pa.string(),
    DT.NCHAR: pa.string(),
    DT.BINARY: pa.binary(),
    DT.VARBINARY: pa.binary(),
    # Databricks TIMESTAMP is an instant (shown in the session time zone); TIMESTAMP_NTZ is not
    DT.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
    DT.TIMESTAMPLTZ: pa.timestamp("us", tz="UTC"),
    DT.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    DT.TIMESTAMPNTZ: pa.timestamp("us"),
    DT.DATETIME: pa.timestamp("us"),
}


def arrow_from_sql(dtype: exp.DataType, column: str) -> pa.DataType:
    """The Arrow type a Databricks column type is stored as."""
    if dtype.this == DT.DECIMAL:
        params = [p.this for p in dtype.expressions if isinstance(p, exp.DataTypeParam)]
        try:
            precision = int(params[0].name) if params else 10  # Spark's default DECIMAL(10,0)
            scale = int(params[1].name) if len(params) > 1 else 0
        except (ValueError, AttributeError):
            raise UnsupportedStatement(f"column {column}: type {dtype.sql('databricks')}") from None
        if not 1 <= precision <= 38 or not 0 <= scale <= precision:
            raise UnsupportedStatement(f"column {column}: type {dtype.sql('databricks')}")
        return pa.decimal128(precision, scale)
    found = _FROM_SQL.get(dtype.this)
    if found is None:
        raise UnsupportedStatement(
            f"column {column}: type {dtype.sql('databricks')} (supported: BOOLEAN, TINYINT, "
            "SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p,s), STRING, BINARY, DATE, "
            "TIMESTAMP, TIMESTAMP_NTZ)"
        )
    return found


def type_text(t: pa.DataType) -> str:
    """Databricks type text (``bigint``, ``decimal(6,2)``, ...) of an Arrow type."""
    return uc_type(t)[1]


def storable(name: str, t: pa.DataType) -> pa.DataType:
    """The type a query result column is stored as in a new table (CREATE TABLE AS SELECT)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.string()
    if t == pa.string_view():
        return pa.string()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or t == pa.binary_view():
        return pa.binary()
    if pa.types.is_boolean(t) or pa.types.is_signed_integer(t):
        return t
    if pa.types.is_unsigned_integer(t):
        widths = {8: pa.int16(), 16: pa.int32(), 32: pa.int64()}
        return widths.get(t.bit_width, pa.decimal128(20, 0))
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_floating(t):
        return t
    if pa.types.is_decimal(t) and t.precision <= 38:
        return pa.decimal128(t.precision, t.scale)
    if pa.types.is_date(t):
        return pa.date32()
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    raise UnsupportedStatement(
        f"column {name} has type {t}, which a table cannot store: CAST it to a simple type"
    )


def column_dict(field: pa.Field, position: int, partition_index: int | None) -> dict:
    """A metastore ColumnInfo for a field (decimal precision and scale included)."""
    from stratus.catalog.types import column_info

    info = column_info(field, position, partition_index)
    if pa.types.is_decimal(field.type):
        info["type_precision"] = field.type.precision
        info["type_scale"] = field.type.scale
    comment = (field.metadata or {}).get(b"comment")
    if comment:
        info["comment"] = comment.decode()
    return info


def fields_of(columns: list[exp.ColumnDef]) -> list[pa.Field]:
    """Arrow fields for the column definitions of CREATE TABLE (NOT NULL, COMMENT kept)."""
    fields = []
    for col in columns:
        nullable = not any(isinstance(c.kind, exp.NotNullColumnConstraint) for c in col.constraints)
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
    return fields
