"""PII detection for ingest: which columns to tag ``pii`` (and with which kind), and why.

Two signals, the column name first:

* **Name.** The column name is split into lower-case words (``workEmail`` -> ``work``,
  ``email``; ``e_mail`` -> ``e``, ``mail``, compact ``email``) and matched against per-kind
  vocabularies: email (email, e_mail, mail, email_address...), phone (phone, tel, mobile,
  cell, fax...), salary (salary, wage, pay, compensation, income, bonus...), national_id (ssn,
  national_id, nino, tax_id...), iban, bank_account, credit_card, date_of_birth (dob,
  birth_date...), ip_address, passport, address and name. A name whose last word marks
  metadata about the value rather than the value (``email_id``, ``phone_type``,
  ``salary_date``, ``email_verified``, ``email_token``...) is not flagged.
* **Values.** Up to ``sample_size`` (200) non-empty values, spread evenly over the column, are
  tested; if at least ``threshold`` (80%) of them look like e-mail addresses, phone numbers or
  money amounts, the column is flagged with that kind. At least 3 non-empty values are needed.
  A phone number needs 7 to 15 digits and a phone-like shape (a leading ``+``, parentheses or
  two separator groups), and is never an ISO date or an IPv4 address. A money amount needs a
  currency symbol or code (``$85,000.00``, ``85 000 EUR``) or thousands separators with cents
  (``85,000.00``); a bare number such as ``85000.5`` is as likely a measurement and is not
  flagged by its values (the column name still flags ``salary``).

Person names (kind ``name``) are detected by column name only, since values cannot tell a
person from a city or a product: ``full_name``, ``first_name``, ``last_name``, ``given_name``,
``family_name`` and ``surname`` always; a bare ``name`` only when the same table has another
personal column (email, phone, national id, date of birth, address...). So ``hr.employees.name``
is flagged while the ``name`` of the weather cities table is not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

__all__ = ["Detection", "detect_pii", "kind_from_name"]

SAMPLE_SIZE = 200
THRESHOLD = 0.8
MIN_VALUES = 3


@dataclass(frozen=True)
class Detection:
    kind: str
    reason: str


# ---- names -------------------------------------------------------------------------------------
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD = re.compile(r"[^a-z0-9]+")

# words that, last in a name, describe something *about* the value, not the value
_META_SUFFIXES = frozenset(
    {
        "id",
        "ids",
        "key",
        "uuid",
        "date",
        "at",
        "ts",
        "time",
        "timestamp",
        "count",
        "type",
        "kind",
        "verified",
        "flag",
        "valid",
        "hash",
        "token",
        "domain",
        "status",
        "enabled",
        "opt",
        "optin",
        "format",
        "grade",
        "currency",
        "encrypted",
        "masked",
    }
)

# (kind, exact compact names, words that flag when present anywhere)
_NAME_RULES: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = (
    (
        "date_of_birth",
        frozenset({"dob", "dateofbirth", "birthdate", "birthday", "birthdt"}),
        frozenset(),
    ),
    (
        "email",
        frozenset({"email", "mail", "emailaddress", "mailaddress", "emailaddr"}),
        frozenset({"email", "emails"}),
    ),
    (
        "phone",
        frozenset({"tel", "telno", "phoneno", "phonenumber", "mobileno", "msisdn"}),
        frozenset({"phone", "telephone", "tel", "mobile", "cellphone", "fax"}),
    ),
    (
        "salary",
        frozenset({"pay", "payrate", "basepay", "grosspay", "netpay", "annualpay", "hourlypay"}),
        frozenset(
            {
                "salary",
                "salaries",
                "wage",
                "wages",
                "compensation",
                "income",
                "remuneration",
                "earnings",
                "bonus",
            }
        ),
    ),
    (
        "national_id",
        frozenset(
            {
                "ssn",
                "socialsecuritynumber",
                "socialsecurity",
                "nationalid",
                "nationalidnumber",
                "nationalinsurancenumber",
                "nino",
                "taxid",
                "taxidnumber",
                "tin",
            }
        ),
        frozenset({"ssn"}),
    ),
    ("iban", frozenset({"iban"}), frozenset({"iban"})),
    ("bank_account", frozenset({"bankaccount", "bankaccountnumber"}), frozenset()),
    (
        "credit_card",
        frozenset({"creditcard", "creditcardnumber", "cardnumber", "ccnumber"}),
        frozenset(),
    ),
    ("passport", frozenset({"passport", "passportnumber", "passportno"}), frozenset()),
    (
        "ip_address",
        frozenset({"ip", "ipaddress", "ipaddr", "clientip", "remoteip", "ipv4", "ipv6"}),
        frozenset(),
    ),
    (
        "address",
        frozenset(
            {
                "address",
                "streetaddress",
                "homeaddress",
                "postaladdress",
                "mailingaddress",
                "street",
            }
        ),
        frozenset(),
    ),
    (
        "name",
        frozenset({"fullname", "firstname", "lastname", "givenname", "familyname", "surname"}),
        frozenset(),
    ),
)
_PERSON_KINDS = frozenset(
    {"email", "phone", "national_id", "date_of_birth", "address", "passport", "name"}
)


def _words(column: str) -> list[str]:
    return [w for w in _WORD.split(_CAMEL.sub("_", column).lower()) if w]


def kind_from_name(column: str) -> str | None:
    """The PII kind a column name implies, or None (a bare ``name`` gives None: see module)."""
    words = _words(column)
    if not words:
        return None
    compact = "".join(words)
    for kind, exact, _ in _NAME_RULES:
        if compact in exact:
            return kind
    if words[-1] in _META_SUFFIXES:
        return None
    for kind, _, anywhere in _NAME_RULES:
        if anywhere.intersection(words) or any(compact.endswith(e) for e in _suffix_forms(kind)):
            return kind
    return None


def _suffix_forms(kind: str) -> tuple[str, ...]:
    """Compact endings that flag a kind (``workemail``, ``homephone``, ``basesalary``)."""
    return {
        "email": ("email",),
        "phone": ("phone", "phonenumber"),
        "salary": ("salary",),
    }.get(kind, ())


# ---- values ------------------------------------------------------------------------------------
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]{2,}")
_PHONE_CHARS = re.compile(r"[+(]?\d[\d\s().\-/]*")
_PHONE_EXTENSION = re.compile(r"\s*(?:x|ext\.?|extension|#)\s*\d{1,6}\s*$", re.IGNORECASE)
_SEPARATOR_GROUPS = re.compile(r"[\s.\-/]+")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T].*)?")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_CURRENCY = r"(?:[$€£¥₹]|US\$|USD|EUR|GBP|JPY|CHF|CAD|AUD|INR|CNY|SEK|NOK|DKK|PLN)"
_AMOUNT = r"(?:\d{1,3}(?:[,.'\u00a0 ]\d{3})+|\d+)(?:[.,]\d{1,2})?"
_MONEY = re.compile(
    rf"-?\s*{_CURRENCY}\s*-?\s*{_AMOUNT}"  # $85,000.00  EUR 85.000,50
    rf"|-?{_AMOUNT}\s*{_CURRENCY}"  # 85 000 €
    r"|-?\d{1,3}(?:,\d{3})+\.\d{2}"  # 85,000.00
)


def _looks_like_email(value: str) -> bool:
    return _EMAIL.fullmatch(value) is not None


def _looks_like_phone(value: str) -> bool:
    body = _PHONE_EXTENSION.sub("", value)
    if not _PHONE_CHARS.fullmatch(body) or _ISO_DATE.fullmatch(body) or _IPV4.fullmatch(body):
        return False
    digits = sum(c.isdigit() for c in body)
    if not 7 <= digits <= 15:
        return False
    groups = len(_SEPARATOR_GROUPS.findall(body.strip("+() ")))
    return body.startswith("+") or "(" in body or groups >= 2


def _looks_like_money(value: str) -> bool:
    return _MONEY.fullmatch(value) is not None


_VALUE_RULES = (
    ("email", _looks_like_email, "e-mail addresses"),
    ("phone", _looks_like_phone, "phone numbers"),
    ("salary", _looks_like_money, "money amounts"),
)


def _sample(values: Sequence[Any] | pa.Array | pa.ChunkedArray, size: int) -> list[str]:
    """Up to ``size`` non-empty values, spread evenly over the column, as stripped text."""
    total = len(values)
    wide = min(total, size * 4)
    positions = [i * total // wide for i in range(wide)] if wide else []
    if isinstance(values, pa.Array | pa.ChunkedArray):
        picked = values.take(pa.array(positions, pa.int64())).to_pylist()
    else:
        picked = [values[i] for i in positions]
    texts = [str(v).strip() for v in picked if v is not None]
    texts = [t for t in texts if t]
    if len(texts) > size:
        texts = [texts[i * len(texts) // size] for i in range(size)]
    return texts


def _from_values(
    values: Sequence[Any] | pa.Array | pa.ChunkedArray, sample_size: int, threshold: float
) -> Detection | None:
    sample = _sample(values, sample_size)
    if len(sample) < MIN_VALUES:
        return None
    best: tuple[float, str, str] | None = None
    for kind, looks_like, what in _VALUE_RULES:
        share = sum(map(looks_like, sample)) / len(sample)
        if share >= threshold and (best is None or share > best[0]):
            best = (share, kind, what)
    if best is None:
        return None
    share, kind, what = best
    percent = int(share * 100)  # floor: never claims more than was seen
    return Detection(kind, f"{percent}% of {len(sample)} sampled values look like {what}")


def detect_pii(
    columns: Mapping[str, Sequence[str | None] | pa.Array | pa.ChunkedArray],
    *,
    sample_size: int = SAMPLE_SIZE,
    threshold: float = THRESHOLD,
) -> dict[str, Detection]:
    """The columns that look like PII, with kind and reason; other columns are absent.

    ``columns`` maps names to values (text as read from a CSV, or Arrow arrays)."""
    found: dict[str, Detection] = {}
    for column, values in columns.items():
        kind = kind_from_name(column)
        if kind is not None:
            found[column] = Detection(kind, f"column name {column!r}")
            continue
        detection = _from_values(values, sample_size, threshold)
        if detection is not None:
            found[column] = detection
    if any(d.kind in _PERSON_KINDS for d in found.values()):
        for column in columns:
            if column not in found and "".join(_words(column)) == "name":
                found[column] = Detection(
                    "name", f"column name {column!r} next to personal data in the same table"
                )
    return found
