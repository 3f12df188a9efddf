"""Who made a Delta commit, and with which statement: tagged in every commit's ``custom_metadata``.

The caller that acts for a principal (a SQL statement, a job, the ingest CLI) says so once with
:func:`committing_as`; every commit made inside that block, by :class:`~stratus.lakehouse.tables.
Lakehouse` or :mod:`stratus.lakehouse.operations`, carries ``stratus.user`` and
``stratus.statement_id``, and ``DESCRIBE HISTORY`` shows them (as Databricks shows ``userName``).

The origin is a context variable: it does not leak into other threads (the audit and lineage
writers run in their own, so system-table commits carry no user) and is reset when the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from deltalake import CommitProperties

OPERATION_KEY = "stratus.operation"
STATEMENT_KEY = "stratus.statement_id"
USER_KEY = "stratus.user"


@dataclass(frozen=True)
class Origin:
    user: str | None = None
    statement_id: str | None = None


NOBODY = Origin()
_current: ContextVar[Origin | None] = ContextVar("stratus_commit_origin", default=None)


@contextmanager
def committing_as(user: str | None, statement_id: str | None = None) -> Iterator[Origin]:
    """Commits made inside the block are tagged with ``user`` and ``statement_id``."""
    origin = Origin(user, statement_id)
    token = _current.set(origin)
    try:
        yield origin
    finally:
        _current.reset(token)


def current() -> Origin:
    return _current.get() or NOBODY


def commit_metadata(operation: str | None = None) -> dict[str, str]:
    """The ``custom_metadata`` of a commit made now: ``operation``, and the origin's statement
    and user."""
    origin = current()
    meta: dict[str, str] = {}
    if operation:
        meta[OPERATION_KEY] = operation
    if origin.statement_id:
        meta[STATEMENT_KEY] = origin.statement_id
    if origin.user:
        meta[USER_KEY] = origin.user
    return meta


def commit_properties() -> CommitProperties | None:
    """Commit properties tagging the origin, or None outside :func:`committing_as`."""
    meta = commit_metadata()
    return CommitProperties(custom_metadata=meta) if meta else None


__all__ = [
    "NOBODY",
    "OPERATION_KEY",
    "STATEMENT_KEY",
    "USER_KEY",
    "Origin",
    "commit_metadata",
    "commit_properties",
    "committing_as",
    "current",
]
