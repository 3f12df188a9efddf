"""Arrow tables to JSON (orjson), CSV or Parquet responses."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from flask import Response

FORMATS = ("json", "csv", "parquet")
MIMETYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


def _values(col: pa.ChunkedArray) -> list[Any]:
    """Python values of a column; dates and timestamps without nulls go through NumPy, which
    is ~20x faster than ``to_pylist`` for them and yields the same date/datetime objects."""
    t = col.type
    if col.null_count == 0 and (
        pa.types.is_date32(t) or (pa.types.is_timestamp(t) and t.tz is None and t.unit == "us")
    ):
        return col.to_numpy().tolist()  # type: ignore[no-any-return]
    return col.to_pylist()  # type: ignore[no-any-return]


def rows(table: pa.Table) -> list[dict[str, Any]]:
    names = table.column_names
    columns = [_values(table.column(i)) for i in range(table.num_columns)]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        mimetype="application/json",
    )


def table_response(table: pa.Table, fmt: str, envelope: dict[str, Any], filename: str) -> Response:
    """JSON wraps rows in ``envelope`` (paging etc.); CSV/Parquet carry it in headers."""
    if fmt == "json":
        return json_response({**envelope, "count": table.num_rows, "data": rows(table)})
    buf = io.BytesIO()
    if fmt == "csv":
        pacsv.write_csv(table, buf)
    else:
        pq.write_table(table, buf, compression="zstd")
    resp = Response(buf.getvalue(), mimetype=MIMETYPES[fmt])
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    resp.headers["X-Row-Count"] = str(table.num_rows)
    if envelope.get("next_cursor"):
        resp.headers["X-Next-Cursor"] = envelope["next_cursor"]
    return resp
