"""The embedded engine: each job type as DuckDB SQL over the pruned Parquet files.

Runs through the project's :class:`~stratus.engine.LocalEngine` (local disk or Azure), in the
worker's thread. ``daily_summary`` IS the summary API's query (``WeatherQueries.summary`` with
``granularity=day``), so the materialised numbers cannot drift from the API's.
"""

from __future__ import annotations

import pyarrow as pa

from stratus.engine import LocalEngine, TableScan
from stratus.jobs.definitions import DEGREE_DAY_BASE, JobParams, JobType
from stratus.weather.queries import WeatherQueries

# minutes since 1970-01-01 00:00 and minute of day, from date + "HHMM" ("2400" = 1440)
_MINUTE_OF_DAY = "(CAST(substr(hour, 1, 2) AS BIGINT) * 60 + CAST(substr(hour, 3, 2) AS BIGINT))"
_MINUTE = f"((date - DATE '1970-01-01') * 1440 + {_MINUTE_OF_DAY})"

CLIMATE_STATS_SQL = f"""
WITH h AS (
  SELECT city_id, date, CAST(date_trunc('month', date) AS DATE) AS month, temp, precipitation,
         {_MINUTE} AS minute
  FROM {{hourly}}
  WHERE date BETWEEN ? AND ?
),
daily AS (
  SELECT city_id, month, date, avg(temp) AS t FROM h GROUP BY city_id, month, date
),
degree AS (
  SELECT city_id, month,
         sum(CASE WHEN t < {DEGREE_DAY_BASE} THEN {DEGREE_DAY_BASE} - t ELSE 0.0 END) AS hdd,
         sum(CASE WHEN t > {DEGREE_DAY_BASE} THEN t - {DEGREE_DAY_BASE} ELSE 0.0 END) AS cdd
  FROM daily WHERE t IS NOT NULL GROUP BY city_id, month
),
dry AS (  -- consecutive dry hours share minute - 60 * (their rank among the dry hours)
  SELECT city_id, month,
         minute - 60 * row_number() OVER (PARTITION BY city_id, month ORDER BY minute) AS run
  FROM h WHERE precipitation = 0
),
spell AS (
  SELECT city_id, month, max(n) AS longest
  FROM (SELECT city_id, month, run, count(*) AS n FROM dry GROUP BY city_id, month, run)
  GROUP BY city_id, month
),
agg AS (
  SELECT city_id, month,
         count(DISTINCT date) AS days_observed, count(*) AS hours_observed,
         quantile_cont(temp, 0.1) AS temp_p10,
         quantile_cont(temp, 0.5) AS temp_p50,
         quantile_cont(temp, 0.9) AS temp_p90,
         sum(precipitation) AS precipitation_total,
         count(*) FILTER (WHERE precipitation > 0) AS rainy_hours
  FROM h GROUP BY city_id, month
)
SELECT a.city_id, a.month, a.days_observed, a.hours_observed,
       a.temp_p10, a.temp_p50, a.temp_p90,
       d.hdd AS heating_degree_days, d.cdd AS cooling_degree_days,
       a.precipitation_total, a.rainy_hours,
       coalesce(s.longest, 0) AS longest_dry_spell_hours
FROM agg a
LEFT JOIN degree d ON d.city_id = a.city_id AND d.month = a.month
LEFT JOIN spell s ON s.city_id = a.city_id AND s.month = a.month
ORDER BY a.city_id, a.month
"""

ANOMALIES_SQL = f"""
WITH h AS (
  SELECT city_id, date, hour, ts, temp, month(date) AS m, ({_MINUTE_OF_DAY} // 60) % 24 AS hod
  FROM {{hourly}}
  WHERE temp IS NOT NULL
),
base AS (
  SELECT city_id, m, hod, avg(temp) AS mu, stddev_samp(temp) AS sd, count(*) AS n
  FROM h GROUP BY city_id, m, hod
),
scored AS (
  SELECT h.city_id, h.date, h.hour, h.ts, h.temp, b.mu, b.sd, b.n,
         CASE WHEN b.sd > 0 THEN (h.temp - b.mu) / b.sd END AS z
  FROM h JOIN base b ON b.city_id = h.city_id AND b.m = h.m AND b.hod = h.hod
  WHERE h.date BETWEEN ? AND ?
)
SELECT city_id, date, hour, ts, temp, mu AS baseline_mean, sd AS baseline_stddev,
       n AS baseline_hours, z AS z_score
FROM scored
WHERE abs(z) > ?
ORDER BY city_id, ts
"""


class LocalJobEngine:
    name = "local"
    cities_per_step = 10

    def __init__(self, engine: LocalEngine, weather: WeatherQueries) -> None:
        self.engine = engine
        self.weather = weather

    def compute(self, job_type: JobType, scan: TableScan, params: JobParams) -> pa.Table:
        if job_type.name == "daily_summary":
            # the API's own query (it prunes the same files as ``scan``)
            table = self.weather.summary(list(params.city_ids), params.start, params.end, "day")
            return table.rename_columns(
                ["date" if c == "period" else c for c in table.column_names]
            )
        if job_type.name == "climate_stats":
            return self.engine.query(
                CLIMATE_STATS_SQL, {"hourly": scan}, [params.start, params.end]
            )
        if job_type.name == "anomalies":
            z = float(params.options.get("z", 3.0))
            return self.engine.query(ANOMALIES_SQL, {"hourly": scan}, [params.start, params.end, z])
        raise ValueError(f"unknown job type {job_type.name!r}")

    def close(self) -> None:
        pass
