"""The three job types: what each computes, its output table and the slice of it a run replaces.

A definition is engine-neutral. The engines (``stratus.jobs.engines.local`` with DuckDB and
``stratus.jobs.engines.spark`` with the Spark DataFrame API) each implement every type's
transformation to these rules, and the tests check that both give the same rows:

* **Months** are calendar months of ``date`` (as in the summary API's ``granularity=month``);
  the "2400" hour belongs to its ``date``.
* **Hour of day** is the hour of ``ts`` (0-23), so "2400" counts as hour 0 like "0000".
* **Consecutive hours** are observations exactly one hour apart (by ``date`` + ``hour``); a
  missing hour breaks a run.

``daily_summary``
    Per city and day, exactly the numbers of ``GET /api/v1/weather/summary?granularity=day``
    (``WeatherQueries.summary``): min/max/mean temperature, precipitation total, mean humidity,
    max wind speed (means and totals rounded to 2 places), the most frequent description (ties:
    alphabetical) and the number of hours observed.
``climate_stats``
    Per city and month: temperature percentiles p10/p50/p90 (linear interpolation between the
    closest ranks, like numpy's default), heating and cooling degree days base 18 °C summed over
    the days from each day's mean temperature, precipitation total, rainy hours (precipitation
    > 0), and the longest dry spell: the longest run of consecutive hours, within the month, with
    precipitation = 0 (a missing precipitation reading ends a run).
``anomalies``
    Hours whose temperature deviates from the city's mean for that month and hour of day by more
    than ``options.z`` sample standard deviations (default 3). The baseline (mean, standard
    deviation, hours) is the city's climatology over ALL of its data, so a one-week job is judged
    against every year on record; only hours in ``[start, end]`` are reported.

Every run replaces its slice of the output table (its cities and its dates) in one Delta
commit, so re-running a job, or running it again after new data arrived, never duplicates rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from stratus.catalog.registry import TableSpec

HOURLY_TABLE = "main.weather.hourly"
DEGREE_DAY_BASE = 18.0  # °C


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AnomalyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    z: float = Field(default=3.0, gt=0, le=10, description="z-score threshold, 0 < z <= 10")


@dataclass(frozen=True)
class JobParams:
    """A job's validated parameters (options with their defaults applied)."""

    city_ids: tuple[str, ...]
    start: dt.date
    end: dt.date
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "city_ids": list(self.city_ids),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobParams:
        return cls(
            city_ids=tuple(data["city_ids"]),
            start=dt.date.fromisoformat(data["start"]),
            end=dt.date.fromisoformat(data["end"]),
            options=dict(data.get("options") or {}),
        )


@dataclass(frozen=True)
class Edge:
    """Output column <- input columns of main.weather.hourly (OpenLineage transformation)."""

    target: str
    sources: tuple[str, ...]
    transformation: str = "AGGREGATION"


@dataclass(frozen=True)
class JobType:
    name: str
    title: str
    schema: pa.Schema
    key: tuple[str, ...]
    options: type[BaseModel]
    edges: tuple[Edge, ...]
    slice_column: str  # the date-like column whose range a run replaces
    reads_history: bool = False  # needs each city's whole history (not only [start, end])

    def output_spec(self, full_name: str) -> TableSpec:
        return TableSpec(
            full_name=full_name,
            schema=self.schema,
            key=self.key,
            partition_by=["city_id"],
            sort_by=self.key,
            comment=f"{self.title} (written by Stratus jobs of type {self.name})",
        )

    def read_range(self, params: JobParams) -> tuple[dt.date, dt.date] | None:
        """The ``date`` range of the input a run reads (None: all of it)."""
        return None if self.reads_history else (params.start, params.end)

    def slice_bounds(self, params: JobParams) -> tuple[dt.date, dt.date]:
        if self.slice_column == "month":
            return params.start.replace(day=1), params.end.replace(day=1)
        return params.start, params.end

    def slice_predicate(self, params: JobParams) -> str:
        """The rows of the output this run replaces (delta-rs predicate SQL)."""
        low, high = self.slice_bounds(params)
        return (
            f"city_id IN ({_sql_list(params.city_ids)}) AND {self.slice_column} >= "
            f"'{low.isoformat()}' AND {self.slice_column} <= '{high.isoformat()}'"
        )

    def column_edges(self) -> list[tuple[str, str, str]]:
        """(source_column, target_column, transformation) triples for lineage."""
        out = [("city_id", "city_id", "IDENTITY")]
        for e in self.edges:
            out += [(s, e.target, e.transformation) for s in e.sources]
        return out


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


DAILY_SUMMARY = JobType(
    name="daily_summary",
    title="Daily weather summary per city",
    schema=pa.schema(
        [
            pa.field("city_id", pa.string()),
            pa.field("date", pa.date32()),
            pa.field("temp_min", pa.float64()),
            pa.field("temp_max", pa.float64()),
            pa.field("temp_mean", pa.float64()),
            pa.field("precipitation_total", pa.float64()),
            pa.field("humidity_mean", pa.float64()),
            pa.field("wind_speed_max", pa.float64()),
            pa.field("description_most_frequent", pa.string()),
            pa.field("hours_observed", pa.int64()),
        ]
    ),
    key=("city_id", "date"),
    options=NoOptions,
    edges=(
        Edge("date", ("date",), "IDENTITY"),
        Edge("temp_min", ("temp",)),
        Edge("temp_max", ("temp",)),
        Edge("temp_mean", ("temp",)),
        Edge("precipitation_total", ("precipitation",)),
        Edge("humidity_mean", ("humidity",)),
        Edge("wind_speed_max", ("wind_speed",)),
        Edge("description_most_frequent", ("description",)),
        Edge("hours_observed", ("ts",)),
    ),
    slice_column="date",
)

CLIMATE_STATS = JobType(
    name="climate_stats",
    title="Monthly climate statistics per city",
    schema=pa.schema(
        [
            pa.field("city_id", pa.string()),
            pa.field("month", pa.date32()),  # the first day of the month
            pa.field("days_observed", pa.int64()),
            pa.field("hours_observed", pa.int64()),
            pa.field("temp_p10", pa.float64()),
            pa.field("temp_p50", pa.float64()),
            pa.field("temp_p90", pa.float64()),
            pa.field("heating_degree_days", pa.float64()),
            pa.field("cooling_degree_days", pa.float64()),
            pa.field("precipitation_total", pa.float64()),
            pa.field("rainy_hours", pa.int64()),
            pa.field("longest_dry_spell_hours", pa.int64()),
        ]
    ),
    key=("city_id", "month"),
    options=NoOptions,
    edges=(
        Edge("month", ("date",), "TRANSFORMATION"),
        Edge("days_observed", ("date",)),
        Edge("hours_observed", ("ts",)),
        Edge("temp_p10", ("temp",)),
        Edge("temp_p50", ("temp",)),
        Edge("temp_p90", ("temp",)),
        Edge("heating_degree_days", ("temp", "date")),
        Edge("cooling_degree_days", ("temp", "date")),
        Edge("precipitation_total", ("precipitation",)),
        Edge("rainy_hours", ("precipitation",)),
        Edge("longest_dry_spell_hours", ("precipitation", "date", "hour")),
    ),
    slice_column="month",
)

ANOMALIES = JobType(
    name="anomalies",
    title="Hourly temperature anomalies per city (z-score against the month x hour climatology)",
    schema=pa.schema(
        [
            pa.field("city_id", pa.string()),
            pa.field("date", pa.date32()),
            pa.field("hour", pa.string()),
            pa.field("ts", pa.timestamp("us")),
            pa.field("temp", pa.float64()),
            pa.field("baseline_mean", pa.float64()),
            pa.field("baseline_stddev", pa.float64()),
            pa.field("baseline_hours", pa.int64()),
            pa.field("z_score", pa.float64()),
        ]
    ),
    key=("city_id", "ts"),
    options=AnomalyOptions,
    edges=(
        Edge("date", ("date",), "IDENTITY"),
        Edge("hour", ("hour",), "IDENTITY"),
        Edge("ts", ("ts",), "IDENTITY"),
        Edge("temp", ("temp",), "IDENTITY"),
        Edge("baseline_mean", ("temp", "date", "hour")),
        Edge("baseline_stddev", ("temp", "date", "hour")),
        Edge("baseline_hours", ("temp", "date", "hour")),
        Edge("z_score", ("temp", "date", "hour"), "TRANSFORMATION"),
    ),
    slice_column="date",
    reads_history=True,
)

JOB_TYPES: dict[str, JobType] = {t.name: t for t in (DAILY_SUMMARY, CLIMATE_STATS, ANOMALIES)}


def default_output(job_type: str) -> str:
    return f"main.jobs.{job_type}"
