"""The ``jobs`` table of the metastore: one row per processing job, its state and its outcome.

States: ``queued`` -> ``running`` -> ``succeeded`` | ``failed`` | ``cancelled`` (and ``queued``
-> ``cancelled``). A running job names its ``runner`` (``host:pid:instance``) and refreshes
``heartbeat_at``; a job whose runner is gone is re-queued (or failed as interrupted) by the next
worker pool that starts or looks around. ``(principal, idempotency_key)`` is unique, so a retried
submission finds the job it created the first time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from stratus.catalog.models import Base

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})


def _uuid() -> str:
    return str(uuid.uuid4())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("principal", "idempotency_key", name="uq_jobs_principal_idempotency"),
        Index("ix_jobs_state_created", "state", "created_at"),
        Index("ix_jobs_principal_created", "principal", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    job_type: Mapped[str] = mapped_column(String(32))
    principal: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default=QUEUED)
    # {"city_ids": [...], "start": "YYYY-MM-DD", "end": "YYYY-MM-DD", "options": {...}}
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    output_table: Mapped[str] = mapped_column(String(767))
    engine: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the normalised request
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    rows_written: Mapped[int | None] = mapped_column(BigInteger)
    output_version: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    cancelled_by: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    runner: Mapped[str | None] = mapped_column(String(255))
    # step timings and counters: {"files": n, "input_rows": n, "compute_seconds": s, ...}
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
