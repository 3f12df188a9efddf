"""What the sharing modules pass between them: plans, snapshots, answers and small helpers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from stratus.catalog.errors import InvalidArgument
from stratus.catalog.registry import TableSpec
from stratus.lakehouse.tables import TableVersion
from stratus.sharing import protocol as p

SHARING_DIR = ".sharing"
CDF = "delta.enableChangeDataFeed"
ENDPOINT_ENV = "STRATUS_SHARING_ENDPOINT"
# How long this process trusts what it read from the metastore (a recipient's token, a shared
# table's settings) without reading it again; changes made in this process apply at once.
CACHE_SECONDS = 5.0
# Delta reader features whose tables read correctly as their plain Parquet files: only the
# log is affected. Any other reader feature (deletion vectors, column mapping, ...) changes
# what the files mean, so such a table is refused rather than served wrongly.
SERVED_READER_FEATURES = frozenset({"timestampntz", "v2checkpoint", "vacuumprotocolcheck"})
_FEATURE_NAMES = {"deletionvectors": "deletion vectors", "columnmapping": "column mapping"}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


@dataclass(frozen=True)
class RecipientContext:
    """An authenticated recipient request: who, and with which token."""

    id: str
    name: str
    token_id: str


@dataclass(frozen=True)
class Download:
    path: Path
    recipient: str
    file_id: str
    first: bool  # the first read of this file with this token in DOWNLOAD_AUDIT_SECONDS


@dataclass(frozen=True)
class TableResponse:
    version: int
    lines: list[dict[str, Any]]
    headers: dict[str, str] = field(default_factory=dict)  # e.g. the format answered in


@dataclass(frozen=True)
class Snapshot:
    """One version of a Delta table, as the protocol needs it."""

    version: int
    entries: list[p.FileEntry]
    schema_json: str
    partition_columns: list[str]
    configuration: dict[str, str]
    table_id: str
    types: dict[str, pa.DataType]
    table: TableVersion  # the lakehouse's plain data of that version

    @classmethod
    def of(cls, table: TableVersion) -> Snapshot:
        """The protocol's view of a table version (computed once per version)."""
        found = table.memo.get("sharing")
        if found is None:
            schema = table.arrow_schema
            found = table.memo["sharing"] = cls(
                version=table.version,
                entries=p.file_entries(table.files),
                schema_json=table.schema_json,
                partition_columns=table.partition_columns,
                configuration=table.configuration,
                table_id=table.table_id,
                types={} if schema is None else {f.name: f.type for f in schema},
                table=table,
            )
        return found


@dataclass(frozen=True)
class Plan:
    """How a share table is served right now."""

    share_id: str
    share_name: str
    table_id: str
    schema_name: str
    name: str
    comment: str | None
    history: bool
    history_start: int | None
    pii_mode: str
    source: TableSpec
    physical: TableSpec
    pii: dict[str, str]
    columns: list[str]
    row_filter: Any | None
    derived: bool


def unserved_features(table: TableVersion) -> list[str]:
    """The table's Delta reader features this server cannot serve (names for people), e.g.
    deletion vectors or column mapping: its files alone do not hold the table's rows."""
    if table.min_reader_version <= 1:
        return []
    if table.min_reader_version == 2:  # reader version 2 is column mapping
        return [_FEATURE_NAMES["columnmapping"]]
    # delta-rs declares variantType on every table-features table; it matters only with a
    # variant column
    variant = '"variant"' in table.schema_json
    return [
        _FEATURE_NAMES.get(f.lower(), f)
        for f in table.reader_features
        if f.lower() not in SERVED_READER_FEATURES and (variant or f.lower() != "varianttype")
    ]


def leaves(pred: Any) -> Iterator[Any]:
    if isinstance(pred, p.And | p.Or):
        for c in pred.children:
            yield from leaves(c)
    elif isinstance(pred, p.Not):
        yield from leaves(pred.child)
    else:
        yield pred


def parse_ts(text: str, parameter: str) -> dt.datetime:
    try:
        return p.parse_timestamp(text)
    except ValueError as exc:
        raise InvalidArgument(f"{parameter}: {exc}", parameter=parameter) from None


def int_param(value: Any, parameter: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{parameter} must be an integer", parameter=parameter) from None
    if n < 0:
        raise InvalidArgument(f"{parameter} must not be negative", parameter=parameter)
    return n
