"""Column protection: the ONE place where PII columns are encrypted on write and decrypted or
masked on read.

A column tagged ``pii=<kind>`` is stored as AES-256-GCM ciphertext (binary, fresh nonce per
value, table and column bound as associated data) plus a keyed HMAC token column
``<column>__token`` for equality lookups. The logical schema (what the catalog and readers see)
keeps the column's original type; the physical Delta schema carries the binary columns.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace

import pyarrow as pa

from stratus.catalog.metastore import MetastoreService
from stratus.catalog.registry import TableSpec
from stratus.pii import ColumnCipher, KeyManager, MaskPolicy, scope_for

PII_TAG = "pii"
TOKEN_SUFFIX = "__token"  # noqa: S105 - a column-name suffix, not a secret


def token_column(column: str) -> str:
    return column + TOKEN_SUFFIX


def _no_key(version: int) -> bytes:
    raise AssertionError("describing an encrypted column needs no key")


def encrypted_field(table: str, plain: pa.Field) -> pa.Field:
    """The physical (binary) field of an encrypted column. Needs no key, so the layout of a
    table can be known, and its other columns read, even when a key is unavailable."""
    cipher = ColumnCipher(scope_for(table, plain.name), _no_key, 1, plain.type)
    return cipher.encrypted_field(plain.name)


class ColumnProtector:
    def __init__(self, metastore: MetastoreService, keys: KeyManager, policy: MaskPolicy) -> None:
        self.metastore = metastore
        self.keys = keys
        self.policy = policy
        self._ciphers: dict[tuple[str, int], ColumnCipher] = {}
        self._lock = threading.Lock()

    # ---- which columns -------------------------------------------------------------------
    def pii_columns(self, full_name: str) -> dict[str, str]:
        """column -> PII kind, from the ``pii`` column tags in the metastore."""
        try:
            table = self.metastore.get_table(full_name)
        except Exception:
            return {}
        return {
            t.column_name: (t.value or "pii")
            for t in self.metastore.tags("table", table.id)
            if t.key == PII_TAG and t.column_name
        }

    # ---- schemas -------------------------------------------------------------------------
    def physical_spec(self, spec: TableSpec, pii: Mapping[str, str]) -> TableSpec:
        """The Delta layout of a table whose ``pii`` columns are encrypted."""
        if not pii:
            return spec
        fields = []
        for f in spec.schema:
            if f.name in pii:
                fields.append(encrypted_field(spec.full_name, f))
                fields.append(pa.field(token_column(f.name), pa.binary()))
            else:
                fields.append(f)
        return replace(spec, schema=pa.schema(fields))

    # ---- ciphers -------------------------------------------------------------------------
    def cipher(self, table: str, column: str, value_type: pa.DataType) -> ColumnCipher:
        """The cipher encrypting with the column's current data key version."""
        scope = scope_for(table, column)
        version, _ = self.keys.data_key(scope)
        with self._lock:
            found = self._ciphers.get((scope, version))
            if found is None:

                def key_for(v: int, scope: str = scope) -> bytes:
                    return self.keys.key(scope, v)

                found = ColumnCipher(scope, key_for, version, value_type)
                self._ciphers[(scope, version)] = found
            return found

    def forget(self) -> None:
        with self._lock:
            self._ciphers.clear()
        self.keys.forget()

    # ---- write ---------------------------------------------------------------------------
    def encrypt(self, spec: TableSpec, data: pa.Table, pii: Mapping[str, str]) -> pa.Table:
        """Plaintext rows in the logical schema -> the physical rows to write. Token columns
        already in ``data`` (computed by the caller with the current data keys) are reused."""
        if not pii:
            return data
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        for f in spec.schema:
            col = data.column(f.name)
            if f.name in pii:
                cipher = self.cipher(spec.full_name, f.name, f.type)
                plain = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
                columns[f.name] = cipher.encrypt(plain)
                tok = token_column(f.name)
                columns[tok] = data.column(tok) if tok in data.column_names else cipher.token(plain)
            else:
                columns[f.name] = col
        return pa.table(columns, schema=self.physical_spec(spec, pii).schema)

    def tokens(self, spec: TableSpec, column: str, value: object) -> list[bytes]:
        """The HMAC tokens ``value`` has under every data-key version of the column (rows keep
        the token of the version they were written with until rewritten)."""
        f = spec.schema.field(column)
        current = self.cipher(spec.full_name, column, f.type)
        typed = pa.array([value]).cast(f.type)[0].as_py()
        return [current.token_for(typed, version=v) for v in range(1, current.version + 1)]

    # ---- read ----------------------------------------------------------------------------
    def reveal(
        self,
        spec: TableSpec,
        physical: pa.Table,
        pii: Mapping[str, str],
        unmasked: Iterable[str] | bool,
    ) -> pa.Table:
        """Physical rows -> logical rows: decrypted for the columns in ``unmasked`` (or all if
        True), masked otherwise. Token columns are dropped."""
        keep = set(pii) if unmasked is True else set(unmasked or ())
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        fields = []
        for f in spec.schema:
            if f.name not in physical.column_names:
                continue
            col = physical.column(f.name)
            if f.name in pii:
                cipher = self.cipher(spec.full_name, f.name, f.type)
                plain = cipher.decrypt(col.combine_chunks(), f.type)
                if f.name in keep:
                    columns[f.name] = plain
                    fields.append(f)
                else:
                    columns[f.name] = self.policy.mask(pii[f.name], plain)
                    fields.append(pa.field(f.name, pa.string()))
            else:
                columns[f.name] = col
                fields.append(f)
        return pa.table(columns, schema=pa.schema(fields))
