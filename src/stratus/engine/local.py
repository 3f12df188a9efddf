"""The embedded engine: DuckDB over the pruned Parquet files of Delta tables.

Local tables are read by path with ``read_parquet`` (Parquet metadata cached across queries);
tables on object storage are read through delta-rs's object-store file system as a PyArrow
dataset, which DuckDB scans with filter pushdown. Partition columns are not stored in Delta
data files; they come back from the Hive-style paths.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from stratus.engine.base import TableScan
from stratus.lakehouse.storage import Storage, storage_io, unavailable

_ARROW_IO = re.compile(r"failed: IOError: ")


def io_failure(exc: BaseException) -> bool:
    """Did a query fail because table files could not be read (the object store is down)?
    DuckDB's own reads raise IOException; a PyArrow dataset over delta-rs's file system fails
    as an InvalidInputException saying "reading the stream ... failed: IOError: ..."."""
    if isinstance(exc, OSError | duckdb.IOException | duckdb.HTTPException):
        return True
    return isinstance(exc, duckdb.Error) and _ARROW_IO.search(str(exc)) is not None


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duck_type(t: pa.DataType) -> str:
    """The DuckDB type holding exactly the values of an Arrow type (for casts)."""
    if pa.types.is_int8(t):
        return "TINYINT"
    if pa.types.is_int16(t):
        return "SMALLINT"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_float32(t):
        return "FLOAT"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BLOB"
    return "VARCHAR"


def partition_values(uri: str, columns: Sequence[str]) -> tuple[str | None, ...]:
    """Partition values from a Delta data file path (``.../col=value/part-....parquet``)."""
    found: dict[str, str | None] = {}
    for segment in uri.split("/")[:-1]:
        key, sep, value = segment.partition("=")
        if sep and key in columns:
            raw = unquote(value)
            found[key] = None if raw == "__HIVE_DEFAULT_PARTITION__" else raw
    return tuple(found.get(c) for c in columns)


class LocalEngine:
    def __init__(self, storage: Storage, threads: int | None = None) -> None:
        self.storage = storage
        self._root = duckdb.connect()
        self._root.execute("SET parquet_metadata_cache = true")
        if threads:
            self._root.execute(f"SET threads = {int(threads)}")
        self._local = threading.local()
        self._fs: pafs.FileSystem | None = None

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A cursor per thread (DuckDB connections are not shared across threads)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self._root.cursor()
        return cur

    def _remote_fs(self) -> pafs.FileSystem:
        if self._fs is None:
            from deltalake.fs import DeltaStorageHandler

            handler = DeltaStorageHandler(self.storage.root, self.storage.options)
            self._fs = pafs.PyFileSystem(handler)
        return self._fs

    def relation_sql(self, name: str, scan: TableScan, con: duckdb.DuckDBPyConnection) -> str:
        """SQL for a relation over ``scan``'s files (registering an Arrow object if needed)."""
        spec = scan.spec
        if not scan.files:
            con.register(name, pa.table({f.name: pa.array([], f.type) for f in spec.schema}))
            return name
        if self.storage.is_local:
            return self._local_sql(scan)
        prefix = self.storage.root.rstrip("/") + "/"
        rel = [f[len(prefix) :] if f.startswith(prefix) else f for f in scan.files]
        part_schema = pa.schema([spec.schema.field(p) for p in spec.partition_by])
        with storage_io("cannot read table files"):
            dataset = pads.dataset(
                rel,
                schema=spec.schema,
                format="parquet",
                filesystem=self._remote_fs(),
                partitioning=pads.partitioning(part_schema, flavor="hive")
                if spec.partition_by
                else None,
            )
        con.register(name, dataset)
        return name

    def _local_sql(self, scan: TableScan) -> str:
        """read_parquet per partition, with partition values as constants (not stored in Delta
        data files); cheaper than DuckDB's Hive path parsing for the usual one-city scan."""
        spec = scan.spec
        groups: dict[tuple[str | None, ...], list[str]] = {}
        for uri in scan.files:
            values = partition_values(uri, spec.partition_by)
            groups.setdefault(values, []).append(self.storage.local_path(uri))
        parts = []
        for values, paths in groups.items():
            consts = dict(zip(spec.partition_by, values, strict=True))
            cols = []
            for field in spec.schema:
                if field.name in consts:
                    value = consts[field.name]
                    literal = "NULL" if value is None else _sql_str(value)
                    cols.append(f'CAST({literal} AS {duck_type(field.type)}) AS "{field.name}"')
                else:
                    cols.append(f'"{field.name}"')
            files = ", ".join(_sql_str(p) for p in paths)
            parts.append(f"SELECT {', '.join(cols)} FROM read_parquet([{files}])")
        return "(" + " UNION ALL ".join(parts) + ")"

    def query(
        self,
        sql: str,
        scans: Mapping[str, TableScan],
        params: Sequence[object] = (),
    ) -> pa.Table:
        con = self.connection()
        text = sql
        registered = []
        try:
            for name, scan in scans.items():
                rel = self.relation_sql(f"__scan_{name}", scan, con)
                if rel == f"__scan_{name}":
                    registered.append(rel)
                text = text.replace("{" + name + "}", rel)
            try:
                return con.sql(text, params=list(params)).to_arrow_table()
            except (duckdb.Error, OSError) as exc:
                if io_failure(exc):
                    raise unavailable("cannot read table files", exc) from None
                raise
        finally:
            for r in registered:
                con.unregister(r)
