"""The HTTP edge: every query string and JSON body is parsed here, once, into a pydantic model
that rejects anything unknown or malformed with one kind of 400 problem naming the parameter
(:func:`stratus.api.problems.validation_problem`). The OpenAPI document
(:mod:`stratus.api.openapi`) is generated from the same models.

Paging, the same on every paged ``/api/v1`` list: ``max_results`` (page size) and
``page_token`` (the previous page's ``next_page_token``) in, ``next_page_token`` out (null on
the last page). The names used before, ``limit`` and ``cursor`` (``next_cursor`` out), are
still accepted as aliases (:data:`PAGING_ALIASES`).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

import orjson
from flask import g, request
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from werkzeug.datastructures import MultiDict

from stratus.api.problems import invalid_parameter, validation_problem
from stratus.catalog.metastore import NAME
from stratus.inputs import MAX_CITIES, StrictDate, unique_city_ids
from stratus.weather.schema import CITY_ID_PATTERN, HOURLY_FIELDS

T = TypeVar("T", bound=BaseModel)
Q = TypeVar("Q", bound="QueryModel")


def _split(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        out += [p.strip() for p in str(item).split(",") if p.strip()]
    return out


def _name(value: str) -> str:
    if not NAME.fullmatch(value):
        raise ValueError(f"{value!r} is invalid: use letters, digits, _ and - (max 255)")
    return value


# a catalog, schema, table, share or recipient name (one part)
Name = Annotated[
    StrictStr,
    AfterValidator(_name),
    WithJsonSchema({"type": "string", "pattern": f"^{NAME.pattern}$"}),
]
CsvList = Annotated[list[str], BeforeValidator(_split)]
# old paging names -> the /api/v1 convention
PAGING_ALIASES = {"limit": "max_results", "cursor": "page_token"}
PageToken = Annotated[
    str | None, Field(description="next_page_token of the previous page (alias: cursor).")
]


class QueryModel(BaseModel):
    """A query string: ``LISTS`` may repeat (all values kept, commas split them too); any other
    parameter given twice counts once, the last; ``ALIASES`` are other names of parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    LISTS: ClassVar[frozenset[str]] = frozenset()
    ALIASES: ClassVar[dict[str, str]] = {}


class _Params(QueryModel):
    LISTS = frozenset({"city_id", "fields"})

    city_id: CsvList = Field(
        min_length=1,
        max_length=MAX_CITIES,
        description="One or more city ids (repeat the parameter or separate with commas).",
        json_schema_extra={"items": {"type": "string", "pattern": f"^{CITY_ID_PATTERN}$"}},
        examples=[["new-york-jfk"]],
    )
    start: StrictDate = Field(
        description="First date (inclusive), YYYY-MM-DD.", examples=["2013-06-01"]
    )
    end: StrictDate = Field(
        description="Last date (inclusive), YYYY-MM-DD.", examples=["2013-06-07"]
    )
    # time travel: the table as it was at a Delta version, or at a moment (ISO 8601)
    as_of_version: int | None = Field(
        default=None,
        ge=0,
        le=2**62,
        description="Answer as the table was at this Delta version (400 if missing or vacuumed).",
    )
    as_of: str | None = Field(
        default=None,
        max_length=64,
        description="Or: as the table was at this moment (ISO 8601; not with as_of_version).",
    )

    @field_validator("city_id")
    @classmethod
    def _cities(cls, v: list[str]) -> list[str]:
        return unique_city_ids(v)

    @model_validator(mode="after")
    def _order(self) -> _Params:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        if self.as_of_version is not None and self.as_of is not None:
            raise ValueError("give as_of_version or as_of, not both")
        return self


Format = Annotated[
    Literal["json", "csv", "parquet"],
    Field(description="Response format. CSV/Parquet carry paging in X-Next-Page-Token."),
]
MaxResults = Annotated[
    int | None,
    Field(
        ge=1,
        description="Page size (at most STRATUS_MAX_PAGE_SIZE; default "
        "STRATUS_DEFAULT_PAGE_SIZE). Alias: limit.",
    ),
]


class WeatherParams(_Params):
    ALIASES = PAGING_ALIASES

    fields: CsvList | None = Field(
        default=None,
        description="Columns to return (comma-separated); default all.",
        json_schema_extra={"items": {"type": "string", "enum": list(HOURLY_FIELDS)}},
    )
    max_results: MaxResults = None
    page_token: Annotated[PageToken, Field(max_length=512)] = None
    format: Format = "json"

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
    granularity: Literal["day", "month"] = Field(default="day", description="Period length.")
    format: Format = "json"


def parse_query(model: type[Q], args: MultiDict[str, str] | None = None) -> Q:
    """``args`` (the request's query string by default) validated by ``model``."""
    if args is None:
        args = request.args
    lists, aliases = model.LISTS, model.ALIASES
    data: dict[str, object] = {}
    renamed: dict[str, str] | None = None
    for key, values in args.lists():
        if key in aliases:
            name = aliases[key]
            if name in args:
                raise invalid_parameter(key, f"give {name} or its old name {key}, not both")
            renamed = {**(renamed or {}), name: key}
            key = name
        data[key] = values if key in lists else values[-1]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        g.query_model = model  # the model that refused it (the OpenAPI drift test reads it)
        raise validation_problem(
            exc, where="query", renamed=renamed, known=model.model_fields
        ) from None


def json_body() -> dict[str, Any]:
    """The request body as a JSON object (whatever its Content-Type says); no body at all is
    ``{}`` (the model then names what is required). orjson refuses what JSON does not allow
    (NaN, lone surrogates) and nesting deeper than 1024 levels."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_parameter("body", "must be a JSON object") from None
    if not isinstance(data, dict):
        raise invalid_parameter("body", "must be a JSON object")
    return data


def parse_body(model: type[T], data: dict[str, Any] | None = None) -> T:
    """``data`` (the request's JSON body by default) validated by ``model``."""
    if data is None:
        data = json_body()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        g.body_model = model  # the model that refused it (the OpenAPI drift test reads it)
        raise validation_problem(exc) from None
