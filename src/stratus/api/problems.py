"""RFC 9457 problem documents: every error the API returns is one of these."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, request
from werkzeug.exceptions import HTTPException

PROBLEM_JSON = "application/problem+json"


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
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.parameter = parameter
        self.errors = errors
        self.headers = headers or {}

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
        return doc

    def response(self) -> Response:
        resp = Response(orjson.dumps(self.to_dict()), status=self.status, mimetype=PROBLEM_JSON)
        for k, v in self.headers.items():
            resp.headers[k] = v
        return resp


def invalid_parameter(parameter: str, message: str, status: int = 400) -> Problem:
    return Problem(
        status,
        "Invalid parameter",
        f"{parameter}: {message}",
        type_="/problems/invalid-parameter",
        parameter=parameter,
        errors=[{"parameter": parameter, "message": message}],
    )


def from_http_exception(exc: HTTPException) -> Problem:
    status = exc.code or 500
    return Problem(status, exc.name, exc.description or exc.name)
