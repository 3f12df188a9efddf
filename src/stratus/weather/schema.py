"""The weather domain's table layouts and the HHMM hour convention.

``hour`` is a 24-hour "HHMM" string from "0000" to "2400"; "2400" is the midnight that ends
``date`` (TMY files label hours 01:00..24:00 this way). ``ts`` is the observation time derived
from both, in the station's local standard time, and is the key with ``city_id``.
"""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa

SEED_COLUMNS = (
    "city_id",
    "date",
    "hour",
    "temp",
    "wind_speed",
    "description",
    "precipitation",
    "humidity",
)

HOURLY_SCHEMA = pa.schema(
    [
        pa.field("city_id", pa.string()),
        pa.field("date", pa.date32()),
        pa.field("hour", pa.string()),
        pa.field("ts", pa.timestamp("us")),
        pa.field("temp", pa.float64()),
        pa.field("wind_speed", pa.float64()),
        pa.field("description", pa.string()),
        pa.field("precipitation", pa.float64()),
        pa.field("humidity", pa.float64()),
    ]
)
HOURLY_FIELDS = tuple(HOURLY_SCHEMA.names)
HOURLY_KEY = ("city_id", "ts")
HOURLY_PARTITIONS = ["city_id"]

CITY_COLUMNS = ("city_id", "name", "latitude", "longitude", "timezone", "source")
CITIES_SCHEMA = pa.schema(
    [
        pa.field("city_id", pa.string()),
        pa.field("name", pa.string()),
        pa.field("latitude", pa.float64()),
        pa.field("longitude", pa.float64()),
        pa.field("timezone", pa.string()),
        pa.field("source", pa.string()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("ingest_id", pa.string()),
        pa.field("target_table", pa.string()),
        pa.field("source", pa.string()),
        pa.field("source_sha256", pa.string()),
        pa.field("record", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("raw", pa.string()),
        pa.field("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)

CITY_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_CITY_ID = re.compile(CITY_ID_PATTERN)

# Plausibility bounds used by ingest validation (SI units).
BOUNDS = {
    "temp": (-90.0, 60.0),  # °C, beyond the world records
    "wind_speed": (0.0, 120.0),  # m/s, above the strongest gust ever measured (113 m/s)
    "precipitation": (0.0, 400.0),  # mm in one hour (world record ~305 mm)
    "humidity": (0.0, 100.0),  # %
}


def valid_city_id(value: str) -> bool:
    return bool(_CITY_ID.fullmatch(value))


def hhmm_to_offset(hour: str) -> dt.timedelta:
    """ "0130" -> 1h30m, "2400" -> 24h. Raises ValueError for anything else."""
    if len(hour) != 4 or not hour.isdigit():
        raise ValueError(f"hour must be 4 digits HHMM, got {hour!r}")
    hh, mm = int(hour[:2]), int(hour[2:])
    if (hh, mm) != (24, 0) and not (hh <= 23 and mm <= 59):
        raise ValueError(f"hour must be between 0000 and 2400, got {hour!r}")
    return dt.timedelta(hours=hh, minutes=mm)


def observation_time(date: dt.date, hour: str) -> dt.datetime:
    return dt.datetime.combine(date, dt.time()) + hhmm_to_offset(hour)
