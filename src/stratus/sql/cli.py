"""``stratus sql``: run Databricks SQL statements from the command line."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from stratus.catalog.errors import CatalogError
from stratus.lakehouse.storage import StorageError
from stratus.pii import PiiError

if TYPE_CHECKING:
    from stratus.context import Stratus

err = Console(stderr=True)


def _parameter(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: use NAME=VALUE", param_hint="--param")
        try:
            value = orjson.loads(raw)
            if not isinstance(value, str | int | float | bool) and value is not None:
                value = raw
        except orjson.JSONDecodeError:
            value = raw
        out[name] = value
    return out


def _print(result: Any, as_json: bool) -> None:
    if as_json:
        rows = [
            {
                k: (str(v) if not isinstance(v, str | int | float | bool) and v is not None else v)
                for k, v in row.items()
            }
            for row in result.data.to_pylist()
        ]
        payload = {**result.envelope(), "data": rows}
        click.echo(orjson.dumps(payload, default=str).decode())
        return
    if result.data.num_columns:
        table = Table(*result.data.column_names)
        for row in result.data.to_pylist():
            table.add_row(*("NULL" if v is None else str(v) for v in row.values()))
        Console().print(table)
        more = " (truncated: STRATUS_SQL_MAX_ROWS)" if result.truncated else ""
        err.print(f"{result.data.num_rows} row(s){more}")
        return
    done = result.statement_type.replace("_", " ").lower()
    what = f" {result.table}" if result.table else ""
    count = f": {result.affected_rows} row(s)" if result.affected_rows is not None else ""
    err.print(f"[green]ok[/] {done}{what}{count}")


def _audit(
    stratus: Stratus,
    principal: str,
    text: str,
    kind: str | None,
    name: str | None,
    status: int,
    error: str | None,
) -> None:
    from stratus.security.audit import AuditRecord

    outcome = "allowed" if status < 400 else ("denied" if status in (401, 403, 404) else "error")
    stratus.governance.audit.record(
        AuditRecord(
            event_time=dt.datetime.now(dt.UTC),
            request_id=uuid.uuid4().hex,
            service_name="cli",
            action_name="executeSql",
            user_identity=principal,
            securable_type=kind,
            securable_full_name=name,
            request_params={"statement": text},
            outcome=outcome,
            status_code=status,
            error_message=error,
            source_ip_address=None,
            user_agent="stratus-cli",
        )
    )


@click.command("sql")
@click.argument("statement", required=False)
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Run the statements of a .sql file, in order (stops at the first error).",
)
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    help="NAME=VALUE for :NAME (VALUE as JSON if it parses: 5, true, null; else a string).",
)
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON lines.")
@click.option(
    "--token",
    envvar="STRATUS_TOKEN",
    default=None,
    help="Act as this token's principal (env STRATUS_TOKEN); default: the local admin.",
)
def sql_command(
    statement: str | None,
    path: Path | None,
    params: tuple[str, ...],
    as_json: bool,
    token: str | None,
) -> None:
    """Run a Databricks SQL statement (or a file of them) over the lakehouse.

    Grants and PII masks apply as in the API: without --token the command acts as the local
    administrator. Example: stratus sql "SELECT city_id, avg(temp) FROM main.weather.hourly
    GROUP BY city_id"
    """
    from stratus.cli import _platform
    from stratus.security.governance import LOCAL_ADMIN
    from stratus.sql.parse import split_statements

    if (statement is None) == (path is None):
        raise click.UsageError("give a STATEMENT or --file FILE.sql (one of them)")
    parameters = _parameter(params)
    stratus = _platform()
    failed = False
    try:
        stratus.bootstrap()
        try:
            who = (
                stratus.governance.authenticator.authenticate(f"Bearer {token}")
                if token
                else LOCAL_ADMIN
            )
            texts = split_statements(path.read_text()) if path else [statement or ""]
        except CatalogError as exc:
            raise click.ClickException(exc.message) from None
        service = stratus.sql
        for text in texts:
            kind = name = None
            try:
                stmt = service.parse(text)
                kind, name = service.securable(stmt)
                result = service.run(stmt, parameters or None, who)
            except (CatalogError, StorageError, PiiError) as exc:
                message = getattr(exc, "message", None) or str(exc)
                status = getattr(exc, "status", 500)
                _audit(stratus, who.name, text, kind, name, status, message)
                if path:
                    err.print(f"[red]error[/] in: {text.splitlines()[0][:80]}")
                err.print(f"[red]error:[/] {message}")
                failed = True
                break
            _audit(stratus, who.name, text, kind, name, 200, None)
            _print(result, as_json)
    finally:
        stratus.close()
    if failed:
        sys.exit(1)
