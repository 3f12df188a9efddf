"""Delta Sharing protocol features beyond the basics (PROTOCOL.md of delta-io/delta-sharing):
reader features refused, ``fileidhash``, metadata at a version or timestamp,
``includeHistoricalMetadata`` on changes and ``responseformat=delta`` — with the official
``delta-sharing`` client where it has the option (``use_delta_format``), else over HTTP.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import delta_sharing
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import requests
from deltalake import DeltaTable, Field, write_deltalake
from requests.exceptions import HTTPError
from werkzeug.serving import make_server

from stratus.api import create_app
from stratus.config import Settings
from stratus.context import Stratus
from stratus.security.governance import LOCAL_ADMIN
from tests.conftest import free_port, token_for, wait_for_port

READINGS = "main.lab.readings"  # shared with history, served from its own files
DV = "main.lab.deletions"  # deletion vectors: refused when shared
MAPPED = "main.lab.mapped"  # shared, then given column mapping: refused when read
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class Lab:
    url: str
    stratus: Stratus
    secret: str
    admin: str
    profile: Path
    versions: dict[str, int]  # readings: first (shared from), widened (column added), last

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.secret}", **kw.pop("headers", {})}
        return requests.request(
            method, f"{self.url}/delta-sharing{path}", headers=headers, timeout=30, **kw
        )

    def table(self, name: str) -> str:
        return f"{self.profile}#lab.lab.{name}"

    def physical(self, full_name: str) -> str:
        spec = self.stratus.tables.spec(full_name)
        return self.stratus.lakehouse.url(self.stratus.tables.physical(spec)[0])


def _csv(path: Path, first: int, n: int) -> Path:
    rows = {
        "reading_id": list(range(first, first + n)),
        "site": [f"s{i % 3}" for i in range(first, first + n)],
        "value": [i * 0.5 for i in range(first, first + n)],
    }
    pacsv.write_csv(pa.table(rows), path)
    return path


def _lines(resp: requests.Response) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def _path(table: str) -> str:
    return f"/shares/lab/schemas/lab/tables/{table}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("sharing-protocol")
    stratus = Stratus.from_settings(Settings(home=base / "home"))
    stratus.bootstrap()
    tables = stratus.tables
    for name in (READINGS, DV, MAPPED):
        tables.ingest(_csv(base / "a.csv", 0, 30), name, owner="admin", key=("reading_id",))
    admin = stratus.sharing.admin
    admin.create_share(LOCAL_ADMIN, "lab")
    admin.add_table(LOCAL_ADMIN, "lab", READINGS, history=True)
    admin.add_table(LOCAL_ADMIN, "lab", MAPPED)
    _, secret, _ = admin.create_recipient(LOCAL_ADMIN, "initech", days=1)
    admin.grant(LOCAL_ADMIN, "lab", "initech")
    app = create_app(stratus=stratus)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="sharing-lab", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    profile = base / "initech.share"
    doc = {"shareCredentialsVersion": 1, "endpoint": f"{url}/delta-sharing", "bearerToken": secret}
    profile.write_text(json.dumps(doc))
    lab = Lab(url, stratus, secret, token_for(stratus), profile, {})
    try:
        wait_for_port(port)
        readings = lab.physical(READINGS)
        lab.versions["first"] = DeltaTable(readings).version()  # history is shared from here
        time.sleep(0.05)
        tables.ingest(_csv(base / "b.csv", 30, 10), READINGS, owner="admin", key=("reading_id",))
        time.sleep(0.05)
        # a metadata change: a new (nullable) column, outside the catalog's knowledge
        DeltaTable(readings).alter.add_columns([Field("note", "string", nullable=True)])
        lab.versions["widened"] = DeltaTable(readings).version()
        time.sleep(0.05)
        extra = pa.table(
            {
                "reading_id": pa.array([100, 101], pa.int64()),
                "site": ["s9", "s9"],
                "value": [1.0, 2.0],
                "note": ["late", "late"],
            }
        )
        write_deltalake(readings, extra, mode="append", schema_mode="merge")
        stratus.lakehouse.invalidate(tables.physical(tables.spec(READINGS))[0])
        lab.versions["last"] = DeltaTable(readings).version()
        yield lab
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        stratus.close()


# ---- reader features the server does not serve ------------------------------------------------
def test_sharing_a_table_with_deletion_vectors_is_refused(lab: Lab) -> None:
    DeltaTable(lab.physical(DV)).alter.set_table_properties({"delta.enableDeletionVectors": "true"})
    lab.stratus.lakehouse.invalidate(lab.stratus.tables.physical(lab.stratus.tables.spec(DV))[0])
    resp = requests.post(
        f"{lab.url}/api/v1/shares/lab/tables",
        json={"table": DV},
        headers={"Authorization": f"Bearer {lab.admin}"},
        timeout=30,
    )
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert "deletion vectors" in resp.json()["detail"]
    shared = lab.stratus.sharing.admin.get_share_admin(LOCAL_ADMIN, "lab")[0]
    assert DV not in {t.source_table for t in shared.tables}  # nothing half-added


def test_a_shared_table_given_column_mapping_is_refused_not_served_as_parquet(lab: Lab) -> None:
    before = delta_sharing.load_as_pandas(lab.table("mapped"))
    assert len(before) == 30
    url = lab.physical(MAPPED)
    version = DeltaTable(url).version() + 1
    first = Path(url, "_delta_log", f"{0:020d}.json").read_text().splitlines()
    log = [json.loads(line) for line in first if line.strip()]
    meta = next(a["metaData"] for a in log if "metaData" in a)
    schema = json.loads(meta["schemaString"])
    for i, field in enumerate(schema["fields"], start=1):
        field["metadata"] = {
            "delta.columnMapping.id": i,
            "delta.columnMapping.physicalName": field["name"],
        }
    meta = {
        **meta,
        "schemaString": json.dumps(schema),
        "configuration": {
            **meta.get("configuration", {}),
            "delta.columnMapping.mode": "name",
            "delta.columnMapping.maxColumnId": str(len(schema["fields"])),
        },
    }
    commit = [
        {"commitInfo": {"timestamp": int(time.time() * 1000), "operation": "SET TBLPROPERTIES"}},
        {"protocol": {"minReaderVersion": 2, "minWriterVersion": 5}},
        {"metaData": meta},
    ]
    Path(url, "_delta_log", f"{version:020d}.json").write_text(
        "".join(json.dumps(a) + "\n" for a in commit)
    )
    resp = lab.call("POST", _path("mapped") + "/query", json={})
    assert resp.status_code == 400
    body = resp.json()
    assert body["errorCode"] == "INVALID_PARAMETER_VALUE"
    assert "column mapping" in body["message"] and MAPPED in body["message"]
    assert lab.call("GET", _path("mapped") + "/metadata").status_code == 400
    with pytest.raises(HTTPError, match="400"):
        delta_sharing.load_as_pandas(lab.table("mapped"))


# ---- fileidhash --------------------------------------------------------------------------------
def test_fileidhash_selects_the_id_scheme_and_is_echoed(lab: Lab) -> None:
    default = _lines(lab.call("POST", _path("readings") + "/query", json={}))
    plain = [f["file"]["id"] for f in default if "file" in f]
    assert plain  # files are listed
    parquet = lab.call(
        "POST", _path("readings") + "/query", json={}, headers={"fileidhash": "PARQUET"}
    )
    assert parquet.headers["fileidhash"] == "parquet"
    assert [f["file"]["id"] for f in _lines(parquet) if "file" in f] == plain
    delta = lab.call("POST", _path("readings") + "/query", json={}, headers={"fileidhash": "delta"})
    assert delta.headers["fileidhash"] == "delta"
    delta_ids = [f["file"]["id"] for f in _lines(delta) if "file" in f]
    assert len(delta_ids) == len(plain) and all(UUID.match(i) for i in delta_ids)
    assert set(delta_ids).isdisjoint(plain)
    again = lab.call("POST", _path("readings") + "/query", json={}, headers={"fileidhash": "delta"})
    assert [f["file"]["id"] for f in _lines(again) if "file" in f] == delta_ids  # stable
    start = lab.versions["first"]
    changes = lab.call(
        "GET",
        _path("readings") + f"/changes?startingVersion={start}",
        headers={"fileidhash": "delta"},
    )
    assert changes.headers["fileidhash"] == "delta"
    change_ids = [
        line[k]["id"] for line in _lines(changes) for k in ("add", "cdf", "remove") if k in line
    ]
    assert change_ids and all(UUID.match(i) for i in change_ids)
    for method, path in (
        ("POST", _path("readings") + "/query"),
        ("GET", _path("readings") + f"/changes?startingVersion={start}"),
    ):
        bad = lab.call(method, path, json={}, headers={"fileidhash": "md5"})
        assert bad.status_code == 400
        assert bad.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
        assert "fileidhash" in bad.json()["message"]
    assert "fileidhash" not in lab.call("POST", _path("readings") + "/query", json={}).headers


# ---- metadata at a version or timestamp ---------------------------------------------------------
def _fields(lines: list[dict[str, Any]]) -> list[str]:
    meta = lines[1]["metaData"]
    meta = meta.get("deltaMetadata", meta)
    return [f["name"] for f in json.loads(meta["schemaString"])["fields"]]


def test_metadata_at_a_version_or_timestamp(lab: Lab) -> None:
    widened = lab.versions["widened"]
    latest = _lines(lab.call("GET", _path("readings") + "/metadata"))
    assert "note" in _fields(latest) and "version" not in latest[1]["metaData"]
    old = lab.call("GET", _path("readings") + f"/metadata?version={widened - 1}")
    lines = _lines(old)
    assert _fields(lines) == ["reading_id", "site", "value"]
    assert lines[1]["metaData"]["version"] == widened - 1
    assert old.headers["Delta-Table-Version"] == str(widened - 1)
    at = _lines(lab.call("GET", _path("readings") + f"/metadata?version={widened}"))
    assert "note" in _fields(at) and at[1]["metaData"]["version"] == widened
    history = DeltaTable(lab.physical(READINGS)).history()
    stamp = next(h["timestamp"] for h in history if h["version"] == widened - 1)
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp / 1000)) + f".{stamp % 1000:03d}Z"
    by_time = _lines(lab.call("GET", _path("readings") + f"/metadata?timestamp={when}"))
    assert by_time[1]["metaData"]["version"] == widened - 1
    assert _fields(by_time) == ["reading_id", "site", "value"]
    for query in (
        f"version={widened}&timestamp={when}",
        "version=x",
        f"version={lab.versions['last'] + 5}",
        f"version={lab.versions['first'] - 1}",
        "timestamp=2001-01-01T00:00:00Z",
    ):
        bad = lab.call("GET", _path("readings") + f"/metadata?{query}")
        assert bad.status_code == 400, query
        assert bad.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    # a table without shared history has no time travel
    refused = lab.call("GET", _path("mapped") + "/metadata?version=0")
    assert refused.status_code == 400


# ---- includeHistoricalMetadata ------------------------------------------------------------------
def test_changes_include_historical_metadata_when_asked(lab: Lab) -> None:
    start, widened = lab.versions["first"], lab.versions["widened"]
    path = _path("readings") + f"/changes?startingVersion={start}"
    plain = _lines(lab.call("GET", path))
    assert sum("metaData" in line for line in plain) == 1  # the head line only
    asked = _lines(lab.call("GET", path + "&includeHistoricalMetadata=true"))
    metas = [line["metaData"] for line in asked if "metaData" in line]
    historical = metas[1:]
    assert [m["version"] for m in historical] == [widened]
    assert "note" in [f["name"] for f in json.loads(historical[0]["schemaString"])["fields"]]

    # the data change files are the same either way
    def files(lines: list[dict[str, Any]]) -> list[str]:
        return sorted(
            line[k]["id"] for line in lines for k in ("add", "cdf", "remove") if k in line
        )

    assert files(asked) == files(plain) and files(plain)
    off = _lines(lab.call("GET", path + "&includeHistoricalMetadata=false"))
    assert sum("metaData" in line for line in off) == 1
    bad = lab.call("GET", path + "&includeHistoricalMetadata=maybe")
    assert bad.status_code == 400 and "includeHistoricalMetadata" in bad.json()["message"]


# ---- responseformat=delta -------------------------------------------------------------------
def test_delta_response_format_over_http(lab: Lab) -> None:
    headers = {"delta-sharing-capabilities": "responseformat=delta;readerfeatures=deletionvectors"}
    resp = lab.call("POST", _path("readings") + "/query", json={}, headers=headers)
    lines = _lines(resp)
    assert resp.headers["delta-sharing-capabilities"] == "responseformat=delta"
    proto = lines[0]["protocol"]["deltaProtocol"]
    assert proto["minReaderVersion"] >= 1 and "minWriterVersion" in proto
    meta = lines[1]["metaData"]
    assert meta["deltaMetadata"]["format"]["provider"] == "parquet"
    assert meta["deltaMetadata"]["configuration"] == {"delta.enableChangeDataFeed": "true"}
    assert meta["numFiles"] == len(lines) - 2
    add = lines[2]["file"]["deltaSingleAction"]["add"]
    assert add["path"].startswith(f"{lab.url}/delta-sharing/files/")
    assert add["dataChange"] is True and "stats" in add
    # offered both, the server may answer parquet (no table here needs delta), and says so
    both = lab.call(
        "GET",
        _path("readings") + "/metadata",
        headers={"delta-sharing-capabilities": "responseformat=delta,parquet"},
    )
    assert both.headers["delta-sharing-capabilities"] == "responseformat=parquet"
    assert "deltaMetadata" not in _lines(both)[1]["metaData"]
    unknown = lab.call(
        "GET",
        _path("readings") + "/metadata",
        headers={"delta-sharing-capabilities": "responseformat=avro"},
    )
    assert unknown.status_code == 400 and "avro" in unknown.json()["message"]


def test_official_client_in_delta_format_reads_what_parquet_reads(lab: Lab) -> None:
    url = lab.table("readings")
    parquet = delta_sharing.load_as_pandas(url, use_delta_format=False)
    delta = delta_sharing.load_as_pandas(url, use_delta_format=True)
    assert len(parquet) == 42
    key = ["reading_id"]
    assert (
        delta.sort_values(key)
        .reset_index(drop=True)[parquet.columns]
        .equals(parquet.sort_values(key).reset_index(drop=True))
    )
    # (delta-kernel reads a change feed only within one schema: a range on each side of the
    # added column)
    first, widened, last = (lab.versions[k] for k in ("first", "widened", "last"))
    for start, end, rows in ((first + 1, first + 1, 10), (widened + 1, last, 2)):
        by_parquet = delta_sharing.load_table_changes_as_pandas(
            url, starting_version=start, ending_version=end, use_delta_format=False
        )
        by_delta = delta_sharing.load_table_changes_as_pandas(
            url, starting_version=start, ending_version=end, use_delta_format=True
        )
        assert len(by_parquet) == rows and len(by_delta) == rows
        assert sorted(by_delta["reading_id"]) == sorted(by_parquet["reading_id"])
        assert set(by_delta["_change_type"]) == {"insert"}
        assert set(by_delta["_commit_version"]) == set(by_parquet["_commit_version"])
    assert list(by_delta["note"]) == ["late", "late"]
