"""Settings from ``STRATUS_*`` environment variables, validated once at start.

Every setting is documented in the README's configuration table; keep the two in step.
Azure credentials use the usual ``AZURE_STORAGE_*`` names so existing set-ups work unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

PREFIX = "STRATUS_"
# settings for which an empty variable means "none" (not "unset, use the default")
EMPTY_MEANS_OFF = frozenset({"rate_limit", "rate_limit_ip", "rate_limit_files", "cors_origins"})
CORS_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?/?")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path = Field(default=Path(".stratus"))
    storage_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=2, ge=1, le=64)
    log_level: str = "INFO"
    max_page_size: int = Field(default=50_000, ge=1, le=1_000_000)
    default_page_size: int = Field(default=5_000, ge=1, le=1_000_000)

    access_log: bool = True
    storage_max_retries: int = Field(default=3, ge=0, le=20)
    storage_retry_timeout: float = Field(default=15.0, gt=0, le=600)
    key_provider: str = "file"  # file ($STRATUS_HOME/keys/master.json) | env (STRATUS_MASTER_KEY)
    metastore_url: str | None = None
    audit_flush_seconds: float = Field(default=1.0, gt=0, le=60)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_public_key: str | None = Field(default=None, repr=False)
    oidc_principal_claim: str = "email"
    # SQL statements (stratus.sql): time limit, and most rows a result returns (truncated)
    sql_timeout_seconds: float = Field(default=30.0, gt=0, le=86_400)
    sql_max_rows: int = Field(default=10_000, ge=1, le=10_000_000)
    # /weather hot path (stratus.weather.fastpath): MiB of hourly row groups cached per worker
    # process (0: every read goes to the engine); JSON/CSV answers from this size are compressed
    # when the client accepts gzip or deflate (0: never)
    row_cache_mb: int = Field(default=256, ge=0, le=1_048_576)
    compress_min_bytes: int = Field(default=1024, ge=0, le=1 << 30)
    # VACUUM refuses RETAIN below 7 days unless this is off (Databricks' retentionDurationCheck)
    vacuum_retention_check: bool = True
    # the scheduled maintenance job: hours between runs of OPTIMIZE on the system tables (0: off)
    maintenance_interval_hours: float = Field(default=24.0, ge=0, le=8_760)

    # processing jobs (stratus.jobs): the engine that runs them, its Spark Connect URL, and the
    # worker threads per process (0: this process only queues; `stratus jobs worker` runs them)
    engine: str = "local"  # local (DuckDB over delta-rs) | spark (Spark Connect)
    spark_remote: str | None = Field(default=None, repr=False, validate_default=True)
    job_workers: int = Field(default=2, ge=0, le=64)
    # OpenLineage run events: JSON lines to openlineage_file (default
    # $STRATUS_HOME/openlineage/events.jsonl); with openlineage_url (e.g. Marquez's base URL),
    # POSTed to <url>/api/v1/lineage instead (to both if openlineage_file is set as well)
    openlineage_url: str | None = None
    openlineage_file: Path | None = None

    # API protection (stratus.api.security). Rate limits in flask-limiter's notation
    # ("600/minute", "10/second;600/minute"; "" or "off": no limit): per authenticated principal
    # (or Delta Sharing recipient), per client IP for requests without valid credentials, and
    # per client IP for Delta Sharing's signed file downloads; counters in rate_limit_storage
    # (memory:// counts per worker process; redis://, memcached:// share them).
    rate_limit_enabled: bool = True
    rate_limit: str = "1200/minute"
    rate_limit_ip: str = "120/minute"
    rate_limit_files: str = "6000/minute"
    rate_limit_storage: str = "memory://"
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1 << 40)
    # origins allowed to call the API from a browser (comma-separated); none by default
    cors_origins: str = ""

    # Unity Catalog credential vending (stratus.api.uc_credentials): seconds a vended credential
    # lives, and what an Azure SAS covers: "directory" (the table's folder; needs a hierarchical
    # namespace, ADLS Gen2) or "container" (flat Blob storage and Azurite: the whole container)
    uc_credential_ttl: int = Field(default=3600, ge=1, le=86_400)
    uc_credential_scope: Literal["directory", "container"] = "directory"

    # Azure Blob credentials (read from the standard AZURE_STORAGE_* variables).
    azure_account_name: str | None = None
    azure_account_key: str | None = Field(default=None, repr=False)
    azure_sas_token: str | None = Field(default=None, repr=False)
    azure_connection_string: str | None = Field(default=None, repr=False)
    azure_endpoint: str | None = None

    @field_validator("key_provider")
    @classmethod
    def _provider(cls, v: str) -> str:
        if v not in {"file", "env"}:
            raise ValueError("must be file or env")
        return v

    @field_validator("openlineage_url")
    @classmethod
    def _ol_url(cls, v: str | None) -> str | None:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("engine")
    @classmethod
    def _engine(cls, v: str) -> str:
        v = v.lower()
        if v not in {"local", "spark"}:
            raise ValueError("must be local or spark")
        return v

    @field_validator("spark_remote")
    @classmethod
    def _spark_remote(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            if info.data.get("engine") == "spark":
                raise ValueError("required when STRATUS_ENGINE=spark (sc://host:port)")
            return None
        if not v.startswith("sc://"):
            raise ValueError("must be a Spark Connect URL sc://host:port[/;param=value...]")
        return v

    @field_validator("rate_limit", "rate_limit_ip", "rate_limit_files")
    @classmethod
    def _rate(cls, v: str) -> str:
        v = v.strip()
        if v.lower() in {"", "off", "none"}:
            return ""
        from limits import parse_many

        try:
            parse_many(v)
        except ValueError:
            raise ValueError(
                f"{v!r} is not a rate limit: use e.g. 600/minute or 10/second;600/minute, or off"
            ) from None
        return v

    @field_validator("rate_limit_storage")
    @classmethod
    def _rate_storage(cls, v: str) -> str:
        if "://" not in v:
            raise ValueError("must be a storage URI: memory://, redis://host:6379, ...")
        return v

    @field_validator("cors_origins")
    @classmethod
    def _cors(cls, v: str) -> str:
        for origin in (o.strip() for o in v.split(",")):
            if origin and origin != "*" and not CORS_ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: use scheme://host[:port] (no path), "
                    "comma-separated, or *"
                )
        return v

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def keyring_path(self) -> Path:
        return self.home / "keys" / "master.json"

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return v

    @property
    def lakehouse_url(self) -> str:
        """Root of all tables: ``STRATUS_STORAGE_URL`` or ``$STRATUS_HOME/lakehouse``."""
        if self.storage_url:
            return self.storage_url.rstrip("/")
        return str((self.home / "lakehouse").resolve())

    @property
    def metastore_db_url(self) -> str:
        """``STRATUS_METASTORE_URL`` or SQLite at ``$STRATUS_HOME/metastore.db``."""
        return self.metastore_url or f"sqlite:///{(self.home / 'metastore.db').resolve()}"

    @property
    def openlineage_path(self) -> Path:
        return self.openlineage_file or self.home / "openlineage" / "events.jsonl"

    @property
    def admin_token_path(self) -> Path:
        return self.home / "admin.token"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            if name.startswith("azure_"):
                continue
            raw = env.get(PREFIX + name.upper())
            if raw not in (None, "") or (raw == "" and name in EMPTY_MEANS_OFF):
                values[name] = raw
        azure = {
            "azure_account_name": "AZURE_STORAGE_ACCOUNT_NAME",
            "azure_account_key": "AZURE_STORAGE_ACCOUNT_KEY",
            "azure_sas_token": "AZURE_STORAGE_SAS_TOKEN",
            "azure_connection_string": "AZURE_STORAGE_CONNECTION_STRING",
            "azure_endpoint": "AZURE_STORAGE_ENDPOINT",
        }
        for field, var in azure.items():
            if env.get(var):
                values[field] = env[var]
        values.update(overrides)
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else "?"
                var = azure.get(field, PREFIX + field.upper())
                problems.append(f"{var}: {err['msg']}")
            raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
