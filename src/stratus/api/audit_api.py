"""``GET /api/v1/audit``: the audit log (``system.access.audit``) for metastore admins.

The admin check comes before anything else, parameter validation included, so a non-admin learns
nothing (not even which parameters exist). The in-process audit queue is flushed first, so a
caller sees its own earlier requests; records still queued in other worker processes appear
within their flush interval. Reads are pruned by the ``event_date`` partition and go through the
engine with every user value bound as a parameter.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

import orjson
from flask import Blueprint, Response, request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from stratus.api.auth import audit, current_identity
from stratus.api.encoding import json_response, rows
from stratus.api.params import QueryModel, parse_query
from stratus.api.problems import invalid_parameter
from stratus.api.state import platform
from stratus.catalog.errors import PermissionDenied
from stratus.engine import TableScan
from stratus.security.audit import AUDIT

bp = Blueprint("audit", __name__, url_prefix="/api/v1")

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
REQUIREMENT = "reading the audit log requires metastore admin"
# ISO 8601: a date, or a date and time (minutes or seconds, up to 6 fraction digits) with an
# optional Z or +hh:mm / -hh:mm offset. Naive times are UTC.
_STAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:T(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(?P<tz>Z|[+-]\d{2}:\d{2})?)?"
)
COLUMNS = (
    "event_time",
    "request_id",
    "service_name",
    "action_name",
    "user_identity",
    "securable_type",
    "securable_full_name",
    "request_params",
    "outcome",
    "status_code",
    "error_message",
    "source_ip_address",
    "user_agent",
)


class Instant(BaseModel):
    """A parsed bound: the UTC instant, and whether only a date was given."""

    model_config = ConfigDict(frozen=True)

    at: dt.datetime
    date_only: bool


def _instant(value: object) -> Instant:
    if isinstance(value, Instant):
        return value
    text = value if isinstance(value, str) else ""
    match = _STAMP.fullmatch(text)
    if match is None:
        hint = " (send '+' as %2B, or use Z)" if " " in text else ""
        raise ValueError(
            "must be an ISO 8601 date (YYYY-MM-DD) or timestamp "
            f"(YYYY-MM-DDTHH:MM[:SS[.ffffff]][Z|+HH:MM]){hint}"
        )
    try:
        if match["time"] is None:
            day = dt.date.fromisoformat(match["date"])
            return Instant(at=dt.datetime.combine(day, dt.time(), dt.UTC), date_only=True)
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        at = stamp.astimezone(dt.UTC)
    except ValueError:
        raise ValueError(f"{text} is not a valid date or time") from None
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is in the year 10000 in UTC
        raise ValueError(f"{text} is out of range in UTC (years 1 to 9999)") from None
    return Instant(at=at, date_only=False)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must not be empty")
    return value


STAMP_SCHEMA = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$",
    "description": "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.ffffff]][Z|+HH:MM]",
}
Bound = Annotated[Instant, BeforeValidator(_instant), WithJsonSchema(STAMP_SCHEMA)]
Text = Annotated[
    str,
    BeforeValidator(_text),
    Field(max_length=255),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"\S"}),
]


ACTIONS = "e.g. queryWeather, summarizeWeather, listCities, queryAuditLog, getTable"


class AuditParams(QueryModel):
    ALIASES = {"limit": "max_results"}

    principal: Text | None = Field(default=None, description="Principal name.")
    action: Text | None = Field(default=None, description=f"Action name, {ACTIONS}.")
    outcome: Literal["allowed", "denied", "error"] | None = Field(
        default=None, description="Outcome of the request."
    )
    since: Bound | None = Field(  # inclusive
        default=None,
        description="Earliest event time, ISO 8601.",
    )
    until: Bound | None = Field(  # inclusive; a date alone means the whole of that day (UTC)
        default=None,
        description="Latest event time, ISO 8601.",
    )
    max_results: int = Field(
        default=DEFAULT_LIMIT,
        ge=1,
        le=MAX_LIMIT,
        description="Most records to return (alias: limit).",
    )

    def window(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """[low, high) in UTC."""
        low = self.since.at if self.since else None
        high = None
        if self.until is not None:
            step = dt.timedelta(days=1) if self.until.date_only else dt.timedelta(microseconds=1)
            try:
                high = self.until.at + step
            except OverflowError:  # until the end of 9999: no upper bound
                high = None
        return low, high


def _require_admin() -> None:
    who = current_identity()
    if not who.is_admin:
        raise PermissionDenied(f"{who.name} lacks metastore admin: {REQUIREMENT}")


def _partitions(low: dt.datetime | None, high: dt.datetime | None) -> list[dt.date]:
    """The ``event_date`` partitions that may hold events in [low, high)."""
    files = platform().lakehouse.files(AUDIT)
    if files is None or files.num_rows == 0:
        return []
    first = low.date() if low is not None else dt.date.min
    last = (high - dt.timedelta(microseconds=1)).date() if high is not None else dt.date.max
    dates = set(files["partition.event_date"].to_pylist())
    return sorted(d for d in dates if d is not None and first <= d <= last)


def query_audit(p: AuditParams) -> list[dict[str, Any]]:
    """Matching records, newest first."""
    low, high = p.window()
    dates = _partitions(low, high)
    if not dates:
        return []
    stratus = platform()
    files = stratus.lakehouse.prune(AUDIT, partition={"event_date": dates})
    where: list[str] = []
    params: list[object] = []
    for column, value in (
        ("user_identity", p.principal),
        ("action_name", p.action),
        ("outcome", p.outcome),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if low is not None:
        where.append("event_time >= ?")
        params.append(low)
    if high is not None:
        where.append("event_time < ?")
        params.append(high)
    sql = (
        f"SELECT {', '.join(COLUMNS)} FROM {{audit}}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY event_time DESC, request_id DESC LIMIT ?"
    )
    params.append(p.max_results)
    table = stratus.engine.query(sql, {"audit": TableScan(AUDIT, files)}, params)
    out = rows(table)
    for row in out:
        row["event_time"] = row["event_time"].astimezone(dt.UTC).isoformat()
        raw = row["request_params"]
        row["request_params"] = orjson.loads(raw) if raw else {}
    return out


@bp.get("/audit")
def audit_log() -> Response:
    audit("queryAuditLog", "table", AUDIT.full_name)
    _require_admin()
    p = parse_query(AuditParams, request.args)
    low, high = p.window()
    if low is not None and high is not None and high <= low:
        raise invalid_parameter("until", "must not be before since")
    platform().governance.audit.flush()
    data = query_audit(p)
    return json_response({"count": len(data), "data": data})
