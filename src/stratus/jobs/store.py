"""Jobs in the metastore: create (idempotently), claim, report progress, finish, recover.

Every state change is one short transaction whose ``WHERE`` names the state (and runner) it
expects, so two processes sharing the metastore never both claim a job, and a runner that lost
its job (re-queued after it was presumed dead) cannot overwrite the newer outcome.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from stratus.catalog.metastore import MetastoreService
from stratus.jobs.definitions import JobParams
from stratus.jobs.models import CANCELLED, FAILED, FINISHED, QUEUED, RUNNING, Job


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before by this principal for a different request."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


class BadPageToken(ValueError):
    pass


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class JobRecord:
    """A detached snapshot of one ``jobs`` row."""

    id: str
    job_type: str
    principal: str
    state: str
    params: JobParams
    output_table: str
    engine: str
    idempotency_key: str | None
    request_hash: str
    progress: float
    rows_written: int | None
    output_version: int | None
    error: str | None
    cancel_requested: bool
    cancelled_by: str | None
    attempts: int
    runner: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None

    @classmethod
    def of(cls, row: Job) -> JobRecord:
        return cls(
            id=row.id,
            job_type=row.job_type,
            principal=row.principal,
            state=row.state,
            params=JobParams.from_json(row.params),
            output_table=row.output_table,
            engine=row.engine,
            idempotency_key=row.idempotency_key,
            request_hash=row.request_hash,
            progress=float(row.progress or 0.0),
            rows_written=row.rows_written,
            output_version=row.output_version,
            error=row.error,
            cancel_requested=bool(row.cancel_requested),
            cancelled_by=row.cancelled_by,
            attempts=int(row.attempts or 0),
            runner=row.runner,
            metrics=dict(row.metrics or {}),
            created_at=_aware(row.created_at),
            started_at=_aware(row.started_at),
            finished_at=_aware(row.finished_at),
            heartbeat_at=_aware(row.heartbeat_at),
        )

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def to_json(self) -> dict[str, Any]:
        """The API's view of a job."""
        p = self.params
        end = self.finished_at or (now() if self.started_at else None)
        timings: dict[str, Any] = {
            "submitted_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "queued_seconds": _seconds(self.created_at, self.started_at or self.finished_at),
            "run_seconds": _seconds(self.started_at, end),
        }
        timings.update(
            {k: v for k, v in self.metrics.items() if k.endswith("_seconds") and v is not None}
        )
        return {
            "id": self.id,
            "type": self.job_type,
            "state": self.state,
            "progress": round(self.progress, 4),
            "principal": self.principal,
            "engine": self.engine,
            "city_ids": list(p.city_ids),
            "start": p.start.isoformat(),
            "end": p.end.isoformat(),
            "options": p.options,
            "output_table": self.output_table,
            "rows_written": self.rows_written,
            "output_version": self.output_version,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "attempts": self.attempts,
            "timings": timings,
            "metrics": {k: v for k, v in self.metrics.items() if not k.endswith("_seconds")},
        }


def _seconds(a: dt.datetime | None, b: dt.datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return round(max((b - a).total_seconds(), 0.0), 3)


def encode_page_token(record: JobRecord) -> str:
    assert record.created_at is not None
    raw = orjson.dumps([record.created_at.isoformat(), record.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, job_id = orjson.loads(raw)
        return dt.datetime.fromisoformat(created), str(job_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadPageToken("page_token is not one this API returned") from None


class JobStore:
    def __init__(self, metastore: MetastoreService) -> None:
        self.metastore = metastore

    # ---- submit and read ---------------------------------------------------------------
    def create(
        self,
        *,
        job_type: str,
        principal: str,
        params: JobParams,
        output_table: str,
        engine: str,
        request_hash: str,
        idempotency_key: str | None,
    ) -> tuple[JobRecord, bool]:
        """Insert a queued job; with an idempotency key already used by ``principal``, return
        that job instead (``created`` False) or raise :class:`IdempotencyConflict`."""
        if idempotency_key is not None:
            existing = self._by_key(principal, idempotency_key)
            if existing is not None:
                return self._replay(existing, request_hash), False
        try:
            with self.metastore.session() as s:
                row = Job(
                    job_type=job_type,
                    principal=principal,
                    state=QUEUED,
                    params=params.to_json(),
                    output_table=output_table,
                    engine=engine,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    progress=0.0,
                    cancel_requested=False,
                    attempts=0,
                    metrics={},
                    created_at=now(),
                )
                s.add(row)
                s.flush()
                return JobRecord.of(row), True
        except IntegrityError:
            # a concurrent submission with the same key won the insert
            if idempotency_key is None:
                raise
            existing = self._by_key(principal, idempotency_key)
            if existing is None:
                raise
            return self._replay(existing, request_hash), False

    @staticmethod
    def _replay(existing: JobRecord, request_hash: str) -> JobRecord:
        if existing.request_hash != request_hash:
            raise IdempotencyConflict(existing.id)
        return existing

    def _by_key(self, principal: str, key: str) -> JobRecord | None:
        with self.metastore.session() as s:
            row = s.scalar(
                select(Job).where(Job.principal == principal, Job.idempotency_key == key)
            )
            return None if row is None else JobRecord.of(row)

    def get(self, job_id: str) -> JobRecord | None:
        with self.metastore.session() as s:
            row = s.get(Job, job_id)
            return None if row is None else JobRecord.of(row)

    def list(
        self,
        principal: str | None,
        *,
        limit: int,
        after: tuple[dt.datetime, str] | None = None,
        states: Iterable[str] = (),
    ) -> list[JobRecord]:
        """Newest first; ``after`` is the (created_at, id) of the last job of the previous page."""
        q = select(Job)
        if principal is not None:
            q = q.where(Job.principal == principal)
        states = list(states)
        if states:
            q = q.where(Job.state.in_(states))
        if after is not None:
            created, job_id = after
            created = created.astimezone(dt.UTC)
            q = q.where(
                or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
            )
        q = q.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        with self.metastore.session() as s:
            return [JobRecord.of(r) for r in s.scalars(q)]

    # ---- running -------------------------------------------------------------------------
    def claim(self, runner: str, engine: str) -> JobRecord | None:
        """Take the oldest queued job (queued -> running), or None when there is none."""
        for _ in range(5):  # another runner may take the candidate first: try the next one
            with self.metastore.session() as s:
                job_id = s.scalar(
                    select(Job.id)
                    .where(Job.state == QUEUED)
                    .order_by(Job.created_at, Job.id)
                    .limit(1)
                    # PostgreSQL: runners of other instances skip a row being claimed instead
                    # of queueing behind its lock (SQLite has one writer and ignores this)
                    .with_for_update(skip_locked=True)
                )
                if job_id is None:
                    return None
                t = now()
                taken = s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state == QUEUED)
                    .values(
                        state=RUNNING,
                        runner=runner,
                        engine=engine,
                        started_at=t,
                        heartbeat_at=t,
                        progress=0.0,
                        attempts=Job.attempts + 1,
                        error=None,
                    )
                ).rowcount
                if taken == 1:
                    row = s.get(Job, job_id)
                    assert row is not None
                    s.refresh(row)
                    return JobRecord.of(row)
        return None

    def report(
        self, job_id: str, runner: str, progress: float, metrics: dict[str, Any] | None = None
    ) -> JobRecord | None:
        """Record progress (and beat); returns the job as it now stands, None if it is no
        longer this runner's (re-queued elsewhere)."""
        values: dict[str, Any] = {"progress": min(max(progress, 0.0), 1.0), "heartbeat_at": now()}
        if metrics is not None:
            values["metrics"] = metrics
        with self.metastore.session() as s:
            done = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.runner == runner, Job.state == RUNNING)
                .values(**values)
            ).rowcount
            if done != 1:
                return None
            row = s.get(Job, job_id)
            assert row is not None
            s.refresh(row)
            return JobRecord.of(row)

    def finish(self, job_id: str, runner: str, state: str, **values: Any) -> bool:
        """running -> ``state`` with ``values``; False if the job is no longer this runner's."""
        assert state in FINISHED
        with self.metastore.session() as s:
            return (
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.runner == runner, Job.state == RUNNING)
                    .values(state=state, finished_at=now(), **values)
                ).rowcount
                == 1
            )

    def release(self, job_id: str, runner: str, note: str | None = None) -> bool:
        """running -> queued (the worker is shutting down before the job's next step)."""
        with self.metastore.session() as s:
            return (
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.runner == runner, Job.state == RUNNING)
                    .values(state=QUEUED, runner=None, progress=0.0, heartbeat_at=None, error=note)
                ).rowcount
                == 1
            )

    def heartbeat(self, runner: str, job_ids: list[str]) -> None:
        """The jobs this runner is working on are alive (only those: a job whose thread died
        is not kept "running" by its pool's heartbeat)."""
        if not job_ids:
            return
        with self.metastore.session() as s:
            s.execute(
                update(Job)
                .where(Job.id.in_(job_ids), Job.runner == runner, Job.state == RUNNING)
                .values(heartbeat_at=now())
            )

    def cancel(self, job_id: str, by: str) -> JobRecord | None:
        """queued -> cancelled now; running -> cancel requested (the runner stops at its next
        step); finished jobs are left alone. Returns the job as it now stands."""
        with self.metastore.session() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == QUEUED)
                .values(
                    state=CANCELLED,
                    cancel_requested=True,
                    cancelled_by=by,
                    finished_at=now(),
                    error=f"cancelled by {by} before it started",
                )
            )
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == RUNNING, Job.cancel_requested.is_(False))
                .values(cancel_requested=True, cancelled_by=by)
            )
            row = s.get(Job, job_id)
            if row is None:
                return None
            s.refresh(row)
            return JobRecord.of(row)

    # ---- recovery ------------------------------------------------------------------------
    def recover(
        self, is_dead: Callable[[JobRecord], bool], max_attempts: int
    ) -> list[tuple[str, str]]:
        """Running jobs whose runner ``is_dead``: back to queued, or failed as interrupted once
        they have been started ``max_attempts`` times. Returns [(job id, new state)]."""
        with self.metastore.session() as s:
            rows = [JobRecord.of(r) for r in s.scalars(select(Job).where(Job.state == RUNNING))]
        out = []
        for job in rows:
            if not is_dead(job):
                continue
            with self.metastore.session() as s:
                where = (Job.id == job.id, Job.state == RUNNING, Job.runner == job.runner)
                if job.attempts >= max_attempts:
                    values: dict[str, Any] = {
                        "state": FAILED,
                        "finished_at": now(),
                        "error": (
                            f"interrupted: the worker running it ({job.runner}) stopped "
                            f"{job.attempts} time(s); not retried again"
                        ),
                    }
                elif job.cancel_requested:
                    values = {
                        "state": CANCELLED,
                        "finished_at": now(),
                        "error": f"cancelled by {job.cancelled_by} (its worker stopped)",
                    }
                else:
                    values = {
                        "state": QUEUED,
                        "runner": None,
                        "progress": 0.0,
                        "heartbeat_at": None,
                        "error": f"re-queued: the worker running it ({job.runner}) stopped",
                    }
                if s.execute(update(Job).where(*where).values(**values)).rowcount == 1:
                    out.append((job.id, values["state"]))
        return out
