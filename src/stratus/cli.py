"""The ``stratus`` command line: serve, ingest, sample-data."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from stratus.config import ConfigError, Settings
from stratus.context import Stratus
from stratus.ingest.readers import IngestInputError, total_units
from stratus.ingest.service import IngestReport
from stratus.jobs.cli import jobs_command
from stratus.lakehouse import origin
from stratus.lakehouse.cli import maintenance_command
from stratus.lakehouse.storage import StorageError
from stratus.lakehouse.tables import WriteConflictError
from stratus.security.governance import Governance
from stratus.sharing.cli import share_command
from stratus.sql.cli import sql_command

console = Console(stderr=True)
PROGRESS_MIN_BYTES = 5 << 20  # draw a progress bar for files from 5 MB


def _platform() -> Stratus:
    try:
        return Stratus.from_settings(Settings.from_env())
    except (ConfigError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="stratus-lakehouse")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR.")
def main(log_level: str | None) -> None:
    """Stratus: a governed weather-data lakehouse."""
    logging.basicConfig(
        level=(log_level or Settings.from_env().log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(report.to_dict()).decode())
        return
    if not isinstance(report, IngestReport):
        _print_table_report(report)
        return
    table = Table(title=f"{Path(report.source).name} -> {report.table}", show_header=False)
    for key in ("format", "read", "written", "inserted", "updated", "unchanged", "duplicates"):
        table.add_row(key, str(getattr(report, key)))
    table.add_row("quarantined", str(report.quarantined))
    if report.new_cities:
        table.add_row("new cities", ", ".join(report.new_cities))
    table.add_row("table version", "-" if report.version is None else str(report.version))
    table.add_row("seconds", f"{report.seconds:.2f}")
    Console().print(table)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    if report.quarantined:
        console.print(
            f"[yellow]{report.quarantined} row(s) quarantined[/] with their reasons in "
            "main.weather.quarantine"
        )


def _print_table_report(report: Any) -> None:
    table = Table(title=f"{Path(report.source).name} -> {report.table}", show_header=False)
    table.add_row("format", report.format)
    table.add_row("table created", "yes" if report.created else "no")
    for key in ("read", "written", "inserted", "updated", "unchanged", "duplicates"):
        table.add_row(key, str(getattr(report, key)))
    table.add_row("quarantined", str(report.quarantined))
    table.add_row("table version", "-" if report.version is None else str(report.version))
    Console().print(table)
    for column, why in report.pii_tagged.items():
        console.print(f"[magenta]PII:[/] {column} tagged pii={why} (encrypted at rest)")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}")


def run_ingest(
    stratus: Stratus, path: Path, table: str, city_id: str | None = None, show_progress: bool = True
) -> IngestReport:
    units = total_units(path) if path.is_file() else 0
    if not show_progress or units < PROGRESS_MIN_BYTES:
        return stratus.ingest.ingest(path, table, city_id=city_id)
    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn()]
    if path.suffix.lower() not in (".parquet", ".pq"):
        columns.append(DownloadColumn())
    columns.append(TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"reading {path.name}", total=units)
        report = stratus.ingest.ingest(
            path, table, city_id=city_id, on_progress=lambda n: progress.advance(task, n)
        )
    return report


WEATHER_TABLES = ("hourly", "cities", "weather.hourly", "weather.cities")


def _parse_pii(values: tuple[str, ...], off: tuple[str, ...]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in values:
        column, sep, kind = item.partition("=")
        if not sep or not column or not kind:
            raise click.BadParameter(
                f"{item!r}: use COLUMN=KIND, e.g. email=email", param_hint="--pii"
            )
        out[column] = kind
    for column in off:
        out[column] = None
    return out


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--table",
    default="hourly",
    show_default=True,
    help="hourly, cities, or any catalog table (catalog.schema.table; schema.table means main).",
)
@click.option("--city-id", default=None, help="City id for Open-Meteo JSON (it names none).")
@click.option("--key", "key", default=None, help="Key column(s), comma-separated, for a new table.")
@click.option("--pii", "pii", multiple=True, help="COLUMN=KIND: tag as PII (overrides detection).")
@click.option("--no-pii", "no_pii", multiple=True, help="COLUMN: do not tag it although detected.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--token",
    envvar="STRATUS_TOKEN",
    default=None,
    help="Act as this token's principal (env STRATUS_TOKEN); default: the local admin.",
)
def ingest(
    paths: tuple[Path, ...],
    table: str,
    city_id: str | None,
    key: str | None,
    pii: tuple[str, ...],
    no_pii: tuple[str, ...],
    as_json: bool,
    token: str | None,
) -> None:
    """Load CSV, Parquet, JSON Lines (or Open-Meteo JSON for weather) files into a table.

    Weather tables are validated and upserted on (city_id, time). Any other table is created on
    first ingest (schema inferred, --key required), its PII columns detected, tagged and
    encrypted. Needs MODIFY on the table (CREATE TABLE on the schema to create one; USE CATALOG
    and CREATE SCHEMA on the catalog when the schema does not exist either). Without
    --token the command acts as the local administrator: whoever can write STRATUS_HOME owns the
    lakehouse anyway.
    """
    from stratus.catalog import registry
    from stratus.catalog.errors import CatalogError
    from stratus.pii import PiiError
    from stratus.security.governance import LOCAL_ADMIN
    from stratus.tables.service import qualify

    overrides = _parse_pii(pii, no_pii)
    stratus = _platform()
    stratus.bootstrap()
    gov = stratus.governance
    weather = table in WEATHER_TABLES or table.startswith("main.weather.")
    try:
        full_name = registry.resolve(table).full_name if weather else qualify(table)
        who = gov.authenticator.authenticate(f"Bearer {token}") if token else LOCAL_ADMIN
        # MODIFY on the table, else what creating it (and a missing schema) needs
        stratus.catalog.authorize_write(who, full_name)
    except (CatalogError, KeyError) as exc:
        stratus.close()
        raise click.ClickException(getattr(exc, "message", str(exc))) from None
    failed = False
    for path in paths:
        outcome, status, error = "allowed", 200, None
        try:
            with origin.committing_as(who.name):  # the commits' user in DESCRIBE HISTORY
                if weather:
                    report: Any = run_ingest(stratus, path, full_name, city_id, not as_json)
                else:
                    keys = tuple(k.strip() for k in (key or "").split(",") if k.strip())
                    report = stratus.tables.ingest(
                        path, full_name, owner=who.name, key=keys, pii=overrides
                    )
        except (
            IngestInputError,
            ValueError,
            StorageError,
            WriteConflictError,
            CatalogError,
            PiiError,
        ) as exc:
            console.print(f"[red]error:[/] {getattr(exc, 'message', exc)}")
            failed, outcome, status, error = True, "error", 400, str(exc)
        else:
            _print_report(report, as_json)
            stratus.lineage.record_ingest(path, full_name, who.name)  # file -> table lineage
        stratus.governance.audit.record_cli(
            who.name,
            "ingest",
            "table",
            full_name,
            {"path": str(path)},
            outcome=outcome,
            status=status,
            error=error,
        )
    stratus.close()
    if failed:
        sys.exit(1)


def load_sample_data(stratus: Stratus, if_empty: bool, out: Path | None = None) -> bool:
    """Build the sample CSVs and ingest them; returns False if skipped (data present)."""
    from stratus.catalog import registry
    from stratus.weather.sample import build_sample_data

    if if_empty:
        files = stratus.lakehouse.files(registry.HOURLY)
        if files is not None and files.num_rows > 0:
            console.print("lakehouse already holds weather data; sample data not loaded")
            return False
    out = out or stratus.settings.home / "samples" / "weather.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    sample = build_sample_data(out)
    console.print(f"built {sample.rows:,} rows from {len(sample.rows_per_city)} stations")
    for path, table in ((sample.cities_path, "cities"), (sample.weather_path, "hourly")):
        _print_report(run_ingest(stratus, path, table), as_json=False)
    load_employees(stratus, out.parent / "employees.csv", SAMPLE_EMPLOYEES)
    return True


SAMPLE_EMPLOYEES = 300
EMPLOYEES_TABLE = "main.hr.employees"


def load_employees(stratus: Stratus, path: Path, n: int) -> None:
    """Fake people (Faker, never real ones) into main.hr.employees, PII encrypted."""
    from stratus.datasets.employees import write_employees_csv

    write_employees_csv(path, n)
    report = stratus.tables.ingest(path, EMPLOYEES_TABLE, owner="admin", key=("employee_id",))
    _print_report(report, as_json=False)


@main.command("sample-data")
@click.argument("out", required=False, type=click.Path(path_type=Path))
@click.option("--load", is_flag=True, help="Also ingest it into the lakehouse.")
@click.option("--if-empty", is_flag=True, help="With --load: only when there is no weather yet.")
@click.option(
    "--employees",
    type=click.IntRange(1, 10_000_000),
    default=None,
    help="Instead: N fake employees (Faker) for main.hr.employees.",
)
def sample_data(out: Path | None, load: bool, if_empty: bool, employees: int | None) -> None:
    """Build real-observation sample weather (6 stations, ~1 year each) as CSV.

    Writes OUT (weather) and OUT's stem + .cities.csv (the cities table). With --employees N,
    writes N fake employees instead (and --load ingests them into main.hr.employees).
    Needs the sample-data extra: pip install 'stratus-lakehouse[sample-data]'.
    """
    from stratus.extras import MissingExtra, require

    try:
        require("sample-data", "stratus sample-data")
    except MissingExtra as exc:
        raise click.ClickException(str(exc)) from None
    if employees is not None:
        from stratus.datasets.employees import write_employees_csv

        if load:
            stratus = _platform()
            stratus.bootstrap()
            load_employees(
                stratus, out or stratus.settings.home / "samples" / "employees.csv", employees
            )
            stratus.close()
            return
        if out is None:
            raise click.UsageError("give OUT.csv, or --load to ingest into the lakehouse")
        write_employees_csv(out, employees)
        click.echo(f"wrote {employees:,} fake employees to {out}")
        return
    if load:
        stratus = _platform()
        stratus.bootstrap()
        load_sample_data(stratus, if_empty, out)
        stratus.close()
        return
    if out is None:
        raise click.UsageError("give OUT.csv, or --load to ingest into the lakehouse")
    from stratus.weather.sample import build_sample_data

    out.parent.mkdir(parents=True, exist_ok=True)
    report = build_sample_data(out)
    click.echo(f"wrote {report.rows:,} rows to {report.weather_path}")
    click.echo(f"wrote {len(report.rows_per_city)} cities to {report.cities_path}")


@main.command()
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@click.option(
    "--with-sample-data",
    is_flag=True,
    help="First, as `make run` does: the admin token (admin bootstrap), sample data if empty.",
)
def serve(dev: bool, with_sample_data: bool) -> None:
    """Serve the API (gunicorn) on STRATUS_HOST:STRATUS_PORT."""
    settings = Settings.from_env()
    if with_sample_data:
        # In child processes: delta-rs's runtime must not exist in the process gunicorn forks.
        for what, args in (
            ("creating the admin token", ["admin", "bootstrap"]),
            ("loading the sample data", ["sample-data", "--load", "--if-empty"]),
        ):
            cmd = [sys.executable, "-m", "stratus", *args]
            if subprocess.run(cmd, check=False).returncode != 0:
                raise click.ClickException(f"{what} failed")
    url = f"http://{settings.host}:{settings.port}"
    console.print(f"Stratus API on {url}  (docs: {url}/docs)")
    if dev:
        from stratus.api import create_app

        create_app(settings=settings).run(host=settings.host, port=settings.port)
        return
    from stratus.api.server import StartupError, run_gunicorn

    try:
        run_gunicorn(settings)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


# ---- administration -------------------------------------------------------------------------
@main.group()
def admin() -> None:
    """Principals, tokens and grants (acts as the local administrator)."""


@admin.command()
def bootstrap() -> None:
    """Create the metastore, built-in catalogs and the admin principal with a token."""
    stratus = _platform()
    stratus.bootstrap()
    path, created = stratus.governance.bootstrap_admin_token(stratus.settings.admin_token_path)
    state = "created" if created else "kept"
    click.echo(f"admin token {state} in {path.resolve()} (mode 0600)")
    click.echo(f'use it: curl -H "Authorization: Bearer $(cat {path})" ...')


@admin.command("create-principal")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["user", "service_principal", "group"]),
    default="user",
    show_default=True,
)
@click.option("--admin", "is_admin", is_flag=True, help="Make it a metastore admin.")
def create_principal(name: str, kind: str, is_admin: bool) -> None:
    """Create a user, service principal or group."""
    ms = _governance().metastore
    _catalog_call(lambda: ms.create_principal(name, kind, is_admin=is_admin))
    click.echo(f"created {kind} {name}")


@admin.command("add-member")
@click.argument("group")
@click.argument("member")
def add_member(group: str, member: str) -> None:
    """Add a principal to a group."""
    ms = _governance().metastore
    _catalog_call(lambda: ms.add_member(group, member))
    click.echo(f"{member} is now in {group}")


@admin.command("create-token")
@click.argument("principal")
@click.option("--days", type=float, default=90, show_default=True, help="0 = never expires.")
@click.option("--comment", default=None)
def create_token(principal: str, days: float, comment: str | None) -> None:
    """Create an API token (printed once; only its hash is stored)."""
    ms = _governance().metastore
    secret, tok = _catalog_call(
        lambda: ms.create_token(principal, days=days or None, comment=comment)
    )
    console.print(f"token {tok.id} for {principal} (shown once, store it now):")
    click.echo(secret)


@admin.command("list-tokens")
@click.option("--principal", default=None)
def list_tokens(principal: str | None) -> None:
    """Tokens with their status (never the secret)."""
    table = Table("id", "principal", "prefix", "created", "expires", "status")
    for tok, who in _governance().metastore.list_tokens(principal):
        status = "revoked" if tok.revoked_at else "active"
        table.add_row(
            tok.id,
            who,
            tok.prefix + "…",
            str(tok.created_at)[:19],
            str(tok.expires_at or "never")[:19],
            status,
        )
    Console().print(table)


@admin.command("revoke-token")
@click.argument("token_id")
def revoke_token(token_id: str) -> None:
    """Revoke a token by id (see list-tokens)."""
    ms = _governance().metastore
    _catalog_call(lambda: ms.revoke_token(token_id))
    click.echo(f"revoked {token_id}")


@admin.command()
@click.argument(
    "securable_type", type=click.Choice(["metastore", "catalog", "schema", "table", "volume"])
)
@click.argument("full_name")
@click.argument("principal")
@click.argument("privileges", nargs=-1, required=True)
@click.option("--revoke", is_flag=True, help="Remove the privileges instead.")
def grant(
    securable_type: str, full_name: str, principal: str, privileges: tuple[str, ...], revoke: bool
) -> None:
    """Grant (or --revoke) privileges, e.g. `stratus admin grant table main.weather.hourly
    alice SELECT`. Multi-word privileges are quoted: "USE CATALOG"."""
    from stratus.security.governance import LOCAL_ADMIN

    stratus = _platform()
    stratus.bootstrap()
    wanted = [p.upper() for p in privileges]
    try:
        _catalog_call(
            lambda: stratus.catalog.grant(
                LOCAL_ADMIN, securable_type, full_name, [principal], wanted, revoke=revoke
            )
        )
    finally:
        stratus.close()
    click.echo(
        f"{'revoked' if revoke else 'granted'} {', '.join(privileges)} on "
        f"{securable_type} {full_name} {'from' if revoke else 'to'} {principal}"
    )


def _governance() -> Governance:
    stratus = _platform()
    stratus.bootstrap()
    return stratus.governance


def _catalog_call(fn: Any) -> Any:
    from stratus.catalog.errors import CatalogError

    try:
        return fn()
    except CatalogError as exc:
        raise click.ClickException(exc.message) from None


# ---- keys -------------------------------------------------------------------------------------
@main.group()
def keys() -> None:
    """PII encryption keys."""


@keys.command()
@click.option("--data", is_flag=True, help="Also re-encrypt every PII column with new data keys.")
def rotate(data: bool) -> None:
    """New master key; data keys re-wrapped (no data rewritten). --data also re-encrypts data."""
    from stratus.pii import PiiError

    stratus = _platform()
    stratus.bootstrap()
    try:
        new_id = stratus.tables.protector.keys.rotate_master()
        click.echo(f"master key rotated: now {new_id}; data keys re-wrapped")
        if data:
            for name in stratus.tables.pii_tables():
                version = stratus.tables.rotate_data(name)
                click.echo(f"re-encrypted {name} (table version {version})")
    except PiiError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stratus.close()


main.add_command(share_command)  # stratus share ... (Delta Sharing)
main.add_command(sql_command)  # stratus sql ... (Databricks SQL)
main.add_command(maintenance_command)  # stratus maintenance ... (OPTIMIZE / VACUUM)
main.add_command(jobs_command)  # stratus jobs ... (processing jobs)
