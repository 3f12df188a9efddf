"""What authentication, grant checks and the audit log cost on the 7-day weather query.

The table and the workload are those of ``benchmarks/query.py`` (its builder, its cache under
``benchmarks/.data``; the data is SYNTHETIC: 6 real stations resampled into N cities x Y years).
Two Flask test clients share ONE :class:`Stratus` (same Delta table cache, same DuckDB engine):

* ``off``: ``create_app(stratus, auth_enabled=False)``: no token, no grant check, no audit;
* ``on``: ``create_app(stratus)`` called by a NON-admin reader (USE CATALOG main, USE SCHEMA
  main.weather, SELECT on main.weather.hourly) with its API token in the Authorization header:
  every request authenticates, checks USE CATALOG / USE SCHEMA / SELECT and queues an audit
  record, which the background writer appends to ``system.access.audit`` during the run.

The two run interleaved (round i: off then on, round i + 1: on then off, ...) over the same
random (city, week) list, warm (the first runs are discarded). Reported: p50 / p95 of each, the
p50 overhead (on - off) and the median of the per-round differences. Target: p50 overhead under
2 ms. ``--profile N`` adds a cProfile of the ``on`` requests with the time per request of each
governance stage (authenticate, authorizer snapshot, grant check, audit record).

Run: ``python benchmarks/authz.py [--cities 100] [--years 5] [--repeat 400] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import gc
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks.query` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.query import (  # noqa: E402
    DAYS,
    WARMUP,
    Lake,
    StationCache,
    build_lake,
    home_name,
    say,
    week_url,
    week_work,
)

from stratus.api import create_app  # noqa: E402
from stratus.catalog import registry  # noqa: E402
from stratus.catalog.errors import AlreadyExists  # noqa: E402
from stratus.context import Stratus  # noqa: E402
from stratus.security.actions import Resource  # noqa: E402
from stratus.security.audit import AUDIT  # noqa: E402

TARGET_MS = 2.0
READER = "bench-reader"


# ---- set-up --------------------------------------------------------------------------------
def reader_token(stratus: Stratus) -> str:
    """A non-admin principal with just the grants a 7-day query needs, and a token for it."""
    stratus.bootstrap()
    ms = stratus.governance.metastore
    with contextlib.suppress(AlreadyExists):
        ms.create_principal(READER, "user", display_name="benchmark reader")
    for kind, name, privilege in (
        ("catalog", "main", "USE CATALOG"),
        ("schema", "main.weather", "USE SCHEMA"),
        ("table", registry.HOURLY.full_name, "SELECT"),
    ):
        ms.update_grants(
            kind, ms.securable(kind, name).id, [{"principal": READER, "add": [privilege]}]
        )
    secret, _ = ms.create_token(READER, days=1, comment="benchmarks/authz.py")
    return secret


def request_fn(client, headers: dict[str, str]) -> Callable[[str, dt.date], None]:
    def run(city: str, start: dt.date) -> None:
        resp = client.get(week_url(city, start), headers=headers)
        if resp.status_code != 200:
            raise RuntimeError(
                f"{week_url(city, start)} -> {resp.status_code}: {resp.data[:300]!r}"
            )

    return run


# ---- measurement ---------------------------------------------------------------------------
def interleaved(
    jobs: dict[str, Callable[[str, dt.date], None]], work: list[tuple[str, dt.date]]
) -> dict[str, list[float]]:
    """Milliseconds per run of each job; the job order flips every round; warm-up dropped."""
    times: dict[str, list[float]] = {name: [] for name in jobs}
    names = list(jobs)
    gc.collect()
    for i, (city, start) in enumerate(work):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            t0 = time.perf_counter()
            jobs[name](city, start)
            elapsed = (time.perf_counter() - t0) * 1000
            if i >= WARMUP:
                times[name].append(elapsed)
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def micro(fn: Callable[[], object], n: int = 5000) -> float:
    """Microseconds per call (best of 3 batches)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


# (label, file name suffix, function name): the governance stages of one request
STAGES = [
    ("whole request (test client)", "test.py", "get"),
    ("weather handler (query)", "weather.py", "hourly"),
    ("before_request: authenticate", "auth.py", "_authenticate"),
    ("  Authenticator.authenticate", "authn.py", "authenticate"),
    ("  Authorizer.snapshot", "authz.py", "snapshot"),
    ("grant checks: _authorize", "weather.py", "_authorize"),
    ("  Authorizer.require (table.read)", "authz.py", "require"),
    ("after_request: audit _record", "auth.py", "_record"),
    ("  AuditRecord(...) + record()", "audit.py", "record"),
]


def profile(run: Callable[[str, dt.date], None], work: list[tuple[str, dt.date]], top: int) -> str:
    prof = cProfile.Profile()
    for city, start in work[:WARMUP]:
        run(city, start)
    timed_work = work[WARMUP:]
    prof.enable()
    for city, start in timed_work:
        run(city, start)
    prof.disable()
    n = len(timed_work)
    stats = pstats.Stats(prof)
    out = io.StringIO()
    out.write(f"  cumulative time per request under cProfile ({n} requests, 'on'):\n")
    for label, suffix, func in STAGES:
        total = sum(
            ct
            for (path, _, name), (_, _, _, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
            if name == func and path.endswith(os.sep + suffix)
        )
        out.write(f"    {label:<34} {total / n * 1000:8.3f} ms\n")
    if top:
        buf = io.StringIO()
        stats.stream = buf  # type: ignore[attr-defined]
        stats.strip_dirs().sort_stats("cumulative").print_stats(top)
        lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
        out.write("  -- top functions by cumulative time --\n")
        out.write("\n".join(lines[-top - 1 :]) + "\n")
    return out.getvalue().rstrip()


# ---- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cities", type=int, default=100)
    ap.add_argument("--years", type=int, default=5)
    ap.add_argument("--first-year", type=int, default=2019)
    ap.add_argument("--repeat", type=int, default=400, help="timed runs of each variant")
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).parent / ".data")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 cities x 2 years")
    ap.add_argument("--rebuild", action="store_true", help="ignore the cached lakehouse")
    ap.add_argument("--profile", type=int, default=-1, metavar="N", help="cProfile; top N rows")
    args = ap.parse_args(argv)
    if args.quick:
        args.cities, args.years, args.repeat = 20, 2, 60
    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    say("Stratus governance overhead benchmark")
    say("=" * 78)
    say(
        f"DATA IS SYNTHETIC (see benchmarks/query.py): {args.cities} cities x {args.years} years; "
        f"{DAYS}-day hourly query of one city."
    )
    say(f"Interleaved, warm (first {WARMUP} discarded), {args.repeat} timed runs each; ms.")
    say(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    say()

    home = data_dir / home_name(args.cities, args.years, False)
    say(f"[build] {args.cities} cities x {args.years} years -> {home}")
    lake: Lake = build_lake(
        data_dir, args.cities, args.years, args.first_year, StationCache(data_dir), args.rebuild
    )
    say(f"  {lake.rows:,} rows ({'reused cache' if lake.reused else 'built now'})")

    stratus = lake.stratus()
    token = reader_token(stratus)
    app_on = create_app(stratus=stratus)
    app_off = create_app(stratus=stratus, auth_enabled=False)
    on = request_fn(app_on.test_client(), {"Authorization": f"Bearer {token}"})
    off = request_fn(app_off.test_client(), {})
    audit = stratus.governance.audit
    audit.flush()
    written0 = audit.written
    work = week_work(lake, args.repeat + WARMUP)

    # the reader really is governed: no token -> 401, another table -> 404, audit -> 403
    probe = app_on.test_client()
    city, start = work[0]
    checks = {
        "no token": probe.get(week_url(city, start)).status_code,
        "audit log": probe.get(
            "/api/v1/audit", headers={"Authorization": f"Bearer {token}"}
        ).status_code,
    }
    say(f"[check] reader {READER!r}: {checks} (expect 401, 403); with token: 200")

    say(f"[measure] off vs on, {len(work)} rounds ...")
    times = interleaved({"off": off, "on": on}, work)
    audit.flush()
    recorded = audit.written - written0
    files = stratus.lakehouse.files(AUDIT)
    say()
    say(f"  {'variant':<44} {'p50':>8} {'p95':>8}")
    labels = {
        "off": "auth OFF (auth_enabled=False)",
        "on": "auth ON (reader token, grants, audit)",
    }
    for name, label in labels.items():
        v = times[name]
        say(f"  {label:<44} {statistics.median(v):8.2f} {p95(v):8.2f}   (n={len(v)})")
    p50_off, p50_on = statistics.median(times["off"]), statistics.median(times["on"])
    overhead = p50_on - p50_off
    paired = statistics.median(a - b for a, b in zip(times["on"], times["off"], strict=True))
    say(f"  overhead: p50 on - p50 off = {overhead:+.3f} ms; paired median {paired:+.3f} ms")
    say(
        f"  p95 on - p95 off = {p95(times['on']) - p95(times['off']):+.3f} ms; "
        f"audit records written during the run: {recorded} "
        f"(writer failures {audit.failures}); audit table files {files.num_rows if files else 0}"
    )
    say()

    say("[pieces] microseconds per call, warm (outside a request)")
    authn, authz = stratus.governance.authenticator, stratus.governance.authorizer
    hourly = Resource("table", registry.HOURLY.full_name)
    header = f"Bearer {token}"
    ident = authn.authenticate(header)
    cached = micro(lambda: authn.authenticate(header))
    say(f"  Authenticator.authenticate (cached token)     {cached:8.2f} us")
    say(f"  Authorizer.snapshot                           {micro(authz.snapshot):8.2f} us")
    say(
        "  Authorizer.require table.read (3 privileges)  "
        f"{micro(lambda: authz.require(ident, 'table.read', hourly)):8.2f} us"
    )
    say()

    verdict = "PASS" if overhead < TARGET_MS else "MISS"
    say("Target")
    say(
        f"  {verdict}  p50 overhead of authentication + grant checks + audit: {overhead:.3f} ms "
        f"< {TARGET_MS:g} ms  (p50 off {p50_off:.2f} ms, on {p50_on:.2f} ms)"
    )
    say()
    say(f"total wall time {time.perf_counter() - t_start:.1f} s")

    if args.profile >= 0:
        say()
        say("[profile] cProfile of the 'on' requests")
        say(profile(on, work, args.profile))
    stratus.close()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
