"""Shared fixtures: isolated Stratus homes, the real Azurite emulator, sample data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from stratus.config import Settings
from stratus.context import Stratus
from tests.services import Postgres, Redis

ROOT = Path(__file__).resolve().parents[1]
# The emulator's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """A real Azurite blob service for the whole run; yields its account endpoint URL."""
    binary = os.environ.get("STRATUS_AZURITE_BIN") or str(
        ROOT / ".tools/node_modules/.bin/azurite-blob"
    )
    if not Path(binary).exists() and not shutil.which(binary):
        pytest.fail(f"Azurite not found at {binary}: run `make test`, which installs it from npm")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """Debian's PostgreSQL (initdb + pg_ctl) in a temporary directory on a free port, for the
    whole run; each user asks it for a fresh database (``postgres.create_database()``)."""
    server = Postgres.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis() -> Iterator[Redis]:
    """Debian's redis-server on a free port (no persistence), for the whole run."""
    server = Redis.start()
    try:
        yield server
    finally:
        server.stop()


# The metastore-dependent modules (metastore, governance, sharing, jobs, Unity Catalog) run
# their main fixtures on both databases: SQLite in the home (the default) and PostgreSQL.
METASTORES = ["sqlite", "postgresql"]


def metastore_url_for(request: pytest.FixtureRequest, kind: str) -> str | None:
    """None (SQLite in STRATUS_HOME) or the URL of a fresh PostgreSQL database."""
    if kind == "sqlite":
        return None
    server: Postgres = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture(scope="module", params=METASTORES)
def metastore_url(request: pytest.FixtureRequest) -> str | None:
    """Module-wide: the module's fixtures and tests run once per metastore database."""
    return metastore_url_for(request, request.param)


def azure_settings(endpoint: str, home: Path, container: str | None = None) -> Settings:
    container = container or f"t{uuid.uuid4().hex[:12]}"
    return Settings(
        home=home,
        storage_url=f"az://{container}/lakehouse",
        azure_account_name=AZURITE_ACCOUNT,
        azure_account_key=AZURITE_KEY,
        azure_endpoint=endpoint,
    )


@pytest.fixture(params=["local", "azure"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stratus]:
    """A fresh, empty Stratus on local disk and on Azurite (tests run on both)."""
    if request.param == "local":
        stratus = Stratus.from_settings(Settings(home=tmp_path / "home"))
    else:
        endpoint = request.getfixturevalue("azurite")
        stratus = Stratus.from_settings(azure_settings(endpoint, tmp_path / "home"))
    yield stratus
    stratus.close()  # drains the audit queue while the storage is still up


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Stratus]:
    stratus = Stratus.from_settings(Settings(home=tmp_path / "home"))
    yield stratus
    stratus.close()


@pytest.fixture(scope="session")
def sample_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stratus.weather.sample import build_sample_data

    out = tmp_path_factory.mktemp("sample") / "weather.csv"
    build_sample_data(out)
    return out


def load_sample(stratus: Stratus, sample_csv: Path) -> Stratus:
    from stratus.weather.sample import cities_path_for

    stratus.ingest.ingest(cities_path_for(sample_csv), "cities")
    stratus.ingest.ingest(sample_csv, "hourly")
    return stratus


_load = load_sample  # its older name (tests/test_fuzz.py)


@pytest.fixture(scope="session")
def loaded_local(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Iterator[Stratus]:
    """A local lakehouse holding the whole sample dataset (read-only for tests)."""
    home = tmp_path_factory.mktemp("loaded") / "home"
    stratus = load_sample(Stratus.from_settings(Settings(home=home)), sample_csv)
    yield stratus
    stratus.close()


@pytest.fixture(scope="session")
def loaded_azure(
    tmp_path_factory: pytest.TempPathFactory, sample_csv: Path, azurite: str
) -> Iterator[Stratus]:
    home = tmp_path_factory.mktemp("loaded-az") / "home"
    stratus = load_sample(Stratus.from_settings(azure_settings(azurite, home)), sample_csv)
    yield stratus
    stratus.close()


@pytest.fixture(scope="session", params=["local", "azure"])
def loaded(request: pytest.FixtureRequest) -> Stratus:
    return request.getfixturevalue(f"loaded_{request.param}")


def token_for(stratus: Stratus, principal: str = "admin") -> str:
    stratus.bootstrap()
    secret, _ = stratus.governance.metastore.create_token(principal, days=1)
    return secret


def client_for(app: Flask, token: str | None) -> FlaskClient:
    client = app.test_client()
    if token:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


@pytest.fixture(scope="session")
def admin_token_local(loaded_local: Stratus) -> str:
    return token_for(loaded_local)
