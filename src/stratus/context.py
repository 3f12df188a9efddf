"""One object wiring the services together from settings: what the API and CLI both use."""

from __future__ import annotations

from dataclasses import dataclass

from stratus.config import Settings
from stratus.engine import LocalEngine
from stratus.ingest.service import IngestService
from stratus.lakehouse.storage import Storage
from stratus.lakehouse.tables import Lakehouse
from stratus.security.governance import Governance
from stratus.weather.queries import WeatherQueries


@dataclass
class Stratus:
    settings: Settings
    storage: Storage
    lakehouse: Lakehouse
    engine: LocalEngine
    ingest: IngestService
    weather: WeatherQueries
    governance: Governance

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Stratus:
        settings = settings or Settings.from_env()
        storage = Storage.from_settings(settings)
        lakehouse = Lakehouse(storage)
        engine = LocalEngine(storage)
        return cls(
            settings=settings,
            storage=storage,
            lakehouse=lakehouse,
            engine=engine,
            ingest=IngestService(lakehouse, engine),
            weather=WeatherQueries(lakehouse, engine),
            governance=Governance.from_settings(settings, lakehouse),
        )

    def bootstrap(self) -> None:
        """Register the built-in securables (idempotent; cheap when already done)."""
        self.governance.ensure_builtin(self.lakehouse)

    def close(self) -> None:
        self.governance.close()
