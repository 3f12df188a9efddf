"""Row validation as one DuckDB query over the all-string input.

Each rule yields a reason naming its column; a row with any reason goes to quarantine with all
of them joined by "; ". Valid rows come out typed, with ``hour`` normalised to "HHMM" and the
observation time ``ts`` derived from ``date`` + ``hour``.
"""

from __future__ import annotations

from stratus.weather.schema import BOUNDS, CITY_ID_PATTERN


def _num(col: str, required: bool) -> tuple[str, str]:
    """(typed expression, reason expression) for a numeric column with plausibility bounds."""
    low, high = BOUNDS[col]
    typed = f"TRY_CAST(trim({col}) AS DOUBLE)"
    missing = (
        f"WHEN {col} IS NULL THEN '{col}: missing'" if required else f"WHEN {col} IS NULL THEN NULL"
    )
    reason = (
        f"CASE {missing} "
        f"WHEN {typed} IS NULL OR isnan({typed}) THEN '{col}: ' || {col} || ' is not a number' "
        f"WHEN {typed} < {low} OR {typed} > {high} "
        f"THEN '{col}: ' || {col} || ' is outside [{low:g}, {high:g}]' END"
    )
    return typed, reason


def weather_checks_sql(raw: str) -> str:
    """A query over relation ``raw`` adding typed ``c_*`` columns and a ``reason`` column."""
    hour_norm = (
        "CASE WHEN regexp_full_match(trim(hour), '[0-9]{1,4}') THEN lpad(trim(hour), 4, '0') "
        "WHEN regexp_full_match(trim(hour), '[0-9]{1,2}:[0-9]{2}') "
        "THEN lpad(replace(trim(hour), ':', ''), 4, '0') END"
    )
    numeric = {c: _num(c, required=(c == "temp")) for c in BOUNDS}
    typed = ",\n  ".join(f"{expr} AS c_{c}" for c, (expr, _) in numeric.items())
    reasons = ",\n    ".join(reason for _, reason in numeric.values())
    return f"""
WITH n AS (
  SELECT *,
  trim(city_id) AS c_city_id,
  CASE WHEN regexp_full_match(trim(date), '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}')
       THEN TRY_CAST(trim(date) AS DATE) END AS c_date,
  {hour_norm} AS c_hour0,
  {typed},
  NULLIF(trim(description), '') AS c_description
  FROM {raw}
), h AS (
  SELECT *,
    CASE WHEN c_hour0 = '2400' OR (TRY_CAST(substr(c_hour0, 1, 2) AS INTEGER) <= 23
                                   AND TRY_CAST(substr(c_hour0, 3, 2) AS INTEGER) <= 59)
         THEN c_hour0 END AS c_hour
  FROM n
)
SELECT *,
  CASE WHEN c_date IS NOT NULL AND c_hour IS NOT NULL THEN
    CAST(c_date AS TIMESTAMP)
    + to_minutes(CAST(substr(c_hour, 1, 2) AS BIGINT) * 60 + CAST(substr(c_hour, 3, 2) AS BIGINT))
  END AS c_ts,
  CASE WHEN _error IS NOT NULL THEN _error ELSE concat_ws('; ',
    CASE WHEN city_id IS NULL OR c_city_id = '' THEN 'city_id: missing'
         WHEN NOT regexp_full_match(c_city_id, '{CITY_ID_PATTERN}')
         THEN 'city_id: ' || city_id || ' must be 1-64 letters, digits, _ . -' END,
    CASE WHEN date IS NULL THEN 'date: missing'
         WHEN c_date IS NULL THEN 'date: ' || date || ' is not a YYYY-MM-DD date' END,
    CASE WHEN hour IS NULL THEN 'hour: missing'
         WHEN c_hour IS NULL THEN 'hour: ' || hour || ' is not HHMM between 0000 and 2400' END,
    {reasons},
    CASE WHEN length(c_description) > 200 THEN 'description: longer than 200 characters' END
  ) END AS reason
FROM h
"""


def city_checks_sql(raw: str) -> str:
    """Takes one parameter: the list of time zone names found invalid."""
    return f"""
SELECT *,
  trim(city_id) AS c_city_id,
  NULLIF(trim(name), '') AS c_name,
  TRY_CAST(trim(latitude) AS DOUBLE) AS c_latitude,
  TRY_CAST(trim(longitude) AS DOUBLE) AS c_longitude,
  NULLIF(trim(timezone), '') AS c_timezone,
  NULLIF(trim(source), '') AS c_source,
  CASE WHEN _error IS NOT NULL THEN _error ELSE concat_ws('; ',
    CASE WHEN city_id IS NULL OR trim(city_id) = '' THEN 'city_id: missing'
         WHEN NOT regexp_full_match(trim(city_id), '{CITY_ID_PATTERN}')
         THEN 'city_id: ' || city_id || ' must be 1-64 letters, digits, _ . -' END,
    CASE WHEN latitude IS NOT NULL AND (TRY_CAST(trim(latitude) AS DOUBLE) IS NULL
              OR abs(TRY_CAST(trim(latitude) AS DOUBLE)) > 90)
         THEN 'latitude: ' || latitude || ' is not in [-90, 90]' END,
    CASE WHEN longitude IS NOT NULL AND (TRY_CAST(trim(longitude) AS DOUBLE) IS NULL
              OR abs(TRY_CAST(trim(longitude) AS DOUBLE)) > 180)
         THEN 'longitude: ' || longitude || ' is not in [-180, 180]' END,
    CASE WHEN list_contains(?::VARCHAR[], trim(timezone))
         THEN 'timezone: ' || timezone || ' is not an IANA time zone name' END
  ) END AS reason
FROM {raw}
"""
