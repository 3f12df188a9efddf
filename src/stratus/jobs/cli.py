"""``stratus jobs``: submit, list, show and cancel processing jobs, or run a worker.

Without ``--token`` the commands act as the local administrator (whoever can write
STRATUS_HOME owns the lakehouse anyway); with it, as the token's principal, with its grants.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click
import orjson

from stratus.catalog.errors import CatalogError
from stratus.config import ConfigError, Settings
from stratus.jobs.validation import JobInputError, check_idempotency_key, parse_submission
from stratus.lakehouse.storage import StorageError

if TYPE_CHECKING:  # the commands import the platform when they run (a fast --help)
    from stratus.context import Stratus
    from stratus.security.authz import Identity


def _open(token: str | None) -> tuple[Stratus, Identity]:
    from stratus.context import Stratus
    from stratus.security.governance import LOCAL_ADMIN

    try:
        stratus = Stratus.from_settings(Settings.from_env())
    except (ConfigError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    stratus.bootstrap()
    try:
        who = stratus.governance.authenticator.authenticate(f"Bearer {token}") if token else None
    except CatalogError as exc:
        stratus.close()
        raise click.ClickException(exc.message) from None
    return stratus, who or LOCAL_ADMIN


def _audit(
    stratus: Stratus, who: str, action: str, table: str | None, params: dict[str, Any]
) -> None:
    stratus.governance.audit.record_cli(who, action, "table" if table else None, table, params)


def _fail(exc: Exception) -> click.ClickException:
    if isinstance(exc, JobInputError):
        return click.ClickException(f"{exc.parameter}: {exc.message}")
    if isinstance(exc, CatalogError):
        return click.ClickException(exc.message)
    return click.ClickException(str(exc))


def _show(job: Any, as_json: bool) -> None:
    doc = job.to_json()
    if as_json:
        click.echo(orjson.dumps(doc).decode())
        return
    line = f"{doc['id']}  {doc['type']:<14} {doc['state']:<10} {doc['progress']:>6.1%}"
    line += f"  {doc['engine']:<6} -> {doc['output_table']}"
    if doc["rows_written"] is not None:
        line += f" ({doc['rows_written']:,} rows, version {doc['output_version']})"
    click.echo(line)
    if doc["error"]:
        click.echo(f"    {doc['error']}")


TOKEN = click.option(
    "--token", envvar="STRATUS_TOKEN", default=None, help="Act as this token's principal."
)
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group("jobs")
def jobs_command() -> None:
    """Processing jobs (daily_summary, climate_stats, anomalies)."""


@jobs_command.command("submit")
@click.argument("job_type")
@click.option("--city", "cities", multiple=True, required=True, help="City id (repeatable).")
@click.option("--start", required=True, help="First date, YYYY-MM-DD.")
@click.option("--end", required=True, help="Last date, YYYY-MM-DD.")
@click.option("--option", "options", multiple=True, help="KEY=VALUE job option, e.g. z=2.5.")
@click.option("--output", default=None, help="catalog.schema.table (default main.jobs.<type>).")
@click.option("--idempotency-key", default=None, help="Submit at most once per key.")
@click.option("--wait", is_flag=True, help="Run it in this process and wait for the end.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="With --wait.")
@TOKEN
@AS_JSON
def submit(
    job_type: str,
    cities: tuple[str, ...],
    start: str,
    end: str,
    options: tuple[str, ...],
    output: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
    token: str | None,
    as_json: bool,
) -> None:
    """Queue a job (and with --wait, run it here and wait until it has finished)."""
    opts: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE", param_hint="--option")
        try:
            opts[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            opts[key] = value
    body: dict[str, Any] = {
        "type": job_type,
        "city_ids": list(cities),
        "start": start,
        "end": end,
        "options": opts,
    }
    if output:
        body["output"] = output
    stratus, who = _open(token)
    try:
        submission = parse_submission(body)
        idem = check_idempotency_key(idempotency_key)
        job, created = stratus.jobs.submit(who, submission, idem)
        _audit(stratus, who.name, "submitJob", submission.output, body)
        if wait:
            stratus.jobs.start()
            job = stratus.jobs.wait(job.id, timeout=timeout)
    except (JobInputError, CatalogError, TimeoutError) as exc:
        stratus.close()
        raise _fail(exc) from None
    if not created and not as_json:
        click.echo("(idempotency key seen before: this is the job it created)")
    _show(job, as_json)
    stratus.close()
    if wait and job.state != "succeeded":
        sys.exit(1)


@jobs_command.command("list")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--state", "states", multiple=True, help="Only jobs in this state (repeatable).")
@TOKEN
@AS_JSON
def list_(limit: int, states: tuple[str, ...], token: str | None, as_json: bool) -> None:
    """Your jobs, newest first."""
    stratus, who = _open(token)
    try:
        jobs, _ = stratus.jobs.list(who, limit=limit, states=list(states))
    except JobInputError as exc:
        stratus.close()
        raise _fail(exc) from None
    for job in jobs:
        _show(job, as_json)
    stratus.close()


@jobs_command.command("show")
@click.argument("job_id")
@TOKEN
@AS_JSON
def show(job_id: str, token: str | None, as_json: bool) -> None:
    """One job: state, progress, timings, error, output."""
    stratus, who = _open(token)
    try:
        job = stratus.jobs.get(who, job_id)
    except CatalogError as exc:
        stratus.close()
        raise _fail(exc) from None
    if as_json:
        _show(job, True)
    else:
        doc = job.to_json()
        for k, v in doc.items():
            click.echo(f"{k:<17} {orjson.dumps(v).decode() if isinstance(v, dict | list) else v}")
    stratus.close()


@jobs_command.command("cancel")
@click.argument("job_id")
@TOKEN
@AS_JSON
def cancel(job_id: str, token: str | None, as_json: bool) -> None:
    """Cancel a queued job, or ask a running one to stop at its next step."""
    stratus, who = _open(token)
    try:
        job = stratus.jobs.cancel(who, job_id)
        _audit(stratus, who.name, "cancelJob", job.output_table, {"job_id": job_id})
    except (JobInputError, CatalogError) as exc:
        stratus.close()
        raise _fail(exc) from None
    _show(job, as_json)
    stratus.close()


@jobs_command.command("worker")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Default: setting.")
def worker(workers: int | None) -> None:
    """Run queued jobs in this process until interrupted (Ctrl-C re-queues running ones)."""
    stratus, _ = _open(None)
    service = stratus.jobs
    if workers is not None:
        service.workers = workers
    if service.workers <= 0:
        service.workers = 1
    service.start()
    click.echo(f"job worker {service.runner}: {service.workers} thread(s), {service.engine_name}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("stopping: running jobs go back to the queue at their next step")
    finally:
        stratus.close()
