"""OpenLineage run events (START, COMPLETE, FAIL) for every run, through ``openlineage-python``.

Events carry the job (namespace ``stratus``, the run's job name), the run id, input and output
datasets (namespace: the lakehouse URL; name: the table's full name; files read by an ingest are
datasets in the ``file`` namespace named by their path) and the facets ``schema`` (target
columns) on the output, ``sql`` and ``jobType`` on the job, ``processing_engine`` on the run,
``errorMessage`` on FAIL and ``columnLineage`` on the output of COMPLETE (it describes what was
written, and it is most of an event's size and cost). In ``columnLineage`` each input field has
a transformation (type DIRECT or INDIRECT, subtype IDENTITY, TRANSFORMATION, AGGREGATION,
FILTER, JOIN, ..., ``masking`` true when the source column is PII-tagged); a field's
``transformationType`` is MASKED when any of its sources is PII, IDENTITY when all are copies,
otherwise the subtype.

Transports: JSON lines appended to ``Settings.openlineage_path`` by default; with
``STRATUS_OPENLINEAGE_URL`` (Marquez's base URL, or the full ``.../api/v1/lineage`` endpoint)
POSTed there instead (and to the file as well when ``STRATUS_OPENLINEAGE_FILE`` is set).

Events are built and sent by one background thread, in the order they were reported, so a run
only pays for a queue put and a slow or dead endpoint never holds up a statement. Failures are
logged and counted (``errors``); when the queue is full events are dropped and counted
(``dropped``). Nothing here raises into the caller.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    error_message_run,
    job_type_job,
    processing_engine_run,
    schema_dataset,
    sql_job,
)
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.transport.transport import Transport

from stratus.batching import BatchWorker
from stratus.config import Settings
from stratus.lineage.model import ColumnEdge, LineageEvent

log = logging.getLogger(__name__)

JOB_NAMESPACE = "stratus"
FILE_NAMESPACE = "file"
MARQUEZ_ENDPOINT = "api/v1/lineage"
DIRECT = frozenset({"IDENTITY", "TRANSFORMATION", "AGGREGATION"})
JOB_TYPES = {"SQL": "QUERY", "INGEST": "INGEST", "JOB": "JOB"}
MAX_QUEUE = 10_000

try:
    STRATUS_VERSION = metadata.version("stratus")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    STRATUS_VERSION = "0"
PRODUCER = f"urn:stratus:{STRATUS_VERSION}"  # a URI naming the producing software and version


def dataset_namespace(lakehouse_url: str) -> str:
    """The namespace of the lakehouse's tables: its URL (``file://`` + path when local)."""
    return lakehouse_url if "://" in lakehouse_url else "file://" + lakehouse_url


def run_uuid(run_id: str) -> str:
    """OpenLineage wants a UUID: ``run_id`` as one, or a stable UUID derived from it."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "stratus:run:" + run_id))


def transports_for(settings: Settings) -> list[Transport]:
    """HTTP when a URL is configured (plus the file if one is set explicitly), else the file."""
    out: list[Transport] = []
    if settings.openlineage_url:
        url = settings.openlineage_url
        endpoint = MARQUEZ_ENDPOINT
        if url.rstrip("/").endswith("/" + MARQUEZ_ENDPOINT):
            url, endpoint = url.rstrip("/"), ""
        elif not url.endswith("/"):
            url += "/"  # so the endpoint is joined below the URL's path, not in its place
        config = HttpConfig.from_dict(
            {
                "url": url,
                "endpoint": endpoint,
                "timeout": 5.0,
                "retry": {"total": 2, "connect": 2, "read": 2, "backoff_factor": 0.2},
            }
        )
        out.append(HttpTransport(config))
    if not settings.openlineage_url or settings.openlineage_file:
        out.append(file_transport(settings.openlineage_path))
    return out


def file_transport(path: Path) -> FileTransport:
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileTransport(FileConfig(log_file_path=str(path), append=True))


@dataclass(frozen=True)
class _Report:
    state: RunState
    event: LineageEvent
    at: dt.datetime
    error: str | None = None


class OpenLineageEmitter:
    def __init__(
        self,
        transports: Sequence[Transport],
        namespace: str,
        pii_columns: Callable[[str], Mapping[str, str]] = lambda _t: {},
        *,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        self.namespace = namespace
        self.pii_columns = pii_columns
        self.clients = [OpenLineageClient(transport=t) for t in transports]
        self._engine_facet = processing_engine_run.ProcessingEngineRunFacet(
            version=STRATUS_VERSION, name="Stratus", producer=PRODUCER
        )
        self._job_types: dict[str, job_type_job.JobTypeJobFacet] = {}
        self.emitted = 0  # events delivered (per transport)
        self.errors = 0  # events a transport failed to deliver, or that could not be built
        self._worker: BatchWorker[_Report] = BatchWorker(
            "openlineage-emitter", self._send, batch_size=1, max_queue=max_queue
        )

    @property
    def dropped(self) -> int:
        return self._worker.dropped

    # ---- reporting (the statement's thread: a queue put) ---------------------------------
    def start(self, event: LineageEvent) -> None:
        self._report(RunState.START, event)

    def complete(self, event: LineageEvent) -> None:
        self._report(RunState.COMPLETE, event)

    def fail(self, event: LineageEvent, error: str) -> None:
        self._report(RunState.FAIL, event, error)

    def _report(self, state: RunState, event: LineageEvent, error: str | None = None) -> None:
        if not self.clients:
            return
        try:
            self._worker.put(_Report(state, event, dt.datetime.now(dt.UTC), error))
        except Exception:  # pragma: no cover - a put does not fail; never let it reach a caller
            self.errors += 1
            log.exception("could not queue an OpenLineage event")

    def flush(self, timeout: float = 30.0) -> None:
        self._worker.flush(timeout)

    def close(self) -> None:
        self._worker.close()
        for client in self.clients:
            try:
                client.close(timeout=5.0)
            except Exception:
                log.exception("could not close an OpenLineage transport")

    # ---- sending (the emitter thread) ----------------------------------------------------
    def _send(self, reports: list[_Report]) -> None:
        for report in reports:
            try:
                run_event = self.build(report.state, report.event, report.at, report.error)
            except Exception:
                self.errors += len(self.clients)
                log.exception("could not build the OpenLineage event of run %s", report.event)
                continue
            for client in self.clients:
                try:
                    client.emit(run_event)
                    self.emitted += 1
                except Exception as exc:
                    self.errors += 1
                    log.warning(
                        "OpenLineage %s event of run %s not delivered by %s: %s",
                        report.state.value,
                        report.event.run_id,
                        client.transport.kind,
                        exc,
                    )
            time.sleep(0)  # let a statement waiting for the GIL have it now, not in 5 ms

    def build(
        self,
        state: RunState,
        event: LineageEvent,
        at: dt.datetime | None = None,
        error: str | None = None,
    ) -> RunEvent:
        """The RunEvent for ``event`` in ``state`` (START, COMPLETE or FAIL)."""
        at = at or dt.datetime.now(dt.UTC)
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
        run_facets: dict[str, Any] = {"processing_engine": self._engine_facet}
        if state == RunState.FAIL:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error or "failed",
                programmingLanguage="SQL" if event.sql else "PYTHON",
                producer=PRODUCER,
            )
        job_facets: dict[str, Any] = {"jobType": self._job_type(event.entity_type)}
        if event.sql:
            job_facets["sql"] = sql_job.SQLJobFacet(
                query=event.sql, dialect="databricks", producer=PRODUCER
            )
        inputs = [InputDataset(namespace=self.namespace, name=t) for t in event.source_tables]
        inputs += [
            InputDataset(namespace=self._path_namespace(p), name=p) for p in event.source_paths
        ]
        outputs = []
        if event.target_table:
            outputs.append(
                OutputDataset(
                    namespace=self.namespace,
                    name=event.target_table,
                    facets=self._output_facets(event, state == RunState.COMPLETE),
                )
            )
        return RunEvent(
            eventType=state,
            eventTime=at.isoformat(),
            run=Run(runId=run_uuid(event.run_id), facets=run_facets),
            job=Job(namespace=JOB_NAMESPACE, name=event.job_name, facets=job_facets),
            inputs=inputs,
            outputs=outputs,
            producer=PRODUCER,
        )

    def _path_namespace(self, path: str) -> str:
        return self.namespace if path.startswith("/Volumes/") else FILE_NAMESPACE

    def _job_type(self, entity_type: str) -> job_type_job.JobTypeJobFacet:
        found = self._job_types.get(entity_type)
        if found is None:
            found = self._job_types[entity_type] = job_type_job.JobTypeJobFacet(
                processingType="BATCH",
                integration="STRATUS",
                jobType=JOB_TYPES.get(entity_type, entity_type),
                producer=PRODUCER,
            )
        return found

    def _output_facets(self, event: LineageEvent, lineage: bool) -> dict[str, Any]:
        facets: dict[str, Any] = {}
        if event.target_schema:
            facets["schema"] = schema_dataset.SchemaDatasetFacet(
                fields=[
                    schema_dataset.SchemaDatasetFacetFields(name=name, type=type_)
                    for name, type_ in event.target_schema
                ],
                producer=PRODUCER,
            )
        if lineage and event.column_edges:
            facets["columnLineage"] = self._column_lineage(event.column_edges)
        return facets

    def _column_lineage(
        self, edges: Sequence[ColumnEdge]
    ) -> column_lineage_dataset.ColumnLineageDatasetFacet:
        pii: dict[str, Mapping[str, str]] = {}
        by_target: dict[str, list[ColumnEdge]] = {}
        for e in dict.fromkeys(edges):
            by_target.setdefault(e.target_column, []).append(e)
            if e.source_table not in pii:
                pii[e.source_table] = self.pii_columns(e.source_table)
        fields = {}
        for target, sources in by_target.items():
            inputs = []
            masked = False
            for e in sources:
                is_pii = e.source_column in pii[e.source_table]
                masked = masked or is_pii
                inputs.append(
                    column_lineage_dataset.InputField(
                        namespace=self.namespace,
                        name=e.source_table,
                        field=e.source_column,
                        transformations=[
                            column_lineage_dataset.Transformation(
                                type="DIRECT" if e.transformation in DIRECT else "INDIRECT",
                                subtype=e.transformation,
                                masking=is_pii,
                            )
                        ],
                    )
                )
            fields[target] = column_lineage_dataset.Fields(
                inputFields=inputs,
                transformationType=_field_type(sources, masked),
                transformationDescription=", ".join(sorted({e.transformation for e in sources})),
            )
        return column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields, producer=PRODUCER)


def _field_type(sources: Sequence[ColumnEdge], masked: bool) -> str:
    if masked:
        return "MASKED"
    kinds = [e.transformation for e in sources if e.transformation in DIRECT]
    if kinds and all(k == "IDENTITY" for k in kinds):
        return "IDENTITY"
    others = [k for k in kinds if k != "IDENTITY"] or [e.transformation for e in sources]
    return "AGGREGATION" if "AGGREGATION" in others else others[0]
