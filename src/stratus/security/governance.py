"""Governance wiring: metastore + authorizer + authenticator + audit, and the bootstrap that
registers Stratus's own securables and the first admin."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa

from stratus.catalog import registry
from stratus.catalog.errors import AlreadyExists, NotFound
from stratus.catalog.metastore import MetastoreService
from stratus.catalog.registry import TableSpec
from stratus.catalog.specs import columns_of, register_spec
from stratus.config import Settings
from stratus.lakehouse.tables import Lakehouse
from stratus.lineage.store import SPECS as LINEAGE_TABLES
from stratus.security.audit import AUDIT, AuditLog
from stratus.security.authn import Authenticator, OidcConfig
from stratus.security.authz import Authorizer, Identity

log = logging.getLogger(__name__)
ADMIN = "admin"
LOCAL_ADMIN = Identity(name=ADMIN, kind="user", is_admin=True)


@dataclass
class Governance:
    metastore: MetastoreService
    authorizer: Authorizer
    authenticator: Authenticator
    audit: AuditLog

    @classmethod
    def from_settings(cls, settings: Settings, lakehouse: Lakehouse) -> Governance:
        metastore = MetastoreService(settings.metastore_db_url)
        authorizer = Authorizer(metastore)
        oidc = None
        if settings.oidc_issuer:
            oidc = OidcConfig(
                issuer=settings.oidc_issuer,
                audience=settings.oidc_audience,
                jwks_url=settings.oidc_jwks_url,
                public_key=settings.oidc_public_key,
                claim=settings.oidc_principal_claim,
            )
        return cls(
            metastore=metastore,
            authorizer=authorizer,
            authenticator=Authenticator(metastore, authorizer, oidc),
            audit=AuditLog(lakehouse, flush_interval=settings.audit_flush_seconds),
        )

    # ---- bootstrap -----------------------------------------------------------------------
    def ensure_builtin(self, lakehouse: Lakehouse) -> None:
        """Register Stratus's own catalogs, schemas and tables (idempotent)."""
        ms = self.metastore
        if not any(p.is_admin for p in ms.list_principals()):
            self._ensure(
                lambda: ms.create_principal(
                    ADMIN, "user", is_admin=True, display_name="Administrator"
                )
            )
        for catalog, comment in (
            ("main", "Stratus data"),
            ("system", "Stratus system tables (audit, lineage, information schema)"),
        ):
            self._ensure(partial(ms.create_catalog, catalog, ADMIN, comment=comment))
        for catalog, schema in (
            ("main", "weather"),
            ("system", "access"),
            ("system", "information_schema"),
        ):
            self._ensure(partial(ms.create_schema, catalog, schema, ADMIN))
        for spec in (registry.HOURLY, registry.CITIES, registry.QUARANTINE, AUDIT, *LINEAGE_TABLES):
            self.register_table(spec, lakehouse)
        self._ensure(
            lambda: ms.create_table(
                "system",
                "information_schema",
                "column_tags",
                ADMIN,
                columns=columns_of(COLUMN_TAGS_SCHEMA),
                table_type="VIEW",
                data_source_format="DELTA",
                comment="Tags on table columns (computed from the metastore)",
            )
        )
        self.authorizer.refresh()

    def register_table(self, spec: TableSpec, lakehouse: Lakehouse, owner: str = ADMIN) -> None:
        self._ensure(partial(register_spec, self.metastore, spec, owner, lakehouse.url(spec)))

    @staticmethod
    def _ensure(create: Callable[[], object]) -> None:
        with contextlib.suppress(AlreadyExists):
            create()

    def bootstrap_admin_token(self, path: Path) -> tuple[Path, bool]:
        """Write a token for the admin to ``path`` (mode 0600) unless a valid one is there."""
        if path.exists():
            current = path.read_text().strip()
            if current and self.metastore.resolve_token(current) is not None:
                return path, False
        secret, _ = self.metastore.create_token(ADMIN, days=None, comment="bootstrap")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
        os.chmod(path, 0o600)
        return path, True

    def close(self) -> None:
        self.audit.close()


COLUMN_TAGS_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.string()),
        pa.field("schema_name", pa.string()),
        pa.field("table_name", pa.string()),
        pa.field("column_name", pa.string()),
        pa.field("tag_name", pa.string()),
        pa.field("tag_value", pa.string()),
    ]
)

__all__ = ["LOCAL_ADMIN", "Governance", "NotFound"]
