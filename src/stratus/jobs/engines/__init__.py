"""Where a job's transformation runs: one job definition, two engines.

The worker hands an engine one step of a job at a time: the job type, its parameters and a
:class:`~stratus.engine.TableScan` of ``main.weather.hourly`` holding the current snapshot's files
for the step's cities (pruned by ``city_id`` and, unless the type reads whole histories, by
date). The engine returns the step's output rows as Arrow; the worker commits them with delta-rs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from stratus.engine import TableScan
from stratus.jobs.definitions import JobParams, JobType

if TYPE_CHECKING:
    from stratus.config import Settings
    from stratus.engine import LocalEngine
    from stratus.lakehouse.storage import Storage
    from stratus.weather.queries import WeatherQueries


class JobEngine(Protocol):
    name: str
    cities_per_step: int  # how many cities one step (one progress/cancel check) covers

    def compute(self, job_type: JobType, scan: TableScan, params: JobParams) -> pa.Table:
        """The output rows of one step: ``params.city_ids`` are the step's cities, ``scan`` the
        files holding their rows (columns of ``job_type.schema``, in any order)."""
        ...

    def close(self) -> None: ...


def engine_for(
    settings: Settings,
    storage: Storage,
    engine: LocalEngine,
    weather: WeatherQueries,
    name: str | None = None,
) -> JobEngine:
    """The configured engine (``STRATUS_ENGINE``), or ``name``."""
    name = name or settings.engine
    if name == "spark":
        from stratus.jobs.engines.spark import SparkJobEngine

        remote = settings.spark_remote
        if not remote:
            raise ValueError("STRATUS_SPARK_REMOTE is not set (sc://host:port)")
        return SparkJobEngine(remote, storage)
    from stratus.jobs.engines.local import LocalJobEngine

    return LocalJobEngine(engine, weather)
