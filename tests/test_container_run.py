"""The container image, built from the project's own Dockerfile with podman, and run.

What a user gets from ``docker build`` + ``docker run``: ``/health`` answers, the sample data of
``make run`` is queryable with the admin token the image's default command creates, a request
without a token gets 401, every process runs as the image's unprivileged user, and a stop
(SIGTERM, as ``docker stop`` sends) loses nothing: an ingest and audited requests made just before
it are all there when a new container starts on the same volume.

Podman works here only with the settings in ``../shared/docs/containers-here.md``;
``scripts/container-test-prereqs.sh`` installs it if needed and prepares the two caches (the base
image ``localhost/stratus-base:local`` and ``wheelhouse/``). Nothing is skipped: if podman cannot
be installed or run, these tests fail and say why. The quick suite may leave them out with
``-m "not container"``; ``make test`` (and so ``.ci/run``) runs them.

Everything the run creates (image, containers, volume) is removed at the end; the base image and
the wheelhouse stay as caches. Timings are printed (``pytest -s``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests import container_support as cs

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

UID = 10001  # the Dockerfile's fixed user and group
PROBE_TABLE = "main.ops.container_probe"
# Audit records wait in each worker's queue for up to a minute (the most the setting allows;
# default 1 s): the records of the requests made just before the stop are then certainly still
# queued, and only the server's clean shutdown on SIGTERM can save them.
SERVER_ENV = {"STRATUS_AUDIT_FLUSH_SECONDS": "60"}
# podman/docker stop: SIGTERM, then SIGKILL after this many seconds (docker's default is 10).
# gunicorn gives its workers graceful_timeout = 20 s to finish; allow that and some margin.
STOP_GRACE_SECONDS = 30
PROBE_ROWS = [
    {"probe_id": "1", "site": "north", "reading": "1.5"},
    {"probe_id": "2", "site": "south", "reading": "2.5"},
    {"probe_id": "3", "site": "east", "reading": "3.5"},
]


@dataclass
class Deployment:
    """The image, its data volume, and the container currently running on it."""

    session: cs.Session
    image: str
    volume: str
    container: str = ""
    base_url: str = ""
    token: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def start(self, label: str) -> None:
        port = cs.free_port()
        self.container = self.session.run(self.image, self.volume, port, env=SERVER_ENV)
        self.base_url = f"http://127.0.0.1:{port}"
        self.timings[f"{label}: start until /health answers"] = cs.wait_for_health(
            self.base_url, self.container
        )
        self.token = cs.exec_(self.container, "cat", "/data/admin.token").strip()

    def get(
        self,
        path: str,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> requests.Response:
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        return requests.get(f"{self.base_url}{path}", headers=headers, params=params, timeout=30)


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    started = time.monotonic()
    timings: dict[str, float] = {}
    session = cs.Session()
    try:
        try:
            removed = cs.remove_orphans() if _podman_runs() else []
            if removed:
                print(f"\nremoved leftovers of an earlier, dead test run: {', '.join(removed)}")
            timings["prereqs (tools, base image, wheelhouse)"], output = cs.prepare()
            print("\n" + output.strip())
            image, timings["podman build"], _ = session.build()
            dep = Deployment(session, image, session.volume(), timings=timings)
            dep.start("first container")
        except cs.PodmanError as exc:
            pytest.fail(f"the container could not be built or started: {exc}", pytrace=False)
        yield dep
    finally:
        problems = session.cleanup()
        timings["total"] = time.monotonic() - started
        print("\ncontainer test timings:")
        for what, seconds in timings.items():
            print(f"  {what:<62} {seconds:6.1f} s")
    assert not problems, f"cleanup failed: {problems}"


def _podman_runs() -> bool:
    try:
        return cs.podman("version", check=False).returncode == 0
    except cs.PodmanError:
        return False


# --------------------------------------------------------------------------------------------


def test_health_answers(deployment: Deployment) -> None:
    resp = deployment.get("/health", auth=False)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "ok"


def test_sample_data_is_queryable_with_the_admin_token(deployment: Deployment) -> None:
    token_mode = cs.exec_(deployment.container, "stat", "-c", "%a %u", "/data/admin.token")
    assert token_mode.split() == ["600", str(UID)], "admin.token must be 0600 and the user's"
    cities = deployment.get("/api/v1/cities")
    assert cities.status_code == 200, cities.text
    body = cities.json()
    assert body["count"] == 6, body
    assert all(c["rows"] > 8000 for c in body["data"]), body
    weather = deployment.get(
        "/api/v1/weather",
        params={"city_id": "new-york-jfk", "start": "2013-06-01", "end": "2013-06-01"},
    )
    assert weather.status_code == 200, weather.text
    assert weather.json()["count"] == 24


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-real-token"}, {"Authorization": "Basic YWRtaW46YWRtaW4="}],
    ids=["no-token", "wrong-token", "basic-auth"],
)
def test_requests_without_a_valid_token_get_401(
    deployment: Deployment, headers: dict[str, str]
) -> None:
    resp = deployment.get("/api/v1/cities", auth=False, headers=headers)
    assert resp.status_code == 401, resp.text
    assert "data" not in resp.json()


def test_every_process_runs_as_the_unprivileged_user(deployment: Deployment) -> None:
    container = deployment.container
    assert cs.exec_(container, "id", "-u").strip() == str(UID)
    assert cs.exec_(container, "id", "-g").strip() == str(UID)
    assert cs.inspect(container)["Config"]["User"] == f"{UID}:{UID}"

    statuses = cs.process_statuses(container)
    assert 1 in statuses, f"no /proc/1/status in {sorted(statuses)}"
    cmdline = cs.exec_(container, "cat", "/proc/1/cmdline").replace("\0", " ")
    assert "stratus" in cmdline and "serve" in cmdline, f"PID 1 is {cmdline!r}"
    # the gunicorn master (PID 1) and its workers: real, effective, saved and filesystem ids
    servers = [pid for pid, st in statuses.items() if st.get("Name") != "sh"]
    assert len(servers) >= 2, f"expected the master and its workers, got {statuses}"
    for pid in servers:
        st = statuses[pid]
        assert cs.ids(st["Uid"]) == [UID] * 4, f"PID {pid} ({st.get('Name')}): Uid {st['Uid']}"
        assert cs.ids(st["Gid"]) == [UID] * 4, f"PID {pid} ({st.get('Name')}): Gid {st['Gid']}"
        assert int(st["CapEff"], 16) == 0, f"PID {pid} has capabilities {st['CapEff']}"
        assert st.get("NoNewPrivs") == "1" or int(st["CapPrm"], 16) == 0

    # the installed code is root's and read-only for the service user; only /data is its own
    writable = cs.exec_(
        container,
        "sh",
        "-c",
        "for d in /opt/stratus /opt/stratus/bin /opt/stratus/lib/python3.11/site-packages/stratus"
        " /data; do [ -w $d ] && echo $d; done; true",
    ).split()
    assert writable == ["/data"], f"writable for uid {UID}: {writable}"


def test_a_stop_loses_nothing(deployment: Deployment) -> None:
    """Ingest and audited requests right before SIGTERM; a new container sees all of it."""
    dep = deployment
    before_cities = dep.get("/api/v1/cities").json()["data"]

    # 1. an ingest with the CLI in the running container (it audits as service "cli")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(PROBE_ROWS[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(PROBE_ROWS)
    cs.exec_(dep.container, "sh", "-c", "cat > /tmp/probe.csv", stdin=buf.getvalue())
    out = cs.exec_(
        dep.container,
        "stratus",
        "ingest",
        "/tmp/probe.csv",
        "--table",
        PROBE_TABLE,
        "--key",
        "probe_id",
        "--json",
    )
    report = json.loads(out.strip().splitlines()[-1])
    assert report["written"] == len(PROBE_ROWS), report

    # 2. audited API requests, acknowledged, then stop at once: their audit records are still
    #    queued in the workers (written in batches), so only a clean shutdown keeps them
    request_ids = [f"ctest-{uuid.uuid4().hex}" for _ in range(3)]
    for rid in request_ids:
        resp = dep.get(f"/api/v1/tables/{PROBE_TABLE}/rows", headers={"X-Request-Id": rid})
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["data"]) == len(PROBE_ROWS)
    token = dep.token

    started = time.monotonic()
    cs.podman("stop", "--time", str(STOP_GRACE_SECONDS), dep.container, timeout=120)
    dep.timings["podman stop (SIGTERM until exit)"] = stopped_after = time.monotonic() - started
    state = cs.inspect(dep.container)["State"]
    assert state["ExitCode"] == 0, (
        f"the server did not exit cleanly on SIGTERM (exit {state['ExitCode']} after "
        f"{stopped_after:.1f} s; 137 = killed):\n{cs.logs(dep.container)}"
    )
    first_log = cs.logs(dep.container, lines=400)
    cs.podman("rm", dep.container)
    shutdown = [
        line
        for line in first_log.splitlines()
        if any(m in line for m in ("Handling signal", "exiting", "Shutting down", "SIGKILL"))
    ]
    print("\nshutdown of the first container:\n  " + "\n  ".join(shutdown))
    for sign in ("was sent SIGKILL", "WORKER TIMEOUT"):
        assert sign not in first_log, f"a worker was killed on the way down:\n{shutdown}"

    # 3. a new container on the same volume
    dep.start("second container (same volume)")
    assert dep.token == token, "the admin token changed across the restart"
    second_log = cs.logs(dep.container, lines=400)
    assert "sample data not loaded" in second_log, second_log

    rows = dep.get(f"/api/v1/tables/{PROBE_TABLE}/rows", params={"limit": 100})
    assert rows.status_code == 200, rows.text
    got = sorted((str(r["probe_id"]), r["site"], float(r["reading"])) for r in rows.json()["data"])
    want = sorted((r["probe_id"], r["site"], float(r["reading"])) for r in PROBE_ROWS)
    assert got == want

    after_cities = dep.get("/api/v1/cities").json()["data"]
    assert after_cities == before_cities, "the weather data changed across the restart"

    audit = dep.get("/api/v1/audit", params={"since": "2000-01-01", "limit": 10_000})
    assert audit.status_code == 200, audit.text
    records = audit.json()["data"]
    seen = {r["request_id"] for r in records}
    missing = [rid for rid in request_ids if rid not in seen]
    assert not missing, (
        f"audit records of acknowledged requests lost by the stop: {missing}\n"
        f"first container's log (tail):\n{cs.tail(first_log, 40)}"
    )
    for rid in request_ids:
        rec = next(r for r in records if r["request_id"] == rid)
        assert rec["action_name"] == "readTableRows" and rec["status_code"] == 200, rec
    cli = [
        r
        for r in records
        if r["service_name"] == "cli"
        and r["action_name"] == "ingest"
        and r["securable_full_name"] == PROBE_TABLE
    ]
    assert cli and cli[0]["outcome"] == "allowed", "the CLI ingest's audit record is missing"


# --------------------------------------------------------------------------------------------
# compose.yaml, read by a compose implementation (podman-compose, from the test extra). It needs
# the podman binary, no engine; it checks YAML, interpolation and volume references (unknown
# keys and the rest are the structural tests' job, in test_container_files.py).


def _compose_config(
    path: Path, env: dict[str, str] | None = None, profile: str | None = None
) -> dict[str, Any]:
    exe = shutil.which("podman-compose", path=str(Path(sys.executable).parent)) or shutil.which(
        "podman-compose"
    )
    assert exe, "podman-compose is missing: install the test extra (pip install -e '.[test]')"
    proc = subprocess.run(
        [exe, "--file", str(path), *(["--profile", profile] if profile else []), "config"],
        cwd=path.parent,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"podman-compose config {path.name} failed:\n{proc.stderr}"
    config: dict[str, Any] = yaml.safe_load(proc.stdout)
    return config


def _args(value: list[str] | dict[str, str]) -> dict[str, str]:
    if isinstance(value, dict):
        return {k: str(v) for k, v in value.items()}
    return dict(item.split("=", 1) for item in value)


def test_compose_config_validates(tmp_path: Path) -> None:
    assert shutil.which("podman"), "podman is missing: run scripts/container-test-prereqs.sh"
    config = _compose_config(cs.ROOT / "compose.yaml")
    assert set(config["services"]) == {"azurite", "stratus"}
    # (podman-compose lists the volumes of every profile, the services of the active ones)
    assert {"azurite-data", "stratus-data"} <= set(config["volumes"])
    stratus = config["services"]["stratus"]
    assert Path(stratus["build"]["context"]).resolve() == cs.ROOT
    assert _args(stratus["build"]["args"]) == {"BASE_IMAGE": "python:3.11-slim"}
    assert stratus["depends_on"]["azurite"]["condition"] == "service_healthy"
    assert "stratus-data:/data" in stratus["volumes"]
    env = stratus["environment"]
    assert env["STRATUS_STORAGE_URL"].startswith("az://")
    assert env["AZURE_STORAGE_ENDPOINT"].startswith("http://azurite:10000/")

    # every ${VAR:-default} can be overridden, e.g. the base image this machine builds with
    overridden = _compose_config(
        cs.ROOT / "compose.yaml",
        {"STRATUS_BASE_IMAGE": cs.BASE_IMAGE, "STRATUS_WORKERS": "4", "AZURITE_TAG": "3.99.0"},
    )
    service = overridden["services"]["stratus"]
    assert _args(service["build"]["args"]) == {"BASE_IMAGE": cs.BASE_IMAGE}
    assert str(service["environment"]["STRATUS_WORKERS"]) == "4"
    assert overridden["services"]["azurite"]["image"].endswith(":3.99.0")

    # and the check can fail: a volume nobody declared is rejected
    broken = tmp_path / "compose.yaml"
    broken.write_text((cs.ROOT / "compose.yaml").read_text().replace("- stratus-data:", "- nope:"))
    with pytest.raises(AssertionError, match="not defined"):
        _compose_config(broken)


def test_compose_multi_profile_config_validates() -> None:
    """The multi-instance profile: two instances, PostgreSQL and Redis, as compose reads them."""
    assert shutil.which("podman"), "podman is missing: run scripts/container-test-prereqs.sh"
    config = _compose_config(cs.ROOT / "compose.yaml", profile="multi")
    assert {"postgres", "redis", "stratus-1", "stratus-2"} <= set(config["services"])
    assert {"postgres-data", "stratus-multi-data"} <= set(config["volumes"])
    one, two = config["services"]["stratus-1"], config["services"]["stratus-2"]
    assert one["environment"] == two["environment"]
    assert one["environment"]["STRATUS_METASTORE_URL"].startswith("postgresql+psycopg://")
    assert one["environment"]["STRATUS_RATE_LIMIT_STORAGE"].startswith("redis://redis:")
    assert two["depends_on"]["stratus-1"]["condition"] == "service_healthy"
    password = _compose_config(
        cs.ROOT / "compose.yaml", {"STRATUS_POSTGRES_PASSWORD": "s3cret"}, profile="multi"
    )["services"]["stratus-2"]["environment"]["STRATUS_METASTORE_URL"]
    assert ":s3cret@postgres:5432/" in password
