"""Delta Sharing, composed: administration, recipients' tokens, derived copies and the protocol's
reads, each a class of its own module taking its collaborators in its constructor.

- :mod:`stratus.sharing.admin` (:class:`SharingAdmin`): shares, share tables, recipients, grants
- :mod:`stratus.sharing.tokens` (:class:`RecipientTokens`): recipients' bearer tokens, in the one
  bearer-token store API tokens use too (:mod:`stratus.catalog.tokens`)
- :mod:`stratus.sharing.derived` (:class:`DerivedCopies`): sanitised copies of tables with PII or
  a column subset
- :mod:`stratus.sharing.serving` (:class:`SharedTables`): plans and the Delta table served, read
  through the lakehouse's table cache
- :mod:`stratus.sharing.reads` (:class:`ProtocolReads`): the protocol's listing and table reads
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stratus.catalog.metastore import MetastoreService
from stratus.catalog.tokens import iso, token_info
from stratus.engine import LocalEngine
from stratus.lakehouse.storage import Storage
from stratus.lakehouse.tables import Lakehouse
from stratus.security.authz import Authorizer
from stratus.sharing.admin import SharingAdmin
from stratus.sharing.common import ENDPOINT_ENV, Download, RecipientContext, TableResponse
from stratus.sharing.derived import DerivedCopies
from stratus.sharing.reads import ProtocolReads
from stratus.sharing.serving import SharedTables
from stratus.sharing.signing import UrlSigner, load_secret, url_ttl
from stratus.sharing.tokens import RecipientTokens
from stratus.tables.service import TableService


@dataclass
class Sharing:
    """``Stratus.sharing``: the parts of Delta Sharing, wired together."""

    admin: SharingAdmin
    tokens: RecipientTokens
    derived: DerivedCopies
    shared: SharedTables
    reads: ProtocolReads
    endpoint: str  # the profile endpoint when STRATUS_SHARING_ENDPOINT is not set

    @classmethod
    def build(
        cls,
        *,
        storage: Storage,
        lakehouse: Lakehouse,
        engine: LocalEngine,
        tables: TableService,
        metastore: MetastoreService,
        authorizer: Authorizer,
        home: Path,
        endpoint: str,
    ) -> Sharing:
        reader, writer = metastore.reading, metastore.session
        tokens = RecipientTokens.in_metastore(reader)
        derived = DerivedCopies(storage, lakehouse, engine, tables.protector, reader, writer)
        shared = SharedTables(lakehouse, tables, authorizer, derived, reader, writer)
        admin = SharingAdmin(metastore, authorizer, tables, tokens, shared, derived)
        reads = ProtocolReads(
            storage, shared, tokens, reader, lambda: UrlSigner(load_secret(home)), url_ttl()
        )
        return cls(admin, tokens, derived, shared, reads, endpoint)

    def default_endpoint(self) -> str:
        """The profile endpoint: ``STRATUS_SHARING_ENDPOINT`` or the API's host and port."""
        env = os.environ.get(ENDPOINT_ENV)
        return env.rstrip("/") if env else self.endpoint

    def close(self) -> None:
        self.tokens.forget()
        self.shared.forget()


__all__ = [
    "Download",
    "RecipientContext",
    "Sharing",
    "TableResponse",
    "iso",
    "token_info",
]
