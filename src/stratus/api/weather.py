"""Weather endpoints: thin HTTP over :class:`stratus.weather.queries.WeatherQueries`."""

from __future__ import annotations

from flask import Blueprint, Response, request

from stratus.api.auth import audit, current_identity
from stratus.api.encoding import json_response, table_response
from stratus.api.params import SummaryParams, WeatherParams, parse_query
from stratus.api.problems import Problem, invalid_parameter
from stratus.api.state import platform
from stratus.catalog import registry
from stratus.lakehouse.operations import AsOf
from stratus.security.actions import Resource
from stratus.weather.queries import BadCursorError, UnknownCityError
from stratus.weather.schema import HOURLY_FIELDS

bp = Blueprint("weather", __name__, url_prefix="/api/v1")


def _unknown_city(exc: UnknownCityError) -> Problem:
    ids = ", ".join(exc.city_ids)
    return Problem(
        404,
        "Unknown city",
        f"city_id: no such city: {ids} (GET /api/v1/cities lists them)",
        type_="/problems/unknown-city",
        parameter="city_id",
        errors=[{"parameter": "city_id", "message": f"unknown city {c}"} for c in exc.city_ids],
    )


def _authorize(action: str, *tables: str) -> None:
    audit(action, "table", tables[0])
    for table in tables:
        platform().governance.authorizer.require(
            current_identity(), "table.read", Resource("table", table)
        )


def _as_of(p: WeatherParams | SummaryParams) -> AsOf | None:
    if p.as_of_version is None and p.as_of is None:
        return None
    return AsOf(p.as_of_version, p.as_of)


@bp.get("/cities")
def cities() -> Response:
    # row counts and spans come from the hourly table's log
    _authorize("listCities", registry.CITIES.full_name, registry.HOURLY.full_name)
    data = platform().weather.cities()
    return json_response({"count": len(data), "data": data})


@bp.get("/weather")
def hourly() -> Response:
    _authorize("queryWeather", registry.HOURLY.full_name)
    p = parse_query(WeatherParams, request.args)
    settings = platform().settings
    limit = p.max_results or settings.default_page_size
    if limit > settings.max_page_size:
        name = "limit" if "limit" in request.args else "max_results"
        raise invalid_parameter(name, f"must be between 1 and {settings.max_page_size}")
    fields = p.fields or list(HOURLY_FIELDS)
    try:
        page = platform().weather.hourly(
            p.city_id,
            p.start,
            p.end,
            fields=fields,
            limit=limit,
            cursor=p.page_token,
            as_of=_as_of(p),
        )
    except UnknownCityError as exc:
        raise _unknown_city(exc) from None
    except BadCursorError as exc:
        name = "cursor" if "cursor" in request.args else "page_token"
        raise invalid_parameter(name, str(exc)) from None
    envelope = {
        "city_ids": p.city_id,
        "start": p.start.isoformat(),
        "end": p.end.isoformat(),
        "fields": fields,
        "max_results": limit,
        "next_page_token": page.next_cursor,
        "limit": limit,  # deprecated names of the two above
        "next_cursor": page.next_cursor,
    }
    return table_response(page.table, p.format, envelope, "weather")


@bp.get("/weather/summary")
def summary() -> Response:
    _authorize("summarizeWeather", registry.HOURLY.full_name)
    p = parse_query(SummaryParams, request.args)
    try:
        table = platform().weather.summary(
            p.city_id, p.start, p.end, p.granularity, as_of=_as_of(p)
        )
    except UnknownCityError as exc:
        raise _unknown_city(exc) from None
    envelope = {
        "city_ids": p.city_id,
        "start": p.start.isoformat(),
        "end": p.end.isoformat(),
        "granularity": p.granularity,
    }
    return table_response(table, p.format, envelope, f"weather-summary-{p.granularity}")
