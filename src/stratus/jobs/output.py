"""A job's output table: registered in the catalog (owned by the submitter) and written with
delta-rs as ONE commit that replaces the job's slice (its cities and dates).

The commit is ``write_deltalake(mode="overwrite", predicate=<slice>)``: rows of the slice are
removed and the new ones added atomically; delta-rs refuses new rows outside the slice. Output
tables are partitioned by ``city_id``, so jobs over different cities touch different files and
commit side by side. When a concurrent commit did conflict (same cities, or a new table's first
files), delta-rs raises ``CommitFailedError`` and the write is retried on the new snapshot, like
``Lakehouse.merge``; after ``COMMIT_RETRIES`` lost races the job fails with
:class:`~stratus.lakehouse.tables.WriteConflictError`, and nothing was written.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass

import pyarrow as pa
from deltalake import CommitProperties, write_deltalake
from deltalake.exceptions import CommitFailedError
from sqlalchemy.exc import IntegrityError

from stratus.catalog.errors import AlreadyExists, NotFound
from stratus.catalog.metastore import MetastoreService
from stratus.catalog.registry import TableSpec
from stratus.catalog.specs import KEY_PROPERTY, register_spec, spec_from_table
from stratus.lakehouse import origin
from stratus.lakehouse.storage import StorageError, storage_io
from stratus.lakehouse.tables import COMMIT_RETRIES, Lakehouse, WriteConflictError

log = logging.getLogger(__name__)
JOB_TYPE_PROPERTY = "stratus.job_type"


class OutputMismatch(ValueError):
    """The output table exists with columns or partitioning the job type cannot write."""


@dataclass(frozen=True)
class WriteResult:
    rows: int
    version: int | None
    attempts: int


def check_compatible(metastore: MetastoreService, spec: TableSpec) -> bool:
    """True if ``spec.full_name`` exists and can take ``spec``'s rows, False if it does not
    exist; raises :class:`OutputMismatch` otherwise."""
    try:
        existing = spec_from_table(metastore.get_table(spec.full_name))
    except NotFound:
        return False
    want = [(f.name, f.type) for f in spec.schema]
    have = [(f.name, f.type) for f in existing.schema]
    if want != have or existing.partition_by != spec.partition_by:
        cols = ", ".join(f"{n} {t}" for n, t in have)
        raise OutputMismatch(
            f"table {spec.full_name} exists with other columns or partitioning ({cols}); "
            "choose another output table"
        )
    return True


def register(
    metastore: MetastoreService, lakehouse: Lakehouse, spec: TableSpec, owner: str, job_type: str
) -> bool:
    """Create the schema (if missing) and the table in the catalog, owned by ``owner``; True if
    this call created the table."""
    catalog, schema, _ = spec.full_name.split(".")
    try:
        metastore.get_schema(f"{catalog}.{schema}")
    except NotFound:
        # IntegrityError: the metastore checks then inserts, so a concurrent creator can win
        # between the two (it raises that instead of AlreadyExists)
        with contextlib.suppress(AlreadyExists, IntegrityError):
            metastore.create_schema(catalog, schema, owner)
    if check_compatible(metastore, spec):
        return False
    try:
        properties = {KEY_PROPERTY: ",".join(spec.key), JOB_TYPE_PROPERTY: job_type}
        register_spec(metastore, spec, owner, lakehouse.url(spec), properties)
    except (AlreadyExists, IntegrityError):  # a concurrent job registered it first
        check_compatible(metastore, spec)
        return False
    return True


def _ensure_delta(lakehouse: Lakehouse, spec: TableSpec) -> None:
    for attempt in range(3):
        try:
            lakehouse.ensure(spec)
            return
        except StorageError:  # lost the race to create version 0: it exists now
            lakehouse.invalidate(spec)
            if lakehouse.table(spec) is not None:
                return
            if attempt == 2:
                raise
            time.sleep(0.05)


def prepare(spec: TableSpec, data: pa.Table) -> pa.Table:
    data = data.select(spec.schema.names).cast(spec.schema)
    if spec.sort_by:
        data = data.sort_by([(c, "ascending") for c in spec.sort_by])
    return data.combine_chunks()


def replace_slice(
    lakehouse: Lakehouse,
    spec: TableSpec,
    data: pa.Table,
    predicate: str,
    metadata: dict[str, str],
    retries: int = COMMIT_RETRIES,
) -> WriteResult:
    """Replace the rows matching ``predicate`` by ``data`` in one commit (see module doc)."""
    _ensure_delta(lakehouse, spec)
    data = prepare(spec, data)
    url = lakehouse.url(spec)
    for attempt in range(1, retries + 1):
        try:
            with storage_io(f"cannot write table {spec.full_name}"):
                write_deltalake(
                    url,
                    data,
                    mode="overwrite",
                    predicate=predicate,
                    partition_by=spec.partition_by or None,
                    storage_options=lakehouse.storage.options,
                    writer_properties=lakehouse.writer_properties(),
                    commit_properties=CommitProperties(
                        custom_metadata={**origin.commit_metadata(), **metadata}
                    ),
                )
        except CommitFailedError as exc:
            log.warning(
                "job output %s: commit conflicted (attempt %d/%d): %s",
                spec.full_name,
                attempt,
                retries,
                str(exc).splitlines()[0],
            )
            time.sleep(random.uniform(0.02, 0.1) * attempt)  # noqa: S311 - jitter, not crypto
            continue
        lakehouse.invalidate(spec)
        return WriteResult(data.num_rows, _committed_version(lakehouse, spec, metadata), attempt)
    raise WriteConflictError(
        f"{spec.full_name}: concurrent writers changed the same rows {retries} times in a row; "
        "nothing was written (submit the job again)"
    )


def _committed_version(lakehouse: Lakehouse, spec: TableSpec, metadata: dict[str, str]) -> int:
    """The version of our commit (found by its metadata among the latest ones)."""
    key, value = next(iter(metadata.items()))
    for entry in lakehouse.commit_log(spec, 20):
        if entry.get(key) == value:
            return int(entry["version"])
    version = lakehouse.version(spec)
    if version is None:
        raise StorageError(f"cannot read table {spec.full_name}: it has no version")
    return version
