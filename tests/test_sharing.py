"""Delta Sharing: the official ``delta-sharing`` client against a live Stratus, on local disk and
on Azurite; raw protocol checks; the admin API and CLI; predicates and URL signing.

Shares in the live fixture (recipients in brackets):

- ``weather`` [acme]: ``weather.hourly`` (main.weather.hourly, history shared) and
  ``weather.two_cities`` (three columns, rows of two cities: a derived copy)
- ``hr`` [acme]: main.hr.employees as ``hr.employees_omit`` (PII left out) and
  ``hr.employees_mask`` (PII masked, history shared)
- ``secret`` [globex]: ``weather.cities``
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import delta_sharing
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests
from click.testing import CliRunner
from deltalake import DeltaTable
from requests.exceptions import HTTPError
from werkzeug.serving import make_server

from stratus.api import create_app
from stratus.catalog import registry
from stratus.cli import main
from stratus.config import Settings
from stratus.context import Stratus
from stratus.datasets.employees import write_employees_csv
from stratus.engine import TableScan
from stratus.security.audit import AUDIT
from stratus.security.governance import LOCAL_ADMIN
from stratus.sharing import protocol as p
from stratus.sharing.signing import SignatureError, UrlSigner, load_secret
from stratus.weather.sample import cities_path_for
from tests.conftest import (
    azure_settings,
    free_port,
    metastore_url_for,
    token_for,
    wait_for_port,
)

ROWS_PER_CITY = 400
EMPLOYEES = 40
EMAIL_MASK = re.compile(r"^.\*\*\*@example\.(com|org|net)$")


@dataclass
class Live:
    backend: str
    url: str
    stratus: Stratus
    base: Path
    cities: list[str]
    emails: list[str]
    secrets: dict[str, str]
    profiles: dict[str, Path]

    @property
    def endpoint(self) -> str:
        return f"{self.url}/delta-sharing"

    def table_url(self, who: str, name: str) -> str:
        return f"{self.profiles[who]}#{name}"

    def call(self, method: str, path: str, who: str | None = "acme", **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if who is not None:
            headers["Authorization"] = f"Bearer {self.secrets[who]}"
        return requests.request(method, self.endpoint + path, headers=headers, timeout=30, **kw)

    def new_recipient(self, days: float = 1.0) -> tuple[str, str, str]:
        """A fresh recipient granted ``weather``: (name, secret, token id)."""
        name = f"r{uuid.uuid4().hex[:8]}"
        sharing = self.stratus.sharing
        _, secret, tok = sharing.admin.create_recipient(LOCAL_ADMIN, name, days=days)
        sharing.admin.grant(LOCAL_ADMIN, "weather", name)
        return name, secret, tok.id

    def profile_for(self, secret: str) -> Path:
        path = self.base / f"{uuid.uuid4().hex[:8]}.share"
        doc = {"shareCredentialsVersion": 1, "endpoint": self.endpoint, "bearerToken": secret}
        path.write_text(json.dumps(doc))
        return path


def _small_weather(sample_csv: Path, out: Path) -> tuple[Path, list[str]]:
    table = pacsv.read_csv(sample_csv)
    cities = sorted(set(table.column("city_id").to_pylist()))[:3]
    parts = [
        table.filter(pc.equal(table.column("city_id"), c)).slice(0, ROWS_PER_CITY) for c in cities
    ]
    pacsv.write_csv(pa.concat_tables(parts), out)
    return out, cities


# local disk and Azurite with the SQLite metastore; local disk with PostgreSQL's
@pytest.fixture(scope="module", params=["local", "azure", "local-postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sample_csv: Path
) -> Iterator[Live]:
    base = tmp_path_factory.mktemp(f"sharing-{request.param}")
    if request.param == "local":
        settings = Settings(home=base / "home")
    elif request.param == "local-postgresql":
        url = metastore_url_for(request, "postgresql")
        settings = Settings(home=base / "home", metastore_url=url)
    else:
        settings = azure_settings(request.getfixturevalue("azurite"), base / "home")
    stratus = Stratus.from_settings(settings)
    stratus.bootstrap()
    weather_csv, cities = _small_weather(sample_csv, base / "weather.csv")
    stratus.ingest.ingest(cities_path_for(sample_csv), "cities")
    stratus.ingest.ingest(weather_csv, "hourly")
    employees = base / "employees.csv"
    write_employees_csv(employees, EMPLOYEES)
    emails = pacsv.read_csv(employees).column("email").to_pylist()
    stratus.tables.ingest(employees, "main.hr.employees", owner="admin", key=("employee_id",))

    sharing = stratus.sharing
    sharing.admin.create_share(LOCAL_ADMIN, "weather", comment="hourly observations")
    sharing.admin.add_table(LOCAL_ADMIN, "weather", "main.weather.hourly", history=True)
    sharing.admin.add_table(
        LOCAL_ADMIN,
        "weather",
        "main.weather.hourly",
        shared_as="weather.two_cities",
        columns=["city_id", "ts", "temp"],
        row_filter=f"city_id IN ('{cities[0]}', '{cities[1]}')",
    )
    sharing.admin.create_share(LOCAL_ADMIN, "hr")
    sharing.admin.add_table(LOCAL_ADMIN, "hr", "main.hr.employees", shared_as="hr.employees_omit")
    sharing.admin.add_table(
        LOCAL_ADMIN,
        "hr",
        "main.hr.employees",
        shared_as="hr.employees_mask",
        pii="mask",
        history=True,
    )
    sharing.admin.create_share(LOCAL_ADMIN, "secret")
    sharing.admin.add_table(LOCAL_ADMIN, "secret", "main.weather.cities")
    secrets_: dict[str, str] = {}
    for name, shares in (("acme", ("weather", "hr")), ("globex", ("secret",))):
        _, secret, _ = sharing.admin.create_recipient(LOCAL_ADMIN, name, days=7)
        secrets_[name] = secret
        for share in shares:
            sharing.admin.grant(LOCAL_ADMIN, share, name)

    app = create_app(stratus=stratus)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="sharing-live", daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        live = Live(
            request.param.split("-")[0],  # the storage: local or azure
            f"http://127.0.0.1:{port}",
            stratus,
            base,
            cities,
            emails,
            {},
            {},
        )
        for name, secret in secrets_.items():
            live.secrets[name] = secret
            live.profiles[name] = live.profile_for(secret)
        yield live
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        stratus.close()


def _count(live: Live, sql: str) -> int:
    spec = registry.HOURLY
    scan = TableScan(spec, live.stratus.lakehouse.prune(spec))
    return int(live.stratus.engine.query(sql, {"t": scan}).column(0)[0].as_py())


def _lines(resp: requests.Response) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def _path(name: str) -> str:
    share, schema, table = name.split(".")
    return f"/shares/{share}/schemas/{schema}/tables/{table}"


def _payload(token: str) -> dict[str, Any]:
    payload = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _files(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line["file"] for line in lines if "file" in line]


# ---- the official client ---------------------------------------------------------------------
def test_listing_shows_only_the_recipients_shares(live: Live) -> None:
    acme = delta_sharing.SharingClient(str(live.profiles["acme"]))
    assert sorted(s.name for s in acme.list_shares()) == ["hr", "weather"]
    tables = {(t.share, t.schema, t.name) for t in acme.list_all_tables()}
    assert tables == {
        ("weather", "weather", "hourly"),
        ("weather", "weather", "two_cities"),
        ("hr", "hr", "employees_omit"),
        ("hr", "hr", "employees_mask"),
    }
    schemas = acme.list_schemas(delta_sharing.Share("hr"))
    assert [s.name for s in schemas] == ["hr"]
    globex = delta_sharing.SharingClient(str(live.profiles["globex"]))
    assert [(t.share, t.schema, t.name) for t in globex.list_all_tables()] == [
        ("secret", "weather", "cities")
    ]


def test_load_as_pandas_with_a_predicate_and_a_limit(live: Live) -> None:
    url = live.table_url("acme", "weather.weather.hourly")
    everything = delta_sharing.load_as_pandas(url)
    assert len(everything) == _count(live, "SELECT count(*) FROM {t}")
    assert list(everything.columns) == [
        "city_id",
        "date",
        "hour",
        "ts",
        "temp",
        "wind_speed",
        "description",
        "precipitation",
        "humidity",
    ]
    assert set(everything["city_id"]) == set(live.cities)

    city = live.cities[1]
    hint = json.dumps(
        {
            "op": "equal",
            "children": [
                {"op": "column", "name": "city_id", "valueType": "string"},
                {"op": "literal", "value": city, "valueType": "string"},
            ],
        }
    )
    one_city = delta_sharing.load_as_pandas(url, jsonPredicateHints=hint)
    assert set(one_city["city_id"]) == {city}  # the server returned only that city's files
    assert len(one_city) == _count(live, f"SELECT count(*) FROM {{t}} WHERE city_id = '{city}'")

    limited = delta_sharing.load_as_pandas(url, limit=25, jsonPredicateHints=hint)
    assert len(limited) == 25 and set(limited["city_id"]) == {city}


def test_server_side_pruning_by_predicates_and_limit(live: Live) -> None:
    table = "weather.weather.hourly"
    all_files = _files(_lines(live.call("POST", _path(table) + "/query", json={})))
    city = live.cities[0]
    hinted = _files(
        _lines(
            live.call(
                "POST", _path(table) + "/query", json={"predicateHints": [f"city_id = '{city}'"]}
            )
        )
    )
    assert hinted and {f["partitionValues"]["city_id"] for f in hinted} == {city}
    assert len(hinted) < len(all_files)
    # statistics prune too: no observation is hotter than 60 °C
    hot = _files(
        _lines(live.call("POST", _path(table) + "/query", json={"predicateHints": ["temp > 60"]}))
    )
    assert hot == []
    # unparseable hints are skipped (best effort), never an error
    same = _files(
        _lines(live.call("POST", _path(table) + "/query", json={"predicateHints": ["temp >>> 1"]}))
    )
    assert len(same) == len(all_files)
    limited = _files(_lines(live.call("POST", _path(table) + "/query", json={"limitHint": 1})))
    assert len(limited) == 1
    for f in all_files:
        assert f["size"] > 0 and f["expirationTimestamp"] > time.time() * 1000
        stats = json.loads(f["stats"])
        assert stats["numRecords"] > 0 and "temp" in stats["minValues"]


def test_metadata_version_and_schema(live: Live) -> None:
    url = live.table_url("acme", "weather.weather.hourly")
    meta = delta_sharing.get_table_metadata(url)
    schema = json.loads(meta.schema_string)
    types = {f["name"]: f["type"] for f in schema["fields"]}
    assert types["ts"] == "timestamp" and types["date"] == "date" and types["temp"] == "double"
    assert meta.partition_columns == ["city_id"]
    assert meta.configuration == {"enableChangeDataFeed": "true"}
    version = delta_sharing.get_table_version(url)
    head = live.call("HEAD", _path("weather.weather.hourly") + "/version")
    assert head.status_code == 200 and int(head.headers["Delta-Table-Version"]) == version
    legacy = live.call("HEAD", _path("weather.weather.hourly"))
    assert int(legacy.headers["Delta-Table-Version"]) == version
    lines = _lines(live.call("GET", _path("weather.weather.hourly") + "/metadata"))
    assert lines[0] == {"protocol": {"minReaderVersion": 1}}
    assert lines[1]["metaData"]["format"] == {"provider": "parquet"}


def test_changes_after_two_commits(live: Live) -> None:
    url = live.table_url("acme", "weather.weather.hourly")
    start = delta_sharing.get_table_version(url)
    before = delta_sharing.load_as_pandas(url)
    city0, city2 = live.cities[0], live.cities[2]
    source = pacsv.read_csv(live.base / "weather.csv")
    first = source.filter(pc.equal(source.column("city_id"), city0)).slice(0, 4)
    first = first.set_column(
        first.schema.get_field_index("temp"), "temp", pc.add(first.column("temp"), 0.5)
    )
    pacsv.write_csv(first, live.base / "commit1.csv")
    assert live.stratus.ingest.ingest(live.base / "commit1.csv", "hourly").version == start + 1
    rows = []
    for i in range(3):
        rows.append(
            {
                "city_id": city2,
                "date": "2031-01-01",
                "hour": f"{i + 1:02d}00",
                "temp": 1.0 + i,
                "wind_speed": 2.0,
                "description": "clear sky",
                "precipitation": 0.0,
                "humidity": 50.0,
            }
        )
    (live.base / "commit2.csv").write_text(
        "city_id,date,hour,temp,wind_speed,description,precipitation,humidity\n"
        + "".join(
            f"{r['city_id']},{r['date']},{r['hour']},{r['temp']},{r['wind_speed']},"
            f"{r['description']},{r['precipitation']},{r['humidity']}\n"
            for r in rows
        )
    )
    assert live.stratus.ingest.ingest(live.base / "commit2.csv", "hourly").version == start + 2

    changes = delta_sharing.load_table_changes_as_pandas(url, starting_version=start + 1)
    kinds = changes.groupby(["_commit_version", "_change_type"]).size().to_dict()
    assert kinds == {
        (start + 1, "update_preimage"): 4,
        (start + 1, "update_postimage"): 4,
        (start + 2, "insert"): 3,
    }
    post = changes[changes["_change_type"] == "update_postimage"].sort_values("ts")
    pre = changes[changes["_change_type"] == "update_preimage"].sort_values("ts")
    assert (post["temp"].to_numpy() - pre["temp"].to_numpy()).round(6).tolist() == [0.5] * 4
    assert set(changes[changes["_change_type"] == "insert"]["city_id"]) == {city2}
    assert (changes["_commit_timestamp"] > 0).all()

    only_last = delta_sharing.load_table_changes_as_pandas(
        url, starting_version=start + 2, ending_version=start + 2
    )
    assert len(only_last) == 3

    # time travel: the version before the two commits, as it was (by version and timestamp)
    old = delta_sharing.load_as_pandas(url, version=start)
    assert len(old) == len(before)
    assert len(delta_sharing.load_as_pandas(url)) == len(before) + 3
    table = DeltaTable(
        live.stratus.lakehouse.url(registry.HOURLY), storage_options=live.stratus.storage.options
    )
    stamps = {h["version"]: h["timestamp"] for h in table.history()}

    def iso(ms: int) -> str:
        when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    at_start = delta_sharing.load_as_pandas(url, timestamp=iso(stamps[start]))
    assert len(at_start) == len(before)
    by_time = delta_sharing.load_table_changes_as_pandas(
        url, starting_timestamp=iso(stamps[start + 1])
    )
    assert len(by_time) == len(changes)
    # the streaming form of query: data change files since a version
    resp = live.call(
        "POST", _path("weather.weather.hourly") + "/query", json={"startingVersion": start + 1}
    )
    lines = _lines(resp)
    assert int(resp.headers["Delta-Table-Version"]) == start + 1
    actions = [(k, v["version"]) for line in lines[2:] for k, v in line.items()]
    assert {k for k, _ in actions} <= {"add", "remove"}
    assert {v for _, v in actions} == {start + 1, start + 2}

    # history starts where sharing began
    resp = live.call("GET", _path("weather.weather.hourly") + "/changes?startingVersion=0")
    if start > 0:
        assert resp.status_code == 400 and resp.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    ts = live.call(
        "GET",
        _path("weather.weather.hourly") + "/version?startingTimestamp=2000-01-01T00:00:00Z",
    )
    assert int(ts.headers["Delta-Table-Version"]) >= 0


def test_derived_copy_holds_only_the_shared_columns_and_rows(live: Live) -> None:
    url = live.table_url("acme", "weather.weather.two_cities")
    df = delta_sharing.load_as_pandas(url)
    assert list(df.columns) == ["city_id", "ts", "temp"]
    assert set(df["city_id"]) == set(live.cities[:2])
    expected = _count(
        live,
        f"SELECT count(*) FROM {{t}} WHERE city_id IN ('{live.cities[0]}', '{live.cities[1]}')",
    )
    assert len(df) == expected
    # the files themselves hold nothing else (clients read whole files)
    for f in _files(_lines(live.call("POST", _path("weather.weather.two_cities") + "/query"))):
        data = requests.get(f["url"], timeout=30).content
        assert set(pq.read_schema(pa.BufferReader(data)).names) <= {"city_id", "ts", "temp"}
    # no history shared: no time travel, no changes
    two = _path("weather.weather.two_cities")
    assert live.call("POST", two + "/query", json={"version": 0}).status_code == 400
    assert live.call("GET", two + "/changes?startingVersion=0").status_code == 400


def test_pii_omitted(live: Live) -> None:
    df = delta_sharing.load_as_pandas(live.table_url("acme", "hr.hr.employees_omit"))
    assert len(df) == EMPLOYEES
    assert "email" not in df.columns
    assert not [c for c in df.columns if c.endswith("__token")]
    assert set(df.columns) == {"employee_id", "hire_date"}  # name, email, phone, salary are PII


def test_pii_masked_never_plaintext(live: Live) -> None:
    df = delta_sharing.load_as_pandas(live.table_url("acme", "hr.hr.employees_mask"))
    assert len(df) == EMPLOYEES
    assert not [c for c in df.columns if c.endswith("__token")]
    assert all(EMAIL_MASK.match(v) for v in df["email"]), df["email"].head()
    assert not set(df["email"]) & set(live.emails)
    # not in the shared files either, anywhere (data or statistics)
    for f in _files(_lines(live.call("POST", _path("hr.hr.employees_mask") + "/query"))):
        data = requests.get(f["url"], timeout=30).content
        assert data[:4] == b"PAR1"
        assert not [e for e in live.emails if e.encode() in data]
        assert not [e for e in live.emails if e in f.get("stats", "")]


def test_masked_copy_follows_its_source(live: Live) -> None:
    url = live.table_url("acme", "hr.hr.employees_mask")
    start = delta_sharing.get_table_version(url)
    before = delta_sharing.load_as_pandas(url)
    source = pacsv.read_csv(live.base / "employees.csv")
    first = source.slice(0, 1).to_pylist()[0]
    changed = {
        **first,
        "email": "zz.changed@example.net",
        "salary": 333_333.0,
    }
    new = {
        **first,
        "employee_id": 10_000,
        "name": "Quinn Newcomer",
        "email": "quinn.newcomer@example.org",
    }
    path = live.base / "employees2.csv"
    pacsv.write_csv(pa.Table.from_pylist([changed, new], schema=source.schema), path)
    live.stratus.tables.ingest(path, "main.hr.employees", owner="admin")

    after = delta_sharing.load_as_pandas(url)
    assert len(after) == len(before) + 1
    row = after[after["employee_id"] == first["employee_id"]].iloc[0]
    assert row["email"] == "z***@example.net" and row["salary"] == "330,000-339,999"
    assert delta_sharing.get_table_version(url) > start
    changes = delta_sharing.load_table_changes_as_pandas(url, starting_version=start + 1)
    kinds = sorted(changes["_change_type"])
    assert kinds == ["insert", "update_postimage", "update_preimage"]
    plaintext = {*live.emails, changed["email"], new["email"], new["name"]}
    for column in ("name", "email", "phone", "salary"):
        assert not set(changes[column].astype(str)) & plaintext
    assert all(EMAIL_MASK.match(v) for v in changes["email"])
    omitted = delta_sharing.load_as_pandas(live.table_url("acme", "hr.hr.employees_omit"))
    assert len(omitted) == len(after) and "email" not in omitted.columns


def test_revoked_token_is_refused(live: Live) -> None:
    name, secret, token_id = live.new_recipient()
    profile = live.profile_for(secret)
    client = delta_sharing.SharingClient(str(profile))
    assert [s.name for s in client.list_shares()] == ["weather"]
    # a URL issued to the token, before it is revoked
    files = _files(
        _lines(
            requests.post(
                live.endpoint + _path("weather.weather.hourly") + "/query",
                headers={"Authorization": f"Bearer {secret}"},
                json={"limitHint": 1},
                timeout=30,
            )
        )
    )
    assert requests.get(files[0]["url"], timeout=30).status_code == 200
    assert live.stratus.sharing.admin.revoke_tokens(LOCAL_ADMIN, name) == [token_id]
    with pytest.raises(HTTPError) as err:
        client.list_shares()
    assert err.value.response.status_code == 401
    resp = requests.get(
        live.endpoint + "/shares", headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )
    assert resp.status_code == 401 and resp.json()["errorCode"] == "UNAUTHENTICATED"
    if live.backend == "local":  # Stratus-signed URLs die with their token
        assert requests.get(files[0]["url"], timeout=30).status_code == 403


def test_expired_token_is_refused(live: Live) -> None:
    _, secret, _ = live.new_recipient(days=0.5 / 86400)  # half a second
    time.sleep(0.7)
    with pytest.raises(HTTPError) as err:
        delta_sharing.load_as_pandas(f"{live.profile_for(secret)}#weather.weather.hourly")
    assert err.value.response.status_code == 401
    resp = requests.get(
        live.endpoint + "/shares", headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )
    assert resp.json() == {"errorCode": "UNAUTHENTICATED", "message": "invalid or expired token"}


def test_another_recipients_share_is_not_found(live: Live) -> None:
    with pytest.raises(HTTPError) as err:
        delta_sharing.load_as_pandas(live.table_url("acme", "secret.weather.cities"))
    assert err.value.response.status_code == 404
    for path in ("/shares/secret", "/shares/secret/schemas", "/shares/secret/all-tables"):
        resp = live.call("GET", path)
        assert resp.status_code == 404
        assert resp.json()["errorCode"] == "RESOURCE_DOES_NOT_EXIST"
    # ... and an unknown share looks exactly the same
    assert live.call("GET", "/shares/nope").json()["message"] == "share nope does not exist"
    assert live.call("GET", "/shares/secret").json()["message"] == "share secret does not exist"
    globex = delta_sharing.load_as_pandas(live.table_url("globex", "secret.weather.cities"))
    assert len(globex) == 6
    with pytest.raises(HTTPError):
        delta_sharing.load_as_pandas(live.table_url("globex", "weather.weather.hourly"))


def test_tampered_and_expired_urls_are_forbidden(live: Live) -> None:
    files = _files(_lines(live.call("POST", _path("weather.weather.hourly") + "/query", json={})))
    url = files[0]["url"]
    ok = requests.get(url, timeout=30)
    assert ok.status_code == 200 and ok.content[:4] == b"PAR1"
    head = requests.head(url, timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(ok.content)
    if live.backend == "local":  # range support of Stratus-signed URLs (SAS ranges are Azure's)
        ranged = requests.get(url, headers={"Range": "bytes=0-3"}, timeout=30)
        assert ranged.status_code == 206 and ranged.content == b"PAR1"
        tail = requests.get(url, headers={"Range": "bytes=-4"}, timeout=30)
        assert tail.status_code == 206 and tail.content == b"PAR1"
        beyond = requests.get(url, headers={"Range": f"bytes={len(ok.content)}-"}, timeout=30)
        assert beyond.status_code == 416
    if live.backend == "local":
        assert url.startswith(live.endpoint + "/files/")
        assert url.endswith("?sp=r")  # marked pre-signed (read) for Delta readers
        token = url.split("?")[0].rsplit("/", 1)[1]
        payload, signature = token.split(".")
        flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
        resp = requests.get(f"{live.endpoint}/files/{payload}.{flipped}", timeout=30)
        assert resp.status_code == 403
        doc = _payload(token)
        doc["p"] = _payload(files[1]["url"].split("?")[0].rsplit("/", 1)[1])[
            "p"
        ]  # another file, same sig
        forged = base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")
        resp = requests.get(f"{live.endpoint}/files/{forged}.{signature}", timeout=30)
        assert resp.status_code == 403 and resp.json()["errorCode"] == "PERMISSION_DENIED"
        ctx = live.stratus.sharing.tokens.authenticate(f"Bearer {live.secrets['acme']}")
        expired = live.stratus.sharing.reads.sign_for_test(
            doc["p"], ctx, int(time.time() * 1000) - 1
        )
        resp = requests.get(f"{live.endpoint}/files/{expired}", timeout=30)
        assert resp.status_code == 403 and "expired" in resp.json()["message"]
        assert requests.get(f"{live.endpoint}/files/garbage", timeout=30).status_code == 403
    else:
        assert "sig=" in url and "se=" in url and not url.startswith(live.url)
        fields = parse_qs(url.split("?", 1)[1])
        assert fields["sp"] == ["r"] and fields["sr"] == ["b"]  # read-only, this one blob
        sig = re.search(r"sig=([^&]+)", url).group(1)  # type: ignore[union-attr]
        other = ("A" if sig[0] != "A" else "B") + sig[1:]
        assert (
            requests.get(url.replace(f"sig={sig}", f"sig={other}"), timeout=30).status_code == 403
        )
        signer = live.stratus.sharing.reads._azure
        assert signer is not None
        path = unquote(url.split("?")[0].split("/main/weather/hourly/", 1)[1])
        table_url = live.stratus.lakehouse.url(registry.HOURLY)
        now = dt.datetime.now(dt.UTC)
        expired_url = signer.url(table_url, path, now - dt.timedelta(minutes=1))
        assert requests.get(expired_url, timeout=30).status_code == 403
        fresh = signer.url(table_url, path, now + dt.timedelta(minutes=5))
        assert requests.get(fresh, timeout=30).status_code == 200


def test_protocol_errors_and_paging(live: Live) -> None:
    resp = live.call("GET", "/shares", who=None)
    assert resp.status_code == 401
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json()["errorCode"] == "UNAUTHENTICATED"
    assert live.call("GET", "/shares?maxResults=-1").status_code == 400
    assert live.call("GET", "/shares?maxResults=x").status_code == 400
    assert (
        live.call("GET", "/shares?pageToken=zzz").json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    )
    assert live.call("GET", "/nothing/here").status_code == 404
    fmt = live.call(
        "GET",
        _path("weather.weather.hourly") + "/metadata",
        headers={"delta-sharing-capabilities": "responseformat=avro"},
    )
    assert fmt.status_code == 400 and "avro" in fmt.json()["message"]
    bad = live.call("POST", _path("weather.weather.hourly") + "/query", json={"version": "x"})
    assert bad.status_code == 400
    both = live.call(
        "POST", _path("weather.weather.hourly") + "/query", json={"version": 1, "timestamp": "x"}
    )
    assert both.status_code == 400
    first = live.call("GET", "/shares/weather/all-tables?maxResults=1").json()
    assert len(first["items"]) == 1 and first["nextPageToken"]
    second = live.call(
        "GET", f"/shares/weather/all-tables?maxResults=1&pageToken={first['nextPageToken']}"
    ).json()
    assert len(second["items"]) == 1 and "nextPageToken" not in second
    assert {first["items"][0]["name"], second["items"][0]["name"]} == {"hourly", "two_cities"}
    zero = live.call("GET", "/shares?maxResults=0").json()
    assert zero["items"] == [] and zero["nextPageToken"]
    assert live.call("GET", "/shares/WEATHER").json()["share"]["name"] == "weather"
    assert live.call("GET", "/shares/weather/schemas/nope/tables").status_code == 404


def test_every_recipient_access_is_audited(live: Live) -> None:
    delta_sharing.load_as_pandas(live.table_url("globex", "secret.weather.cities"), limit=1)
    live.call("GET", "/shares", who=None)
    gov = live.stratus.governance
    gov.audit.flush()
    scan = TableScan(AUDIT, live.stratus.lakehouse.prune(AUDIT))
    rows = live.stratus.engine.query(
        "SELECT action_name, user_identity, securable_full_name, outcome, status_code "
        "FROM {t} WHERE service_name = 'deltaSharing'",
        {"t": scan},
    ).to_pylist()
    seen = {(r["action_name"], r["user_identity"]) for r in rows}
    for action in ("listShares", "getTableMetadata", "queryTable"):
        assert (action, "globex") in seen, action
    if live.backend == "local":  # Azure SAS downloads go to the storage account directly
        assert ("downloadFile", "globex") in seen
    assert ("listShares", None) in seen  # the unauthenticated attempt
    query = [r for r in rows if r["action_name"] == "queryTable" and r["user_identity"] == "globex"]
    assert query[0]["securable_full_name"] == "secret.weather.cities"
    assert any(r["outcome"] == "denied" and r["status_code"] == 401 for r in rows)


# ---- administration --------------------------------------------------------------------------
def test_admin_api(live: Live) -> None:
    stratus = live.stratus
    admin = token_for(stratus)
    stratus.governance.metastore.create_principal("olga")
    olga = token_for(stratus, "olga")

    def call(method: str, path: str, token: str = admin, **kw: Any) -> requests.Response:
        return requests.request(
            method,
            f"{live.url}/api/v1{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            **kw,
        )

    assert call("POST", "/shares", olga, json={"name": "x"}).status_code == 403
    created = call("POST", "/shares", json={"name": "api_share", "owner": "olga"})
    assert created.status_code == 201, created.text
    assert call("POST", "/shares", json={"name": "API_SHARE"}).status_code == 409
    # olga owns it but may not read the table she adds: not found (invisible)
    resp = call("POST", "/shares/api_share/tables", olga, json={"table": "main.weather.cities"})
    assert resp.status_code == 404
    bad_filter = call(
        "POST",
        "/shares/api_share/tables",
        json={"table": "main.weather.hourly", "row_filter": "temp > 3"},
    )
    assert bad_filter.status_code == 400 and "partition" in bad_filter.json()["detail"]
    assert (
        call("POST", "/shares/api_share/tables", json={"table": "system.access.audit"}).status_code
        == 403
    )
    assert (
        call(
            "POST", "/shares/api_share/tables", json={"table": "main.weather.hourly", "pii": "show"}
        ).status_code
        == 400
    )
    added = call(
        "POST",
        "/shares/api_share/tables",
        json={
            "table": "main.weather.hourly",
            "shared_as": "obs.berlin_like",
            "row_filter": f"city_id = '{live.cities[2]}'",
        },
    )
    assert added.status_code == 201, added.text
    assert added.json()["name"] == "obs.berlin_like"
    rcpt = call("POST", "/recipients", json={"name": "initech", "days": 2})
    assert rcpt.status_code == 201, rcpt.text
    doc = rcpt.json()
    assert doc["token"].startswith("dss_") and doc["profile"]["bearerToken"] == doc["token"]
    assert doc["profile"]["endpoint"] == live.endpoint
    assert doc["profile"]["shareCredentialsVersion"] == 1 and doc["profile"]["expirationTime"]
    assert call("POST", "/recipients", olga, json={"name": "nope"}).status_code == 403
    assert call("POST", "/shares/api_share/recipients", olga, json={"recipient": "initech"}).ok
    listed = call("GET", "/recipients/initech").json()
    assert listed["shares"] == ["api_share"] and listed["tokens"][0]["status"] == "active"
    assert "token_hash" not in json.dumps(listed) and doc["token"] not in json.dumps(listed)
    profile = call("POST", "/recipients/initech/profile", json={"days": 1})
    assert profile.status_code == 200
    assert profile.headers["Content-Disposition"] == 'attachment; filename="initech.share"'
    path = live.base / "initech.share"
    path.write_bytes(profile.content)
    df = delta_sharing.load_as_pandas(f"{path}#api_share.obs.berlin_like")
    assert set(df["city_id"]) == {live.cities[2]}
    share = call("GET", "/shares/api_share", olga).json()
    assert share["recipients"] == ["initech"] and share["tables"][0]["row_filter"]
    token_id = listed["tokens"][0]["id"]
    assert call("DELETE", f"/recipients/initech/tokens/{token_id}").json() == {
        "revoked": [token_id]
    }
    first = {"shareCredentialsVersion": 1, "endpoint": live.endpoint, "bearerToken": doc["token"]}
    (live.base / "first.share").write_text(json.dumps(first))
    with pytest.raises(HTTPError):
        delta_sharing.SharingClient(str(live.base / "first.share")).list_shares()
    assert delta_sharing.SharingClient(str(path)).list_shares()[0].name == "api_share"
    assert call("DELETE", "/shares/api_share/recipients/initech", olga).ok
    assert delta_sharing.SharingClient(str(path)).list_shares() == []
    assert call("DELETE", "/shares/api_share", olga).ok
    assert call("GET", "/shares/api_share").status_code == 404


def test_cli(tmp_path: Path) -> None:
    env = {"STRATUS_HOME": str(tmp_path / "home"), "STRATUS_LOG_LEVEL": "WARNING", "COLUMNS": "250"}
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(main, ["share", *args], env=env)
        assert result.exit_code == 0, result.output
        return result

    run("create", "public", "--comment", "open data")
    run("add-table", "public", "main.weather.cities", "--as", "geo.stations")
    out = tmp_path / "acme.share"
    run(
        "create-recipient",
        "acme",
        "--days",
        "3",
        "--profile",
        str(out),
        "--endpoint",
        "https://data.example.com/delta-sharing",
    )
    doc = json.loads(out.read_text())
    assert doc["endpoint"] == "https://data.example.com/delta-sharing"
    assert doc["bearerToken"].startswith("dss_") and doc["expirationTime"]
    assert out.stat().st_mode & 0o777 == 0o600
    run("grant", "public", "acme")
    listing = run("list").output
    assert "geo.stations" in listing and "acme" in listing
    bad = runner.invoke(
        main,
        ["share", "add-table", "public", "main.weather.hourly", "--filter", "temp > 1"],
        env=env,
    )
    assert bad.exit_code != 0 and "partition" in bad.output
    printed = run("profile", "acme").output
    assert json.loads(printed)["bearerToken"].startswith("dss_")
    assert "revoked 2 token(s)" in run("revoke-token", "acme", "--all").output
    run("grant", "public", "acme", "--revoke")


# ---- units -----------------------------------------------------------------------------------
TYPES = {"c": pa.string(), "t": pa.float64(), "d": pa.date32(), "ts": pa.timestamp("us")}


def _entry(**kw: Any) -> p.FileEntry:
    base: dict[str, Any] = {
        "path": "x",
        "size": 1,
        "partition": {"c": "berlin"},
        "num_records": 10,
        "min_values": {"t": 1.0, "d": dt.date(2024, 1, 1), "ts": dt.datetime(2024, 1, 1)},
        "max_values": {"t": 5.0, "d": dt.date(2024, 1, 31), "ts": dt.datetime(2024, 1, 31)},
        "null_count": {"t": 0, "d": 0, "ts": 0},
    }
    base.update(kw)
    return p.FileEntry(**base)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("c = 'berlin'", True),
        ("c <> 'berlin'", False),
        ("NOT c = 'paris'", True),
        ("c IN ('paris', 'berlin')", True),
        ("c NOT IN ('paris', 'berlin')", False),
        ("c IS NULL", False),
        ("t > 6", False),
        ("t >= 1", True),
        ("t > 3", None),
        ("6 < t", False),
        ("d >= '2024-02-01'", False),
        ("ts < '2024-02-01T00:00:00Z'", True),
        ("t > 3 AND c = 'paris'", False),
        ("t > 6 OR c = 'berlin'", True),
        ("(t > 6 OR c = 'paris') AND t < 2", False),
        ("unknown_column = 1", None),
        ("t = 'not a number'", None),
    ],
)
def test_predicate_evaluation(sql: str, expected: bool | None) -> None:
    assert p.evaluate(p.parse_sql(sql), _entry(), TYPES) is expected


def test_predicates_and_nulls() -> None:
    null_part = _entry(partition={"c": None})
    assert p.evaluate(p.parse_sql("NOT c = 'x'"), null_part, TYPES) is False  # NULL, not TRUE
    assert p.evaluate(p.parse_sql("c IS NULL"), null_part, TYPES) is True
    some_nulls = _entry(null_count={"t": 2, "d": 0, "ts": 0})
    assert p.evaluate(p.parse_sql("t >= 1"), some_nulls, TYPES) is None
    all_null = _entry(null_count={"t": 10}, min_values={}, max_values={})
    assert p.evaluate(p.parse_sql("t = 1"), all_null, TYPES) is False
    assert p.evaluate(p.parse_sql("t IS NOT NULL"), all_null, TYPES) is False


def test_json_predicates() -> None:
    tree = p.parse_json(
        {
            "op": "and",
            "children": [
                {
                    "op": "equal",
                    "children": [
                        {"op": "column", "name": "c", "valueType": "string"},
                        {"op": "literal", "value": "berlin", "valueType": "string"},
                    ],
                },
                {
                    "op": "not",
                    "children": [
                        {
                            "op": "isNull",
                            "children": [{"op": "column", "name": "t", "valueType": "double"}],
                        }
                    ],
                },
                {
                    "op": "greaterThan",
                    "children": [
                        {"op": "literal", "value": "2", "valueType": "double"},
                        {"op": "column", "name": "t", "valueType": "double"},
                    ],
                },
            ],
        }
    )
    assert p.evaluate(tree, _entry(), TYPES) is None  # 2 > t holds for some rows
    assert p.evaluate(tree, _entry(partition={"c": "rome"}), TYPES) is False
    for bad in ('{"op": "equal", "children": []}', "not json", '{"op": "like"}'):
        with pytest.raises(p.PredicateError):
            p.parse_json(bad)
    for bad in ("", "c =", "c = 'x' AND", "(c = 'x'", "c LIKE 'x'", "1 = 1 = 1"):
        with pytest.raises(p.PredicateError):
            p.parse_sql(bad)


def test_pruning_and_limit() -> None:
    files = [
        _entry(path="a", partition={"c": "a"}, num_records=5),
        _entry(path="b", partition={"c": "b"}, num_records=5),
        _entry(path="c", partition={"c": "c"}, num_records=5),
    ]
    assert [e.path for e in p.prune(files, [p.parse_sql("c <> 'b'")], TYPES)] == ["a", "c"]
    assert [e.path for e in p.limit_files(files, 6)] == ["a", "b"]
    assert [e.path for e in p.limit_files(files, 0)] == []
    assert len(p.limit_files(files, None)) == 3


def test_sharing_schema_and_stats() -> None:
    schema = (
        '{"type":"struct","fields":[{"name":"ts","type":"timestamp_ntz","nullable":true,'
        '"metadata":{"delta.generationExpression":"x","comment":"when"}}]}'
    )
    out = json.loads(p.sharing_schema(schema))
    assert out["fields"][0]["type"] == "timestamp"
    assert out["fields"][0]["metadata"] == {"comment": "when"}
    stats = json.loads(p.stats_json(_entry()) or "")
    assert stats["numRecords"] == 10 and stats["minValues"]["ts"] == "2024-01-01T00:00:00.000"
    assert p.parse_timestamp("2024-01-01 00:00:00") == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert p.parse_timestamp("2024-01-01T02:00:00+02:00") == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def test_url_signing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRATUS_SHARING_SECRET", raising=False)
    key = load_secret(tmp_path)
    assert len(key) == 32 and load_secret(tmp_path) == key
    assert (tmp_path / "sharing.secret").stat().st_mode & 0o777 == 0o600
    signer = UrlSigner(key)
    future = int(time.time() * 1000) + 60_000
    token = signer.sign("main/t/part-1.parquet", "r1", "t1", future)
    assert signer.verify(token).path == "main/t/part-1.parquet"
    with pytest.raises(SignatureError):
        UrlSigner(b"x" * 32).verify(token)
    with pytest.raises(SignatureError, match="expired"):
        signer.verify(signer.sign("a.parquet", "r", "t", future), now_ms=future)
    payload, sig = token.split(".")
    other = json.loads(base64.urlsafe_b64decode(payload + "=="))
    other["e"] += 1
    forged = base64.urlsafe_b64encode(orjson.dumps(other)).decode().rstrip("=")
    with pytest.raises(SignatureError):
        signer.verify(f"{forged}.{sig}")
    monkeypatch.setenv("STRATUS_SHARING_SECRET", "short")
    with pytest.raises(ValueError, match="32"):
        load_secret(tmp_path)
    monkeypatch.setenv("STRATUS_SHARING_SECRET", "s" * 40)
    assert load_secret(tmp_path) != key
