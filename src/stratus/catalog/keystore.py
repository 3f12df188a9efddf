"""Wrapped PII data keys kept in the metastore (so they travel with the catalog's backups)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from stratus.catalog import models as m
from stratus.catalog.metastore import MetastoreService
from stratus.pii import DataKey, DataKeyExistsError


def _key(row: m.DataKeyRow) -> DataKey:
    return DataKey(
        scope=row.scope, version=row.version, master_id=row.master_id, wrapped=row.wrapped
    )


class MetastoreDataKeyStore:
    """``stratus.pii.DataKeyStore`` over the metastore's ``data_keys`` table."""

    def __init__(self, metastore: MetastoreService) -> None:
        self.metastore = metastore

    def get(self, scope: str, version: int) -> DataKey | None:
        with self.metastore.session() as s:
            row = s.get(m.DataKeyRow, (scope, version))
            return None if row is None else _key(row)

    def latest(self, scope: str) -> DataKey | None:
        with self.metastore.session() as s:
            row = s.scalar(
                select(m.DataKeyRow)
                .where(m.DataKeyRow.scope == scope)
                .order_by(m.DataKeyRow.version.desc())
                .limit(1)
            )
            return None if row is None else _key(row)

    def put(self, data_key: DataKey) -> None:
        try:
            with self.metastore.session() as s:
                s.add(
                    m.DataKeyRow(
                        scope=data_key.scope,
                        version=data_key.version,
                        master_id=data_key.master_id,
                        wrapped=data_key.wrapped,
                    )
                )
        except IntegrityError:
            raise DataKeyExistsError(
                f"data key {data_key.scope!r} version {data_key.version} already exists"
            ) from None

    def all(self) -> list[DataKey]:
        with self.metastore.session() as s:
            return [_key(r) for r in s.scalars(select(m.DataKeyRow))]

    def replace(self, data_key: DataKey) -> None:
        with self.metastore.session() as s:
            row = s.get(m.DataKeyRow, (data_key.scope, data_key.version))
            if row is None:
                raise KeyError(f"data key {data_key.scope!r} v{data_key.version} does not exist")
            row.master_id = data_key.master_id
            row.wrapped = data_key.wrapped
