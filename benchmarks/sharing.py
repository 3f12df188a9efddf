"""Delta Sharing benchmark: the official client reading a shared table through a live Stratus,
versus pandas reading the same Parquet files from the local disk, in one run.

A synthetic ``main.weather.hourly`` of ``--rows`` rows (default 1M: ``--cities`` cities of
hourly observations, one Delta commit, partitioned by city) is shared whole (served from its own
files), a recipient gets a profile, and ``stratus serve`` (gunicorn, in its own process as in
production) serves ``/delta-sharing`` on a free port. After one untimed warm-up of each side,
timed once each:

* sharing: ``delta_sharing.load_as_pandas(profile#share.schema.table)``: metadata and query
  requests, then every file downloaded over HTTP through Stratus-signed URLs (HMAC checked,
  token checked, audited, Range requests) and turned into pandas by the client;
* local: the same files (the table's current add actions) read with ``pyarrow.parquet`` into
  pandas, the partition column added, concatenated;
* floor (diagnostic, not the target): the client's own per-file reader
  (``DeltaSharingReader._to_pandas``, what ``load_as_pandas`` runs for each file) over the same
  files served by a bare static HTTP server (aiohttp, no auth, no signing, no audit): what the
  official client costs against an ideal server, so that the server's own share is visible.

Then the table as a busy feed leaves it: ``--fragments`` appends (one small file per city each),
measured as above, compacted with ``OPTIMIZE main.weather.hourly`` (delta-rs compaction, one
commit, through Stratus's SQL), and measured again: the client downloads one file per city
instead of ``--fragments``, so the recipient's read gets faster without anything changing on
its side.

Target: sharing within 2x of local, measured on the compacted table (PASS/MISS). Run:
``python benchmarks/sharing.py [--rows N] [--fragments N]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from _common import free_port, wait_for_port  # benchmarks/_common.py

TARGET_RATIO = 2.0


def say(text: str = "") -> None:
    print(text, flush=True)


def synthetic_weather(rows: int, cities: int) -> pa.Table:
    rng = np.random.default_rng(20240601)
    per_city = rows // cities
    start = np.datetime64("2000-01-01T00:00:00", "us")
    ts = start + np.arange(per_city).astype("timedelta64[h]").astype("timedelta64[us]")
    parts = []
    for c in range(cities):
        hours = pc.binary_join_element_wise(
            pc.utf8_lpad(pc.cast(pa.array(np.arange(per_city) % 24), pa.string()), 2, "0"),
            "00",
            "",
        )
        parts.append(
            pa.table(
                {
                    "city_id": pa.array([f"city-{c:02d}"] * per_city),
                    "date": pa.array(ts.astype("datetime64[D]")),
                    "hour": hours,
                    "ts": pa.array(ts),
                    "temp": rng.normal(12, 8, per_city).round(1),
                    "wind_speed": rng.gamma(2.0, 2.0, per_city).round(1),
                    "description": rng.choice(
                        ["clear sky", "few clouds", "light rain", "overcast clouds"], per_city
                    ),
                    "precipitation": rng.exponential(0.3, per_city).round(1),
                    "humidity": rng.uniform(20, 100, per_city).round(0),
                }
            )
        )
    return pa.concat_tables(parts)


STATIC_SERVER = """
import sys
from aiohttp import web
app = web.Application()
app.router.add_static("/", sys.argv[1])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""


def client_floor(root: str, paths: list[str], cities: list[str]) -> tuple[float, float, int]:
    """Wall and CPU seconds (and rows) of the client's per-file reader over a bare static HTTP
    server."""
    from delta_sharing.converter import to_converters
    from delta_sharing.protocol import AddFile
    from delta_sharing.reader import DeltaSharingReader

    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", STATIC_SERVER, root, str(port)])
    try:
        wait_for_port(port)
        files = [
            AddFile(
                url=f"http://127.0.0.1:{port}/{path}",
                id=str(i),
                partition_values={"city_id": city},
                size=0,
                stats="",
            )
            for i, (path, city) in enumerate(zip(paths, cities, strict=True))
        ]
        schema = {
            "type": "struct",
            "fields": [{"name": "city_id", "type": "string", "nullable": False, "metadata": {}}],
        }
        converters = to_converters(schema)

        def read() -> pd.DataFrame:
            to_pandas = DeltaSharingReader._to_pandas
            frames = [to_pandas(f, converters, False, None, False) for f in files]
            return pd.concat(frames, ignore_index=True, copy=False)

        read()  # warm-up, as for the other two
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        rows = len(read())
        return time.perf_counter() - t0, time.process_time() - c0, rows
    finally:
        server.terminate()
        server.wait(timeout=20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cities", type=int, default=10)
    parser.add_argument(
        "--fragments", type=int, default=50, help="appends before OPTIMIZE (small files)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import delta_sharing

    from stratus.catalog import registry
    from stratus.config import Settings
    from stratus.context import Stratus
    from stratus.security.governance import LOCAL_ADMIN

    with tempfile.TemporaryDirectory(prefix="stratus-sharing-bench-") as tmp:
        home = Path(tmp) / "home"
        os.environ.pop("STRATUS_SHARING_ENDPOINT", None)
        stratus = Stratus.from_settings(Settings(home=home, log_level="WARNING"))
        stratus.bootstrap()
        t0 = time.perf_counter()
        data = synthetic_weather(args.rows, args.cities)
        per_city = data.num_rows // args.cities
        step = -(-per_city // args.fragments)
        for start in range(0, per_city, step):  # a feed's many small commits, every city each
            parts = [data.slice(c * per_city + start, step) for c in range(args.cities)]
            stratus.lakehouse.append(registry.HOURLY, pa.concat_tables(parts))
        say(
            f"table: {data.num_rows:,} rows, {args.cities} cities, written in {args.fragments} "
            f"appends in {time.perf_counter() - t0:.1f} s"
        )
        sharing = stratus.sharing
        sharing.admin.create_share(LOCAL_ADMIN, "bench")
        sharing.admin.add_table(LOCAL_ADMIN, "bench", "main.weather.hourly")
        _, secret, tok = sharing.admin.create_recipient(LOCAL_ADMIN, "bench")
        sharing.admin.grant(LOCAL_ADMIN, "bench", "bench")
        root = stratus.lakehouse.url(registry.HOURLY)

        def table_files() -> tuple[list[str], list[str], int]:
            files = stratus.lakehouse.files(registry.HOURLY)
            assert files is not None
            return (
                files.column("path").to_pylist(),
                files.column("partition.city_id").to_pylist(),
                sum(files.column("size_bytes").to_pylist()),
            )

        paths, cities, size = table_files()
        say(f"files before OPTIMIZE: {len(paths)} ({size / 1e6:.1f} MB of Parquet)")

        port = free_port()
        env = {
            **os.environ,
            "STRATUS_HOME": str(home),
            "STRATUS_HOST": "127.0.0.1",
            "STRATUS_PORT": str(port),
            "STRATUS_ACCESS_LOG": "false",
            "STRATUS_LOG_LEVEL": "WARNING",
        }
        cmd = [sys.executable, "-m", "stratus", "serve"]
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        try:
            wait_for_port(port)
            profile = Path(tmp) / "bench.share"
            endpoint = f"http://127.0.0.1:{port}/delta-sharing"
            profile.write_text(json.dumps(sharing.tokens.profile(secret, tok, endpoint)))
            url = f"{profile}#bench.weather.hourly"

            def local(paths: list[str], cities: list[str]) -> pd.DataFrame:
                frames = []
                for path, city in zip(paths, cities, strict=True):
                    df = pq.read_table(f"{root}/{path}").to_pandas(date_as_object=True)
                    df["city_id"] = city
                    frames.append(df)
                return pd.concat(frames, ignore_index=True)

            def measure(
                paths: list[str], cities: list[str]
            ) -> tuple[pd.DataFrame, float, float, pd.DataFrame, float, float]:
                # untimed warm-up of both sides: server workers started (imports, metastore,
                # table cache), files in the OS page cache for the local read as for the server
                delta_sharing.load_as_pandas(url)
                local(paths, cities)
                gc.collect()
                t0, c0 = time.perf_counter(), time.process_time()
                mine = delta_sharing.load_as_pandas(url)
                t_shared, c_shared = time.perf_counter() - t0, time.process_time() - c0
                gc.collect()
                t0, c0 = time.perf_counter(), time.process_time()
                theirs = local(paths, cities)
                t_local, c_local = time.perf_counter() - t0, time.process_time() - c0
                return mine, t_shared, c_shared, theirs, t_local, c_local

            before = measure(paths, cities)
            t0 = time.perf_counter()
            compacted = stratus.sql.execute("OPTIMIZE main.weather.hourly").data.to_pylist()[0]
            t_optimize = time.perf_counter() - t0
            paths, cities, size = table_files()
            say(
                f"OPTIMIZE: {compacted['num_files_removed']} files -> "
                f"{compacted['num_files_added']} in {t_optimize:.1f} s "
                f"({size / 1e6:.1f} MB of Parquet)"
            )
            mine, t_shared, c_shared, theirs, t_local, c_local = measure(paths, cities)
            t_floor, c_floor, floor_rows = client_floor(root, paths, cities)
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
            stratus.close()

    assert len(mine) == len(theirs) == floor_rows == data.num_rows, (len(mine), len(theirs))
    assert len(before[0]) == len(before[3]) == data.num_rows
    ratio = t_shared / t_local
    verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
    say()
    say(f"before OPTIMIZE ({args.fragments} files per city)      wall     CPU here")
    say(f"  delta_sharing.load_as_pandas (HTTP)   {before[1]:8.2f} s {before[2]:8.2f} s")
    say(f"  pandas over the local Parquet files   {before[4]:8.2f} s {before[5]:8.2f} s")
    say(f"  ratio sharing / local                 {before[1] / before[4]:8.2f}x")
    say(f"  load_as_pandas after / before OPTIMIZE {t_shared / before[1]:7.2f}x")
    say()
    say("after OPTIMIZE                              wall     CPU here")
    say(f"  delta_sharing.load_as_pandas (HTTP)   {t_shared:8.2f} s {c_shared:8.2f} s")
    say(f"  pandas over the local Parquet files   {t_local:8.2f} s {c_local:8.2f} s")
    say(f"  client reader over a bare HTTP server {t_floor:8.2f} s {c_floor:8.2f} s")
    say(f"  ratio sharing / local                 {ratio:8.2f}x")
    say(f"  ratio bare-server client / local      {t_floor / t_local:8.2f}x  (client floor)")
    say(f"  ratio sharing / bare-server client    {t_shared / t_floor:8.2f}x  (Stratus's share)")
    load = os.getloadavg()[0]
    say(f"  machine: {os.cpu_count()} CPUs, load average {load:.1f} (timings are wall clock)")
    say()
    say(
        f"{verdict}  load_as_pandas of {data.num_rows:,} shared rows {before[1]:.2f} s before "
        f"OPTIMIZE, {t_shared:.2f} s after; after vs local {t_local:.2f} s = {ratio:.2f}x "
        f"(target <= {TARGET_RATIO:g}x)  "
        f"[{dt.datetime.now(dt.UTC):%Y-%m-%d}]"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
