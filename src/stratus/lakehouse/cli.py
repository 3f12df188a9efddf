"""``stratus maintenance``: OPTIMIZE / VACUUM a table, and the system tables' maintenance pass.

``optimize`` and ``vacuum`` run the SQL statements (``OPTIMIZE t [ZORDER BY (...)]``,
``VACUUM t [RETAIN n HOURS] [DRY RUN]``) through the SQL service as the local administrator,
so the same checks apply (7-day retention minimum, columns, views). ``run`` compacts the audit
and lineage tables now and prints the report; ``status`` shows the last scheduled report.
"""

from __future__ import annotations

import json
from typing import Any

import click

from stratus.catalog.errors import CatalogError
from stratus.lakehouse.storage import StorageError


def _platform() -> Any:
    from stratus.cli import _platform as platform

    return platform()


def _run_sql(text: str) -> None:
    stratus = _platform()
    try:
        stratus.bootstrap()
        result = stratus.sql.execute(text)
        rows = result.data.to_pylist()
        click.echo(json.dumps(rows[0] if len(rows) == 1 else rows, default=str))
    except (CatalogError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stratus.close()


def _quoted(name: str) -> str:
    return ".".join(f"`{part.replace('`', '``')}`" for part in name.split("."))


@click.group("maintenance")
def maintenance_command() -> None:
    """Compact (OPTIMIZE) and clean up (VACUUM) Delta tables."""


@maintenance_command.command()
@click.argument("table")
@click.option("--zorder", default=None, help="Columns to Z-order by, comma-separated.")
def optimize(table: str, zorder: str | None) -> None:
    """Compact TABLE's small files (one commit; the rows stay the same)."""
    text = f"OPTIMIZE {_quoted(table)}"
    if zorder:
        text += " ZORDER BY (" + ", ".join(_quoted(c.strip()) for c in zorder.split(",")) + ")"
    _run_sql(text)


@maintenance_command.command()
@click.argument("table")
@click.option("--retain-hours", type=float, default=None, help="Default 168 (7 days).")
@click.option("--dry-run", is_flag=True, help="List the files without deleting them.")
def vacuum(table: str, retain_hours: float | None, dry_run: bool) -> None:
    """Delete TABLE's data files that no version within the retention needs."""
    text = f"VACUUM {_quoted(table)}"
    if retain_hours is not None:
        text += f" RETAIN {retain_hours:g} HOURS"
    if dry_run:
        text += " DRY RUN"
    _run_sql(text)


@maintenance_command.command()
def run() -> None:
    """Compact and vacuum the system tables (audit, lineage) now; print the report."""
    from stratus.lakehouse.maintenance import run_once

    stratus = _platform()
    try:
        report = run_once(stratus.lakehouse, stratus.settings.home)
    finally:
        stratus.close()
    if report is None:
        raise click.ClickException("another process is running the maintenance pass")
    click.echo(json.dumps(report.as_dict()))


@maintenance_command.command()
def status() -> None:
    """The last maintenance report (JSON)."""
    from stratus.lakehouse.maintenance import report_path

    stratus = _platform()
    try:
        path = report_path(stratus.settings.home)
    finally:
        stratus.close()
    if not path.is_file():
        raise click.ClickException("no maintenance pass has run yet")
    click.echo(path.read_text())
