"""Query-string models: parse once, reject anything unknown or malformed with a 4xx naming it."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from werkzeug.datastructures import MultiDict

from stratus.api.problems import Problem
from stratus.weather.schema import CITY_ID_PATTERN, HOURLY_FIELDS

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CITY = re.compile(CITY_ID_PATTERN)
MAX_CITIES = 100
T = TypeVar("T", bound="BaseModel")


def _strict_date(value: object) -> dt.date:
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError("must be a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value} is not a calendar date") from None


def _split(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        out += [p.strip() for p in str(item).split(",") if p.strip()]
    return out


StrictDate = Annotated[dt.date, BeforeValidator(_strict_date)]
CsvList = Annotated[list[str], BeforeValidator(_split)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    city_id: CsvList = Field(min_length=1, max_length=MAX_CITIES)
    start: StrictDate
    end: StrictDate
    # time travel: the table as it was at a Delta version, or at a moment (ISO 8601)
    as_of_version: int | None = Field(default=None, ge=0, le=2**62)
    as_of: str | None = Field(default=None, max_length=64)

    @field_validator("city_id")
    @classmethod
    def _cities(cls, v: list[str]) -> list[str]:
        for c in v:
            if not _CITY.fullmatch(c):
                raise ValueError(f"{c!r} is not a valid city id (letters, digits, _ . -)")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _order(self) -> _Params:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        if self.as_of_version is not None and self.as_of is not None:
            raise ValueError("give as_of_version or as_of, not both")
        return self


class WeatherParams(_Params):
    fields: CsvList | None = None
    limit: int | None = Field(default=None, ge=1)
    cursor: str | None = Field(default=None, max_length=512)
    format: Literal["json", "csv", "parquet"] = "json"

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        unknown = [f for f in v if f not in HOURLY_FIELDS]
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)}; choose from {', '.join(HOURLY_FIELDS)}"
            )
        if not v:
            raise ValueError("must name at least one field")
        return list(dict.fromkeys(v))


class SummaryParams(_Params):
    granularity: Literal["day", "month"] = "day"
    format: Literal["json", "csv", "parquet"] = "json"


def parse(model: type[T], args: MultiDict[str, str]) -> T:
    data: dict[str, object] = {}
    for key in args:
        values = args.getlist(key)
        data[key] = values if key in ("city_id", "fields") else values[-1]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = err["loc"]
            param = str(loc[0]) if loc else _guess_param(err["msg"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown parameter"
            elif err["type"] == "missing":
                msg = "required"
            errors.append({"parameter": param, "message": msg})
        first = errors[0]
        raise Problem(
            400,
            "Invalid parameter",
            "; ".join(f"{e['parameter']}: {e['message']}" for e in errors),
            type_="/problems/invalid-parameter",
            parameter=first["parameter"],
            errors=errors,
        ) from None


def _guess_param(message: str) -> str:
    return "end" if message.startswith("Value error, end") else "query"
