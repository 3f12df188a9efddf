"""Masks, PII detection and the fake employee dataset (stratus.pii.masks/detect, datasets)."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import re
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from stratus.datasets import EMPLOYEES_SCHEMA, generate_employees, write_employees_csv
from stratus.pii.detect import Detection, detect_pii, kind_from_name
from stratus.pii.masks import (
    MaskPolicy,
    mask,
    mask_email,
    mask_initials,
    mask_phone,
    parse_mask,
    redact,
    salary_range,
)
from stratus.weather.sample import build_sample_data


# ---- masks -----------------------------------------------------------------------------------
def test_email_mask() -> None:
    values = pa.array(
        ["jane.doe@example.com", None, "j@example.org", "no-at-sign", "", "Ünal@example.net"]
    )
    assert mask("email", values).to_pylist() == [
        "j***@example.com",
        None,
        "j***@example.org",
        "***",
        "***",
        "Ü***@example.net",
    ]


def test_phone_mask() -> None:
    values = pa.array(
        ["+1-415-555-0123", "(212) 555-0199 x42", None, "555.01", "12-34", "020 7946 0958"]
    )
    assert mask("phone", values).to_pylist() == [
        "***-***-0123",
        "***-***-0199",
        None,
        "***",
        "***",
        "***-***-0958",
    ]


def test_salary_mask_default_range() -> None:
    values = pa.array([54321.5, None, 59999.99, 60000.0, 9999.0, 250000.0, float("nan")])
    assert mask("salary", values).to_pylist() == [
        "50,000-59,999",
        None,
        "50,000-59,999",
        "60,000-69,999",
        "0-9,999",
        "250,000-259,999",
        "***",
    ]


def test_salary_mask_other_types_and_widths() -> None:
    assert mask("salary", pa.array([54321, None], pa.int32())).to_pylist() == [
        "50,000-59,999",
        None,
    ]
    decimals = pa.array([decimal.Decimal("54321.50"), None], pa.decimal128(10, 2))
    assert mask("salary", decimals).to_pylist() == ["50,000-59,999", None]
    assert mask("salary", pa.array(["$54,321.50", "n/a", None])).to_pylist() == [
        "50,000-59,999",
        "***",
        None,
    ]
    assert salary_range(25_000)(pa.array([54321.5, -1.0])).to_pylist() == [
        "50,000-74,999",
        "-25,000 to -1",
    ]
    assert mask("salary", pa.array([], pa.float64())).to_pylist() == []
    with pytest.raises(ValueError, match="positive"):
        salary_range(0)


def test_name_mask_and_default() -> None:
    names = pa.array(["Jane Doe", None, "mary ann smith-jones", "  ", "Zoë"])
    assert mask("name", names).to_pylist() == ["J. D.", None, "M. A. S.", "***", "Z."]
    assert mask_initials(names).type == pa.string()
    assert mask("national_id", pa.array(["123-45-6789", None])).to_pylist() == ["***", None]
    assert mask("iban", pa.chunked_array([[1, None], [2]])).to_pylist() == ["***", None, "***"]
    assert redact(pa.array([dt.date(2020, 1, 1), None])).to_pylist() == ["***", None]


def test_masks_return_strings_and_keep_nulls() -> None:
    cases = {
        "email": pa.array(["a@example.com", None]),
        "phone": pa.array(["+1-415-555-0123", None], pa.large_string()),
        "salary": pa.array([1.0, None]),
        "name": pa.array(["A B", None]),
        "other": pa.array([1, None]),
    }
    for kind, values in cases.items():
        out = mask(kind, values)
        assert out.type == pa.string(), kind
        assert out.to_pylist()[1] is None, kind
        assert len(out) == 2


def test_mask_policy_configuration() -> None:
    salaries = pa.array([54321.5, None])
    assert MaskPolicy.from_env({"STRATUS_MASK_SALARY": "null"}).mask(
        "salary", salaries
    ).to_pylist() == [None, None]
    policy = MaskPolicy.from_env({"STRATUS_MASK_SALARY": "range:25,000", "PATH": "/bin"})
    assert policy.mask("salary", salaries).to_pylist() == ["50,000-74,999", None]
    assert policy.mask("email", pa.array(["a@b.example"])).to_pylist() == ["a***@b.example"]
    custom = MaskPolicy.from_config({"phone": "redact", "Email": "null", "badge": "last4"})
    assert custom.mask("phone", pa.array(["+1-415-555-0123"])).to_pylist() == ["***"]
    assert custom.mask("email", pa.array(["a@b.example"])).to_pylist() == [None]
    assert custom.mask("badge", pa.array(["+1-415-555-0123"])).to_pylist() == ["***-***-0123"]
    assert custom.mask("salary", salaries).to_pylist() == ["50,000-59,999", None]
    assert parse_mask("email") is mask_email
    assert parse_mask(" PHONE ") is mask_phone
    assert parse_mask("range")(pa.array([5.0])).to_pylist() == ["0-9,999"]
    with pytest.raises(ValueError, match="unknown mask 'plaintext'"):
        parse_mask("plaintext")
    with pytest.raises(ValueError, match="integer"):
        parse_mask("range:wide")
    with pytest.raises(ValueError, match="positive"):
        parse_mask("range:-5")


# ---- the employee dataset --------------------------------------------------------------------
def test_employees_deterministic_realistic_and_fake() -> None:
    table = generate_employees(2000, seed=7)
    assert table.schema == EMPLOYEES_SCHEMA
    assert table.equals(generate_employees(2000, seed=7))
    assert not table.equals(generate_employees(2000, seed=8))
    rows = table.to_pylist()
    assert [r["employee_id"] for r in rows] == list(range(1, 2001))
    emails = [r["email"] for r in rows]
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"[a-z0-9._]+@example\.(com|org|net)", e) for e in emails)
    assert all(re.fullmatch(r"\+1-[2-9]\d\d-555-01\d\d", r["phone"]) for r in rows)
    assert all(re.fullmatch(r"[A-Z][A-Za-z'\-]+ [A-Z][A-Za-z'\- ]+", r["name"]) for r in rows)
    assert len({r["name"] for r in rows}) > 1500
    assert all(dt.date(2005, 1, 1) <= r["hire_date"] <= dt.date(2025, 6, 30) for r in rows)
    salaries = [r["salary"] for r in rows]
    assert all(32_000 <= s <= 350_000 and round(s, 2) == s for s in salaries)
    assert 55_000 < sorted(salaries)[1000] < 90_000  # a plausible median
    assert generate_employees(0).num_rows == 0
    with pytest.raises(ValueError):
        generate_employees(-1)


def test_employee_emails_unique_at_scale() -> None:
    emails = generate_employees(20_000, seed=1).column("email").to_pylist()
    assert len(set(emails)) == 20_000


def test_write_employees_csv(tmp_path: Path) -> None:
    path = write_employees_csv(tmp_path / "out" / "employees.csv", 25, seed=3)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["employee_id", "name", "email", "phone", "hire_date", "salary"]
    assert len(rows) == 25
    table = generate_employees(25, seed=3).to_pylist()
    for row, expected in zip(rows, table, strict=True):
        assert row["email"] == expected["email"]
        assert row["hire_date"] == expected["hire_date"].isoformat()
        assert re.fullmatch(r"\d+\.\d\d", row["salary"])
        assert float(row["salary"]) == expected["salary"]


# ---- detection -------------------------------------------------------------------------------
def as_csv_columns(table: pa.Table) -> dict[str, list[str | None]]:
    """Columns as the text a CSV reader yields."""
    out: dict[str, list[str | None]] = {}
    for name in table.column_names:
        values = table.column(name).to_pylist()
        out[name] = [
            None
            if v is None
            else v.isoformat()
            if isinstance(v, dt.date)
            else f"{v:.2f}"
            if isinstance(v, float)
            else str(v)
            for v in values
        ]
    return out


def test_detects_employee_pii() -> None:
    columns = as_csv_columns(generate_employees(300, seed=0))
    found = detect_pii(columns)
    assert {c: d.kind for c, d in found.items()} == {
        "name": "name",
        "email": "email",
        "phone": "phone",
        "salary": "salary",
    }
    assert found["email"] == Detection("email", "column name 'email'")
    assert found["salary"].reason == "column name 'salary'"
    assert "next to personal data" in found["name"].reason
    assert "employee_id" not in found and "hire_date" not in found
    # the same on Arrow columns
    arrow = detect_pii({n: generate_employees(50).column(n) for n in EMPLOYEES_SCHEMA.names})
    assert set(arrow) == {"name", "email", "phone", "salary"}


def test_detects_by_values_when_names_say_nothing() -> None:
    columns = as_csv_columns(generate_employees(300, seed=2))
    renamed = {
        "col_a": columns["email"],
        "col_b": columns["phone"],
        "col_c": [f"${float(v):,.2f}" for v in columns["salary"] if v],
        "col_d": columns["salary"],  # bare numbers: could be anything
        "col_e": columns["hire_date"],
        "col_f": columns["employee_id"],
        "label": columns["name"],
    }
    found = detect_pii(renamed)
    assert found == {
        "col_a": Detection("email", "100% of 200 sampled values look like e-mail addresses"),
        "col_b": Detection("phone", "100% of 200 sampled values look like phone numbers"),
        "col_c": Detection("salary", "100% of 200 sampled values look like money amounts"),
    }


def test_value_threshold_and_sample_reporting() -> None:
    emails = [f"user{i}@example.com" for i in range(93)] + [f"note {i}" for i in range(7)]
    emails += [None, ""] * 5
    found = detect_pii({"contact": emails})
    assert found["contact"] == Detection(
        "email", "93% of 100 sampled values look like e-mail addresses"
    )
    mostly_text = [f"user{i}@example.com" for i in range(7)] + ["n/a"] * 3
    assert detect_pii({"contact": mostly_text}) == {}
    assert detect_pii({"contact": ["a@example.com", None, ""]}) == {}  # too few values
    assert detect_pii({"x": []}) == {}


@pytest.mark.parametrize(
    "values",
    [
        ["+1-415-555-0123", "(212) 555-0199", "020 7946 0958", "+44 20 7946 0958x12"],
        ["555.123.4567", "415-555-0199 ext. 7", "+15551234567", "(0)30 1234 5678"],
    ],
)
def test_phone_shapes(values: Sequence[str]) -> None:
    assert detect_pii({"v": list(values)})["v"].kind == "phone"


@pytest.mark.parametrize(
    "values",
    [
        ["2024-01-01", "2024-01-02", "2023-12-31"],  # dates
        ["192.168.1.10", "10.0.0.1", "172.16.254.1"],  # IPv4
        ["-122.4194155", "37.7749295", "-73.9856644"],  # coordinates
        ["12.5", "-3.25", "1013.25", "0.0"],  # measurements
        ["1234567", "9876543", "5551234567"],  # bare integers / ids
        ["0100", "0200", "2400"],  # HHMM hours
        ["85000.50", "72000.00", "61000.25"],  # bare amounts: not money by value
    ],
)
def test_non_pii_values_not_flagged(values: Sequence[str]) -> None:
    assert detect_pii({"v": list(values)}) == {}


@pytest.mark.parametrize(
    "values",
    [["$85,000.00", "$1,200", "$-5.10"], ["85.000,50 €", "EUR 1200", "USD 99.99"], ["85,000.00"]],
)
def test_money_shapes(values: Sequence[str]) -> None:
    found = detect_pii({"amount_x": list(values) * 3})
    assert found["amount_x"].kind == "salary"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("email", "email"),
        ("e_mail", "email"),
        ("E-Mail", "email"),
        ("mail", "email"),
        ("workEmail", "email"),
        ("email_address", "email"),
        ("phone", "phone"),
        ("tel", "phone"),
        ("mobile", "phone"),
        ("home_phone_number", "phone"),
        ("salary", "salary"),
        ("base_salary", "salary"),
        ("wage", "salary"),
        ("pay", "salary"),
        ("total_compensation", "salary"),
        ("ssn", "national_id"),
        ("SSN", "national_id"),
        ("national_id", "national_id"),
        ("iban", "iban"),
        ("dob", "date_of_birth"),
        ("birth_date", "date_of_birth"),
        ("ip_address", "ip_address"),
        ("full_name", "name"),
        ("first_name", "name"),
        ("lastName", "name"),
        ("surname", "name"),
        ("street_address", "address"),
    ],
)
def test_kind_from_name(name: str, kind: str) -> None:
    assert kind_from_name(name) == kind


@pytest.mark.parametrize(
    "name",
    [
        "employee_id",
        "hire_date",
        "email_verified",
        "email_token",
        "phone_type",
        "salary_date",
        "pay_grade",
        "mail_server",
        "name",
        "city_name",
        "temperature",
        "",
        "__",
    ],
)
def test_not_pii_by_name(name: str) -> None:
    assert kind_from_name(name) is None


def test_bare_name_needs_personal_company() -> None:
    assert detect_pii({"name": ["Jane Doe", "John Roe", "Ada Lovelace"]}) == {}
    assert detect_pii({"full_name": ["Jane Doe"]})["full_name"].kind == "name"
    with_email = detect_pii({"name": ["Jane Doe"], "email": ["jane@example.com"]})
    assert with_email["name"].kind == "name"
    # salary alone does not make a table personal (a price list has names and amounts)
    assert set(detect_pii({"name": ["Widget"], "salary": ["1"]})) == {"salary"}


@pytest.fixture(scope="module")
def weather_columns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[str]]]:
    """The real sample weather CSVs (observations and cities) as text columns."""
    report = build_sample_data(tmp_path_factory.mktemp("weather") / "weather.csv")
    tables = {}
    for label, path in (("hourly", report.weather_path), ("cities", report.cities_path)):
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        tables[label] = {name: [row[name] for row in rows] for name in rows[0]}
    return tables


def test_weather_columns_not_flagged(weather_columns: dict[str, dict[str, list[str]]]) -> None:
    hourly, cities = weather_columns["hourly"], weather_columns["cities"]
    assert {"city_id", "date", "hour", "temp", "humidity"} <= set(hourly)
    assert "name" in cities
    assert detect_pii(hourly) == {}
    assert detect_pii(cities) == {}
    # the derived timestamp column of the hourly table too
    stamps = [
        f"{d} {h[:2]}:{h[2:]}:00" for d, h in zip(hourly["date"], hourly["hour"], strict=True)
    ]
    assert detect_pii({"ts": stamps[:1000]}) == {}
