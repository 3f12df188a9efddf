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
from stratus.lakehouse.storage import StorageError

console = Console(stderr=True)
PROGRESS_MIN_BYTES = 5 << 20  # draw a progress bar for files from 5 MB


def _platform() -> Stratus:
    try:
        return Stratus.from_settings(Settings.from_env())
    except (ConfigError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="stratus")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR.")
def main(log_level: str | None) -> None:
    """Stratus: a governed weather-data lakehouse."""
    logging.basicConfig(
        level=(log_level or Settings.from_env().log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _print_report(report: IngestReport, as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(report.to_dict()).decode())
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


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--table", default="hourly", show_default=True, help="hourly or cities.")
@click.option("--city-id", default=None, help="City id for Open-Meteo JSON (it names none).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def ingest(paths: tuple[Path, ...], table: str, city_id: str | None, as_json: bool) -> None:
    """Load CSV, Parquet, JSON Lines or Open-Meteo JSON files into a weather table."""
    stratus = _platform()
    failed = False
    for path in paths:
        try:
            report = run_ingest(stratus, path, table, city_id, show_progress=not as_json)
        except (IngestInputError, ValueError, StorageError) as exc:
            console.print(f"[red]error:[/] {exc}")
            failed = True
            continue
        _print_report(report, as_json)
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
    return True


@main.command("sample-data")
@click.argument("out", required=False, type=click.Path(path_type=Path))
@click.option("--load", is_flag=True, help="Also ingest it into the lakehouse.")
@click.option("--if-empty", is_flag=True, help="With --load: only when there is no weather yet.")
def sample_data(out: Path | None, load: bool, if_empty: bool) -> None:
    """Build real-observation sample weather (6 stations, ~1 year each) as CSV.

    Writes OUT (weather) and OUT's stem + .cities.csv (the cities table).
    """
    if load:
        load_sample_data(_platform(), if_empty, out)
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
@click.option("--with-sample-data", is_flag=True, help="Load sample data first if empty.")
def serve(dev: bool, with_sample_data: bool) -> None:
    """Serve the API (gunicorn) on STRATUS_HOST:STRATUS_PORT."""
    settings = Settings.from_env()
    if with_sample_data:
        # In a child process: delta-rs's runtime must not exist in the process gunicorn forks.
        cmd = [sys.executable, "-m", "stratus", "sample-data", "--load", "--if-empty"]
        if subprocess.run(cmd, check=False).returncode != 0:
            raise click.ClickException("loading the sample data failed")
    url = f"http://{settings.host}:{settings.port}"
    console.print(f"Stratus API on {url}  (docs: {url}/docs)")
    if dev:
        from stratus.api import create_app

        create_app(settings=settings).run(host=settings.host, port=settings.port)
        return
    from stratus.api.server import run_gunicorn

    run_gunicorn(settings)
