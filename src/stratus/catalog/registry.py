"""Built-in table registry: names, storage locations, schemas, partitioning, column tags."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from stratus.weather import schema as ws


class UnknownTableError(KeyError):
    def __str__(self) -> str:
        return f"unknown table {self.args[0]!r}; known: {', '.join(sorted(_TABLES))}"


@dataclass(frozen=True)
class TableSpec:
    full_name: str  # catalog.schema.table
    schema: pa.Schema
    key: tuple[str, ...]
    partition_by: list[str] = field(default_factory=list)
    sort_by: tuple[str, ...] = ()
    comment: str = ""
    column_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    # where the table lives relative to the lakehouse root, when not ``catalog/schema/table``
    # (tables outside the catalog, e.g. Delta Sharing's derived copies)
    location: str | None = None

    @property
    def path(self) -> str:
        """Location relative to the lakehouse root: ``catalog/schema/table`` by default."""
        return self.location or self.full_name.replace(".", "/")

    @property
    def short_name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1]


HOURLY = TableSpec(
    full_name="main.weather.hourly",
    schema=ws.HOURLY_SCHEMA,
    key=ws.HOURLY_KEY,
    partition_by=ws.HOURLY_PARTITIONS,
    sort_by=("city_id", "ts"),
    comment="Hourly weather observations; key (city_id, ts); units °C, m/s, mm, %",
)
CITIES = TableSpec(
    full_name="main.weather.cities",
    schema=ws.CITIES_SCHEMA,
    key=("city_id",),
    comment="Stations/cities with coordinates, IANA time zone and data source",
)
QUARANTINE = TableSpec(
    full_name="main.weather.quarantine",
    schema=ws.QUARANTINE_SCHEMA,
    key=("source_sha256", "record"),
    comment="Rows rejected by ingest validation, with the reason and the raw record",
)

_TABLES = {t.full_name: t for t in (HOURLY, CITIES, QUARANTINE)}


def builtin_tables() -> list[TableSpec]:
    return list(_TABLES.values())


def resolve(name: str) -> TableSpec:
    """Resolve ``hourly``, ``weather.hourly`` or ``main.weather.hourly`` to its spec."""
    parts = name.split(".")
    candidates = [t for t in _TABLES.values() if t.full_name.split(".")[-len(parts) :] == parts]
    if len(candidates) != 1:
        raise UnknownTableError(name)
    return candidates[0]
