"""Start-up runs migrations and the built-in securables exactly once, under a lock that holds
across processes (SQLite: a file lock; PostgreSQL: an advisory lock): fresh homes never crash,
and instances started together on one fresh database all serve."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select, text

from stratus.catalog import models as m
from stratus.catalog.metastore import MetastoreService
from stratus.catalog.startup import sqlite_path
from tests.conftest import free_port
from tests.services import Postgres

STRATUS = str(Path(sys.executable).parent / "stratus")


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [STRATUS, "serve"],
            env={**os.environ, **env, "STRATUS_PORT": str(self.port)},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 90.0) -> float:
        """Seconds from the start until /health answers 200; fails if the server exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.05)
        pytest.fail(f"no /health after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        server.stop()


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {"STRATUS_HOME": str(home), "STRATUS_WORKERS": "2", "STRATUS_LOG_LEVEL": "INFO", **extra}


def test_fresh_homes_start_and_serve_every_time(tmp_path: Path, servers: list[Server]) -> None:
    # Before the start-up lock, two workers migrating one fresh home crashed 4 starts in 8.
    seconds = []
    for i in range(5):
        home, log = tmp_path / f"home{i}", tmp_path / f"serve{i}.log"
        server = Server(_env(home), log)
        servers.append(server)
        seconds.append(server.wait_healthy())
        for _ in range(6):  # both workers answer: the app is up, the catalog API asks for a token
            r = requests.get(f"{server.url}/api/2.1/unity-catalog/catalogs", timeout=10)
            assert r.status_code == 401, r.text
        ms = MetastoreService(f"sqlite:///{home / 'metastore.db'}")
        try:
            assert {c.name for c in ms.list_catalogs().items} == {"main", "system"}
        finally:
            ms.engine.dispose()
        server.stop()
        assert server.proc.returncode == 0, log.read_text()[-3000:]
        assert "Traceback" not in log.read_text()
    print(f"fresh-home start-up until /health: {', '.join(f'{s:.2f}' for s in seconds)} s")


def test_two_instances_on_one_fresh_postgres_both_serve(
    tmp_path: Path, postgres: Postgres, servers: list[Server]
) -> None:
    url = postgres.create_database("start")
    for i in range(2):  # started together: each with its own home (its own machine), one database
        servers.append(
            Server(_env(tmp_path / f"home{i}", STRATUS_METASTORE_URL=url), tmp_path / f"{i}.log")
        )
    for server in servers:
        server.wait_healthy()
    ms = MetastoreService(url)
    try:
        with ms.engine.connect() as conn:
            versions = conn.execute(text("SELECT count(*) FROM alembic_version")).scalar()
            assert versions == 1
            assert conn.execute(select(func.count()).select_from(m.Metastore)).scalar() == 1
            assert conn.execute(select(func.count()).select_from(m.Catalog)).scalar() == 2
            admins = select(func.count()).select_from(m.Principal).where(m.Principal.is_admin)
            assert conn.execute(admins).scalar() == 1
    finally:
        ms.engine.dispose()
    for i, server in enumerate(servers):
        assert server.proc.poll() is None
        assert "Traceback" not in (tmp_path / f"{i}.log").read_text()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_concurrent_first_opens_migrate_once(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Eight threads (each its own engine, as separate processes have) open one fresh metastore
    at once: none fails, one migration and one metastore row result."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'ms.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database("race")
    errors: list[BaseException] = []
    opened: list[MetastoreService] = []
    barrier = threading.Barrier(8)

    def open_it() -> None:
        barrier.wait()
        try:
            opened.append(MetastoreService(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(opened) == 8
    with opened[0].engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(m.Metastore)).scalar() == 1
    for ms in opened:
        ms.engine.dispose()
    if kind == "sqlite":
        path = sqlite_path(url)
        assert path is not None and Path(f"{path}.lock").exists()
