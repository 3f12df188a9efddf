"""PII encryption benchmark: the column pipeline versus raw AES-GCM calls, in one run.

Section "cipher": N string values (default 1M synthetic e-mail addresses such as
``maria.garcia4711@example.org``, built from a pattern with a seeded RNG, not Faker, so
generation takes a second) are encrypted and decrypted

* through the pipeline: ``ColumnCipher.encrypt`` on an Arrow string array -> binary array ->
  ``ColumnCipher.decrypt`` -> Arrow string array (data key from a ``KeyManager`` over a
  temporary local keyring), and
* raw: a Python loop over the same values as ``str`` calling ``AESGCM.encrypt`` from
  ``cryptography`` with a fresh ``os.urandom(12)`` nonce per value, then ``AESGCM.decrypt`` back
  to ``str`` (the minimum any per-value AES-GCM code does).

Each side runs ``--repeat`` times, interleaved; the best time counts. Target: pipeline
(encrypt + decrypt) within 2x of raw. Tokens (HMAC-SHA256) are timed too, for information.

Section "ingest": ``--employees`` fake employees (default 100k, ``write_employees_csv``) are
ingested by ``TableService.ingest`` into a new ``main.hr.employees`` in a fresh home, once with
the default PII detection (name, email, phone and salary encrypted, with token columns) and once
with all four turned off; the ratio is for information (the issue sets no target).

Sections are functions returning :class:`Verdict` rows; ``main`` runs them in order and prints
the targets at the end, so further sections (e.g. ingest) can be appended to ``SECTIONS``.

Run: ``python benchmarks/pii.py [--values 1000000] [--employees 100000] [--repeat 3]
[--quick] [--section cipher|ingest]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stratus.pii.cipher import ColumnCipher
from stratus.pii.envelope import InMemoryDataKeyStore, KeyManager
from stratus.pii.keys import LocalKeyFileProvider

TARGET_RATIO = 2.0
SEED = 20240601
FIRST = ("maria", "james", "li", "aisha", "john", "sofia", "ahmed", "emma", "noah", "yuki")
LAST = ("garcia", "smith", "wang", "khan", "doe", "rossi", "muller", "kim", "silva", "novak")
DOMAINS = ("example.com", "example.org", "example.net")


def say(text: str = "") -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    text: str


def synthetic_emails(n: int, seed: int = SEED) -> list[str]:
    rng = random.Random(seed)
    first = [rng.choice(FIRST) for _ in range(64)]
    last = [rng.choice(LAST) for _ in range(64)]
    return [
        f"{first[i % 64]}.{last[(i // 64) % 64]}{i}@{DOMAINS[i % 3]}"
        for i in rng.sample(range(10 * n), n)
    ]


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def rate(n: int, seconds: float) -> str:
    return f"{seconds:8.3f} s  {n / seconds / 1e6:6.2f} M values/s"


# ---- section: cipher -----------------------------------------------------------------------
def bench_cipher(n: int, repeat: int, workdir: Path) -> list[Verdict]:
    say(f"[cipher] {n:,} synthetic e-mail addresses, best of {repeat}")
    t0 = time.perf_counter()
    values = synthetic_emails(n)
    array = pa.array(values, pa.string())
    say(f"  generated in {time.perf_counter() - t0:.2f} s, {array.nbytes / 1e6:.1f} MB as Arrow")

    manager = KeyManager(LocalKeyFileProvider(workdir / "keyring.json"), InMemoryDataKeyStore())
    cipher = ColumnCipher.from_manager(manager, "bench.people.email")
    raw_aead = AESGCM(AESGCM.generate_key(256))
    aad = b"bench.people.email"

    def raw_encrypt() -> list[tuple[bytes, bytes]]:
        out = []
        for value in values:
            nonce = os.urandom(12)
            out.append((nonce, raw_aead.encrypt(nonce, value.encode(), aad)))
        return out

    def raw_decrypt(sealed: list[tuple[bytes, bytes]]) -> list[str]:
        return [raw_aead.decrypt(nonce, body, aad).decode() for nonce, body in sealed]

    times: dict[str, float] = {k: float("inf") for k in ("raw_enc", "raw_dec", "enc", "dec")}
    for _ in range(repeat):  # interleaved, so drift on a shared machine hits both sides
        t, sealed = best_of(1, raw_encrypt)
        times["raw_enc"] = min(times["raw_enc"], t)
        t, plain = best_of(1, lambda s=sealed: raw_decrypt(s))
        times["raw_dec"] = min(times["raw_dec"], t)
        assert plain == values
        del sealed, plain
        t, encrypted = best_of(1, lambda: cipher.encrypt(array))
        times["enc"] = min(times["enc"], t)
        t, decrypted = best_of(1, lambda e=encrypted: cipher.decrypt(e))
        times["dec"] = min(times["dec"], t)
        assert decrypted.equals(array)
        del encrypted, decrypted
    t_token, _ = best_of(repeat, lambda: cipher.token(array))

    raw_total = times["raw_enc"] + times["raw_dec"]
    pipe_total = times["enc"] + times["dec"]
    ratio = pipe_total / raw_total
    say(f"  raw AESGCM.encrypt (os.urandom nonce)  {rate(n, times['raw_enc'])}")
    say(f"  raw AESGCM.decrypt                     {rate(n, times['raw_dec'])}")
    say(f"  raw total                              {rate(n, raw_total)}")
    say(f"  ColumnCipher.encrypt (Arrow -> Arrow)  {rate(n, times['enc'])}")
    say(f"  ColumnCipher.decrypt (Arrow -> Arrow)  {rate(n, times['dec'])}")
    say(f"  pipeline total                         {rate(n, pipe_total)}")
    say(f"  ColumnCipher.token (HMAC-SHA256)       {rate(n, t_token)}")
    say(f"  ratio pipeline / raw                   {ratio:8.2f}x")
    verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
    text = (
        f"{verdict}  cipher: encrypt+decrypt of {n:,} values {pipe_total:.2f} s vs raw AES-GCM "
        f"{raw_total:.2f} s = {ratio:.2f}x (target <= {TARGET_RATIO:g}x)"
    )
    return [Verdict(ratio <= TARGET_RATIO, text)]


# ---- section: ingest -----------------------------------------------------------------------
EMPLOYEES_TABLE = "main.hr.employees"
NO_PII: dict[str, str | None] = {"email": None, "phone": None, "salary": None, "name": None}


def ingest_once(csv_path: Path, home: Path, pii: dict[str, str | None] | None) -> float:
    """Seconds for ``TableService.ingest`` of the file into a new table in a fresh home (table
    creation, PII detection, validation, encryption and the Delta commit; not the start-up)."""
    from stratus.config import Settings
    from stratus.context import Stratus

    stratus = Stratus.from_settings(Settings(home=home))
    try:
        stratus.bootstrap()
        gc.collect()
        t0 = time.perf_counter()
        report = stratus.tables.ingest(
            csv_path, EMPLOYEES_TABLE, owner="admin", key=("employee_id",), pii=pii
        )
        seconds = time.perf_counter() - t0
        expected = set() if pii is not None else set(NO_PII)
        if set(report.pii_tagged) != expected or report.written != report.read:
            raise AssertionError(f"unexpected ingest report: {report.to_dict()}")
        return seconds
    finally:
        stratus.close()


def bench_ingest(n: int, repeat: int, workdir: Path) -> list[Verdict]:
    from stratus.datasets.employees import write_employees_csv

    say(
        f"[ingest] {n:,} fake employees (CSV) into a new table, a fresh home per run, "
        f"best of {repeat}"
    )
    t0 = time.perf_counter()
    csv_path = write_employees_csv(workdir / "employees.csv", n)
    size = csv_path.stat().st_size / 1e6
    say(f"  generated in {time.perf_counter() - t0:.2f} s, {size:.1f} MB of CSV")
    times = {"encrypted": float("inf"), "plain": float("inf")}
    for i in range(repeat):  # interleaved, so drift on a shared machine hits both sides
        for mode, pii in (("encrypted", None), ("plain", NO_PII)):
            seconds = ingest_once(csv_path, workdir / f"home-{mode}-{i}", pii)
            times[mode] = min(times[mode], seconds)
    ratio = times["encrypted"] / times["plain"]
    say(
        f"  with encryption (4 PII columns detected)  {times['encrypted']:8.3f} s  "
        f"{n / times['encrypted']:10,.0f} rows/s"
    )
    say(
        f"  without (--no-pii on all 4)               {times['plain']:8.3f} s  "
        f"{n / times['plain']:10,.0f} rows/s"
    )
    say(f"  ratio with / without                      {ratio:8.2f}x")
    text = (
        f"INFO  ingest: {n:,} employees {times['encrypted']:.2f} s encrypted vs "
        f"{times['plain']:.2f} s plain = {ratio:.2f}x (no target)"
    )
    return [Verdict(True, text)]


Section = Callable[[argparse.Namespace, Path], list[Verdict]]
SECTIONS: list[tuple[str, Section]] = [
    ("cipher", lambda args, workdir: bench_cipher(args.values, args.repeat, workdir)),
    ("ingest", lambda args, workdir: bench_ingest(args.employees, args.repeat, workdir)),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--values", type=int, default=1_000_000, help="values for the cipher section")
    ap.add_argument("--employees", type=int, default=100_000, help="rows for the ingest section")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per side (best counts)")
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 100k values, 10k employees, 1 run"
    )
    ap.add_argument(
        "--section", action="append", choices=[name for name, _ in SECTIONS], help="run only..."
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.values, args.employees, args.repeat = 100_000, 10_000, 1
    t_start = time.perf_counter()
    verdicts: list[Verdict] = []
    with tempfile.TemporaryDirectory(prefix="stratus-bench-pii-") as tmp:
        for name, section in SECTIONS:
            if args.section and name not in args.section:
                continue
            verdicts += section(args, Path(tmp))
            say()
    say("Targets")
    for verdict in verdicts:
        say(f"  {verdict.text}")
    say()
    say(f"total wall time {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
