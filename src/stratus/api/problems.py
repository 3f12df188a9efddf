"""RFC 9457 problem documents: every error the API returns is one of these."""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

import orjson
from flask import Response, g, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from stratus.inputs import validation_errors

PROBLEM_JSON = "application/problem+json"
# Unity Catalog clients read error_code (and message) on every error under the UC prefix, those
# raised before any UC handler runs (unknown path or method, size and rate limits) included; the
# names are those of the UC OSS server.
UC_PREFIX = "/api/2.1/unity-catalog"
_UC_ERROR_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _uc_error_code(status: int) -> str | None:
    if not (request and request.path.startswith(UC_PREFIX)):
        return None
    return _UC_ERROR_CODES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type_: str = "about:blank",
        parameter: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.parameter = parameter
        self.errors = errors
        self.headers = headers or {}
        self.error_code = error_code

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": request.path if request else None,
        }
        if self.parameter:
            doc["parameter"] = self.parameter
        if self.errors:
            doc["errors"] = self.errors
        error_code = self.error_code or _uc_error_code(self.status)
        if error_code:  # Unity Catalog clients read these two
            doc["error_code"] = error_code
            doc["message"] = self.detail
        return doc

    def response(self) -> Response:
        resp = Response(orjson.dumps(self.to_dict()), status=self.status, mimetype=PROBLEM_JSON)
        for k, v in self.headers.items():
            resp.headers[k] = v
        return resp


def invalid_parameter(parameter: str, message: str, status: int = 400) -> Problem:
    problem = invalid([{"parameter": parameter, "message": message}])
    problem.status = status
    return problem


def invalid(errors: list[dict[str, str]]) -> Problem:
    """The one 400 for bad input: ``errors`` are ``{"parameter", "message"}`` pairs, the first
    is the problem's ``parameter``; the detail (all of them) goes into the audit record."""
    detail = "; ".join(f"{e['parameter']}: {e['message']}" for e in errors)
    g.error_message = detail
    return Problem(
        400,
        "Invalid parameter",
        detail,
        type_="/problems/invalid-parameter",
        parameter=errors[0]["parameter"],
        errors=errors,
    )


def validation_problem(
    exc: ValidationError,
    *,
    where: str = "body",
    prefix: str = "",
    renamed: Mapping[str, str] | None = None,
    known: Container[str] = (),
) -> Problem:
    """A pydantic error as the API's 400 problem document."""
    return invalid(validation_errors(exc, where=where, prefix=prefix, renamed=renamed, known=known))


_TITLES = {
    400: "Invalid request",
    401: "Unauthenticated",
    403: "Permission denied",
    404: "Not found",
    409: "Already exists",
}


def from_catalog_error(exc: Any) -> Problem:
    headers = {"WWW-Authenticate": 'Bearer realm="stratus"'} if exc.status == 401 else None
    return Problem(
        exc.status,
        _TITLES.get(exc.status, "Error"),
        exc.message,
        type_=f"/problems/{exc.error_code.lower().replace('_', '-')}",
        parameter=exc.parameter,
        headers=headers,
        error_code=exc.error_code,
    )


def from_http_exception(exc: HTTPException) -> Problem:
    status = exc.code or 500
    return Problem(status, exc.name, exc.description or exc.name)
