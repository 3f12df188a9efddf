"""The jobs service: submit, read, list and cancel jobs; run them on a worker pool.

``submit`` validates and authorizes in the request, stores the job as ``queued`` in the
metastore and wakes the pool; the pool (threads of this process, ``STRATUS_JOB_WORKERS`` of
them) claims queued jobs (also ones submitted by other processes sharing the metastore) and runs
each as steps of a few cities: authorize again as the submitter, compute each step on the
configured engine, then register the output table and commit the result in one Delta commit.
Between steps the worker reports progress, and stops if the job was cancelled (nothing is
written) or the pool is shutting down (the job goes back to the queue).

Restarts: a pool that starts (and every ``RECOVER_SECONDS`` after) re-queues jobs left
``running`` by a worker that is gone: one of this host whose process has exited, or any whose
heartbeat is older than ``LEASE_SECONDS``. A job interrupted ``MAX_ATTEMPTS`` times fails with
"interrupted". Writes are idempotent (each run replaces its slice), so a re-run after a crash
between the commit and the state update does no harm.
"""

from __future__ import annotations

import atexit
import builtins
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from stratus.catalog import registry
from stratus.catalog.errors import AlreadyExists, CatalogError, NotFound, PermissionDenied
from stratus.catalog.registry import TableSpec
from stratus.catalog.types import uc_type
from stratus.engine import TableScan
from stratus.jobs.definitions import HOURLY_TABLE, JOB_TYPES, JobType
from stratus.jobs.engines import JobEngine
from stratus.jobs.models import CANCELLED, FAILED, QUEUED, RUNNING, STATES, SUCCEEDED
from stratus.jobs.output import OutputMismatch, check_compatible, register, replace_slice
from stratus.jobs.store import (
    BadPageToken,
    IdempotencyConflict,
    JobRecord,
    JobStore,
    decode_page_token,
    encode_page_token,
)
from stratus.jobs.validation import JobInputError, JobSubmission
from stratus.lakehouse import origin
from stratus.lakehouse.storage import StorageError
from stratus.lakehouse.tables import WriteConflictError
from stratus.security.actions import Resource
from stratus.security.audit import AuditRecord
from stratus.security.authz import Identity
from stratus.security.governance import ADMIN
from stratus.weather.queries import UnknownCityError

if TYPE_CHECKING:
    from stratus.catalog.commands import CatalogCommands
    from stratus.catalog.metastore import MetastoreService
    from stratus.lakehouse.tables import Lakehouse
    from stratus.lineage.model import LineageSink
    from stratus.security.audit import AuditLog
    from stratus.security.authz import Authorizer
    from stratus.weather.queries import WeatherQueries

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = ("main", "jobs")
POLL_SECONDS = 1.0  # how often an idle pool looks for jobs queued by other processes
HEARTBEAT_SECONDS = 5.0
LEASE_SECONDS = 60.0  # a running job without a heartbeat for this long is presumed orphaned
RECOVER_SECONDS = 15.0
MAX_ATTEMPTS = 3
STOP_SECONDS = 20.0  # how long close() waits for running jobs to reach their next step

_HOST = socket.gethostname()
_LIVE_RUNNERS: set[str] = set()  # runners of the pools started (and not stopped) in this process


class _Cancelled(Exception):
    def __init__(self, by: str | None) -> None:
        super().__init__(by)
        self.by = by


class _Stopping(Exception):
    pass


class _Lost(Exception):
    """The job is no longer ours (re-queued by a pool that thought this worker was dead)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def runner_is_dead(job: JobRecord, lease: float = LEASE_SECONDS) -> bool:
    """Is the worker that claimed this running job gone? Yes if it was of this host and its
    process has exited (or is this process, where that pool is stopped); otherwise if no
    heartbeat came for ``lease`` seconds (a live pool beats for the jobs its threads run)."""
    runner = job.runner or ""
    host, _, rest = runner.partition(":")
    pid_text = rest.partition(":")[0]
    if runner not in _LIVE_RUNNERS and host == _HOST and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid() or not _pid_alive(pid):
            return True  # this process (that pool is stopped) or a process that has exited
    beat = job.heartbeat_at or job.started_at
    if beat is None:
        return True
    return (dt.datetime.now(dt.UTC) - beat).total_seconds() > lease


def error_text(exc: BaseException) -> str:
    """A one-paragraph, user-facing description of why a job failed."""
    if isinstance(exc, CatalogError):
        return f"{type(exc).__name__}: {exc.message}"
    if isinstance(exc, WriteConflictError | OutputMismatch):
        return str(exc)
    if isinstance(exc, UnknownCityError):
        return f"unknown city: {', '.join(exc.city_ids)}"
    if isinstance(exc, StorageError):
        return f"storage unavailable: {exc}"
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    module = type(exc).__module__ or ""
    where = "spark" if module.startswith(("pyspark", "grpc")) else "engine"
    return f"{where} error ({type(exc).__name__}): {first[:2000]}"


class JobService:
    def __init__(
        self,
        store: JobStore,
        engine: JobEngine,
        workers: int,
        *,
        metastore: MetastoreService,
        authorizer: Authorizer,
        catalog: CatalogCommands,
        lakehouse: Lakehouse,
        weather: WeatherQueries,
        audit: AuditLog,
        lineage: Callable[[], LineageSink | None] = lambda: None,
    ) -> None:
        self.metastore = metastore
        self.authorizer = authorizer
        self.catalog = catalog
        self.lakehouse = lakehouse
        self.weather = weather
        self.audit = audit
        self.lineage = lineage  # created on first use: jobs that never run need none
        self.store = store
        self.engine = engine
        self.workers = workers
        self.runner = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._active = 0
        self._running: set[str] = set()  # ids of the jobs this pool's threads are running
        self._dispatcher: threading.Thread | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def engine_name(self) -> str:
        return self.engine.name

    def ensure_default_schema(self) -> None:
        """``main.jobs`` (owned by the admin) so that it can be granted before first use."""
        ms = self.metastore
        try:
            ms.get_schema(".".join(DEFAULT_SCHEMA))
        except NotFound:
            # NotFound again: the main catalog is not bootstrapped yet (then submit creates it)
            with contextlib.suppress(AlreadyExists, NotFound):
                ms.create_schema(*DEFAULT_SCHEMA, ADMIN, comment="Outputs of processing jobs")

    # ---- authorization -------------------------------------------------------------------
    def authorize(self, who: Identity, output: str) -> None:
        """SELECT on the input; MODIFY on an existing output table, else CREATE TABLE on its
        schema (CREATE SCHEMA on the catalog when the schema does not exist either): the
        catalog commands' rule, as for CLI ingest."""
        self.authorizer.require(who, "table.read", Resource("table", HOURLY_TABLE))
        try:
            self.catalog.authorize_write(who, output)
        except CatalogError as exc:
            exc.parameter = exc.parameter or "output"
            raise

    def _identity(self, principal: str) -> Identity:
        try:
            p = self.metastore.get_principal(principal)
        except NotFound:
            raise PermissionDenied(f"principal {principal} no longer exists") from None
        if not p.active:
            raise PermissionDenied(f"principal {principal} is deactivated")
        return self.authorizer.identity(p)

    # ---- the API -------------------------------------------------------------------------
    def submit(
        self, who: Identity, submission: JobSubmission, idempotency_key: str | None = None
    ) -> tuple[JobRecord, bool]:
        """Queue a job (validated by ``parse_submission``); returns (job, created)."""
        self.authorize(who, submission.output)
        try:
            self.weather.check_cities(list(submission.params.city_ids))
        except UnknownCityError as exc:
            raise JobInputError(
                "city_ids",
                f"no such city: {', '.join(exc.city_ids)} (GET /api/v1/cities lists them)",
                status=404,
                title="Unknown city",
                type_="/problems/unknown-city",
                errors=[
                    {"parameter": "city_ids", "message": f"unknown city {c}"} for c in exc.city_ids
                ],
            ) from None
        try:
            check_compatible(self.metastore, submission.job_type.output_spec(submission.output))
        except OutputMismatch as exc:
            raise JobInputError("output", str(exc), status=409, title="Conflict") from None
        try:
            job, created = self.store.create(
                job_type=submission.job_type.name,
                principal=who.name,
                params=submission.params,
                output_table=submission.output,
                engine=self.engine_name,
                request_hash=submission.request_hash,
                idempotency_key=idempotency_key,
            )
        except IdempotencyConflict as exc:
            raise JobInputError(
                "Idempotency-Key",
                f"already used for job {exc.job_id} with a different request; use a new key",
                status=409,
                title="Idempotency-Key reused",
                type_="/problems/idempotency-key-reused",
            ) from None
        if created:
            self._wake.set()
        return job, created

    def get(self, who: Identity, job_id: str, action: str = "job.view") -> JobRecord:
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist")
        self.authorizer.require(who, action, Resource("job", job_id, owner=job.principal))
        return job

    def list(
        self,
        who: Identity,
        *,
        limit: int = 50,
        page_token: str | None = None,
        states: list[str] | None = None,
    ) -> tuple[list[JobRecord], str | None]:
        """The caller's jobs, newest first, and the token of the next page (None: last)."""
        for s in states or []:
            if s not in STATES:
                raise JobInputError("state", f"unknown state {s!r}; one of {', '.join(STATES)}")
        try:
            after = decode_page_token(page_token) if page_token else None
        except BadPageToken as exc:
            raise JobInputError("page_token", str(exc)) from None
        jobs = self.store.list(who.name, limit=limit + 1, after=after, states=states or ())
        token = encode_page_token(jobs[limit - 1]) if len(jobs) > limit else None
        return jobs[:limit], token

    def cancel(self, who: Identity, job_id: str) -> JobRecord:
        job = self.get(who, job_id, "job.cancel")
        if job.state in (SUCCEEDED, FAILED):
            raise JobInputError(
                "id",
                f"job {job_id} has already {job.state}; only queued or running jobs can be "
                "cancelled",
                status=409,
                title="Job finished",
                type_="/problems/job-finished",
            )
        if job.state == CANCELLED:
            return job
        updated = self.store.cancel(job_id, who.name)
        assert updated is not None
        return updated

    def wait(self, job_id: str, timeout: float = 60.0, interval: float = 0.05) -> JobRecord:
        """Block until the job has finished (tests, ``stratus jobs submit --wait``)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.store.get(job_id)
            assert job is not None, job_id
            if job.finished:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout}s")
            time.sleep(interval)

    # ---- the worker pool -----------------------------------------------------------------
    def start(self) -> None:
        """Recover orphaned jobs and start the pool (no-op without workers or if started)."""
        with self._lock:
            if self._dispatcher is not None or self._closed or self.workers <= 0:
                return
            self._stop.clear()
            _LIVE_RUNNERS.add(self.runner)
            self.recover()
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="stratus-job"
            )
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="stratus-jobs", daemon=True
            )
            self._dispatcher.start()
            atexit.register(self.close)
        log.info("job workers started: %d on the %s engine", self.workers, self.engine_name)

    def recover(self) -> builtins.list[tuple[str, str]]:
        recovered = self.store.recover(runner_is_dead, MAX_ATTEMPTS)
        for job_id, state in recovered:
            log.warning("job %s was left running by a stopped worker: now %s", job_id, state)
        if any(state == QUEUED for _, state in recovered):
            self._wake.set()
        return recovered

    def _dispatch(self) -> None:
        last_beat = last_recover = time.monotonic()
        while not self._stop.is_set():
            try:
                t = time.monotonic()
                if t - last_beat >= HEARTBEAT_SECONDS:
                    with self._lock:
                        busy = self._active > 0
                    if busy:  # (an idle pool does not write to the metastore)
                        with self._lock:
                            ids = list(self._running)
                        self.store.heartbeat(self.runner, ids)
                    last_beat = t
                if t - last_recover >= RECOVER_SECONDS:
                    self.recover()
                    last_recover = t
                while not self._stop.is_set():
                    with self._lock:
                        if self._active >= self.workers:
                            break
                    job = self.store.claim(self.runner, self.engine_name)
                    if job is None:
                        break
                    with self._lock:
                        self._active += 1
                    assert self._executor is not None
                    self._executor.submit(self._run, job)
            except Exception:  # the metastore may be briefly unavailable: try again later
                log.exception("job dispatcher")
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _run(self, job: JobRecord) -> None:
        with self._lock:
            self._running.add(job.id)
        try:
            self.execute(job)
        except Exception as exc:  # e.g. the metastore went away while recording the outcome
            log.exception("job %s: unexpected error in the worker", job.id)
            with contextlib.suppress(Exception):
                self._end(job, FAILED, f"internal error: {error_text(exc)}", {})
        finally:
            with self._lock:
                self._running.discard(job.id)
                self._active -= 1
            self._wake.set()

    def close(self) -> None:
        """Stop the pool: running jobs go back to the queue at their next step."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._wake.set()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=10)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + STOP_SECONDS
            while time.monotonic() < deadline:
                with self._lock:
                    if self._active <= 0:
                        break
                time.sleep(0.05)
        _LIVE_RUNNERS.discard(self.runner)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        self.engine.close()

    # ---- running one job -----------------------------------------------------------------
    def _checkpoint(self, job: JobRecord, progress: float, metrics: dict[str, Any]) -> None:
        current = self.store.report(job.id, self.runner, progress, metrics)
        if current is None:
            raise _Lost()
        if current.cancel_requested:
            raise _Cancelled(current.cancelled_by)
        if self._stop.is_set():
            raise _Stopping()

    def execute(self, job: JobRecord) -> None:
        """Run a claimed job to its end state."""
        job_type = JOB_TYPES.get(job.job_type)
        if job_type is None:  # queued by another version of Stratus
            self._end(job, FAILED, f"unknown job type {job.job_type!r}", {})
            return
        spec = job_type.output_spec(job.output_table)
        event = self._lineage_event(job, job_type, spec)
        sink = self._lineage_sink()
        metrics: dict[str, Any] = {"engine": self.engine_name}
        started = time.monotonic()
        try:
            if sink is not None:
                sink.start(event)
            who = self._identity(job.principal)
            self.authorize(who, job.output_table)  # again: grants may have changed since submit
            data = self._compute(job, job_type, metrics)
            self._checkpoint(job, 0.95, metrics)  # the last moment a cancel is honoured
            t0 = time.monotonic()
            metrics["table_created"] = register(
                self.metastore, self.lakehouse, spec, job.principal, job_type.name
            )
            with origin.committing_as(job.principal):
                result = replace_slice(
                    self.lakehouse,
                    spec,
                    data,
                    job_type.slice_predicate(job.params),
                    {"stratus.job_id": job.id, "stratus.job_type": job_type.name},
                )
            metrics["write_seconds"] = round(time.monotonic() - t0, 3)
            metrics["commit_attempts"] = result.attempts
            metrics["total_seconds"] = round(time.monotonic() - started, 3)
            if not self.store.finish(
                job.id,
                self.runner,
                SUCCEEDED,
                progress=1.0,
                rows_written=result.rows,
                output_version=result.version,
                metrics=metrics,
                error=None,
            ):
                log.warning("job %s finished here but was re-queued elsewhere meanwhile", job.id)
            if sink is not None:
                sink.complete(event)
            self._audit(job, "allowed", 200, None)
        except _Cancelled as exc:
            self._end(
                job, CANCELLED, f"cancelled by {exc.by} while running; nothing written", metrics
            )
            if sink is not None:
                sink.fail(event, "cancelled")
        except _Stopping:
            self.store.release(job.id, self.runner, "re-queued: its worker was shutting down")
        except _Lost:
            log.warning("job %s was taken over by another worker; this run stops", job.id)
        except Exception as exc:
            denied = isinstance(exc, PermissionDenied | NotFound)
            if not isinstance(exc, CatalogError | WriteConflictError | OutputMismatch):
                log.exception("job %s (%s) failed", job.id, job.job_type)
            message = error_text(exc)
            self._end(job, FAILED, message, metrics)
            if sink is not None:
                sink.fail(event, message)
            self._audit(job, "denied" if denied else "error", 403 if denied else 500, message)

    def _compute(
        self,
        job: JobRecord,
        job_type: JobType,
        metrics: dict[str, Any],
    ) -> pa.Table:
        params = job.params
        self.weather.check_cities(list(params.city_ids))
        check_compatible(self.metastore, job_type.output_spec(job.output_table))
        n = self.engine.cities_per_step
        cities = list(params.city_ids)
        steps = [cities[i : i + n] for i in range(0, len(cities), n)]
        read_range = job_type.read_range(params)
        parts = []
        metrics.update(steps=len(steps), files=0, compute_seconds=0.0)
        for i, chunk in enumerate(steps):
            self._checkpoint(job, 0.95 * i / len(steps), metrics)
            t0 = time.monotonic()
            files = self.lakehouse.prune(
                registry.HOURLY,
                partition={"city_id": chunk},
                ranges={"date": read_range} if read_range else None,
            )
            scan = TableScan(registry.HOURLY, files)
            step = self.engine.compute(
                job_type, scan, dataclasses.replace(params, city_ids=tuple(chunk))
            )
            parts.append(step.select(job_type.schema.names).cast(job_type.schema))
            metrics["files"] += len(files)
            metrics["compute_seconds"] = round(
                metrics["compute_seconds"] + time.monotonic() - t0, 3
            )
        return pa.concat_tables(parts) if parts else job_type.schema.empty_table()

    def _end(self, job: JobRecord, state: str, message: str, metrics: dict[str, Any]) -> None:
        if not self.store.finish(job.id, self.runner, state, error=message, metrics=metrics):
            log.warning("job %s: could not record %s (no longer this worker's)", job.id, state)

    # ---- lineage and audit ---------------------------------------------------------------
    def _lineage_sink(self) -> LineageSink | None:
        try:
            return self.lineage()
        except ImportError:  # the lineage service is not installed
            return None

    def _lineage_event(self, job: JobRecord, job_type: JobType, spec: TableSpec) -> Any:
        from stratus.lineage.model import ColumnEdge, LineageEvent

        return LineageEvent(
            run_id=job.id,
            job_name=f"job:{job_type.name}",
            entity_type="JOB",
            principal=job.principal,
            event_time=dt.datetime.now(dt.UTC),
            target_table=job.output_table,
            source_tables=(HOURLY_TABLE,),
            column_edges=tuple(
                ColumnEdge(HOURLY_TABLE, source, target, transformation)
                for source, target, transformation in job_type.column_edges()
            ),
            target_schema=tuple((f.name, uc_type(f.type)[1]) for f in spec.schema),
        )

    def _audit(self, job: JobRecord, outcome: str, status: int, error: str | None) -> None:
        self.audit.record(
            AuditRecord(
                event_time=dt.datetime.now(dt.UTC),
                request_id=uuid.uuid4().hex,
                service_name="jobs",
                action_name="runJob",
                user_identity=job.principal,
                securable_type="table",
                securable_full_name=job.output_table,
                request_params={
                    "job_id": job.id,
                    "type": job.job_type,
                    "engine": self.engine_name,
                    **job.params.to_json(),
                },
                outcome=outcome,
                status_code=status,
                error_message=error,
                source_ip_address=None,
                user_agent=f"stratus-jobs/{self.runner}",
            )
        )


__all__ = ["QUEUED", "RUNNING", "JobService"]
