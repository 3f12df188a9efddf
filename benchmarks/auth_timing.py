"""How long a refused bearer token takes, by reason: unknown, malformed, revoked, expired.

Every failing token takes the same path (hashed, looked up by hash, one 401 body), so the
figures should agree within noise; a valid token is shown for reference. Requests go through the
Flask test client (no network), interleaved so drift on a shared machine hits every case alike,
with rate limiting off. Nothing is asserted: the tests check the code path (tests/test_security.py
counts the hashes and lookups); this prints what it costs.

Run: ``python benchmarks/auth_timing.py [--rounds 500]``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from stratus.api import create_app
from stratus.config import Settings
from stratus.context import Stratus

PATH = "/api/2.1/unity-catalog/catalogs"
WARMUP = 20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=500, help="timed requests per case")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        stratus = Stratus.from_settings(
            Settings(home=Path(tmp) / "home", rate_limit_enabled=False, log_level="WARNING")
        )
        try:
            app = create_app(stratus=stratus)
            ms = stratus.governance.metastore
            for name in ("carol", "dave"):
                ms.create_principal(name)
            revoked, _ = ms.create_token("carol", days=1)
            ms.revoke_token(next(t.id for t, who in ms.list_tokens("carol") if who == "carol"))
            expired, _ = ms.create_token("dave", days=1e-9)
            valid, _ = ms.create_token("admin", days=1)
            cases = {
                "unknown": "stratus_" + secrets.token_urlsafe(32),
                "malformed": "x",
                "revoked": revoked,
                "expired": expired,
                "valid (reference)": valid,
            }
            client = app.test_client()
            times: dict[str, list[float]] = {name: [] for name in cases}
            statuses: dict[str, set[int]] = {name: set() for name in cases}
            names = list(cases)
            for i in range(WARMUP + args.rounds):
                for name in names if i % 2 == 0 else names[::-1]:
                    headers = {"Authorization": f"Bearer {cases[name]}"}
                    t0 = time.perf_counter()
                    resp = client.get(PATH, headers=headers)
                    elapsed = (time.perf_counter() - t0) * 1e6
                    statuses[name].add(resp.status_code)
                    if i >= WARMUP:
                        times[name].append(elapsed)
        finally:
            stratus.close()
    print(f"{args.rounds} interleaved requests per case, GET {PATH}, test client; microseconds")
    print(f"  {'case':<20} {'status':>7} {'p50':>9} {'p95':>9}")
    for name, values in times.items():
        p95 = statistics.quantiles(values, n=100, method="inclusive")[94]
        status = ",".join(str(s) for s in sorted(statuses[name]))
        print(f"  {name:<20} {status:>7} {statistics.median(values):9.1f} {p95:9.1f}")
    refused = [statistics.median(times[n]) for n in names if n != "valid (reference)"]
    print(
        f"  spread of the refused p50s: {max(refused) - min(refused):.1f} us "
        f"({(max(refused) - min(refused)) / statistics.median(refused) * 100:.1f}% of their median)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
