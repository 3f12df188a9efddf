"""pydantic's validation errors as ``{"parameter", "message"}`` pairs: the one translation of
every input model's errors (HTTP problems in :mod:`stratus.api.problems`, job submissions from
the CLI in :mod:`stratus.jobs.validation`)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Container, Iterable, Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationError

from stratus.weather.schema import CITY_ID_PATTERN

MAX_CITIES = 100  # city ids one weather query or job may name
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CITY = re.compile(CITY_ID_PATTERN)


def _strict_date(value: object) -> dt.date:
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError("must be a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value} is not a calendar date") from None


# a date written exactly YYYY-MM-DD (query strings and JSON bodies alike)
StrictDate = Annotated[dt.date, BeforeValidator(_strict_date)]


def unique_city_ids(city_ids: list[str]) -> list[str]:
    """The city ids in their first order without repeats; ValueError names a malformed one."""
    for c in city_ids:
        if not _CITY.fullmatch(c):
            raise ValueError(f"{c!r} is not a valid city id (letters, digits, _ . -)")
    return list(dict.fromkeys(city_ids))


def _location(loc: Iterable[Any]) -> str:
    """``("changes", 0, "principal")`` -> ``changes[0].principal``."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's mark of a dict key's own error: the key names it
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_errors(
    exc: ValidationError,
    *,
    where: str = "body",
    prefix: str = "",
    renamed: Mapping[str, str] | None = None,
    known: Container[str] = (),
    unknown: str | None = None,
) -> list[dict[str, str]]:
    """pydantic's errors as ``{"parameter", "message"}`` pairs, the one translation every
    request parser uses. ``where`` is ``"body"`` (a field's full path, ``changes[0].add``) or
    ``"query"`` (the parameter); ``prefix`` puts nested documents in place (``options.z``);
    ``renamed`` maps a field back to the name the caller used (an alias, ``limit``). An error
    of a whole query model names the parameter it starts with if that is one of ``known``;
    ``unknown`` words what an unknown field is (``unknown option``)."""
    unknown = unknown or ("unknown parameter" if where == "query" else "unknown field")
    out = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = err["loc"]
        if where == "query":
            name = str(loc[0]) if loc else ""
            name = renamed.get(name, name) if renamed else name
        else:
            name = _location(loc)
        message = err["msg"].removeprefix("Value error, ")
        if not name:  # a model-level rule: it says which parameter (``end (...) is before``)
            first = message.split(" ", 1)[0]
            name = first if first in known else where
        if err["type"] == "extra_forbidden":
            message = unknown
        elif err["type"] == "missing":
            message = "required"
        parameter = f"{prefix}{name}" if prefix and name != where else (prefix.rstrip(".") or name)
        out.append({"parameter": parameter, "message": message})
    return out
