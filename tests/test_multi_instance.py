"""Several instances, one truth: two `stratus serve` processes (each with its own home, as on
two machines) on one PostgreSQL metastore, one Azurite container and Redis for the rate-limit
counters. What one instance changes, the other enforces within the documented cache time."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from deltalake import DeltaTable

from stratus.catalog.metastore import MetastoreService
from stratus.config import Settings
from stratus.lakehouse.storage import Storage
from stratus.lakehouse.tables import Lakehouse
from stratus.security.authz import Authorizer
from stratus.weather.sample import cities_path_for
from tests.conftest import AZURITE_ACCOUNT, AZURITE_KEY
from tests.services import Postgres, Redis
from tests.test_startup import STRATUS, Server

UC = "/api/2.1/unity-catalog"
# the documented bound: other instances see an authorization change (grant, revoke, token
# revocation) within the authorizer's generation check interval
CACHE_SECONDS = Authorizer.__init__.__defaults__[0]  # type: ignore[index]
# ...and a commit made through another instance within the lakehouse's refresh interval (remote
# storage: each process re-reads a table's log at most that often)
REFRESH_SECONDS = Lakehouse.__init__.__defaults__[0]  # type: ignore[index]
CITIES = ("miami", "greensboro")
FIRST_DAY = (dt.date(1961, 2, 1), dt.date(1980, 4, 1))  # of their sample observations
IP_LIMIT = 30


@dataclass
class Pair:
    a: Server
    b: Server
    env_a: dict[str, str]
    metastore: MetastoreService
    admin: str
    redis: Redis

    def call(self, server: Server, method: str, path: str, token: str | None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, server.url + path, headers=headers, timeout=60, **kw)

    def history(self, full_name: str) -> list[dict[str, Any]]:
        """The Delta log of a table, read straight from the storage."""
        r = self.call(self.b, "GET", f"{UC}/tables/{full_name}", self.admin)
        assert r.status_code == 200, r.text
        options = Storage.from_settings(Settings.from_env(self.env_a)).options
        return DeltaTable(r.json()["storage_location"], storage_options=options).history()

    def sql(self, server: Server, statement: str) -> dict[str, Any]:
        r = self.call(server, "POST", "/api/v1/sql", self.admin, json={"statement": statement})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def _small_weather(sample_csv: Path, out: Path) -> Path:
    with sample_csv.open() as fh, out.open("w", newline="") as dst:
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(dst, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        kept = dict.fromkeys(CITIES, 0)
        for row in reader:
            if row["city_id"] in kept and kept[row["city_id"]] < 24 * 40:
                kept[row["city_id"]] += 1
                writer.writerow(row)
    return out


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: Postgres,
    redis: Redis,
    azurite: str,
    sample_csv: Path,
) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("multi")
    url = postgres.create_database("multi")
    shared = {
        "STRATUS_METASTORE_URL": url,
        "STRATUS_STORAGE_URL": f"az://m{secrets.token_hex(6)}/lakehouse",
        "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT,
        "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
        "AZURE_STORAGE_ENDPOINT": azurite,
        "STRATUS_RATE_LIMIT_STORAGE": redis.url,
        "STRATUS_RATE_LIMIT_IP": f"{IP_LIMIT}/day",  # a fixed window no test run crosses
        # one master key and one URL-signing secret for the whole deployment
        "STRATUS_KEY_PROVIDER": "env",
        "STRATUS_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "STRATUS_SHARING_SECRET": secrets.token_urlsafe(32),
        "STRATUS_UI_SECRET": secrets.token_urlsafe(32),  # Explorer cookies valid on both
        "STRATUS_WORKERS": "2",
        "STRATUS_JOB_WORKERS": "1",
        "STRATUS_LOG_LEVEL": "INFO",
    }
    env_a = {**shared, "STRATUS_HOME": str(tmp / "a")}
    env_b = {**shared, "STRATUS_HOME": str(tmp / "b")}
    a, b = Server(env_a, tmp / "a.log"), Server(env_b, tmp / "b.log")  # started together
    metastore: MetastoreService | None = None
    try:
        a.wait_healthy()
        b.wait_healthy()
        weather = _small_weather(sample_csv, tmp / "weather.csv")
        for path, table in ((cities_path_for(sample_csv), "cities"), (weather, "hourly")):
            subprocess.run(
                [STRATUS, "ingest", str(path), "--table", table, "--json"],
                env={**os.environ, **env_a},
                check=True,
                capture_output=True,
            )
        metastore = MetastoreService(url)
        admin, _ = metastore.create_token("admin", days=1)
        yield Pair(a, b, env_a, metastore, admin, redis)
    finally:
        for server in (a, b):
            server.stop()
        if metastore is not None:
            metastore.engine.dispose()
    for log in (tmp / "a.log", tmp / "b.log"):
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_the_rate_limit_is_shared(pair: Pair) -> None:
    import redis as redis_client

    codes = [pair.call(s, "GET", "/version", None).status_code for s in [pair.a] * 20]
    codes += [pair.call(s, "GET", "/version", None).status_code for s in [pair.b] * 20]
    try:
        # one budget for both instances (per worker, or per instance, would allow 20 + 20)
        assert codes.count(200) == IP_LIMIT, codes
        assert codes.count(429) == 40 - IP_LIMIT
        assert codes[:20] == [200] * 20 and 429 in codes[20:]
    finally:  # a fresh budget for the other tests' unauthenticated calls
        redis_client.Redis.from_url(pair.redis.url).flushdb()


def test_a_grant_and_revoke_through_one_is_enforced_by_the_other(pair: Pair) -> None:
    ms = pair.metastore
    ms.create_principal("ana")
    ana, _ = ms.create_token("ana", days=1)
    query = {"statement": "SELECT count(*) AS n FROM main.weather.hourly"}

    def select_on_b() -> list[Any]:  # every worker of B
        return [pair.call(pair.b, "POST", "/api/v1/sql", ana, json=query) for _ in range(4)]

    assert {r.status_code for r in select_on_b()} <= {403, 404}
    for kind, name, privs in (
        ("catalog", "main", ["USE CATALOG"]),
        ("schema", "main.weather", ["USE SCHEMA"]),
        ("table", "main.weather.hourly", ["SELECT"]),
    ):
        body = {"changes": [{"principal": "ana", "add": privs}]}
        r = pair.call(pair.a, "PATCH", f"{UC}/permissions/{kind}/{name}", pair.admin, json=body)
        assert r.status_code == 200, r.text
    time.sleep(CACHE_SECONDS + 0.1)
    for r in select_on_b():
        assert r.status_code == 200, r.text
        assert r.json()["data"] == [{"n": 24 * 40 * len(CITIES)}]
    body = {"changes": [{"principal": "ana", "remove": ["SELECT"]}]}
    path = f"{UC}/permissions/table/main.weather.hourly"
    assert pair.call(pair.a, "PATCH", path, pair.admin, json=body).status_code == 200
    time.sleep(CACHE_SECONDS + 0.1)
    assert {r.status_code for r in select_on_b()} <= {403, 404}


def test_a_token_revoked_on_one_is_refused_by_the_other(pair: Pair) -> None:
    ms = pair.metastore
    ms.create_principal("tom")
    secret, token = ms.create_token("tom", days=1)
    for _ in range(4):  # resolved (and cached) by B's workers
        assert pair.call(pair.b, "GET", f"{UC}/catalogs", secret).status_code == 200
    subprocess.run(  # revoked on instance A's machine
        [STRATUS, "admin", "revoke-token", token.id],
        env={**os.environ, **pair.env_a},
        check=True,
        capture_output=True,
    )
    time.sleep(CACHE_SECONDS + 0.1)
    for server in (pair.a, pair.b, pair.b, pair.b):
        r = pair.call(server, "GET", f"{UC}/catalogs", secret)
        assert r.status_code == 401, r.text


def test_a_token_issued_and_revoked_over_http_on_one_is_refused_by_the_other(pair: Pair) -> None:
    pair.metastore.create_principal("ann")
    first, _ = pair.metastore.create_token("ann", days=1)
    issued = pair.call(pair.a, "POST", "/api/v1/tokens", first, json={"comment": "via A"})
    assert issued.status_code == 201, issued.text
    secret, token_id = issued.json()["token"], issued.json()["token_info"]["id"]
    for _ in range(4):  # resolved (and cached) by B's workers
        assert pair.call(pair.b, "GET", "/api/v1/tokens", secret).status_code == 200
    revoked = pair.call(pair.a, "DELETE", f"/api/v1/tokens/{token_id}", first)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    time.sleep(CACHE_SECONDS + 0.1)
    for server in (pair.a, pair.b, pair.b, pair.b):
        assert pair.call(server, "GET", "/api/v1/tokens", secret).status_code == 401
    assert pair.call(pair.b, "GET", "/api/v1/tokens", first).status_code == 200


def test_an_explorer_session_signed_in_on_one_is_served_and_ended_by_the_other(
    pair: Pair,
) -> None:
    """Sessions live in the metastore: no sticky sessions needed behind a load balancer."""
    pair.metastore.create_principal("una")
    secret, _ = pair.metastore.create_token("una", days=1)
    browser = requests.Session()
    form = browser.get(pair.a.url + "/ui/login", timeout=60)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    signed_in = browser.post(
        pair.a.url + "/ui/login",
        data={"csrf_token": csrf.group(1), "token": secret},
        allow_redirects=False,
        timeout=60,
    )
    assert signed_in.status_code == 303, signed_in.text
    cookie = {"stratus-ui": browser.cookies["stratus-ui"]}
    for _ in range(4):  # both of B's workers
        page = requests.get(pair.b.url + "/ui/", cookies=cookie, allow_redirects=False, timeout=60)
        assert page.status_code == 200 and "una" in page.text
    home = requests.get(pair.a.url + "/ui/", cookies=cookie, timeout=60)
    out = requests.post(
        pair.b.url + "/ui/logout",
        cookies=cookie,
        data={"csrf_token": re.findall(r'name="csrf_token" value="([^"]+)"', home.text)[-1]},
        allow_redirects=False,
        timeout=60,
    )
    assert out.status_code == 303, out.text
    gone = requests.get(pair.a.url + "/ui/", cookies=cookie, allow_redirects=False, timeout=60)
    assert gone.status_code in (302, 303) and "/ui/login" in gone.headers["Location"]


def test_jobs_submitted_to_both_run_exactly_once(pair: Pair) -> None:
    ids = []
    for i in range(6):
        server = (pair.a, pair.b)[i % 2]
        body = {
            "type": "daily_summary",
            "city_ids": [CITIES[i % 2]],
            "start": (FIRST_DAY[i % 2] + dt.timedelta(days=i)).isoformat(),
            "end": (FIRST_DAY[i % 2] + dt.timedelta(days=i + 10)).isoformat(),
        }
        r = pair.call(server, "POST", "/api/v1/jobs", pair.admin, json=body)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    deadline = time.monotonic() + 240
    docs: dict[str, Any] = {}
    while time.monotonic() < deadline and len(docs) < len(ids):
        for i, job_id in enumerate(ids):
            if job_id in docs:
                continue
            server = (pair.b, pair.a)[i % 2]  # read through the other instance
            doc = pair.call(server, "GET", f"/api/v1/jobs/{job_id}", pair.admin).json()
            if doc["state"] in ("succeeded", "failed", "cancelled"):
                docs[job_id] = doc
        time.sleep(0.3)
    assert len(docs) == len(ids), "jobs did not finish"
    for doc in docs.values():
        assert doc["state"] == "succeeded", doc
        assert doc["attempts"] == 1, doc  # claimed once, by one runner of one instance
        assert doc["rows_written"] > 0, doc
    # the output table's Delta log holds one commit per job, each at the version it reported
    history = pair.history("main.jobs.daily_summary")
    commits = {h["stratus.job_id"]: h["version"] for h in history if "stratus.job_id" in h}
    assert commits == {doc["id"]: doc["output_version"] for doc in docs.values()}, history
    assert len(set(commits.values())) == len(ids)


def test_concurrent_ingests_through_both_lose_no_commit(pair: Pair) -> None:
    pair.sql(pair.a, "CREATE SCHEMA main.lab")
    pair.sql(pair.a, "CREATE TABLE main.lab.events (id INT NOT NULL, via STRING)")
    errors: list[str] = []

    def insert(server: Server, via: str, first: int) -> None:
        for n in range(first, first + 5):
            statement = f"INSERT INTO main.lab.events VALUES ({n * 3}, '{via}'), "
            statement += f"({n * 3 + 1}, '{via}'), ({n * 3 + 2}, '{via}')"
            r = pair.call(server, "POST", "/api/v1/sql", pair.admin, json={"statement": statement})
            if r.status_code != 200:
                errors.append(r.text)

    threads = [
        threading.Thread(target=insert, args=(server, name, k * 5))
        for k, (server, name) in enumerate(
            [(pair.a, "a"), (pair.b, "b"), (pair.a, "a"), (pair.b, "b")]
        )
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = pair.history("main.lab.events")
    assert [h["operation"] for h in history].count("WRITE") == 20  # one commit per INSERT
    time.sleep(REFRESH_SECONDS + 0.1)  # B's snapshot of the table may be that old
    rows = pair.sql(pair.b, "SELECT id, via FROM main.lab.events ORDER BY id")["data"]
    assert [r["id"] for r in rows] == list(range(60))  # 20 commits of 3 rows, none lost
    assert sum(r["via"] == "a" for r in rows) == 30
