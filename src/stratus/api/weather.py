"""Weather endpoints: thin HTTP over :class:`stratus.weather.queries.WeatherQueries`.

Query answers carry a weak ``ETag`` derived from the versions of the tables read, the caller,
the path and the query string; a request whose ``If-None-Match`` names it gets ``304 Not
Modified`` without running the query (after the same authentication, authorization, rate limit
and audit as any other request).
"""

from __future__ import annotations

import hashlib

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


def _etag(*tables: registry.TableSpec) -> str:
    lakehouse = platform().lakehouse
    versions = ",".join(str(lakehouse.version(t)) for t in tables)
    settings = platform().settings
    key = "\n".join(
        (
            versions,
            current_identity().name,
            request.path,
            request.query_string.decode("latin-1"),
            f"{settings.default_page_size},{settings.max_page_size}",
        )
    )
    digest = hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
    return f'W/"{versions.replace(",", ".")}-{digest}"'


def _not_modified(etag: str) -> Response | None:
    """304 when the request's If-None-Match names ``etag`` (or is ``*``)."""
    header = request.headers.get("If-None-Match")
    if not header:
        return None
    tags = request.if_none_match
    if tags.star_tag or tags.contains_weak(etag.removeprefix("W/").strip('"')):
        return Response(status=304, headers={"ETag": etag})
    return None


def _tagged(resp: Response, etag: str) -> Response:
    resp.headers["ETag"] = etag
    return resp


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
    etag = _etag(registry.HOURLY, registry.CITIES)
    if (unchanged := _not_modified(etag)) is not None:
        return unchanged
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
    resp = table_response(page.table, p.format, envelope, "weather", page.json)
    return _tagged(resp, etag)


@bp.get("/weather/summary")
def summary() -> Response:
    _authorize("summarizeWeather", registry.HOURLY.full_name)
    p = parse_query(SummaryParams, request.args)
    etag = _etag(registry.HOURLY, registry.CITIES)
    if (unchanged := _not_modified(etag)) is not None:
        return unchanged
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
    resp = table_response(table, p.format, envelope, f"weather-summary-{p.granularity}")
    return _tagged(resp, etag)
