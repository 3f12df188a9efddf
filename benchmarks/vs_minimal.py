"""Stratus against a minimal Flask + Polars app over the same table, measured in one run.

* **Stratus**: ``stratus serve`` with its defaults (gunicorn, 2 gthread workers x 4 threads,
  authentication, authorization, audit log, access log and rate limiter on; the admin token's
  per-principal limit is raised out of reach, since the default 1200/minute is far below this
  load and a 429 counts as an error).
* **minimal**: ``benchmarks/minimal_app.py`` (a cached ``pl.scan_delta`` LazyFrame, filter,
  sort, orjson; no governance and no access log), under the same gunicorn settings.

Both serve the SYNTHETIC 100-city x 5-year hourly table that ``benchmarks/query.py`` builds and
caches under ``benchmarks/.data/``. wrk (Debian's package: ``apt-get install -y wrk``; installed
when missing and we are root) requests 7-day windows (168 rows) rotating over 48 (city, start)
pairs, the same URLs for both. Measurements are interleaved: each round runs Stratus and the
minimal app back to back at 1 and at 16 connections, so load from other processes on this
machine (wrk itself runs on the same cores) hits both alike; the ratios of one run are what
count. Then:

* a long run (default 60 s) of Stratus at 16 connections: errors must be zero;
* memory per Stratus worker after a fill phase that reads every row group of the table (the
  row-group cache full, bounded by ``STRATUS_ROW_CACHE_MB``);
* flatness: Stratus p50 at 1 connection and req/s at 16 over 10-, 100- and 1,000-city tables
  (1 year each, so that the 1,000-city table stays small to build; latency must not grow with
  the number of cities: <= 1.2x per 10x).

Server CPU per request is the CPU time of the server's processes (gunicorn master + workers,
their threads included) over the requests served.

Run: ``python benchmarks/vs_minimal.py [--rounds 3] [--duration 10] [--long 60]``
(about 7 minutes; ``--rounds 1 --duration 3 --long 10 --flat 10,100`` for a smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

import load  # benchmarks/load.py: wrk runner, Lua script, parsing, /proc CPU accounting
import query  # benchmarks/query.py: the cached synthetic lakehouse, stratus serve
from _common import free_port, stop
from stratus.catalog import registry

say = query.say
HERE = Path(__file__).resolve().parent
RATE = {"STRATUS_RATE_LIMIT": "1000000/minute"}  # the limiter stays on, out of this load's reach
URLS = 48
TARGETS = {"rps16": 2.0, "p50_1": 0.7, "flat": 1.2}


# ---- servers ---------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    base: str
    pid: int


@contextlib.contextmanager
def stratus_server(lake: query.Lake, log: Path, extra: dict[str, str] | None = None):
    """``stratus serve`` (2 workers, its defaults) over ``lake``; yields a Server."""
    env = {**RATE, "STRATUS_WORKERS": "2", **(extra or {})}
    before = set(_children())
    with query.gunicorn(lake, log, workers=2, extra_env=env) as base:
        pid = next(p for p in _children() if p not in before)
        yield Server("stratus", base, pid)


@contextlib.contextmanager
def minimal_server(lake: query.Lake, log: Path) -> Iterator[Server]:
    port = free_port()
    table = lake.stratus().lakehouse.url(registry.HOURLY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env["MINIMAL_TABLE"] = table
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers=2",
        "--threads=4",
        "--worker-class=gthread",
        f"--bind=127.0.0.1:{port}",
        "--log-level=warning",
        "minimal_app:app",
    ]
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"minimal app exited ({proc.returncode}); see {log}")
                with contextlib.suppress(requests.RequestException):
                    if requests.get(base + "/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"minimal app did not start; see {log}")
                time.sleep(0.1)
            yield Server("minimal", base, proc.pid)
        finally:
            stop(proc)


def _children() -> list[int]:
    me = os.getpid()
    return [pid for pid, (ppid, _) in load._proc_stats().items() if ppid == me]


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by ``root`` and every process below it."""
    stats = load._proc_stats()
    own = stats.get(root, (0, 0))[1] / load.HZ
    return own + sum(cpu for _, cpu in load.descendants_cpu(root).values())


def workers_rss_mib(root: int) -> list[float]:
    out = []
    for pid, (depth, _) in load.descendants_cpu(root).items():
        if depth != 1:
            continue
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out.append(int(line.split()[1]) / 1024)
    return sorted(out)


# ---- measuring -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    run: load.Run
    cpu_ms_per_request: float
    workers: tuple[float, ...]  # cores used by each worker process during the run


def _worker_cpu(root: int) -> dict[int, float]:
    return {pid: cpu for pid, (depth, cpu) in load.descendants_cpu(root).items() if depth == 1}


def measure(wrk: str, server: Server, token: str, script: Path, conns: int, secs: int, log: Path):
    runner = load.Wrk(wrk, server.base, token, timeout_s=10, log=log)
    cpu0, w0, t0 = tree_cpu(server.pid), _worker_cpu(server.pid), time.monotonic()
    run = runner.run(script, conns, secs)
    used, w1 = tree_cpu(server.pid) - cpu0, _worker_cpu(server.pid)
    wall = time.monotonic() - t0
    split = sorted(((w1[p] - w0[p]) / wall for p in w1 if p in w0), reverse=True)
    return Measured(run, used * 1000 / run.requests if run.requests else 0.0, tuple(split))


def fmt(m: Measured) -> str:
    r = m.run
    split = "+".join(f"{c:.2f}" for c in m.workers)
    return (
        f"{r.rps:>8.1f} {r.p50_ms:>7.2f} {r.p99_ms:>8.2f} {r.errors:>6} "
        f"{m.cpu_ms_per_request:>7.2f} {split:>10} {r.others_cpu:>6.2f} {r.load1:>5.2f}"
    )


HEAD = (
    f"  {'':<8} {'':<9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>8} {'errors':>6} {'CPU ms':>7}"
    f" {'workers':>10} {'others':>6} {'load1':>5}"
)


def paths_for(lake: query.Lake, n: int = URLS, seed: int = query.SEED) -> list[str]:
    return [query.week_url(c, s) for c, s in query.week_work(lake, n, seed)]


def fill_paths(lake: query.Lake) -> list[str]:
    """A week in every month of every city and year: every row group of the table."""
    out = []
    for c in lake.city_ids:
        for y in range(lake.first_year, lake.first_year + lake.years):
            for month in range(1, 13):
                out.append(query.week_url(c, dt.date(y, month, 10)))
    return out


def script_for(paths: list[str], tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.lua"
    path.write_text(load.lua_script(paths))
    return path


def check_same_answer(stratus: Server, minimal: Server, token: str, path: str) -> str:
    a = requests.get(stratus.base + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    b = requests.get(minimal.base + path, timeout=30)
    da, db = a.json()["data"], b.json()["data"]
    if a.status_code != 200 or b.status_code != 200 or da != db:
        raise RuntimeError(f"the two servers disagree on {path}")
    return f"same {len(da)} rows from both for {path}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    ap.add_argument("--long", type=int, default=60, help="seconds of the zero-error run")
    ap.add_argument("--fill", type=int, default=20, help="seconds of the cache fill phase")
    ap.add_argument("--flat", default="10,100,1000", help="city counts of the flatness check")
    ap.add_argument("--data-dir", type=Path, default=HERE / ".data")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    args = ap.parse_args(argv)
    wrk = load.ensure_wrk(not args.no_install)
    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stations = query.StationCache(data_dir)
    lake = query.build_lake(data_dir, 100, 5, 2019, stations)
    token = query.admin_token(lake.stratus())
    tmp = Path(tempfile.mkdtemp(prefix="vs-minimal-"))
    wrk_log = tmp / "wrk.log"
    paths = paths_for(lake)
    script = script_for(paths, tmp, "week")
    say("Stratus vs a minimal Flask + Polars app (SYNTHETIC 100 cities x 5 years, 7-day reads)")
    say("=" * 92)
    say(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.2f}; wrk -t1 on the")
    say("same cores. CPU ms: server CPU time per request. workers: cores used by each worker.")
    say("others: cores busy outside the server and wrk (other sessions on this machine).")
    results: dict[tuple[str, int], list[Measured]] = {}
    with contextlib.ExitStack() as stack:
        st = stack.enter_context(stratus_server(lake, tmp / "stratus.log"))
        mini = stack.enter_context(minimal_server(lake, tmp / "minimal.log"))
        say(f"  check: {check_same_answer(st, mini, token, paths[0])}")
        for server in (st, mini):  # warm: every URL once, then 3 s at 16 connections
            measure(wrk, server, token, script, 16, 3, wrk_log)
        say()
        say(HEAD)
        for rnd in range(1, args.rounds + 1):
            for conns in (1, 16):
                for server in (st, mini) if rnd % 2 else (mini, st):
                    m = measure(wrk, server, token, script, conns, args.duration, wrk_log)
                    results.setdefault((server.name, conns), []).append(m)
                    say(f"  {server.name:<8} r{rnd} c{conns:<6} {fmt(m)}")
        say()

        def med(name: str, conns: int, attr: str) -> float:
            values = [getattr(m.run, attr) for m in results[(name, conns)]]
            return statistics.median(values)

        def cpu(name: str, conns: int) -> float:
            return statistics.median(m.cpu_ms_per_request for m in results[(name, conns)])

        say("medians over the rounds          Stratus   minimal   ratio   target")
        rps = med("stratus", 16, "rps"), med("minimal", 16, "rps")
        p50 = med("stratus", 1, "p50_ms"), med("minimal", 1, "p50_ms")
        p99 = med("stratus", 16, "p99_ms"), med("minimal", 16, "p99_ms")
        rps1 = med("stratus", 1, "rps"), med("minimal", 1, "rps")
        cpu16 = cpu("stratus", 16), cpu("minimal", 16)
        lines = [
            ("req/s, 16 connections", rps, f">= {TARGETS['rps16']}x", rps[0] / rps[1] >= 2.0),
            ("p50 ms, 1 connection", p50, f"<= {TARGETS['p50_1']}x", p50[0] / p50[1] <= 0.7),
            ("p99 ms, 16 connections", p99, "<= 1.0x", p99[0] <= p99[1]),
            ("req/s, 1 connection", rps1, "", None),
            ("server CPU ms/request, 16 c.", cpu16, "", None),
        ]
        for label, (a, b), target, ok in lines:
            verdict = "" if ok is None else ("  met" if ok else "  MISSED")
            say(f"  {label:<30} {a:>8.2f} {b:>9.2f} {a / b:>6.2f}x  {target}{verdict}")
        errors = sum(m.run.errors for ms in results.values() for m in ms)
        say(f"  errors in all the runs above: {errors}")
        say()

    with stratus_server(lake, tmp / "stratus-long.log") as st:  # afresh: an empty cache
        say(f"[memory] per Stratus worker, RSS MiB: idle {workers_rss_mib(st.pid)}")
        fill = script_for(fill_paths(lake), tmp, "fill")
        m = measure(wrk, st, token, fill, 16, args.fill, wrk_log)
        say(
            f"  after {args.fill} s reading every row group ({m.run.requests} requests, "
            f"{m.run.errors} errors): {workers_rss_mib(st.pid)} (STRATUS_ROW_CACHE_MB default 256)"
        )
        say()
        say(f"[long] Stratus, 16 connections, {args.long} s")
        m = measure(wrk, st, token, script, 16, args.long, wrk_log)
        say(HEAD)
        say(f"  {'stratus':<8} {'long':<9} {fmt(m)}")
        say(f"  errors: {m.run.errors} ({load.describe_errors(m.run)})")
        say()

    counts = [int(c) for c in args.flat.split(",") if c]
    say(f"[flatness] Stratus over {', '.join(map(str, counts))} cities x 1 year (7-day reads)")
    say(HEAD)
    flat: dict[int, tuple[Measured, Measured]] = {}
    for n in counts:
        small = query.build_lake(data_dir, n, 1, 2019, stations)
        tok = query.admin_token(small.stratus())
        sc = script_for(paths_for(small), tmp, f"flat{n}")
        with stratus_server(small, tmp / f"stratus-{n}.log") as st:
            measure(wrk, st, tok, sc, 16, 3, wrk_log)  # warm
            one = measure(wrk, st, tok, sc, 1, args.duration, wrk_log)
            many = measure(wrk, st, tok, sc, 16, args.duration, wrk_log)
        flat[n] = (one, many)
        say(f"  {n:>5} c.  1 conn {fmt(one)}")
        say(f"  {'':>5}    16 conn {fmt(many)}")
    for a, b in itertools.pairwise(counts):
        ratio = flat[b][0].run.p50_ms / flat[a][0].run.p50_ms
        ok = "met" if ratio <= TARGETS["flat"] else "MISSED"
        say(f"  p50 {b} vs {a} cities: {ratio:.2f}x (target <= {TARGETS['flat']}x per 10x) {ok}")
    say()
    say(f"logs: {tmp}; load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
