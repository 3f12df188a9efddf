"""A job submission's body, validated once: every problem names the parameter it is about."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from stratus.catalog import registry
from stratus.inputs import MAX_CITIES, StrictDate, unique_city_ids, validation_errors
from stratus.jobs.definitions import JOB_TYPES, JobParams, JobType, default_output
from stratus.weather.schema import CITY_ID_PATTERN

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,254}")
_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces


class JobInputError(ValueError):
    """A submission or request the caller must change; ``status`` is the HTTP status."""

    def __init__(
        self,
        parameter: str,
        message: str,
        *,
        status: int = 400,
        title: str = "Invalid parameter",
        type_: str = "/problems/invalid-parameter",
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message
        self.status = status
        self.title = title
        self.type = type_
        self.errors = errors or [{"parameter": parameter, "message": message}]


OPTIONS_SCHEMA = {
    "type": "object",
    "description": "anomalies: {z: 0 < z <= 10, default 3}; others: none",
    "properties": {"z": {"type": "number", "exclusiveMinimum": 0, "maximum": 10}},
    "additionalProperties": False,
}


class JobSubmissionBody(BaseModel):
    """``POST /api/v1/jobs``; ``options`` are then validated by the job type's own model."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "example": {
                "type": "daily_summary",
                "city_ids": ["new-york-jfk"],
                "start": "2013-06-01",
                "end": "2013-06-07",
            }
        },
    )

    type: Annotated[StrictStr, WithJsonSchema({"type": "string", "enum": list(JOB_TYPES)})]
    city_ids: list[StrictStr] = Field(
        min_length=1,
        max_length=MAX_CITIES,
        json_schema_extra={"items": {"type": "string", "pattern": f"^{CITY_ID_PATTERN}$"}},
    )
    start: StrictDate
    end: StrictDate
    options: Annotated[dict[str, Any], WithJsonSchema(OPTIONS_SCHEMA)] = Field(default_factory=dict)
    output: StrictStr | None = Field(
        default=None,
        description="Output table catalog.schema.table (default main.jobs.<type>)",
    )

    @field_validator("city_ids")
    @classmethod
    def _cities(cls, v: list[str]) -> list[str]:
        return unique_city_ids(v)


@dataclass(frozen=True)
class JobSubmission:
    job_type: JobType
    params: JobParams
    output: str

    @property
    def request_hash(self) -> str:
        """Same hash for the same request however it was spelled (city order, defaults)."""
        doc = {
            "type": self.job_type.name,
            "city_ids": sorted(self.params.city_ids),
            "start": self.params.start.isoformat(),
            "end": self.params.end.isoformat(),
            "options": self.params.options,
            "output": self.output,
        }
        return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _pydantic_error(exc: ValidationError, prefix: str = "") -> JobInputError:
    errors = validation_errors(exc, prefix=prefix, unknown="unknown option" if prefix else None)
    first = errors[0]
    return JobInputError(first["parameter"], first["message"], errors=errors)


def check_output(name: str) -> str:
    parts = name.split(".")
    if len(parts) != 3 or not all(_NAME.fullmatch(p) for p in parts):
        raise JobInputError(
            "output", f"{name!r} must be catalog.schema.table (letters, digits, _ and -)"
        )
    if parts[0] == "system":
        raise JobInputError("output", "jobs cannot write to the system catalog")
    if name in {t.full_name for t in registry.builtin_tables()}:
        raise JobInputError("output", f"{name} is a built-in table; choose another output")
    return name


def parse_submission(body: object) -> JobSubmission:
    """Validate a ``POST /api/v1/jobs`` body, a dict or one parsed already (raises
    :class:`JobInputError`)."""
    if isinstance(body, JobSubmissionBody):
        raw = body
    elif not isinstance(body, dict):
        raise JobInputError("body", "must be a JSON object")
    else:
        try:
            raw = JobSubmissionBody.model_validate(body)
        except ValidationError as exc:
            raise _pydantic_error(exc) from None
    job_type = JOB_TYPES.get(raw.type)
    if job_type is None:
        raise JobInputError(
            "type", f"unknown job type {raw.type!r}; choose from {', '.join(JOB_TYPES)}"
        )
    start, end = raw.start, raw.end
    if end < start:
        raise JobInputError("end", f"end ({end}) is before start ({start})")
    try:
        options = job_type.options.model_validate(raw.options).model_dump()
    except ValidationError as exc:
        raise _pydantic_error(exc, prefix="options.") from None
    output = check_output(raw.output or default_output(job_type.name))
    params = JobParams(tuple(raw.city_ids), start, end, options)
    return JobSubmission(job_type, params, output)


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise JobInputError(
            "Idempotency-Key", "must be 1 to 255 printable ASCII characters without spaces"
        )
    return key
