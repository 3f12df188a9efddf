"""Apache Spark through Spark Connect (``pip install 'stratus[spark]'``, ``STRATUS_ENGINE=spark``).

Reading: Spark never lists the table's folder (that would also read files a later Delta version
removed). The worker gives the engine the CURRENT snapshot's file list from delta-rs, already
pruned; Spark reads exactly those files with ``spark.read.parquet(*files)`` and takes ``city_id``
(a partition column, not stored in Delta data files) from the Hive-style paths via ``basePath``.

Transforming: every job type is written with the DataFrame API to the rules of
:mod:`stratus.jobs.definitions`, mirroring the DuckDB SQL of the local engine (including DuckDB's
rounding of doubles, so ``daily_summary`` gives the summary API's numbers).

Writing: the (small, aggregated) result comes back as Arrow (``toArrow()``) and the worker
commits it to the Delta log with delta-rs, exactly as for the local engine. Nothing here needs
Delta on the cluster, so this works against any Spark Connect server, including Databricks
(through Databricks Connect's ``sc://<workspace>:443/;token=...;x-databricks-cluster-id=...``)
as long as the cluster can read the lakehouse's storage.

:class:`SparkEngine` also implements the project's :class:`~stratus.engine.Engine` protocol
(``query(sql, scans, params)`` with ``{name}`` relations and ``?`` parameters) for SQL written in
the dialect both engines share.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from stratus.engine import TableScan
from stratus.jobs.definitions import DEGREE_DAY_BASE, JobParams, JobType
from stratus.lakehouse.storage import Storage


def spark_type(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "STRING"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP" if t.tz else "TIMESTAMP_NTZ"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_float32(t):
        return "FLOAT"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_integer(t):
        return "INT"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    raise TypeError(f"no Spark type for {t}")


def spark_ddl(schema: pa.Schema) -> str:
    return ", ".join(f"`{f.name}` {spark_type(f.type)}" for f in schema)


class SparkEngine:
    """A Spark Connect session reading Delta snapshots by file list (the Engine protocol)."""

    def __init__(self, remote: str, storage: Storage, max_retries: int | None = None) -> None:
        self.remote = remote
        self.storage = storage
        # None: the client's default, which waits 10+ minutes for an unavailable server (long
        # enough for a Databricks cluster to start); a number: give up sooner
        self.max_retries = max_retries
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                try:
                    from pyspark.sql import SparkSession
                except ImportError as exc:  # pragma: no cover - depends on the install
                    raise RuntimeError(
                        "STRATUS_ENGINE=spark needs pyspark[connect]: pip install 'stratus[spark]'"
                    ) from exc
                # a session of its own (closing it leaves others alone); no setting is sent
                # now: nothing here depends on the session time zone (dates and
                # TIMESTAMP_NTZ only)
                session = SparkSession.builder.remote(self.remote).create()
                if self.max_retries is not None:
                    from pyspark.sql.connect.client.retries import DefaultPolicy

                    session.client.set_retry_policies(
                        [DefaultPolicy(max_retries=self.max_retries, max_backoff=2000)]
                    )
                self._session = session
            return self._session

    def uri(self, location: str) -> str:
        """A lakehouse file or folder as a URI the Spark cluster understands."""
        if self.storage.is_local:
            # Hadoop parses the path itself: no percent-encoding ("city_id=x" stays as is)
            return "file://" + str(Path(self.storage.local_path(location)).resolve())
        if location.startswith("az://"):  # delta-rs's form -> the Hadoop ABFS driver's
            container, _, path = location.removeprefix("az://").partition("/")
            return f"abfss://{container}@{self.storage.account}.dfs.core.windows.net/{path}"
        return location

    def dataframe(self, scan: TableScan) -> Any:
        """The scan's files as a DataFrame with the table's columns (partition columns from
        the paths)."""
        spec = scan.spec
        ddl = spark_ddl(spec.schema)
        if not scan.files:
            return self.session.createDataFrame([], schema=ddl)
        root = self.uri(self.storage.table_url(spec.path))
        df = (
            self.session.read.schema(ddl)
            .option("basePath", root)
            .parquet(*[self.uri(f) for f in scan.files])
        )
        return df.select(*spec.schema.names)

    def query(
        self, sql: str, scans: Mapping[str, TableScan], params: Sequence[object] = ()
    ) -> pa.Table:
        frames = {name: self.dataframe(scan) for name, scan in scans.items()}
        return self.session.sql(sql, args=list(params), **frames).toArrow()

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                try:
                    self._session.stop()
                finally:
                    self._session = None


# ---- the job types with the DataFrame API --------------------------------------------------
def _round2(col: Any) -> Any:
    """DuckDB's round(x, 2) for doubles (round(x * 100) / 100, half away from zero); Spark's
    round(x, 2) rounds the decimal text of x instead (1.005 -> 1.01 where DuckDB gives 1.0)."""
    from pyspark.sql import functions as F

    return F.round(col * F.lit(100.0), 0) / F.lit(100.0)


def _minutes(F: Any) -> tuple[Any, Any]:
    """(minutes since 1970-01-01, minute of day) from date + "HHMM"."""
    of_day = F.substring("hour", 1, 2).cast("bigint") * 60 + F.substring("hour", 3, 2).cast(
        "bigint"
    )
    since = F.datediff(F.col("date"), F.lit("1970-01-01").cast("date")).cast("bigint") * F.lit(1440)
    return since + of_day, of_day


def daily_summary(df: Any, params: JobParams) -> Any:
    from pyspark.sql import functions as F

    h = df.where(F.col("date").between(F.lit(params.start), F.lit(params.end)))
    g = h.groupBy("city_id", "date", "description").agg(
        F.count(F.lit(1)).alias("n"),
        F.min("temp").alias("mn"),
        F.max("temp").alias("mx"),
        F.sum("temp").alias("st"),
        F.count("temp").alias("ct"),
        F.sum("precipitation").alias("sp"),
        F.sum("humidity").alias("sh"),
        F.count("humidity").alias("ch"),
        F.max("wind_speed").alias("mw"),
    )
    # most frequent description, ties alphabetical: the smallest (-n, description)
    ranked = F.when(
        F.col("description").isNotNull(),
        F.struct((-F.col("n")).alias("k"), F.col("description").alias("d")),
    )
    st, ct, sh, ch = F.sum("st"), F.sum("ct"), F.sum("sh"), F.sum("ch")
    return g.groupBy("city_id", "date").agg(
        F.min("mn").alias("temp_min"),
        F.max("mx").alias("temp_max"),
        _round2(F.when(ct > 0, st / ct)).alias("temp_mean"),
        _round2(F.sum("sp")).alias("precipitation_total"),
        _round2(F.when(ch > 0, sh / ch)).alias("humidity_mean"),
        F.max("mw").alias("wind_speed_max"),
        F.array_min(F.collect_list(ranked)).getField("d").alias("description_most_frequent"),
        F.sum("n").cast("bigint").alias("hours_observed"),
    )


def climate_stats(df: Any, params: JobParams) -> Any:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    minute, _ = _minutes(F)
    h = df.where(F.col("date").between(F.lit(params.start), F.lit(params.end))).select(
        "city_id",
        "date",
        F.trunc("date", "month").alias("month"),
        "temp",
        "precipitation",
        minute.alias("minute"),
    )
    base = F.lit(DEGREE_DAY_BASE)
    daily = h.groupBy("city_id", "month", "date").agg(F.avg("temp").alias("t"))
    t = F.col("t")
    # one row per day: days_observed is a count here (no count(DISTINCT) over the hours);
    # sum() over no non-null day is NULL, as in the DuckDB version (WHERE t IS NOT NULL)
    degree = daily.groupBy("city_id", "month").agg(
        F.count(F.lit(1)).alias("days_observed"),
        F.sum(F.when(t < base, base - t).when(t.isNotNull(), F.lit(0.0))).alias(
            "heating_degree_days"
        ),
        F.sum(F.when(t > base, t - base).when(t.isNotNull(), F.lit(0.0))).alias(
            "cooling_degree_days"
        ),
    )
    order = Window.partitionBy("city_id", "month").orderBy("minute")
    spell = (
        h.where(F.col("precipitation") == 0)
        .select(
            "city_id",
            "month",
            (F.col("minute") - F.lit(60) * F.row_number().over(order)).alias("run"),
        )
        .groupBy("city_id", "month", "run")
        .agg(F.count(F.lit(1)).alias("n"))
        .groupBy("city_id", "month")
        .agg(F.max("n").alias("longest"))
    )
    agg = h.groupBy("city_id", "month").agg(
        F.count(F.lit(1)).alias("hours_observed"),
        # exact percentiles, linear interpolation (DuckDB's quantile_cont); one aggregate
        F.percentile("temp", [0.1, 0.5, 0.9]).alias("p"),
        F.sum("precipitation").alias("precipitation_total"),
        F.count(F.when(F.col("precipitation") > 0, F.lit(1))).alias("rainy_hours"),
    )
    return (
        agg.join(degree, ["city_id", "month"], "left")
        .join(spell, ["city_id", "month"], "left")
        .select(
            "city_id",
            "month",
            "days_observed",
            "hours_observed",
            F.col("p").getItem(0).alias("temp_p10"),
            F.col("p").getItem(1).alias("temp_p50"),
            F.col("p").getItem(2).alias("temp_p90"),
            "heating_degree_days",
            "cooling_degree_days",
            "precipitation_total",
            "rainy_hours",
            F.coalesce(F.col("longest"), F.lit(0)).cast("bigint").alias("longest_dry_spell_hours"),
        )
    )


def anomalies(df: Any, params: JobParams) -> Any:
    from pyspark.sql import functions as F

    _, of_day = _minutes(F)
    h = df.where(F.col("temp").isNotNull()).select(
        "city_id",
        "date",
        "hour",
        "ts",
        "temp",
        F.month("date").alias("m"),
        (F.floor(of_day / 60) % 24).alias("hod"),
    )
    base = h.groupBy("city_id", "m", "hod").agg(
        F.avg("temp").alias("baseline_mean"),
        F.stddev_samp("temp").alias("baseline_stddev"),
        F.count(F.lit(1)).alias("baseline_hours"),
    )
    z = float(params.options.get("z", 3.0))
    scored = (
        h.where(F.col("date").between(F.lit(params.start), F.lit(params.end)))
        .join(base, ["city_id", "m", "hod"])
        .withColumn(
            "z_score",
            F.when(
                F.col("baseline_stddev") > 0,
                (F.col("temp") - F.col("baseline_mean")) / F.col("baseline_stddev"),
            ),
        )
    )
    return scored.where(F.abs(F.col("z_score")) > F.lit(z)).select(
        "city_id",
        "date",
        "hour",
        "ts",
        "temp",
        "baseline_mean",
        "baseline_stddev",
        "baseline_hours",
        "z_score",
    )


TRANSFORMS = {
    "daily_summary": daily_summary,
    "climate_stats": climate_stats,
    "anomalies": anomalies,
}


class SparkJobEngine:
    name = "spark"
    # one Spark job per step: larger steps than the local engine's, so Spark can parallelise
    cities_per_step = 50

    def __init__(self, remote: str, storage: Storage, max_retries: int | None = None) -> None:
        self.spark = SparkEngine(remote, storage, max_retries)

    def compute(self, job_type: JobType, scan: TableScan, params: JobParams) -> pa.Table:
        if not scan.files:
            return job_type.schema.empty_table()
        transform = TRANSFORMS[job_type.name]
        return transform(self.spark.dataframe(scan), params).toArrow()

    def close(self) -> None:
        self.spark.close()
