"""A fake employee table for the PII features: ``hr.employees``.

Columns: ``employee_id`` (1..n), ``name``, ``email``, ``phone``, ``hire_date``, ``salary``.
Names come from Faker (``en_US``); everything is deterministic for a seed (and a Faker
version). Nothing can reach a real person:

* e-mail addresses are unique and only use the domains reserved for documentation by RFC 2606
  (``example.com``, ``example.org``, ``example.net``);
* phone numbers are North American numbers in the 555-0100..555-0199 block, which is reserved
  for fictional use (``+1-415-555-0123``);
* salaries are drawn from a log-normal around 72,000 (32,000..350,000), with cents;
* hire dates fall between 2005-01-01 and 2025-06-30.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
import re
import unicodedata
from collections.abc import Mapping
from itertools import accumulate
from pathlib import Path

import pyarrow as pa
from faker import Faker
from faker.providers.person.en_US import Provider as PersonProvider

__all__ = ["EMPLOYEES_SCHEMA", "EMPLOYEE_COLUMNS", "generate_employees", "write_employees_csv"]

EMPLOYEES_SCHEMA = pa.schema(
    [
        pa.field("employee_id", pa.int64(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("email", pa.string()),
        pa.field("phone", pa.string()),
        pa.field("hire_date", pa.date32()),
        pa.field("salary", pa.float64()),
    ]
)
EMPLOYEE_COLUMNS = tuple(EMPLOYEES_SCHEMA.names)
DOMAINS = ("example.com", "example.org", "example.net")
FIRST_HIRE, LAST_HIRE = dt.date(2005, 1, 1), dt.date(2025, 6, 30)
SALARY_MEDIAN, SALARY_SIGMA, SALARY_MIN, SALARY_MAX = 72_000.0, 0.35, 32_000.0, 350_000.0
_NOT_LOCAL = re.compile(r"[^a-z0-9]+")


def _ascii_word(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return _NOT_LOCAL.sub("", plain) or "user"


def _area_code(rng: random.Random) -> int:
    """A plausible North American area code: 2-9, then not x9x, not N11."""
    while True:
        code = rng.randint(201, 989)
        middle, last2 = (code // 10) % 10, code % 100
        if middle != 9 and last2 != 11:
            return code


def _weighted(names: Mapping[str, float]) -> tuple[list[str], list[float]]:
    return list(names), list(accumulate(names.values()))


def generate_employees(n: int, seed: int = 0) -> pa.Table:
    """``n`` fake employees as an Arrow table of :data:`EMPLOYEES_SCHEMA`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng: random.Random = fake.random
    # Faker's own weighted en_US name lists, drawn in bulk (Faker's per-call API is ~50x slower)
    first_names, first_weights = _weighted(PersonProvider.first_names)
    last_names, last_weights = _weighted(PersonProvider.last_names)
    firsts = rng.choices(first_names, cum_weights=first_weights, k=n)
    lasts = rng.choices(last_names, cum_weights=last_weights, k=n)
    names, emails, phones, hired, salaries = [], [], [], [], []
    taken: set[str] = set()
    mu = math.log(SALARY_MEDIAN)
    span = (LAST_HIRE - FIRST_HIRE).days
    for first, last in zip(firsts, lasts, strict=True):
        names.append(f"{first} {last}")
        f, s = _ascii_word(first), _ascii_word(last)
        local = rng.choice((f"{f}.{s}", f"{f}.{s}", f"{f[0]}{s}", f"{f}_{s}"))
        domain = rng.choice(DOMAINS)
        email, k = f"{local}@{domain}", 1
        while email in taken:
            k += 1
            email = f"{local}{k}@{domain}"
        taken.add(email)
        emails.append(email)
        phones.append(f"+1-{_area_code(rng)}-555-01{rng.randint(0, 99):02d}")
        hired.append(FIRST_HIRE + dt.timedelta(days=rng.randint(0, span)))
        salary = min(max(rng.lognormvariate(mu, SALARY_SIGMA), SALARY_MIN), SALARY_MAX)
        salaries.append(round(salary, 2))
    return pa.table(
        [pa.array(range(1, n + 1), pa.int64()), names, emails, phones, hired, salaries],
        schema=EMPLOYEES_SCHEMA,
    )


def write_employees_csv(path: Path | str, n: int, seed: int = 0) -> Path:
    """Write ``n`` fake employees to a CSV file (header, ISO dates, salaries with 2 decimals)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = generate_employees(n, seed)
    columns = [table.column(name).to_pylist() for name in EMPLOYEE_COLUMNS]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(EMPLOYEE_COLUMNS)
        for employee_id, name, email, phone, hired, salary in zip(*columns, strict=True):
            writer.writerow([employee_id, name, email, phone, hired.isoformat(), f"{salary:.2f}"])
    return path
