"""The protocol's two response formats and its request headers about them.

``delta-sharing-capabilities: responseformat=...;readerfeatures=...`` picks the format: parquet
(the default, the protocol's own ``protocol``/``metaData``/``file`` objects) or delta (each line
wraps a Delta action: ``deltaProtocol``, ``deltaMetadata``, ``deltaSingleAction`` with the path
replaced by a pre-signed URL), for clients that read with a Delta library. A client offering
both gets parquet (no table served here needs delta: tables with deletion vectors or column
mapping are refused). ``fileidhash: parquet|delta`` picks the scheme of file ``id`` values (by
default the response format's); the server echoes it, and answers 400 to any other value.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from stratus.catalog.errors import InvalidArgument
from stratus.sharing import protocol as p
from stratus.sharing.common import CDF, Plan, Snapshot, unserved_features

CAPABILITIES = "delta-sharing-capabilities"
FILE_ID_HASH = "fileidhash"
FORMATS = ("parquet", "delta")


@dataclass(frozen=True)
class Wire:
    """How a client asked to be answered."""

    delta: bool = False  # responseformat=delta
    file_ids: str | None = None  # the fileidhash scheme asked for (None: not asked)

    @classmethod
    def from_headers(cls, capabilities: str | None, file_id_hash: str | None) -> Wire:
        formats: set[str] = set()
        for part in (capabilities or "").split(";"):
            key, _, values = part.partition("=")
            if key.strip().lower() == "responseformat":
                formats |= {v.strip().lower() for v in values.split(",") if v.strip()}
        unknown = sorted(formats - set(FORMATS))
        if formats and not formats & set(FORMATS):
            raise InvalidArgument(
                f"responseformat {', '.join(unknown)} is not served: use parquet or delta",
                parameter=CAPABILITIES,
            )
        scheme = None
        if file_id_hash is not None:
            scheme = file_id_hash.strip().lower()
            if scheme not in FORMATS:
                raise InvalidArgument(
                    f"fileidhash {file_id_hash.strip()!r} is not supported: use parquet or delta",
                    parameter=FILE_ID_HASH,
                )
        return cls(delta="delta" in formats and "parquet" not in formats, file_ids=scheme)

    @property
    def format(self) -> str:
        return "delta" if self.delta else "parquet"

    def headers(self) -> dict[str, str]:
        """The response headers that say how it was answered."""
        out = {CAPABILITIES: f"responseformat={self.format}"}
        if self.file_ids is not None:
            out[FILE_ID_HASH] = self.file_ids
        return out

    def file_id(self, table_id: str, path: str) -> str:
        """A stable id of a file of a table in the scheme asked for (or the format's)."""
        if (self.file_ids or self.format) == "parquet":
            return p.file_id(table_id, path)
        digest = hashlib.sha256(f"delta\n{table_id}\n{path}".encode()).hexdigest()
        return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"

    # ---- lines -------------------------------------------------------------------------------
    def protocol_line(self, snap: Snapshot) -> dict[str, Any]:
        if not self.delta:
            return {"protocol": {"minReaderVersion": 1}}
        return {"protocol": {"deltaProtocol": delta_protocol(snap)}}

    def metadata_line(
        self,
        plan: Plan,
        snap: Snapshot,
        files: list[p.FileEntry] | None,
        version: int | None = None,
    ) -> dict[str, Any]:
        cdf = plan.history and snap.configuration.get(CDF, "").lower() == "true"
        extra: dict[str, Any] = {}
        if version is not None:
            extra["version"] = version
        if files is not None:
            extra["size"] = sum(e.size for e in files)
            extra["numFiles"] = len(files)
        if self.delta:
            meta: dict[str, Any] = {
                "id": snap.table_id,
                "name": plan.name,
                "description": plan.comment,
                "format": {"provider": "parquet", "options": {}},
                "schemaString": delta_schema(snap.schema_json),
                "partitionColumns": snap.partition_columns,
                "configuration": {CDF: "true"} if cdf else {},
            }
            if snap.table.created_time is not None:
                meta["createdTime"] = snap.table.created_time
            return {"metaData": {"deltaMetadata": meta, **extra}}
        meta = {
            "id": snap.table_id,
            "name": plan.name,
            "format": {"provider": "parquet"},
            "schemaString": p.sharing_schema(snap.schema_json),
            "partitionColumns": snap.partition_columns,
            "configuration": {"enableChangeDataFeed": "true"} if cdf else {},
        }
        if plan.comment:
            meta["description"] = plan.comment
        return {"metaData": {**meta, **extra}}


def delta_protocol(snap: Snapshot) -> dict[str, Any]:
    """The served table's Delta protocol (it needs no reader feature this server lacks; a
    declared but unused variantType is left out)."""
    table = snap.table
    assert not unserved_features(table)
    out: dict[str, Any] = {
        "minReaderVersion": table.min_reader_version,
        "minWriterVersion": table.min_writer_version,
    }
    variant = '"variant"' in table.schema_json
    if table.min_reader_version >= 3:
        out["readerFeatures"] = [
            f for f in table.reader_features if variant or f.lower() != "varianttype"
        ]
    if table.min_writer_version >= 7:
        out["writerFeatures"] = [
            f for f in table.writer_features if variant or f.lower() != "varianttype"
        ]
    return out


def delta_schema(delta_schema_json: str) -> str:
    """The Delta schema as shared: column metadata other than comments left out."""
    doc = orjson.loads(delta_schema_json)

    def field(f: dict[str, Any]) -> dict[str, Any]:
        t = f["type"]
        if isinstance(t, dict) and t.get("type") == "struct":
            t = {**t, "fields": [field(c) for c in t.get("fields", [])]}
        meta = {k: v for k, v in (f.get("metadata") or {}).items() if k == "comment"}
        return {"name": f["name"], "type": t, "nullable": f.get("nullable", True), "metadata": meta}

    return orjson.dumps({"type": "struct", "fields": [field(f) for f in doc["fields"]]}).decode()
