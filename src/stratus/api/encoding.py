"""Arrow tables to JSON (orjson), CSV or Parquet responses (request bodies: stratus.api.params).

JSON rows are encoded from the columns, not from per-row Python dicts: each column becomes an
array of JSON tokens with Arrow kernels (numbers, dates, timestamps, strings without characters
to escape) or orjson (anything else, value by value), and one Arrow kernel joins the tokens of
each row into ``{"name":token,...}``; the answer's bytes are that array's data buffer. The text
is what orjson gives for the same values (tests/test_weather_http.py). Pages of more than
``STREAM_ROWS`` rows are streamed in pieces of that many rows.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from flask import Response

STREAM_ROWS = 10_000  # larger pages are streamed in pieces of this many rows
FORMATS = ("json", "csv", "parquet")
MIMETYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
_JSON_NATIVE = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_boolean,
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_date,
    pa.types.is_timestamp,
    pa.types.is_null,
)


def _in_python_range(col: pa.ChunkedArray) -> bool:
    """Whether every date or timestamp of ``col`` is one Python can hold (years 1 to 9999;
    engines also write 'infinity' and later years)."""
    if col.null_count == len(col):
        return True
    bounds = pc.min_max(col)
    try:
        bounds["min"].as_py(), bounds["max"].as_py()
    except (OverflowError, ValueError):
        return False
    return True


def _values(col: pa.ChunkedArray) -> list[Any]:
    """Python values of a column; dates and timestamps without nulls go through NumPy, which
    is ~20x faster than ``to_pylist`` for them and yields the same date/datetime objects.
    Dates and timestamps Python cannot hold come back as text."""
    t = col.type
    if pa.types.is_timestamp(t) and t.unit == "ns":
        return _iso_ns(col).to_pylist()
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        if not _in_python_range(col):
            return pc.cast(col, pa.string()).to_pylist()
        if col.null_count == 0 and (
            pa.types.is_date32(t) or (t.tz is None and getattr(t, "unit", None) == "us")
        ):
            return col.to_numpy().tolist()
    return col.to_pylist()


def _iso_ns(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Nanosecond timestamps as ISO 8601 text with all nine digits (Python's datetime stops at
    microseconds), shaped like the other timestamps' JSON: no fraction when it is zero, the
    offset as ``+00:00`` (in the column's time zone)."""
    aware = col.type.tz is not None
    text = pc.strftime(col, format="%Y-%m-%dT%H:%M:%S%z" if aware else "%Y-%m-%dT%H:%M:%S")
    text = pc.replace_substring_regex(text, r"\.000000000([+-]\d{4})?$", r"\1")
    if aware:
        text = pc.replace_substring_regex(text, r"([+-]\d\d)(\d\d)$", r"\1:\2")
    return text


def rows(table: pa.Table) -> list[dict[str, Any]]:
    names = table.column_names
    columns = [_values(table.column(i)) for i in range(table.num_columns)]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def unique_names(names: list[str]) -> list[str]:
    """``names`` with repeats made unique (``date``, ``date_2``...), so that each column of a
    result (``SELECT 1 a, 2 a``, a self-join's ``*``) keeps its own key in a JSON row."""
    taken: set[str] = set()
    out = []
    for name in names:
        new, n = name, 1
        while new in taken:
            n += 1
            new = f"{name}_{n}"
        taken.add(new)
        out.append(new)
    return out


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)


def _text(col: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A column JSON or CSV cannot carry as it is, as text: binary as base64, decimals exactly,
    anything else (times, intervals, nested values) as its string form."""
    if pa.types.is_decimal(col.type):
        return pc.cast(col, pa.string())
    return pa.array(
        [
            None if v is None else base64.b64encode(v).decode() if isinstance(v, bytes) else str(v)
            for v in col.to_pylist()
        ],
        pa.string(),
    )


def json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows with values JSON can carry exactly: decimals as strings, binary as base64, other
    types JSON lacks as text; repeated column names made unique."""
    columns = [
        c if any(native(c.type) for native in _JSON_NATIVE) else _text(c) for c in table.columns
    ]
    if not columns:
        return []
    return rows(pa.Table.from_arrays(columns, names=unique_names(table.column_names)))


def _csv_ready(table: pa.Table) -> pa.Table:
    """The table with the columns CSV cannot hold (nested values, intervals, binary) as text."""
    columns = []
    for col in table.columns:
        t = col.type
        if pa.types.is_nested(t) or pa.types.is_interval(t) or _is_binary(t):
            col = _text(col)
        columns.append(col)
    return pa.Table.from_arrays(columns, names=table.column_names)


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        mimetype="application/json",
    )


# ---- columnar JSON ----------------------------------------------------------------------------
_NEEDS_ESCAPE = re.compile(rb'["\\\x00-\x1f]')
_ZERO_FRACTION = r"\.0+$"
_NULL = "null"
_QUOTE = '"'
_JOIN = pc.get_function("binary_join_element_wise")


def _quoted(text: pa.Array) -> pa.Array:
    return _JOIN.call([pa.scalar(_QUOTE), text, pa.scalar(_QUOTE), pa.scalar("")])


def _orjson_tokens(values: list[Any]) -> pa.Array:
    dumps = orjson.dumps
    return pa.array([dumps(v) for v in values], pa.string())


def _dates_ok(col: pa.Array) -> bool:
    """Dates and timestamps whose text Arrow and orjson write alike: years 1000-9999."""
    if col.null_count == len(col):
        return True
    bounds = pc.min_max(col)
    try:
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    except (OverflowError, ValueError):
        return False
    return bool(lo.year >= 1000 and hi.year <= 9999)


def _plain(col: pa.Array) -> bool:
    """No character JSON must escape in a string column (checked on its data buffer)."""
    data = col.buffers()[2]
    return data is None or _NEEDS_ESCAPE.search(memoryview(data)) is None


def _timestamp_text(col: pa.Array) -> pa.Array:
    """orjson's form: ``2024-01-01T01:00:00``, with ``.000005`` only for microseconds."""
    try:
        text = pc.cast(pc.cast(col, pa.timestamp("s")), pa.string())  # whole seconds
    except pa.ArrowInvalid:
        text = pc.replace_substring_regex(pc.cast(col, pa.string()), _ZERO_FRACTION, "")
    return pc.binary_replace_slice(text, start=10, stop=11, replacement="T")


def _float_tokens(col: pa.Array) -> pa.Array:
    """orjson's shortest round-trip text ("1.0", "1e+20"; NaN, infinities and nulls: null):
    one orjson call for the column, split at the commas into a string array (no Python objects
    per value)."""
    values = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    n = len(values)
    if n == 0:
        return pa.array([], pa.string())
    text = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
    commas = np.flatnonzero(np.frombuffer(text, np.uint8) == 44)
    offsets = np.empty(n + 1, np.int32)
    offsets[0] = 0
    offsets[1:n] = commas - np.arange(n - 1)
    offsets[n] = len(text) - (n - 1)
    data = pa.py_buffer(text.replace(b",", b""))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), data)


def json_tokens(col: pa.Array) -> tuple[pa.Array, bool]:
    """The JSON text of each value of ``col`` (a string array) and whether it still needs
    quotes around every value (a column without nulls: the quotes go into the joined literals).
    The text is what orjson gives for the Python value :func:`json_rows` would hold."""
    t = col.type
    nulls = col.null_count > 0
    out: pa.Array
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        out = pc.cast(col, pa.string())
    elif pa.types.is_floating(t):
        # orjson's shortest round-trip text ("1.0", "1e+20"; NaN and infinities: null)
        return _float_tokens(col), False
    elif (pa.types.is_string(t) or pa.types.is_large_string(t)) and _plain(col):
        if not nulls:
            return col.cast(pa.string()), True
        out = _quoted(col)
    elif pa.types.is_date32(t) and _dates_ok(col):
        out = pc.cast(col, pa.string())
        if not nulls:
            return out, True
        out = _quoted(out)
    elif pa.types.is_timestamp(t) and t.tz is None and t.unit == "us" and _dates_ok(col):
        out = _timestamp_text(col)
        if not nulls:
            return out, True
        out = _quoted(out)
    else:
        values = col.to_pylist() if pa.types.is_string(t) else _values(pa.chunked_array([col]))
        return _orjson_tokens(values), False
    return (out.fill_null(_NULL) if nulls else out), False


def _json_ready(table: pa.Table) -> tuple[list[str], list[pa.ChunkedArray]]:
    columns = [
        c if any(native(c.type) for native in _JSON_NATIVE) else _text(c) for c in table.columns
    ]
    return unique_names(table.column_names), columns


def json_row_array(names: list[str], columns: list[pa.Array]) -> pa.Array:
    """One ``{"name":value,...},`` string per row (note the comma), built by one Arrow kernel
    from the columns' tokens."""
    args: list[Any] = []
    literal = "{"
    for i, (name, col) in enumerate(zip(names, columns, strict=True)):
        tokens, quote = json_tokens(col)
        literal += ("" if i == 0 else ",") + orjson.dumps(name).decode() + ":"
        if quote:
            literal += _QUOTE
        args += [pa.scalar(literal), tokens]
        literal = _QUOTE if quote else ""
    args += [pa.scalar(literal + "},"), pa.scalar("")]  # the last argument is the separator
    return _JOIN.call(args)


def json_array(names: list[str], columns: list[pa.Array]) -> bytes:
    """``[{"name": value, ...}, ...]`` for equally long columns, without per-row objects."""
    n = len(columns[0]) if columns else 0
    if n == 0 or not names:
        return b"[]" if n == 0 else b"[" + b",".join([b"{}"] * n) + b"]"
    rows = json_row_array(names, columns)
    _, offsets, data = rows.buffers()
    off = np.frombuffer(offsets, dtype=np.int32)
    start, end = int(off[rows.offset]), int(off[rows.offset + n])
    return b"".join((b"[", memoryview(data)[start : end - 1], b"]"))


def _chunk_columns(columns: list[pa.ChunkedArray], start: int, length: int) -> list[pa.Array]:
    return [
        (c if isinstance(c, pa.ChunkedArray) else pa.chunked_array([c]))
        .slice(start, length)
        .combine_chunks()
        for c in columns
    ]


JsonPieces = Callable[[Callable[[list[str], list[pa.Array]], pa.Array]], list[Any]]


def json_body(
    table: pa.Table, envelope: dict[str, Any], prepared: JsonPieces | None = None
) -> bytes | Iterator[bytes]:
    """``{**envelope, "count": n, "data": rows}``: bytes, or pieces for a large page.
    ``prepared``: a source of the rows' JSON array already encoded (the /weather hot path's,
    given :func:`json_row_array`), instead of encoding ``table``."""
    head = orjson.dumps({**envelope, "count": table.num_rows}, option=orjson.OPT_NON_STR_KEYS)
    head = head[:-1] + b',"data":'
    if prepared is not None:
        parts = prepared(json_row_array)
        if table.num_rows <= STREAM_ROWS:
            return b"".join([head, *parts, b"}"])
        return iter([head, *(bytes(p) for p in parts), b"}"])
    names, columns = _json_ready(table)
    if table.num_rows <= STREAM_ROWS:
        return b"".join((head, json_array(names, _chunk_columns(columns, 0, table.num_rows)), b"}"))

    def pieces() -> Iterator[bytes]:
        yield head + b"["
        for start in range(0, table.num_rows, STREAM_ROWS):
            part = json_array(names, _chunk_columns(columns, start, STREAM_ROWS))[1:-1]
            yield part if start == 0 else b"," + part
        yield b"]}"

    return pieces()


def _csv_body(table: pa.Table) -> bytes | Iterator[bytes]:
    ready = _csv_ready(table)
    if table.num_rows <= STREAM_ROWS:
        buf = io.BytesIO()
        pacsv.write_csv(ready, buf)
        return buf.getvalue()

    def pieces() -> Iterator[bytes]:
        buf = io.BytesIO()
        with pacsv.CSVWriter(buf, ready.schema) as writer:
            for batch in ready.to_batches(max_chunksize=STREAM_ROWS):
                writer.write_batch(batch)
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        if buf.tell():
            yield buf.getvalue()

    return pieces()


def table_response(
    table: pa.Table,
    fmt: str,
    envelope: dict[str, Any],
    filename: str,
    prepared_json: JsonPieces | None = None,
) -> Response:
    """JSON wraps rows in ``envelope`` (paging etc.); CSV/Parquet carry it in headers."""
    if fmt == "json":
        return Response(json_body(table, envelope, prepared_json), mimetype="application/json")
    if fmt == "csv":
        body = _csv_body(table)
    else:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        body = buf.getvalue()
    resp = Response(body, mimetype=MIMETYPES[fmt])
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    resp.headers["X-Row-Count"] = str(table.num_rows)
    token = envelope.get("next_page_token") or envelope.get("next_cursor")
    if token:
        resp.headers["X-Next-Page-Token"] = token
        resp.headers["X-Next-Cursor"] = token  # its old name
    return resp
