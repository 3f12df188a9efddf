"""One object wiring the services together from settings: what the API and CLI both use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from stratus.sharing.service import Sharing


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
    settings: Settings
    storage: Storage
    lakehouse: Lakehouse
    engine: LocalEngine
    ingest: IngestService
    weather: WeatherQueries
    governance: Governance
    tables: TableService

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
        return cls(
            settings=settings,
            storage=storage,
            lakehouse=lakehouse,
            engine=engine,
            ingest=IngestService(lakehouse, engine),
            weather=WeatherQueries(lakehouse, engine, settings.row_cache_mb * 2**20),
            governance=governance,
            tables=TableService(governance.metastore, lakehouse, engine, protector),
        )

    # Later capabilities are created on first use, each by its own package's factory, so this
    # object wires services without knowing their insides.
    @cached_property
    def lineage(self) -> Any:
        from stratus.lineage.service import LineageService

        return LineageService.from_stratus(self)

    @cached_property
    def sql(self) -> Any:
        from stratus.sql.service import SqlService

        return SqlService.from_stratus(self)

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
    def jobs(self) -> Any:
        from stratus.jobs.service import JobService

        return JobService.from_stratus(self)

    def bootstrap(self) -> None:
        """Register the built-in securables (idempotent; cheap when already done), under the
        start-up lock: concurrent first starts (workers, replicas) do not race for them."""
        with self.governance.metastore.startup_lock():
            self.governance.ensure_builtin(self.lakehouse)

    def close(self) -> None:
        for name in ("jobs", "sql", "sharing", "lineage"):  # created ones, users before producers
            service = self.__dict__.get(name)
            if service is not None and hasattr(service, "close"):
                service.close()
        self.governance.close()
