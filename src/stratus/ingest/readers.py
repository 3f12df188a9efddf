"""Readers turn an input file into an all-string Arrow table plus a 1-based ``_record`` number.

Keeping every value as text until validation means a malformed value becomes a quarantined
row with a reason instead of a failed file. Supported: CSV, Parquet, JSON Lines, and Open-Meteo
archive JSON responses (plain JSON form). ``on_progress`` receives units of work done (bytes, or
row groups for Parquet) so a caller can draw a progress bar.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Progress = Callable[[int], None]
NULL_STRINGS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]
# Columns every input must have; the others may be absent and are then null.
REQUIRED = frozenset({"city_id", "date", "hour", "temp"})


class IngestInputError(ValueError):
    """The file as a whole cannot be ingested (unreadable, wrong columns, unknown format)."""


@dataclass
class RawInput:
    table: pa.Table  # string columns + _record (int64) + _error (string, reader-level problems)
    format: str
    total_units: int
    warnings: list[str] = field(default_factory=list)


def detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".txt")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".json"):
        with path.open("rb") as fh:
            head = fh.read(4096).lstrip()
        if head.startswith(b"{") and b'"hourly"' in _first_object_head(path):
            return "open-meteo"
        return "jsonl"
    raise IngestInputError(
        f"cannot tell the format of {path.name!r}: use .csv, .parquet, .jsonl/.ndjson or .json"
    )


def _first_object_head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(1 << 20)


def _finish(columns: dict[str, list[str | None]] | pa.Table, first_record: int) -> pa.Table:
    table = columns if isinstance(columns, pa.Table) else pa.table(columns)
    records = pa.array(range(first_record, first_record + table.num_rows), pa.int64())
    return table.append_column("_record", records)


def _check_columns(found: Sequence[str], columns: Sequence[str], path: Path) -> list[str]:
    """Fail on a missing required column; warn about absent optional and unknown ones."""
    required = [c for c in columns if c in REQUIRED]
    missing = [c for c in required if c not in found]
    if missing:
        raise IngestInputError(
            f"{path.name}: missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(columns)} ({', '.join(required)} required)"
        )
    warnings = []
    absent = [c for c in columns if c not in found]
    if absent:
        warnings.append(f"column(s) {', '.join(absent)} absent: stored as null")
    extra = [c for c in found if c not in columns and not c.startswith("_")]
    if extra:
        warnings.append(f"ignored column(s) not in the schema: {', '.join(extra)}")
    return warnings


def _complete(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """Add absent optional columns as nulls, in schema order."""
    for c in columns:
        if c not in table.column_names:
            table = table.append_column(c, pa.nulls(table.num_rows, pa.string()))
    return table.select([*columns, *(c for c in table.column_names if c.startswith("_"))])


class _CountingReader(io.RawIOBase):
    def __init__(self, fh: io.BufferedReader, on_progress: Progress | None) -> None:
        self._fh = fh
        self._on_progress = on_progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        n = self._fh.readinto(buffer)
        if n and self._on_progress:
            self._on_progress(n)
        return n or 0


def read_csv(path: Path, columns: Sequence[str], on_progress: Progress | None = None) -> RawInput:
    size = path.stat().st_size
    with path.open("rb") as raw_fh:
        header = pacsv.open_csv(path).schema.names if size else []
        warnings = _check_columns(header, columns, path)
        counting = io.BufferedReader(_CountingReader(raw_fh, on_progress), 1 << 20)
        stream = pa.input_stream(counting, compression="detect" if path.suffix == ".gz" else None)
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=4 << 20),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in columns},
                    include_columns=[c for c in columns if c in header],
                    strings_can_be_null=True,
                    null_values=NULL_STRINGS,
                ),
            )
            table = reader.read_all()
        except pa.ArrowInvalid as exc:
            raise IngestInputError(f"{path.name}: not a readable CSV file ({exc})") from None
    return RawInput(_finish(_complete(table, columns), 1), "csv", size, warnings)


def read_parquet(
    path: Path, columns: Sequence[str], on_progress: Progress | None = None
) -> RawInput:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestInputError(f"{path.name}: not a readable Parquet file ({exc})") from None
    warnings = _check_columns(pf.schema_arrow.names, columns, path)
    parts = []
    for i in range(pf.num_row_groups):
        present = [c for c in columns if c in pf.schema_arrow.names]
        rg = pf.read_row_group(i, columns=present)
        arrays = []
        for name in present:
            col = rg[name]
            if pa.types.is_date(col.type):
                col = pc.strftime(col.cast(pa.timestamp("s")), format="%Y-%m-%d")
            arrays.append(col.cast(pa.string()))
        parts.append(_complete(pa.table(arrays, names=present), columns))
        if on_progress:
            on_progress(1)
    table = (
        pa.concat_tables(parts)
        if parts
        else pa.table({c: pa.array([], pa.string()) for c in columns})
    )
    return RawInput(_finish(table, 1), "parquet", pf.num_row_groups, warnings)


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return None if value in NULL_STRINGS else value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    return orjson.dumps(value).decode()


def read_jsonl(path: Path, columns: Sequence[str], on_progress: Progress | None = None) -> RawInput:
    data: dict[str, list[str | None]] = {c: [] for c in columns}
    errors: list[str | None] = []
    seen: set[str] = set()
    with path.open("rb") as fh:
        for line in fh:
            if on_progress:
                on_progress(len(line))
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
            except (orjson.JSONDecodeError, ValueError):
                errors.append("record: not a JSON object")
                for c in columns:
                    data[c].append(None)
                continue
            seen.update(obj)
            errors.append(None)
            for c in columns:
                data[c].append(_text(obj.get(c)))
    warnings = _check_columns(sorted(seen), columns, path) if seen else []
    table = pa.table({**data, "_error": pa.array(errors, pa.string())})
    return RawInput(_finish(table, 1), "jsonl", path.stat().st_size, warnings)


_WIND_TO_MS = {"km/h": 1 / 3.6, "m/s": 1.0, "mp/h": 0.44704, "mph": 0.44704, "kn": 0.514444}


def read_open_meteo(
    path: Path,
    city_id: str | None,
    on_progress: Progress | None = None,
) -> tuple[RawInput, dict[str, object]]:
    """An Open-Meteo archive response -> seed columns, plus the city's location metadata."""
    from stratus.weather.codes import describe_open_meteo_code

    if not city_id:
        raise IngestInputError(
            f"{path.name} is an Open-Meteo response, which names no city: pass --city-id"
        )
    raw = path.read_bytes()
    if on_progress:
        on_progress(len(raw))
    try:
        doc = orjson.loads(raw)
        hourly = doc["hourly"]
        times = hourly["time"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise IngestInputError(f"{path.name}: not an Open-Meteo hourly JSON response") from None
    units = doc.get("hourly_units") or {}
    n = len(times)

    def series(name: str) -> list[object]:
        values = hourly.get(name)
        if values is None:
            return [None] * n
        if len(values) != n:
            raise IngestInputError(f"{path.name}: hourly.{name} has {len(values)} values, not {n}")
        return values

    temp_unit = str(units.get("temperature_2m", "°C"))
    wind_factor = _WIND_TO_MS.get(str(units.get("wind_speed_10m", "km/h")))
    if wind_factor is None:
        raise IngestInputError(f"{path.name}: unknown wind unit {units.get('wind_speed_10m')!r}")
    precip_factor = 25.4 if str(units.get("precipitation", "mm")).startswith("inch") else 1.0

    def scaled(v: object, f: float) -> str | None:
        return None if not isinstance(v, (int, float)) else repr(round(v * f, 3))

    def temp_c(v: object) -> str | None:
        if not isinstance(v, (int, float)):
            return _text(v)
        return repr(round((v - 32) / 1.8, 2)) if "F" in temp_unit else repr(v)

    dates: list[str] = []
    hours: list[str | None] = []
    for t in times:
        text = str(t)
        if len(text) >= 16 and text[10] == "T":
            dates.append(text[:10])
            hours.append(text[11:13] + text[14:16])
        else:
            dates.append(text)
            hours.append(None)
    codes = series("weather_code")
    columns = {
        "city_id": [city_id] * n,
        "date": dates,
        "hour": hours,
        "temp": [temp_c(v) for v in series("temperature_2m")],
        "wind_speed": [scaled(v, wind_factor) for v in series("wind_speed_10m")],
        "description": [
            describe_open_meteo_code(int(c)) if isinstance(c, (int, float)) else None for c in codes
        ],
        "precipitation": [scaled(v, precip_factor) for v in series("precipitation")],
        "humidity": [_text(v) for v in series("relative_humidity_2m")],
    }
    offset = int(doc.get("utc_offset_seconds") or 0)
    tz = doc.get("timezone")
    city = {
        "city_id": city_id,
        "name": None,
        "latitude": doc.get("latitude"),
        "longitude": doc.get("longitude"),
        "timezone": tz if tz and tz != "GMT" else ("UTC" if offset == 0 else None),
        "source": f"open-meteo:{path.name}",
    }
    return RawInput(_finish(columns, 1), "open-meteo", len(raw)), city


def read_input(
    path: Path,
    columns: Sequence[str],
    *,
    city_id: str | None = None,
    on_progress: Progress | None = None,
) -> tuple[RawInput, dict[str, object] | None]:
    if not path.is_file():
        raise IngestInputError(f"{path}: no such file")
    fmt = detect_format(path)
    if fmt == "open-meteo":
        return read_open_meteo(path, city_id, on_progress)
    reader = {"csv": read_csv, "parquet": read_parquet, "jsonl": read_jsonl}[fmt]
    return reader(path, columns, on_progress), None


def total_units(path: Path) -> int:
    """The size of the work ``read_input`` reports progress against."""
    if detect_format(path) == "parquet":
        try:
            return pq.ParquetFile(path).num_row_groups
        except (pa.ArrowInvalid, OSError):
            return 0
    return path.stat().st_size
