"""Lineage: system tables, graphs (with visibility), OpenLineage transports, ingest lineage, PII
inheritance. Events are built directly: nothing here depends on the SQL engine."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from deltalake import DeltaTable
from flask import Flask
from openlineage.client.transport.transport import Config, Transport

from stratus.api import create_app
from stratus.catalog.errors import NotFound
from stratus.cli import main
from stratus.config import Settings
from stratus.context import Stratus
from stratus.lineage import ColumnEdge, LineageEvent
from stratus.lineage.openlineage import OpenLineageEmitter, file_transport, transports_for
from stratus.lineage.store import COLUMN_LINEAGE, TABLE_LINEAGE
from stratus.security.governance import LOCAL_ADMIN
from tests.conftest import client_for, token_for

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
RAW = "/data/raw/orders.csv"
A, B, C, D = "main.lin.a", "main.lin.b", "main.lin.c", "main.lin.d"
SECRET, HIDDEN, F = "main.lin.secret", "main.lin.hidden", "main.lin.f"
READER = "lineage-reader"
COLUMNS = {
    A: ["id", "email", "amount", "flag"],
    B: ["id", "contact", "total"],
    C: ["id", "total", "note"],
    D: ["id", "total"],
    SECRET: ["id", "note"],
    HIDDEN: ["id"],
    F: ["id"],
}


def event(
    target: str | None,
    sources: tuple[str, ...] = (),
    edges: tuple[ColumnEdge, ...] = (),
    *,
    paths: tuple[str, ...] = (),
    minutes: int = 0,
    run_id: str | None = None,
    sql: str | None = "INSERT INTO t SELECT ...",
) -> LineageEvent:
    return LineageEvent(
        run_id=run_id or str(uuid.uuid4()),
        job_name="sql",
        entity_type="SQL",
        principal="admin",
        event_time=T0 + dt.timedelta(minutes=minutes),
        target_table=target,
        source_tables=sources,
        source_paths=paths,
        column_edges=edges,
        sql=sql,
        target_schema=tuple((c, "STRING") for c in COLUMNS.get(target or "", [])),
    )


def grant(stratus: Stratus, kind: str, full_name: str, principal: str, *privs: str) -> None:
    ms = stratus.governance.metastore
    ms.update_grants(
        kind, ms.securable(kind, full_name).id, [{"principal": principal, "add": list(privs)}]
    )


def tag_pii(stratus: Stratus, table: str, column: str, kind: str) -> None:
    ms = stratus.governance.metastore
    ms.set_tags("table", ms.get_table(table).id, {"pii": kind}, column=column)


def delta_rows(stratus: Stratus, spec: Any) -> list[dict[str, Any]]:
    return DeltaTable(stratus.lakehouse.url(spec)).to_pyarrow_table().to_pylist()


# The graph used by most tests (A..F in main.lin; READER may see A, B, C, D, F only):
#   RAW (path) -> A -> B -> C -> D;  SECRET -> C;  B -> HIDDEN -> F
GRAPH = [
    event(A, paths=(RAW,), minutes=0),
    event(
        B,
        (A,),
        (
            ColumnEdge(A, "id", "id"),
            ColumnEdge(A, "email", "contact"),
            ColumnEdge(A, "amount", "total", "AGGREGATION"),
            ColumnEdge(A, "flag", "total", "FILTER"),
        ),
        minutes=1,
    ),
    event(
        C,
        (B, SECRET),
        (
            ColumnEdge(B, "id", "id"),
            ColumnEdge(B, "total", "total", "TRANSFORMATION"),
            ColumnEdge(SECRET, "note", "note"),
        ),
        minutes=2,
    ),
    event(D, (C,), (ColumnEdge(C, "id", "id"), ColumnEdge(C, "total", "total")), minutes=3),
    event(HIDDEN, (B,), (ColumnEdge(B, "id", "id"),), minutes=4),
    event(F, (HIDDEN,), (ColumnEdge(HIDDEN, "id", "id"),), minutes=5),
]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stratus]:
    home = tmp_path_factory.mktemp("lineage") / "home"
    stratus = Stratus.from_settings(Settings(home=home))
    stratus.bootstrap()
    ms = stratus.governance.metastore
    ms.create_schema("main", "lin", "admin")
    for full_name, cols in COLUMNS.items():
        ms.create_table(
            "main",
            "lin",
            full_name.rsplit(".", 1)[1],
            "admin",
            columns=[{"name": c, "type_text": "string", "position": i} for i, c in enumerate(cols)],
        )
    tag_pii(stratus, A, "email", "email")
    ms.create_principal(READER)
    for table in (A, B, C, D, F):
        grant(stratus, "table", table, READER, "SELECT")
    for e in GRAPH:
        stratus.lineage.start(e)
        stratus.lineage.complete(e)
    stratus.lineage.flush_all()
    yield stratus
    stratus.close()


@pytest.fixture(scope="module")
def app(lake: Stratus) -> Flask:
    return create_app(stratus=lake)


def node_ids(graph: dict[str, Any]) -> set[str]:
    return {n["id"] for n in graph["nodes"]}


def edge_pairs(graph: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["source"], e["target"]) for e in graph["edges"]}


# ---- the system tables ----------------------------------------------------------------------
def test_system_tables_hold_table_and_column_lineage(lake: Stratus) -> None:
    ms = lake.governance.metastore
    for spec in (TABLE_LINEAGE, COLUMN_LINEAGE):
        registered = ms.get_table(spec.full_name)  # in the metastore under system.access
        assert registered.storage_location == lake.lakehouse.url(spec)
    b_run = GRAPH[1]
    rows = [r for r in delta_rows(lake, TABLE_LINEAGE) if r["statement_id"] == b_run.run_id]
    assert len(rows) == 1
    row = rows[0]
    assert row["source_table_full_name"] == A and row["source_type"] == "TABLE"
    assert (row["source_table_catalog"], row["source_table_schema"], row["source_table_name"]) == (
        "main",
        "lin",
        "a",
    )
    assert row["target_table_full_name"] == B and row["target_type"] == "TABLE"
    assert row["target_table_name"] == "b" and row["source_path"] is None
    assert row["entity_type"] == "SQL" and row["entity_id"] == "sql"
    assert row["entity_run_id"] == b_run.run_id and row["created_by"] == "admin"
    assert row["event_time"] == b_run.event_time and row["event_date"] == b_run.event_time.date()
    assert row["metastore_id"] == ms.metastore().id

    path_rows = [r for r in delta_rows(lake, TABLE_LINEAGE) if r["statement_id"] == GRAPH[0].run_id]
    assert [
        (r["source_type"], r["source_path"], r["source_table_full_name"]) for r in path_rows
    ] == [("PATH", RAW, None)]

    cols = [r for r in delta_rows(lake, COLUMN_LINEAGE) if r["statement_id"] == b_run.run_id]
    assert {
        (r["source_column_name"], r["target_column_name"], r["transformation"]) for r in cols
    } == {
        ("id", "id", "IDENTITY"),
        ("email", "contact", "IDENTITY"),
        ("amount", "total", "AGGREGATION"),
        ("flag", "total", "FILTER"),
    }
    assert all(r["source_table_full_name"] == A and r["target_table_full_name"] == B for r in cols)


def test_reads_and_plain_writes_are_recorded_without_column_lineage(tmp_path: Path) -> None:
    stratus = Stratus.from_settings(Settings(home=tmp_path / "h"))
    read = event(None, (A,), sql="SELECT * FROM a")
    values = event(B, (), sql="INSERT INTO b VALUES (1)")
    stratus.lineage.store.write([read, values])  # synchronously, one commit per table
    rows = delta_rows(stratus, TABLE_LINEAGE)
    by_run = {r["statement_id"]: r for r in rows}
    assert by_run[read.run_id]["source_table_full_name"] == A
    assert by_run[read.run_id]["target_table_full_name"] is None
    assert by_run[read.run_id]["target_type"] is None
    assert by_run[values.run_id]["source_table_full_name"] is None
    assert by_run[values.run_id]["target_table_full_name"] == B
    assert stratus.lakehouse.version(COLUMN_LINEAGE) is None  # no column lineage at all
    with pytest.raises(NotFound):  # neither is an edge, and B is not in this metastore
        stratus.lineage.table_graph(LOCAL_ADMIN, B)
    stratus.close()


# ---- graphs ---------------------------------------------------------------------------------
def test_table_graph_upstream_and_downstream_with_depth(lake: Stratus) -> None:
    g = lake.lineage.table_graph
    up1 = g(LOCAL_ADMIN, C, "upstream", 1)
    assert node_ids(up1) == {C, B, SECRET}
    assert edge_pairs(up1) == {(B, C), (SECRET, C)}
    assert up1["nodes"][0]["id"] == C  # the root first
    up3 = g(LOCAL_ADMIN, C, "upstream", 3)
    assert node_ids(up3) == {C, B, SECRET, A, RAW}
    raw = next(n for n in up3["nodes"] if n["id"] == RAW)
    assert raw == {"id": RAW, "type": "path", "full_name": None, "path": RAW}
    a = next(n for n in up3["nodes"] if n["id"] == A)
    assert a["type"] == "table" and a["columns"] == COLUMNS[A] and a["pii_columns"] == ["email"]

    down1 = g(LOCAL_ADMIN, B, "downstream", 1)
    assert node_ids(down1) == {B, C, HIDDEN}
    down2 = g(LOCAL_ADMIN, B, "downstream", 2)
    assert node_ids(down2) == {B, C, HIDDEN, D, F}
    assert (HIDDEN, F) in edge_pairs(down2)

    both = g(LOCAL_ADMIN, B)  # default: both directions, depth 3
    assert both["direction"] == "both" and both["depth"] == 3
    assert node_ids(both) == {B, A, RAW, C, D, HIDDEN, F}
    assert SECRET not in node_ids(both)  # a sibling source of C, not up- or downstream of B
    edge = next(e for e in both["edges"] if (e["source"], e["target"]) == (A, B))
    assert edge["statement_ids"] == [GRAPH[1].run_id] and edge["statement_count"] == 1
    assert dt.datetime.fromisoformat(edge["last_event_time"]) == GRAPH[1].event_time


def test_edges_aggregate_runs_and_the_cache_follows_new_versions(tmp_path: Path) -> None:
    stratus = Stratus.from_settings(Settings(home=tmp_path / "h"))
    first, second = event(B, (A,), minutes=1), event(B, (A,), minutes=7)
    stratus.lineage.store.write([first])
    assert stratus.lineage.table_graph(LOCAL_ADMIN, B)["edges"][0]["statement_count"] == 1
    stratus.lineage.store.write([second])
    edge = stratus.lineage.table_graph(LOCAL_ADMIN, B)["edges"][0]
    assert edge["statement_count"] == 2
    assert edge["statement_ids"] == [second.run_id, first.run_id]  # newest first
    assert dt.datetime.fromisoformat(edge["last_event_time"]) == second.event_time
    stratus.close()


def test_column_graph(lake: Stratus) -> None:
    g = lake.lineage.column_graph(LOCAL_ADMIN, D, "total", "upstream", 3)
    assert g["root"] == f"{D}.total"
    assert node_ids(g) == {f"{D}.total", f"{C}.total", f"{B}.total", f"{A}.amount", f"{A}.flag"}
    by_pair = {(e["source"], e["target"]): e["transformation"] for e in g["edges"]}
    assert by_pair == {
        (f"{C}.total", f"{D}.total"): "IDENTITY",
        (f"{B}.total", f"{C}.total"): "TRANSFORMATION",
        (f"{A}.amount", f"{B}.total"): "AGGREGATION",
        (f"{A}.flag", f"{B}.total"): "FILTER",
    }
    amount = next(n for n in g["nodes"] if n["id"] == f"{A}.amount")
    assert amount == {
        "id": f"{A}.amount",
        "type": "column",
        "table": A,
        "column": "amount",
        "pii": None,
    }

    contact = lake.lineage.column_graph(LOCAL_ADMIN, B, "contact", "upstream", 1)
    email = next(n for n in contact["nodes"] if n["id"] == f"{A}.email")
    assert email["pii"] == "email"

    shallow = lake.lineage.column_graph(LOCAL_ADMIN, D, "total", "upstream", 1)
    assert node_ids(shallow) == {f"{D}.total", f"{C}.total"}
    down = lake.lineage.column_graph(LOCAL_ADMIN, A, "id", "downstream", 10)
    assert node_ids(down) == {f"{t}.id" for t in (A, B, C, D, HIDDEN, F)}
    # a column the table has, without lineage: a graph of one node
    assert node_ids(lake.lineage.column_graph(LOCAL_ADMIN, C, "note", "downstream")) == {
        f"{C}.note"
    }
    with pytest.raises(NotFound):
        lake.lineage.column_graph(LOCAL_ADMIN, C, "nope")


# ---- the API: visibility and parameters -----------------------------------------------------
def test_api_graph_for_the_admin(app: Flask, lake: Stratus) -> None:
    client = client_for(app, token_for(lake))
    resp = client.get("/api/v1/lineage/tables/lin.b?direction=upstream&depth=2")  # main. implied
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert set(body) == {"root", "direction", "depth", "nodes", "edges"}
    assert node_ids(body) == {B, A, RAW}
    assert edge_pairs(body) == {(A, B), (RAW, A)}
    for e in body["edges"]:
        assert set(e) == {"source", "target", "statement_ids", "statement_count", "last_event_time"}
    col = client.get(f"/api/v1/lineage/columns/{C}/total?direction=upstream&depth=1").json
    assert edge_pairs(col) == {(f"{B}.total", f"{C}.total")}
    assert col["edges"][0]["transformation"] == "TRANSFORMATION"


def test_api_shows_only_what_the_caller_may_see(app: Flask, lake: Stratus) -> None:
    client = client_for(app, token_for(lake, READER))
    # invisible or nonexistent roots: the same 404, no name leaks
    secret = client.get(f"/api/v1/lineage/tables/{SECRET}")
    nothing = client.get("/api/v1/lineage/tables/main.lin.nothing")
    assert secret.status_code == nothing.status_code == 404
    assert secret.json["detail"] == f"table {SECRET} does not exist"
    assert nothing.json["detail"] == "table main.lin.nothing does not exist"
    assert client.get(f"/api/v1/lineage/columns/{SECRET}/note").status_code == 404
    assert client.get(f"/api/v1/lineage/columns/{HIDDEN}/id").status_code == 404

    up = client.get(f"/api/v1/lineage/tables/{C}?direction=upstream&depth=5").json
    assert node_ids(up) == {C, B, A, RAW}  # SECRET, a source of C, left out
    assert all(SECRET not in (e["source"], e["target"]) for e in up["edges"])

    down = client.get(f"/api/v1/lineage/tables/{B}?direction=downstream&depth=5").json
    assert node_ids(down) == {B, C, D}  # not HIDDEN, nor F which is only reachable through it
    assert "hidden" not in json.dumps(down)

    col = client.get(f"/api/v1/lineage/columns/{C}/note?direction=upstream").json
    assert node_ids(col) == {f"{C}.note"} and col["edges"] == []
    ids = client.get(f"/api/v1/lineage/columns/{A}/id?direction=downstream&depth=10").json
    assert node_ids(ids) == {f"{t}.id" for t in (A, B, C, D)}

    stranger = "lineage-stranger"
    lake.governance.metastore.create_principal(stranger)
    other = client_for(app, token_for(lake, stranger))
    assert other.get(f"/api/v1/lineage/tables/{B}").status_code == 404


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("direction=sideways", "direction"),
        ("depth=0", "depth"),
        ("depth=11", "depth"),
        ("depth=three", "depth"),
        ("deep=3", "deep"),
    ],
)
def test_api_rejects_bad_parameters(app: Flask, lake: Stratus, query: str, parameter: str) -> None:
    client = client_for(app, token_for(lake))
    for url in (f"/api/v1/lineage/tables/{B}?{query}", f"/api/v1/lineage/columns/{B}/id?{query}"):
        resp = client.get(url)
        assert resp.status_code == 400, resp.json
        assert resp.json["parameter"] == parameter
    assert client.get("/api/v1/lineage/tables/not-a-name").status_code == 400


def test_api_needs_a_token(app: Flask) -> None:
    assert client_for(app, None).get(f"/api/v1/lineage/tables/{B}").status_code == 401


# ---- OpenLineage ------------------------------------------------------------------------------
def check_run_event(body: dict[str, Any], state: str, ev: LineageEvent) -> None:
    assert body["eventType"] == state
    assert dt.datetime.fromisoformat(body["eventTime"]).tzinfo is not None
    assert str(uuid.UUID(body["run"]["runId"])) == body["run"]["runId"] == ev.run_id
    assert body["job"]["namespace"] == "stratus" and body["job"]["name"] == ev.job_name
    assert body["producer"] and body["schemaURL"].startswith("https://openlineage.io/spec/")
    assert [(i["namespace"], i["name"]) for i in body["inputs"]] == [
        (NAMESPACE, t) for t in ev.source_tables
    ]
    assert [(o["namespace"], o["name"]) for o in body["outputs"]] == [(NAMESPACE, ev.target_table)]
    assert body["job"]["facets"]["sql"]["query"] == ev.sql
    out = body["outputs"][0]["facets"]
    assert [(f["name"], f["type"]) for f in out["schema"]["fields"]] == list(ev.target_schema)
    if state == "COMPLETE":  # what was written: on COMPLETE only
        fields = out["columnLineage"]["fields"]
        assert set(fields) == {e.target_column for e in ev.column_edges}
    else:
        assert "columnLineage" not in out
    if state == "FAIL":
        assert body["run"]["facets"]["errorMessage"]["message"] == "division by zero"
    else:
        assert "errorMessage" not in body["run"]["facets"]


NAMESPACE = "abfss://lake@example.dfs.core.windows.net/lakehouse"


def run_all_states(emitter: OpenLineageEmitter, ev: LineageEvent) -> None:
    emitter.start(ev)
    emitter.complete(ev)
    emitter.fail(ev, "division by zero")
    emitter.flush()


def test_openlineage_file_transport(lake: Stratus, tmp_path: Path) -> None:
    path = tmp_path / "ol" / "events.jsonl"
    emitter = OpenLineageEmitter(
        [file_transport(path)], NAMESPACE, lake.tables.protector.pii_columns
    )
    ev = GRAPH[1]  # A -> B, with A.email tagged pii=email
    run_all_states(emitter, ev)
    bodies = [json.loads(line) for line in path.read_text().splitlines()]
    assert [b["eventType"] for b in bodies] == ["START", "COMPLETE", "FAIL"]
    for body in bodies:
        check_run_event(body, body["eventType"], ev)
    fields = bodies[1]["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert fields["id"]["transformationType"] == "IDENTITY"
    assert fields["contact"]["transformationType"] == "MASKED"  # from a PII column
    assert fields["contact"]["inputFields"] == [
        {
            "namespace": NAMESPACE,
            "name": A,
            "field": "email",
            "transformations": [{"type": "DIRECT", "subtype": "IDENTITY", "masking": True}],
        }
    ]
    total = fields["total"]
    assert total["transformationType"] == "AGGREGATION"
    assert {
        (i["field"], i["transformations"][0]["type"], i["transformations"][0]["subtype"])
        for i in total["inputFields"]
    } == {
        ("amount", "DIRECT", "AGGREGATION"),
        ("flag", "INDIRECT", "FILTER"),
    }
    assert emitter.emitted == 3 and emitter.errors == 0
    emitter.close()


def test_openlineage_default_transport_is_the_file_under_home(lake: Stratus) -> None:
    lines = lake.settings.openlineage_path.read_text().splitlines()
    assert lake.settings.openlineage_path == lake.settings.home / "openlineage" / "events.jsonl"
    runs = {e.run_id for e in GRAPH}
    events = [e for e in map(json.loads, lines) if e["run"]["runId"] in runs]
    assert len(events) == 2 * len(GRAPH)  # START and COMPLETE of each run
    namespace = "file://" + lake.settings.lakehouse_url
    ingest = [e for e in events if e["run"]["runId"] == GRAPH[0].run_id]
    assert [e["eventType"] for e in ingest] == ["START", "COMPLETE"]
    assert ingest[1]["inputs"] == [
        {"namespace": "file", "name": RAW, "facets": {}, "inputFacets": {}}
    ]
    assert ingest[1]["outputs"][0]["namespace"] == namespace


class Recorder(http.server.BaseHTTPRequestHandler):
    bodies: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        type(self).bodies.append((self.path, body))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def marquez() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """A stand-in for Marquez recording the bodies POSTed to it."""
    handler = type("Handler", (Recorder,), {"bodies": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.bodies
    server.shutdown()
    server.server_close()


def test_openlineage_http_transport(
    lake: Stratus, tmp_path: Path, marquez: tuple[str, list[tuple[str, dict[str, Any]]]]
) -> None:
    url, bodies = marquez
    settings = Settings(home=tmp_path / "h", openlineage_url=url)
    transports = transports_for(settings)
    assert [t.kind for t in transports] == ["http"]  # the file only when set explicitly too
    emitter = OpenLineageEmitter(transports, NAMESPACE, lake.tables.protector.pii_columns)
    ev = GRAPH[2]  # B, SECRET -> C
    run_all_states(emitter, ev)
    assert [path for path, _ in bodies] == ["/api/v1/lineage"] * 3
    assert [b["eventType"] for _, b in bodies] == ["START", "COMPLETE", "FAIL"]
    for _, body in bodies:
        check_run_event(body, body["eventType"], ev)
    note = bodies[1][1]["outputs"][0]["facets"]["columnLineage"]["fields"]["note"]
    assert note["inputFields"][0]["name"] == SECRET
    assert emitter.errors == 0
    emitter.close()
    assert not (tmp_path / "h" / "openlineage").exists()


def test_openlineage_url_with_a_path_and_file_too(
    tmp_path: Path, marquez: tuple[str, list[tuple[str, dict[str, Any]]]]
) -> None:
    url, bodies = marquez
    for base, expected in (
        (f"{url}/marquez", "/marquez/api/v1/lineage"),
        (f"{url}/x/api/v1/lineage", "/x/api/v1/lineage"),
    ):
        settings = Settings(
            home=tmp_path / "h", openlineage_url=base, openlineage_file=tmp_path / "ol.jsonl"
        )
        emitter = OpenLineageEmitter(transports_for(settings), NAMESPACE)
        emitter.complete(GRAPH[3])
        emitter.flush()
        assert bodies[-1][0] == expected
        emitter.close()
    assert len((tmp_path / "ol.jsonl").read_text().splitlines()) == 2
    with pytest.raises(ValueError, match="STRATUS_OPENLINEAGE_URL"):
        Settings.from_env({"STRATUS_OPENLINEAGE_URL": "marquez:5000"})


class Broken(Transport):
    kind = "broken"
    config_class = Config

    def emit(self, event: Any) -> Any:
        raise RuntimeError("the lineage backend is down")


def test_emission_failures_never_reach_the_statement(tmp_path: Path) -> None:
    stratus = Stratus.from_settings(Settings(home=tmp_path / "h"))
    service = stratus.lineage
    service.emitter.close()
    service.emitter = OpenLineageEmitter([Broken(), Broken()], NAMESPACE)
    ev = event(B, (A,), (ColumnEdge(A, "id", "id"),))
    service.start(ev)
    service.complete(ev)
    service.fail(ev, "boom")
    service.flush_all()
    assert service.emitter.errors == 6 and service.emitter.emitted == 0
    assert service.stats()["runs_written"] == 1  # the system tables still got the run

    # an endpoint that does not answer: counted, not raised
    closed = Settings(home=tmp_path / "h2", openlineage_url="http://127.0.0.1:9")
    refused = OpenLineageEmitter(transports_for(closed), NAMESPACE)
    refused.complete(ev)
    refused.flush()
    assert refused.errors == 1
    refused.close()

    # the system tables cannot be written: counted, not raised
    def cannot_write(*_: Any) -> None:
        raise OSError("disk full")

    stratus.lakehouse.append = cannot_write  # type: ignore[method-assign]
    service.complete(ev)
    service.flush()
    assert service.stats()["runs_not_written"] == 1

    # even a broken queue does not raise into the caller
    service.store.record = cannot_write  # type: ignore[method-assign]
    service.emitter._report = cannot_write  # type: ignore[method-assign]
    service.start(ev)
    service.complete(ev)
    service.fail(ev, "boom")
    assert service.errors == 3
    stratus.close()


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    gate = threading.Event()

    class Slow(Transport):
        kind = "slow"
        config_class = Config

        def emit(self, event: Any) -> Any:
            gate.wait(10)

    emitter = OpenLineageEmitter([Slow()], NAMESPACE, max_queue=2)
    ev = event(B, (A,))
    for _ in range(10):
        emitter.complete(ev)  # never blocks
    assert emitter.dropped >= 7
    gate.set()
    emitter.close()


# ---- ingest lineage and PII ---------------------------------------------------------------------
def test_cli_ingest_records_path_to_table_lineage(tmp_path: Path) -> None:
    home = tmp_path / "home"
    src = tmp_path / "people.csv"
    src.write_text("id,city\n1,Lima\n2,Oslo\n")
    env = {"STRATUS_HOME": str(home), "STRATUS_LOG_LEVEL": "WARNING"}
    result = CliRunner().invoke(
        main, ["ingest", str(src), "--table", "crm.people", "--key", "id", "--json"], env=env
    )
    assert result.exit_code == 0, result.output

    weather = tmp_path / "obs.csv"
    weather.write_text(
        "city_id,date,hour,temp,wind_speed,description,precipitation,humidity\n"
        "lima,2024-01-01,0100,20,1,clear sky,0,70\n"
    )
    result = CliRunner().invoke(main, ["ingest", str(weather)], env=env)
    assert result.exit_code == 0, result.output

    stratus = Stratus.from_settings(Settings(home=home))
    rows = delta_rows(stratus, TABLE_LINEAGE)
    edges = {(r["source_type"], r["source_path"], r["target_table_full_name"]) for r in rows}
    assert edges == {
        ("PATH", str(src.resolve()), "main.crm.people"),
        ("PATH", str(weather.resolve()), "main.weather.hourly"),
    }
    assert {r["entity_type"] for r in rows} == {"INGEST"}
    assert {r["created_by"] for r in rows} == {"admin"}
    graph = stratus.lineage.table_graph(LOCAL_ADMIN, "main.crm.people", "upstream")
    assert edge_pairs(graph) == {(str(src.resolve()), "main.crm.people")}
    people = next(n for n in graph["nodes"] if n["id"] == "main.crm.people")
    assert people["columns"] == ["id", "city"]
    events = [json.loads(x) for x in stratus.settings.openlineage_path.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] * 2
    assert events[1]["job"]["name"] == "ingest"
    assert events[1]["inputs"][0]["name"] == str(src.resolve())
    assert [f["name"] for f in events[1]["outputs"][0]["facets"]["schema"]["fields"]] == [
        "id",
        "city",
    ]
    stratus.close()


def test_record_ingest_on_the_service(lake: Stratus, tmp_path: Path) -> None:
    ev = lake.lineage.record_ingest(tmp_path / "x.csv", D, "someone")
    assert ev.entity_type == "INGEST" and ev.source_paths == (str((tmp_path / "x.csv").resolve()),)
    assert ev.column_edges == () and ev.target_schema == tuple((c, "string") for c in COLUMNS[D])
    lake.lineage.flush()
    up = lake.lineage.table_graph(LOCAL_ADMIN, D, "upstream", 1)
    assert (ev.source_paths[0], D) in edge_pairs(up)


def test_inherited_pii(lake: Stratus) -> None:
    tag_pii(lake, SECRET, "note", "name")
    inherit = lake.lineage.inherited_pii
    assert inherit(()) == {}
    assert inherit(
        [
            ColumnEdge(A, "email", "contact"),  # copied: inherits
            ColumnEdge(A, "email", "domain", "TRANSFORMATION"),  # computed from it: inherits
            ColumnEdge(A, "email", "n", "AGGREGATION"),  # aggregated: inherits (conservative)
            ColumnEdge(A, "email", "total", "FILTER"),  # only selected rows: does not
            ColumnEdge(A, "amount", "total"),  # not PII
            ColumnEdge(A, "id", "both"),
            ColumnEdge(SECRET, "note", "both", "TRANSFORMATION"),
            ColumnEdge(A, "email", "mixed"),
            ColumnEdge(SECRET, "note", "mixed"),
            ColumnEdge("main.lin.unknown", "x", "x"),  # not in the metastore
        ]
    ) == {"contact": "email", "domain": "email", "n": "email", "both": "name", "mixed": "pii"}
