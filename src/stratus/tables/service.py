"""Any catalog table: ingest a file into it (creating it if needed), read its rows with PII
decrypted or masked for the caller, change which columns are PII, rotate keys.

Authorization stays with the caller (the API or CLI asks the Authorizer first); this service
decides only what the caller's privileges mean for the data: UNMASK (or ownership) shows
plaintext, anything less shows masks, and filters on masked columns compare masked values.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from stratus.catalog import registry
from stratus.catalog.errors import InvalidArgument, NotFound
from stratus.catalog.metastore import MetastoreService
from stratus.catalog.registry import TableSpec
from stratus.catalog.specs import KEY_PROPERTY, spec_from_table
from stratus.catalog.types import column_info
from stratus.engine import LocalEngine, TableScan
from stratus.engine.local import duck_type
from stratus.ingest.readers import IngestInputError, detect_format
from stratus.ingest.service import file_sha256
from stratus.lakehouse.tables import Lakehouse
from stratus.pii import Detection, detect_pii
from stratus.tables.protect import PII_TAG, ColumnProtector, token_column

log = logging.getLogger(__name__)


@dataclass
class TableIngestReport:
    ingest_id: str
    source: str
    table: str
    format: str
    created: bool = False
    read: int = 0
    written: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    quarantined: int = 0
    pii_tagged: dict[str, str] = field(default_factory=dict)  # column -> "kind: reason"
    version: int | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class RowsPage:
    table: pa.Table
    next_cursor: str | None
    masked: list[str]


def qualify(name: str) -> str:
    """``schema.table`` -> ``main.schema.table``; three-part names pass through."""
    parts = name.split(".")
    if len(parts) == 2:
        return f"main.{name}"
    if len(parts) != 3 or not all(parts):
        raise InvalidArgument(f"table {name!r} must be catalog.schema.table", parameter="table")
    return name


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class TableService:
    def __init__(
        self,
        metastore: MetastoreService,
        lakehouse: Lakehouse,
        engine: LocalEngine,
        protector: ColumnProtector,
    ) -> None:
        self.metastore = metastore
        self.lakehouse = lakehouse
        self.engine = engine
        self.protector = protector

    # ---- specs ---------------------------------------------------------------------------
    def spec(self, full_name: str) -> TableSpec:
        try:
            return registry.resolve(full_name) if full_name.count(".") == 2 else _never()
        except registry.UnknownTableError:
            return spec_from_table(self.metastore.get_table(full_name))

    def physical(self, spec: TableSpec) -> tuple[TableSpec, dict[str, str]]:
        pii = self.protector.pii_columns(spec.full_name)
        return self.protector.physical_spec(spec, pii), pii

    # ---- ingest --------------------------------------------------------------------------
    def ingest(
        self,
        path: Path,
        table: str,
        *,
        owner: str,
        key: Sequence[str] = (),
        pii: Mapping[str, str | None] | None = None,
    ) -> TableIngestReport:
        """Load ``path`` into ``table``: create it (schema inferred, PII detected and tagged)
        if needed, then upsert on its key with PII columns encrypted, in one commit."""
        started = time.monotonic()
        full_name = qualify(table)
        if not path.is_file():
            raise IngestInputError(f"{path}: no such file")
        fmt = detect_format(path)
        if fmt == "open-meteo":
            raise IngestInputError("Open-Meteo responses go into the weather table")
        incoming = _read_any(path, fmt)
        report = TableIngestReport(
            uuid.uuid4().hex, str(path), full_name, fmt, read=incoming.num_rows
        )
        try:
            existing = self.metastore.get_table(full_name)
        except NotFound:
            existing = None
        if existing is None:
            self._create(full_name, incoming, owner, key, pii, report)
        spec = self.spec(full_name)
        if not spec.key:
            raise IngestInputError(f"{full_name} has no key: recreate it with --key COLUMN")
        physical, pii_cols = self.physical(spec)
        con = duckdb.connect()
        try:
            con.register("incoming", incoming)
            good = self._validate(con, spec, incoming, pii_cols, path, report)
            good = self._dedupe(con, spec, good, report)
            changes = self._changes(con, spec, physical, pii_cols, good, report)
        finally:
            con.close()
        if changes.num_rows:
            encrypted = self.protector.encrypt(spec, changes, pii_cols)
            result = self.lakehouse.merge(physical, encrypted)
            report.inserted, report.updated = result.inserted, result.updated
            report.written = result.inserted + result.updated
            report.version = result.version
        else:
            self.lakehouse.ensure(physical)
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def _create(
        self,
        full_name: str,
        incoming: pa.Table,
        owner: str,
        key: Sequence[str],
        overrides: Mapping[str, str | None] | None,
        report: TableIngestReport,
    ) -> None:
        if not key:
            raise IngestInputError(f"{full_name} does not exist: give --key COLUMN to create it")
        missing = [k for k in key if k not in incoming.column_names]
        if missing:
            raise IngestInputError(f"key column(s) {', '.join(missing)} not in the file")
        catalog, schema, name = full_name.split(".")
        try:
            self.metastore.get_schema(f"{catalog}.{schema}")
        except NotFound:
            self.metastore.create_schema(catalog, schema, owner)
        detected: dict[str, Detection] = detect_pii(
            {c: incoming.column(c) for c in incoming.column_names if c not in key}
        )
        tags: dict[str, str] = {}
        for column, det in detected.items():
            tags[column] = det.kind
            report.pii_tagged[column] = f"{det.kind}: {det.reason}"
        for column, kind in (overrides or {}).items():
            if column not in incoming.column_names:
                raise IngestInputError(f"--pii names {column!r}, which is not in the file")
            if kind and column in key:
                raise IngestInputError(
                    f"key column {column!r} cannot be PII: keys are matched and ordered in "
                    "plaintext (use a surrogate key)"
                )
            if kind:
                tags[column] = kind
                report.pii_tagged[column] = f"{kind}: set by the caller"
            else:
                tags.pop(column, None)
                report.pii_tagged.pop(column, None)
        schema_ = pa.schema(
            [
                pa.field(f.name, f.type if not pa.types.is_null(f.type) else pa.string())
                for f in incoming.schema
            ]
        )
        table = self.metastore.create_table(
            catalog,
            schema,
            name,
            owner,
            columns=[column_info(f, i, None) for i, f in enumerate(schema_)],
            storage_location=self.lakehouse.storage.table_url(f"{catalog}/{schema}/{name}"),
            properties={KEY_PROPERTY: ",".join(key)},
            comment=f"created by ingest of {Path(report.source).name}",
        )
        for column, kind in tags.items():
            self.metastore.set_tags("table", table.id, {PII_TAG: kind}, column=column)
        report.created = True

    def _validate(
        self,
        con: duckdb.DuckDBPyConnection,
        spec: TableSpec,
        incoming: pa.Table,
        pii: Mapping[str, str],
        path: Path,
        report: TableIngestReport,
    ) -> pa.Table:
        """Cast to the table's types; rows that do not fit go to quarantine (PII left out)."""
        missing = [f.name for f in spec.schema if f.name not in incoming.column_names]
        if any(k in missing for k in spec.key):
            raise IngestInputError(f"{path.name}: missing key column(s) {', '.join(spec.key)}")
        extra = [c for c in incoming.column_names if c not in spec.schema.names]
        if extra:
            report.warnings.append(f"ignored column(s) not in the table: {', '.join(extra)}")
        if missing:
            report.warnings.append(f"column(s) {', '.join(missing)} absent: stored as null")
        typed, reasons = [], []
        for f in spec.schema:
            name = _ident(f.name)
            if f.name not in incoming.column_names:
                typed.append(f"CAST(NULL AS {duck_type(f.type)}) AS {name}")
                continue
            cast = f"TRY_CAST({name} AS {duck_type(f.type)})"
            typed.append(f"{cast} AS {name}")
            shown = "a value" if f.name in pii else f"'||CAST({name} AS VARCHAR)||'"
            what = f"{f.name}: {shown} is not {duck_type(f.type)}"
            reasons.append(f"CASE WHEN {name} IS NOT NULL AND {cast} IS NULL THEN '{what}' END")
            if f.name in spec.key:
                reasons.append(f"CASE WHEN {name} IS NULL THEN '{f.name}: missing (key)' END")
        # the raw record kept with a quarantined row never holds PII columns
        raw_fields = ", ".join(f"'{c}': {_ident(c)}" for c in incoming.column_names if c not in pii)
        raw = f"CAST(to_json({{{raw_fields}}}) AS VARCHAR)" if raw_fields else "'{}'"
        con.execute(
            f"""CREATE TEMP TABLE checked AS
            SELECT row_number() OVER () AS _record, {", ".join(typed)},
                   concat_ws('; ', {", ".join(reasons) or "NULL"}) AS _reason,
                   {raw} AS _raw
            FROM incoming"""
        )
        bad = con.sql(
            """SELECT ? AS ingest_id, ? AS target_table, ? AS source, ? AS source_sha256,
                      _record AS record, _reason AS reason, _raw AS raw, now() AS quarantined_at
               FROM checked WHERE _reason <> '' ORDER BY _record""",
            params=[report.ingest_id, report.table, str(path), file_sha256(path)],
        ).to_arrow_table()
        report.quarantined = bad.num_rows
        if bad.num_rows:
            self.lakehouse.merge(registry.QUARANTINE, bad, update=False)
        cols = ", ".join(_ident(c) for c in spec.schema.names)
        return con.sql(
            f"SELECT _record, {cols} FROM checked WHERE _reason = '' ORDER BY _record"
        ).to_arrow_table()

    def _dedupe(
        self,
        con: duckdb.DuckDBPyConnection,
        spec: TableSpec,
        good: pa.Table,
        report: TableIngestReport,
    ) -> pa.Table:
        con.register("good_rows", good)
        keys = ", ".join(_ident(k) for k in spec.key)
        cols = ", ".join(_ident(c) for c in spec.schema.names)
        deduped = con.sql(
            f"""SELECT {cols} FROM good_rows
                QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY _record DESC) = 1"""
        ).to_arrow_table()
        report.duplicates = good.num_rows - deduped.num_rows
        return deduped

    def _changes(
        self,
        con: duckdb.DuckDBPyConnection,
        spec: TableSpec,
        physical: TableSpec,
        pii: Mapping[str, str],
        good: pa.Table,
        report: TableIngestReport,
    ) -> pa.Table:
        """Rows that are new or differ from what is stored. PII columns are compared through
        their HMAC tokens, so nothing is decrypted."""
        if good.num_rows == 0:
            return good
        incoming = good
        for column in pii:
            cipher = self.protector.cipher(spec.full_name, column, spec.schema.field(column).type)
            incoming = incoming.append_column(
                token_column(column), cipher.token(good.column(column).combine_chunks())
            )
        scan = TableScan(physical, self.lakehouse.prune(physical))
        stored_cols = [c for c in physical.schema.names if c not in pii]
        stored = self.engine.query(
            f"SELECT {', '.join(_ident(c) for c in stored_cols)} FROM {{t}}", {"t": scan}
        )
        con.register("incoming_rows", incoming)
        con.register("stored_rows", stored)
        on = " AND ".join(f"i.{_ident(k)} = s.{_ident(k)}" for k in spec.key)
        cmp_cols = [c for c in stored_cols if c not in spec.key]
        left = ", ".join(f"i.{_ident(c)}" for c in cmp_cols) or "1"
        right = ", ".join(f"s.{_ident(c)}" for c in cmp_cols) or "1"
        first_key = _ident(spec.key[0])
        changed = con.sql(
            f"""SELECT i.* FROM incoming_rows i LEFT JOIN stored_rows s ON {on}
                WHERE s.{first_key} IS NULL OR ({left}) IS DISTINCT FROM ({right})"""
        ).to_arrow_table()
        report.unchanged = good.num_rows - changed.num_rows
        # the tokens go along: encrypt() reuses them instead of computing them again
        return changed.select([*spec.schema.names, *(token_column(c) for c in pii)])

    # ---- read ----------------------------------------------------------------------------
    def rows(
        self,
        full_name: str,
        *,
        unmask: bool,
        fields: Sequence[str] | None = None,
        filters: Mapping[str, str] | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> RowsPage:
        if full_name.count(".") == 2 and self.metastore.get_table(full_name).table_type == "VIEW":
            raise InvalidArgument(f"{full_name} is a view: query it with POST /api/v1/sql")
        spec = self.spec(full_name)
        physical, pii = self.physical(spec)
        names = list(spec.schema.names)
        fields = list(fields or names)
        unknown = [f for f in fields if f not in names]
        if unknown:
            raise InvalidArgument(
                f"unknown field(s) {', '.join(unknown)}; columns are {', '.join(names)}",
                parameter="fields",
            )
        order = list(spec.key) or names
        where, params = [], []
        post: dict[str, str] = {}
        for column, value in (filters or {}).items():
            if column not in names:
                raise InvalidArgument(f"unknown column {column!r} to filter on", parameter=column)
            if column in pii and not unmask:
                post[column] = value  # masked: compare with the masked text, after masking
                continue
            typed = _filter_value(spec.schema.field(column), value)
            if column in pii:  # UNMASK: equality through the tokens of every data-key version
                toks = self.protector.tokens(spec, column, typed)
                where.append(f"{_ident(token_column(column))} IN ({', '.join('?' for _ in toks)})")
                params += toks
                continue
            ftype = duck_type(spec.schema.field(column).type)
            where.append(f"{_ident(column)} = CAST(? AS {ftype})")
            params.append(typed)
        if cursor:
            fields_in_order = [spec.schema.field(c) for c in order]
            after = _decode_cursor(cursor, fields_in_order)
            cols = ", ".join(_ident(c) for c in order)
            marks = ", ".join(f"CAST(? AS {duck_type(f.type)})" for f in fields_in_order)
            where.append(f"({cols}) > ({marks})")
            params += after
        # only the columns the page needs: PII columns nobody asked for are not decrypted
        needed = set(fields) | set(order) | set(post)
        wanted = [c for c in names if c in needed]
        sql = f"SELECT {', '.join(_ident(c) for c in wanted)} FROM {{t}}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + ", ".join(_ident(c) for c in order)
        if not post:
            sql += f" LIMIT {int(limit) + 1}"
        scan = TableScan(physical, self.lakehouse.prune(physical))
        raw = self.engine.query(sql, {"t": scan}, params)
        shown = self.protector.reveal(spec, raw, pii, unmasked=unmask)
        for column, value in post.items():
            shown = shown.filter(pc.equal(shown.column(column), pa.scalar(value, pa.string())))
        next_cursor = None
        if shown.num_rows > limit:
            shown = shown.slice(0, limit)
            last = shown.slice(limit - 1, 1).select(order).to_pylist()[0]
            next_cursor = _encode_cursor([last[c] for c in order])
        masked = [] if unmask else [c for c in fields if c in pii]
        return RowsPage(shown.select(fields), next_cursor, masked)

    # ---- PII lifecycle -------------------------------------------------------------------
    def set_pii(self, full_name: str, column: str, kind: str | None) -> int | None:
        """Tag ``column`` as PII of ``kind`` (encrypting it) or untag it (``None``:
        decrypting it), rewriting the table as one new version. When a column becomes
        encrypted, files and log entries that held its plaintext are purged."""
        spec = self.spec(full_name)
        if column not in spec.schema.names:
            raise InvalidArgument(f"{full_name} has no column {column!r}", parameter="column")
        if kind is not None and column in spec.key:
            raise InvalidArgument(
                f"{column!r} is a key column of {full_name}: keys cannot be PII",
                parameter="column",
            )
        physical, pii = self.physical(spec)
        table = self.metastore.get_table(full_name)
        if (kind is None and column not in pii) or (kind is not None and pii.get(column) == kind):
            return None
        plain = self._read_plain(spec, physical, pii)
        if kind is None:
            self.metastore.unset_tags("table", table.id, [PII_TAG], column=column)
        else:
            self.metastore.set_tags("table", table.id, {PII_TAG: kind}, column=column)
        new_physical, new_pii = self.physical(spec)
        version = self._overwrite(new_physical, self.protector.encrypt(spec, plain, new_pii))
        if kind is not None and column not in pii:
            self._purge_history(new_physical)
        return version

    def rotate_data(self, full_name: str) -> int | None:
        """New data-key versions for every PII column, data re-encrypted (old versions stay
        readable while their keys exist)."""
        spec = self.spec(full_name)
        physical, pii = self.physical(spec)
        if not pii:
            return None
        plain = self._read_plain(spec, physical, pii)
        for column in pii:
            self.protector.keys.new_data_key_version(f"{full_name}.{column}")
        self.protector.forget()
        physical, pii = self.physical(spec)
        return self._overwrite(physical, self.protector.encrypt(spec, plain, pii))

    def pii_tables(self) -> list[str]:
        out = []
        for row in self.metastore.column_tags():
            if row["tag_name"] == PII_TAG:
                name = f"{row['catalog_name']}.{row['schema_name']}.{row['table_name']}"
                if name not in out:
                    out.append(name)
        return out

    def _read_plain(self, spec: TableSpec, physical: TableSpec, pii: Mapping[str, str]) -> pa.Table:
        scan = TableScan(physical, self.lakehouse.prune(physical))
        raw = self.engine.query("SELECT * FROM {t}", {"t": scan})
        return self.protector.reveal(spec, raw, pii, unmasked=True)

    def _overwrite(self, physical: TableSpec, data: pa.Table) -> int:
        url = self.lakehouse.url(physical)
        write_deltalake(
            url,
            self.lakehouse._prepare_rows(physical, data),
            mode="overwrite",
            schema_mode="overwrite",
            partition_by=physical.partition_by or None,
            storage_options=self.lakehouse.storage.options,
        )
        return self.lakehouse._after_write(physical)

    def _purge_history(self, physical: TableSpec) -> None:
        """Delete every file and log entry older than the current version (they may hold the
        plaintext of a newly encrypted column, in data or in column statistics)."""
        url = self.lakehouse.url(physical)
        opts = self.lakehouse.storage.options
        table = DeltaTable(url, storage_options=opts)
        table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
        table.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
        table.create_checkpoint()
        time.sleep(0.01)
        table.cleanup_metadata()
        table.alter.set_table_properties({"delta.logRetentionDuration": "interval 30 days"})
        self.lakehouse.invalidate(physical)


def _never() -> TableSpec:
    raise registry.UnknownTableError("")


def _read_any(path: Path, fmt: str) -> pa.Table:
    con = duckdb.connect()
    try:
        if fmt == "csv":
            rel = con.read_csv(str(path))
        elif fmt == "parquet":
            rel = con.read_parquet(str(path))
        else:
            rel = con.read_json(str(path), format="newline_delimited")
        return rel.to_arrow_table()
    except duckdb.Error as exc:
        raise IngestInputError(f"{path.name}: cannot read it as {fmt} ({exc})") from None
    finally:
        con.close()


def _filter_value(f: pa.Field, value: str) -> Any:
    """A filter's text as a value of the column's type. The error never echoes the value: it
    may be PII, and error messages reach logs and the audit table."""
    try:
        return pa.array([value], pa.string()).cast(f.type)[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise InvalidArgument(
            f"the value to filter {f.name} on is not a valid {duck_type(f.type)}",
            parameter=f.name,
        ) from None


def _encode_cursor(values: list[Any]) -> str:
    raw = orjson.dumps(values, default=str)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, fields: list[pa.Field]) -> list[Any]:
    """The sort-key values of a cursor, typed as their columns (a cursor carries dates and
    timestamps as text): anything else is not a cursor this API returned."""
    bad = InvalidArgument("not a page token this API returned", parameter="page_token")
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != len(fields):
        raise bad
    typed = []
    for f, value in zip(fields, values, strict=True):
        if value is None:
            typed.append(None)
            continue
        if isinstance(value, (dict, list)):
            raise bad
        try:
            typed.append(pa.array([value]).cast(f.type)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
            raise bad from None
    return typed


__all__ = ["RowsPage", "TableIngestReport", "TableService", "qualify"]
