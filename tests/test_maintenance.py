"""The system tables' maintenance pass (OPTIMIZE + VACUUM of audit and lineage), its report and
lock, and ``stratus maintenance optimize / vacuum / run / status``."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

from stratus.cli import main
from stratus.config import Settings
from stratus.context import Stratus
from stratus.lakehouse import maintenance
from stratus.lakehouse.maintenance import run_maintenance, run_once, system_tables
from stratus.security.audit import AUDIT

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")


def _audit_rows(n: int, day: dt.date) -> pa.Table:
    now = dt.datetime.combine(day, dt.time(12), dt.UTC)
    rows = [
        {"event_time": now, "event_date": day, "request_id": f"r{i}", "action_name": "getTable"}
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=AUDIT.schema)


def test_maintenance_compacts_the_audit_table_and_reports(tmp_path: Path) -> None:
    stratus = Stratus.from_settings(Settings(home=tmp_path / "home"))
    try:
        stratus.bootstrap()
        lake = stratus.lakehouse
        for i in range(6):  # six flushes: six small files in one partition
            lake.append(AUDIT, _audit_rows(3, dt.date(2026, 1, 1 + i % 2)))
        before = lake.files(AUDIT)
        assert before is not None and before.num_rows >= 6
        rows_before = DeltaTable(lake.url(AUDIT)).to_pyarrow_table().num_rows
        report = run_maintenance(lake, retain_hours=None)
        entry = next(t for t in report.tables if t.table == AUDIT.full_name)
        assert entry.error is None
        assert entry.files_before == before.num_rows
        assert entry.files_after == 2  # one file per day partition
        assert entry.files_removed == before.num_rows and entry.files_added == 2
        assert DeltaTable(lake.url(AUDIT)).to_pyarrow_table().num_rows == rows_before
        assert {t.table for t in report.tables} == {s.full_name for s in system_tables()}
        assert f"{AUDIT.full_name}: {before.num_rows} -> 2 files" in report.summary()
        history = stratus.sql.execute(f"DESCRIBE HISTORY {AUDIT.full_name} LIMIT 1")
        last = history.data.to_pylist()[0]
        assert (last["operation"], last["statement_id"]) == ("OPTIMIZE", "maintenance")
        # the scheduled pass: one process at a time, the report kept on disk
        done = run_once(lake, stratus.settings.home)
        assert done is not None
        kept = json.loads(maintenance.report_path(stratus.settings.home).read_text())
        assert kept["tables"][0]["table"] == done.tables[0].table
        assert run_once(lake, stratus.settings.home, min_age_seconds=3600) is None  # just ran
        with maintenance._exclusive(stratus.settings.home / "maintenance" / "lock") as mine:
            assert mine
            assert run_once(lake, stratus.settings.home) is None  # held: skipped
    finally:
        stratus.close()


def test_the_scheduler_runs_passes_in_the_background(tmp_path: Path) -> None:
    stratus = Stratus.from_settings(Settings(home=tmp_path / "home"))
    try:
        stratus.bootstrap()
        for _ in range(3):
            stratus.lakehouse.append(AUDIT, _audit_rows(2, dt.date(2026, 2, 1)))
        path = maintenance.report_path(stratus.settings.home)
        scheduler = maintenance.MaintenanceScheduler(
            stratus.lakehouse, stratus.settings.home, interval_hours=0.5 / 3600
        )
        scheduler.start()
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        scheduler.stop()
        report = json.loads(path.read_text())
        audit = next(t for t in report["tables"] if t["table"] == AUDIT.full_name)
        assert (audit["files_before"], audit["files_after"]) == (3, 1)
    finally:
        stratus.close()


def test_cli_optimize_vacuum_run_and_status(tmp_path: Path) -> None:
    env = {"STRATUS_HOME": str(tmp_path / "home"), "STRATUS_LOG_LEVEL": "WARNING"}
    runner = CliRunner()
    for statement in (
        "CREATE TABLE main.default.t (a INT, b STRING)",
        "INSERT INTO main.default.t VALUES (1, 'x')",
        "INSERT INTO main.default.t VALUES (2, 'y')",
    ):
        assert runner.invoke(main, ["sql", statement], env=env).exit_code == 0
    out = runner.invoke(
        main, ["maintenance", "optimize", "main.default.t", "--zorder", "a"], env=env
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout.strip().splitlines()[-1])["num_files_removed"] == 2
    short = runner.invoke(
        main, ["maintenance", "vacuum", "main.default.t", "--retain-hours", "1"], env=env
    )
    assert short.exit_code == 1 and "168-hour safety minimum" in short.output
    dry = runner.invoke(main, ["maintenance", "vacuum", "main.default.t", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert runner.invoke(main, ["maintenance", "status"], env=env).exit_code == 1
    ran = runner.invoke(main, ["maintenance", "run"], env=env)
    assert ran.exit_code == 0, ran.output
    tables = json.loads(ran.stdout.strip().splitlines()[-1])["tables"]
    assert AUDIT.full_name in {t["table"] for t in tables}
    status = runner.invoke(main, ["maintenance", "status"], env=env)
    assert status.exit_code == 0 and AUDIT.full_name in status.output
