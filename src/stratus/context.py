"""One object wiring the services together from settings: what the API and CLI both use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from stratus.catalog.commands import CatalogCommands
from stratus.catalog.keystore import MetastoreDataKeyStore
from stratus.config import Settings
from stratus.engine import LocalEngine
from stratus.ingest.service import IngestService
from stratus.lakehouse.storage import Storage
from stratus.lakehouse.tables import Lakehouse
from stratus.pii import EnvKeyProvider, KeyManager, KeyProvider, LocalKeyFileProvider, MaskPolicy
from stratus.security.governance import Governance
from stratus.tables.protect import ColumnProtector
from stratus.tables.service import TableService
from stratus.weather.queries import WeatherQueries

if TYPE_CHECKING:  # created on first use, so imported there
    from stratus.jobs.service import JobService
    from stratus.lineage.service import LineageService
    from stratus.sharing.service import Sharing
    from stratus.sql.service import SqlService


def key_manager(settings: Settings, governance: Governance) -> KeyManager:
    """Master keys from the configured provider; wrapped data keys in the metastore."""
    provider: KeyProvider
    if settings.key_provider == "env":
        provider = EnvKeyProvider("STRATUS_MASTER_KEY")
    else:
        provider = LocalKeyFileProvider(settings.keyring_path)
    return KeyManager(provider, MetastoreDataKeyStore(governance.metastore))


@dataclass
class Stratus:
    """The composition root: every service, built from settings, each given exactly the
    collaborators it needs (no service sees this object)."""

    settings: Settings
    storage: Storage
    lakehouse: Lakehouse
    engine: LocalEngine
    ingest: IngestService
    weather: WeatherQueries
    governance: Governance
    tables: TableService
    catalog: CatalogCommands

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Stratus:
        settings = settings or Settings.from_env()
        storage = Storage.from_settings(settings)
        lakehouse = Lakehouse(storage)
        engine = LocalEngine(storage)
        governance = Governance.from_settings(settings, lakehouse)
        protector = ColumnProtector(
            governance.metastore, key_manager(settings, governance), MaskPolicy.from_env()
        )
        tables = TableService(governance.metastore, lakehouse, engine, protector)
        return cls(
            settings=settings,
            storage=storage,
            lakehouse=lakehouse,
            engine=engine,
            ingest=IngestService(lakehouse, engine),
            weather=WeatherQueries(lakehouse, engine, settings.row_cache_mb * 2**20),
            governance=governance,
            tables=tables,
            catalog=CatalogCommands(governance.metastore, governance.authorizer, lakehouse, tables),
        )

    # Later capabilities are created on first use (they start threads or import heavy
    # packages), each from its collaborators.
    @cached_property
    def lineage(self) -> LineageService:
        from stratus.lineage.service import LineageService

        gov = self.governance
        return LineageService.create(
            self.settings,
            gov.metastore,
            self.lakehouse,
            self.engine,
            self.tables.protector,
            gov.authorizer,
        )

    @cached_property
    def sql(self) -> SqlService:
        from stratus.sql.service import SqlService

        gov = self.governance
        return SqlService(
            self.settings,
            self.storage,
            self.lakehouse,
            self.engine,
            self.tables,
            gov.metastore,
            gov.authorizer,
            self.catalog,
            self.lineage,
        )

    @cached_property
    def sharing(self) -> Sharing:
        from stratus.sharing.service import Sharing

        s = self.settings
        return Sharing.build(
            storage=self.storage,
            lakehouse=self.lakehouse,
            engine=self.engine,
            tables=self.tables,
            metastore=self.governance.metastore,
            authorizer=self.governance.authorizer,
            home=s.home,
            endpoint=f"http://{s.host}:{s.port}/delta-sharing",
        )

    @cached_property
    def jobs(self) -> JobService:
        from stratus.jobs.engines import engine_for
        from stratus.jobs.service import JobService
        from stratus.jobs.store import JobStore

        gov = self.governance
        service = JobService(
            JobStore(gov.metastore),
            engine_for(self.settings, self.storage, self.engine, self.weather),
            self.settings.job_workers,
            metastore=gov.metastore,
            authorizer=gov.authorizer,
            catalog=self.catalog,
            lakehouse=self.lakehouse,
            weather=self.weather,
            audit=gov.audit,
            lineage=lambda: self.lineage,
        )
        service.ensure_default_schema()
        return service

    def bootstrap(self) -> None:
        """Register the built-in securables (idempotent; cheap when already done), under the
        start-up lock: concurrent first starts (workers, replicas) do not race for them."""
        with self.governance.metastore.startup_lock():
            self.governance.ensure_builtin(self.lakehouse)

    def close(self) -> None:
        # created ones, users before producers (a test may put a sink without close there)
        for name in ("jobs", "sql", "sharing", "lineage"):
            close = getattr(self.__dict__.get(name), "close", None)
            if close is not None:
                close()
        self.governance.close()
