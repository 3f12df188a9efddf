"""Scheduled maintenance of the system tables: the audit log and the lineage tables get one small
file per flush, so they are compacted (OPTIMIZE) and old files removed (VACUUM, 7 days).

``run_maintenance`` does one pass and returns a report (per table: files before and after,
files added and removed, files vacuumed, seconds); ``MaintenanceScheduler`` runs a pass every
``STRATUS_MAINTENANCE_INTERVAL_HOURS`` in a server process, one process at a time (a lock file
in ``$STRATUS_HOME``), logs the report and keeps the last one in
``$STRATUS_HOME/maintenance/last.json`` (``stratus maintenance status`` shows it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stratus.catalog import TableSpec
from stratus.lakehouse import operations as ops
from stratus.lakehouse import origin
from stratus.lakehouse.tables import Lakehouse

log = logging.getLogger(__name__)


@dataclass
class TableMaintenance:
    table: str
    files_before: int = 0
    files_after: int = 0
    files_added: int = 0
    files_removed: int = 0
    files_vacuumed: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class MaintenanceReport:
    started_at: str
    tables: list[TableMaintenance] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        parts = [
            f"{t.table}: {t.files_before} -> {t.files_after} files"
            + (f", {t.files_vacuumed} vacuumed" if t.files_vacuumed else "")
            + (f" (failed: {t.error})" if t.error else "")
            for t in self.tables
        ]
        return "; ".join(parts) or "no tables"


def system_tables() -> list[TableSpec]:
    from stratus.lineage.store import SPECS as LINEAGE_TABLES
    from stratus.security.audit import AUDIT

    return [AUDIT, *LINEAGE_TABLES]


def _count(lakehouse: Lakehouse, spec: TableSpec) -> int:
    files = lakehouse.files(spec)
    return 0 if files is None else files.num_rows


def run_maintenance(
    lakehouse: Lakehouse,
    tables: Sequence[TableSpec] | None = None,
    retain_hours: float | None = ops.DEFAULT_RETAIN_HOURS,
) -> MaintenanceReport:
    """OPTIMIZE (and, unless ``retain_hours`` is None, VACUUM) each table; never raises for
    one table's failure (it is in the report)."""
    started = time.monotonic()
    report = MaintenanceReport(dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    for spec in tables if tables is not None else system_tables():
        t0 = time.monotonic()
        entry = TableMaintenance(spec.full_name)
        try:
            entry.files_before = _count(lakehouse, spec)
            if lakehouse.table(spec) is not None:
                with origin.committing_as(None, "maintenance"):
                    metrics = ops.optimize(lakehouse, spec)
                entry.files_added = int(metrics.get("numFilesAdded", 0))
                entry.files_removed = int(metrics.get("numFilesRemoved", 0))
                if retain_hours is not None:
                    entry.files_vacuumed = len(ops.vacuum(lakehouse, spec, retain_hours))
            entry.files_after = _count(lakehouse, spec)
        except Exception as exc:  # the next table still gets its turn
            entry.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            log.warning("maintenance of %s failed: %s", spec.full_name, entry.error)
        entry.seconds = round(time.monotonic() - t0, 3)
        report.tables.append(entry)
    report.seconds = round(time.monotonic() - started, 3)
    return report


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def report_path(home: Path) -> Path:
    return home / "maintenance" / "last.json"


def run_once(
    lakehouse: Lakehouse, home: Path, min_age_seconds: float = 0.0
) -> MaintenanceReport | None:
    """One pass unless another process is running one (or, with ``min_age_seconds``, ran one
    that recently: server workers share the schedule); the report is logged and kept."""
    with _exclusive(home / "maintenance" / "lock") as mine:
        if not mine:
            return None
        last = report_path(home)
        if (
            min_age_seconds
            and last.exists()
            and time.time() - last.stat().st_mtime < min_age_seconds
        ):
            return None
        report = run_maintenance(lakehouse)
        scratch = last.with_suffix(".tmp")
        scratch.write_text(json.dumps(report.as_dict(), indent=2))
        scratch.replace(last)  # readers never see half a report
        log.info("system table maintenance: %s (%.1f s)", report.summary(), report.seconds)
        return report


class MaintenanceScheduler:
    """A daemon thread running :func:`run_once` every ``interval_hours`` (first run after one
    interval, so a restart loop does not compact continuously)."""

    def __init__(self, lakehouse: Lakehouse, home: Path, interval_hours: float) -> None:
        self.lakehouse = lakehouse
        self.home = home
        self.interval = interval_hours * 3600
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="stratus-maintenance")
        self._thread.daemon = True
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                run_once(self.lakehouse, self.home, min_age_seconds=self.interval / 2)
            except Exception:
                log.exception("system table maintenance failed")

    def stop(self) -> None:
        self._stop.set()


__all__ = [
    "MaintenanceReport",
    "MaintenanceScheduler",
    "run_maintenance",
    "run_once",
    "system_tables",
]
