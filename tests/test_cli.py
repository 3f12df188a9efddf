"""The ``stratus`` command line, and the real gunicorn server it starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from click.testing import CliRunner

from stratus.cli import main
from tests.conftest import free_port, wait_for_port


def env_for(home: Path) -> dict[str, str]:
    return {"STRATUS_HOME": str(home), "STRATUS_LOG_LEVEL": "WARNING"}


def test_sample_data_writes_weather_and_cities(tmp_path: Path) -> None:
    out = tmp_path / "w.csv"
    result = CliRunner().invoke(main, ["sample-data", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith(
        "city_id,date,hour,temp,wind_speed,description,precipitation,humidity"
    )
    assert (tmp_path / "w.cities.csv").read_text().count("\n") == 7
    assert "6 cities" in result.output


def test_ingest_prints_counts_and_json(tmp_path: Path) -> None:
    src = tmp_path / "obs.csv"
    src.write_text(
        "city_id,date,hour,temp,wind_speed,description,precipitation,humidity\n"
        "lima,2024-01-01,0100,20,1,clear sky,0,70\n"
        "lima,2024-01-01,0100,20,1,clear sky,0,70\n"
        "lima,2024-01-01,9900,20,1,clear sky,0,70\n"
    )
    runner = CliRunner()
    result = runner.invoke(main, ["ingest", str(src), "--json"], env=env_for(tmp_path / "h"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert (report["read"], report["written"], report["duplicates"], report["quarantined"]) == (
        3,
        1,
        1,
        1,
    )
    table = runner.invoke(main, ["ingest", str(src)], env=env_for(tmp_path / "h"))
    assert table.exit_code == 0
    assert "unchanged" in table.output and "quarantined" in table.output


def test_ingest_of_a_bad_file_exits_nonzero_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(main, ["ingest", str(bad)], env=env_for(tmp_path / "h"))
    assert result.exit_code == 1
    assert "missing column(s) city_id" in result.output


def test_invalid_setting_names_the_variable(tmp_path: Path) -> None:
    env = {**env_for(tmp_path), "STRATUS_PORT": "http"}
    result = CliRunner().invoke(main, ["ingest", "x.csv"], env=env)
    assert result.exit_code != 0
    assert "STRATUS_PORT" in str(result.output) + str(result.exception)


def test_serve_runs_gunicorn_with_sample_data(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        **env_for(tmp_path / "home"),
        "STRATUS_PORT": str(port),
        "STRATUS_WORKERS": "1",
    }
    bin_dir = Path(sys.executable).parent
    boot = subprocess.run(
        [str(bin_dir / "stratus"), "admin", "bootstrap"], env=env, capture_output=True, text=True
    )
    assert boot.returncode == 0, boot.stderr
    token = (tmp_path / "home" / "admin.token").read_text().strip()
    assert (tmp_path / "home" / "admin.token").stat().st_mode & 0o777 == 0o600
    auth = {"Authorization": f"Bearer {token}"}
    proc = subprocess.Popen(
        [str(bin_dir / "stratus"), "serve", "--with-sample-data"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, timeout=120)
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/health", timeout=10).json()["status"] == "ok"
        assert requests.get(f"{base}/api/v1/cities", timeout=10).status_code == 401
        cities = requests.get(f"{base}/api/v1/cities", headers=auth, timeout=10).json()
        assert cities["count"] == 6 and all(c["rows"] > 8000 for c in cities["data"])
        weather = requests.get(
            f"{base}/api/v1/weather",
            params={"city_id": "new-york-jfk", "start": "2013-06-01", "end": "2013-06-01"},
            headers=auth,
            timeout=10,
        )
        assert weather.status_code == 200 and weather.json()["count"] == 24
        bad = requests.get(
            f"{base}/api/v1/weather", params={"city_id": "x"}, headers=auth, timeout=10
        )
        assert bad.status_code == 400
        assert bad.headers["Content-Type"] == "application/problem+json"
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "GET /health" in out  # gunicorn access log


def test_second_load_is_skipped_when_data_exists(tmp_path: Path) -> None:
    runner = CliRunner()
    env = env_for(tmp_path / "home")
    first = runner.invoke(main, ["sample-data", "--load", "--if-empty"], env=env)
    assert first.exit_code == 0, first.output
    started = time.monotonic()
    again = runner.invoke(main, ["sample-data", "--load", "--if-empty"], env=env)
    assert again.exit_code == 0
    assert "already holds weather data" in again.output
    assert time.monotonic() - started < 30


def test_ingest_with_a_token_needs_modify(tmp_path: Path) -> None:
    from stratus.config import Settings
    from stratus.context import Stratus

    home = tmp_path / "home"
    stratus = Stratus.from_settings(Settings(home=home))
    stratus.bootstrap()
    ms = stratus.governance.metastore
    ms.create_principal("loader", "service_principal")
    token, _ = ms.create_token("loader", days=1)
    src = tmp_path / "obs.csv"
    src.write_text(
        "city_id,date,hour,temp,wind_speed,description,precipitation,humidity\n"
        "lima,2024-01-01,0100,20,1,clear sky,0,70\n"
    )
    runner = CliRunner()
    env = {**env_for(home), "STRATUS_TOKEN": token}
    denied = runner.invoke(main, ["ingest", str(src)], env=env)
    assert denied.exit_code != 0
    assert "does not exist" in denied.output  # no privilege at all: the table is invisible

    for kind, name, priv in (
        ("catalog", "main", "USE CATALOG"),
        ("schema", "main.weather", "USE SCHEMA"),
        ("table", "main.weather.hourly", "SELECT"),
    ):
        obj = ms.securable(kind, name)
        ms.update_grants(kind, obj.id, [{"principal": "loader", "add": [priv], "remove": []}])
    still = runner.invoke(main, ["ingest", str(src)], env=env)
    assert still.exit_code != 0 and "lacks MODIFY" in still.output

    hourly = ms.securable("table", "main.weather.hourly")
    ms.update_grants("table", hourly.id, [{"principal": "loader", "add": ["MODIFY"], "remove": []}])
    ok = runner.invoke(main, ["ingest", str(src), "--json"], env=env)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout.strip().splitlines()[-1])["written"] == 1
    # the commit names the token's principal (DESCRIBE HISTORY's userName)
    last = stratus.sql.execute("DESCRIBE HISTORY main.weather.hourly LIMIT 1").data.to_pylist()
    assert last[0]["userName"] == "loader"
    stratus.close()
