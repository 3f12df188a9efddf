"""Handlers of the statements added to ``SqlService``: DML, views, time travel, maintenance.

``route(service, statement)`` gives the handler for a statement these modules run (or None);
:mod:`stratus.sql.service` dispatches to it before its own statements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stratus.sql import parse as p

if TYPE_CHECKING:
    from stratus.sql.service import SqlService


def route(svc: SqlService, stmt: p.Statement) -> Callable[..., Any] | None:
    kind = stmt.kind
    if kind in (p.MERGE, p.UPDATE, p.DELETE):
        from stratus.sql.dml import Dml

        return getattr(Dml(svc), kind.lower())  # type: ignore[no-any-return]
    if kind in (p.CREATE_TABLE, p.CREATE_TABLE_AS_SELECT) and stmt.args.get("replace"):
        from stratus.sql.replace import replace_table

        return lambda *args: replace_table(svc, *args)
    if kind in (p.CREATE_VIEW, p.DROP_VIEW):
        from stratus.sql import views

        return getattr(views, kind.lower())(svc)  # type: ignore[no-any-return]
    if kind in (p.DESCRIBE_HISTORY, p.RESTORE):
        from stratus.sql import timetravel

        return getattr(timetravel, kind.lower())(svc)  # type: ignore[no-any-return]
    if kind in (p.OPTIMIZE, p.VACUUM):
        from stratus.sql import maintenance

        return getattr(maintenance, kind.lower())(svc)  # type: ignore[no-any-return]
    if kind in (p.INSERT, p.DROP_TABLE):  # a view is neither written nor dropped as a table
        from stratus.sql import views

        original = svc._insert if kind == p.INSERT else svc._drop
        return lambda sid, st, params, who: views.not_as_table(svc, st, who, original)(
            sid, st, params, who
        )
    return None
