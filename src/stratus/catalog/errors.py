"""Catalog and security errors; the API maps each to a status and a UC ``error_code``."""

from __future__ import annotations


class CatalogError(Exception):
    status = 400
    error_code = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter


class InvalidArgument(CatalogError):
    pass


class NotFound(CatalogError):
    status = 404
    error_code = "NOT_FOUND"


class AlreadyExists(CatalogError):
    status = 409
    error_code = "ALREADY_EXISTS"


class NotEmpty(CatalogError):
    status = 400
    error_code = "FAILED_PRECONDITION"


class Unauthenticated(CatalogError):
    status = 401
    error_code = "UNAUTHENTICATED"


class PermissionDenied(CatalogError):
    status = 403
    error_code = "PERMISSION_DENIED"
