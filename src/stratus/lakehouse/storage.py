"""Where tables live: a local folder (default) or Azure Blob Storage (``az://``, ``abfss://``).

The :class:`Storage` object turns the configured root URL into table URLs and the
``storage_options`` delta-rs needs, and prepares the root (folder or container) once.
Credentials come from :class:`stratus.config.Settings` and never appear in ``repr`` or errors.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from stratus.config import Settings

log = logging.getLogger(__name__)

AZURE_SCHEMES = {"az", "abfs", "abfss", "azure"}
_ABFS_NETLOC = re.compile(r"^(?P<container>[^@]+)@(?P<account>[^.]+)\.(dfs|blob)\.")


class StorageError(RuntimeError):
    """Storage is unreachable or misconfigured (maps to HTTP 503 in the API)."""


_URL_QUERY = re.compile(r"(https?://[^\s?]+)\?\S*")


def failure_text(exc: BaseException) -> str:
    """One line about an I/O failure: the error's first line, URLs without their query string
    (where a SAS token travels)."""
    lines = str(exc).strip().splitlines()
    return _URL_QUERY.sub(r"\1", lines[0] if lines else type(exc).__name__)[:300]


def unavailable(what: str, exc: BaseException) -> StorageError:
    return StorageError(f"{what}: the storage did not answer ({failure_text(exc)})")


@contextlib.contextmanager
def storage_io(what: str) -> Iterator[None]:
    """Turn an I/O failure of delta-rs or PyArrow (an ``OSError``: the object store is down,
    refuses or times out) into a :class:`StorageError`, so callers see 503, not a crash."""
    try:
        yield
    except OSError as exc:
        raise unavailable(what, exc) from None


def _parse_connection_string(conn: str) -> dict[str, str]:
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    return {k.strip(): v.strip() for k, v in parts.items()}


@dataclass(frozen=True)
class Storage:
    root: str
    scheme: str
    options: dict[str, str] | None = field(default=None, repr=False)
    container: str | None = None
    account: str | None = None
    endpoint: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        url = settings.lakehouse_url
        parsed = urlparse(url)
        scheme = parsed.scheme.lower()
        if scheme in ("", "file") or (len(scheme) == 1 and url[1:3] in (":\\", ":/")):
            path = Path(parsed.path if scheme == "file" else url).resolve()
            return cls(root=str(path), scheme="file")
        if scheme not in AZURE_SCHEMES:
            raise StorageError(
                f"unsupported STRATUS_STORAGE_URL scheme {scheme!r}: use a local path, "
                "az://container/prefix or abfss://container@account.dfs.core.windows.net/prefix"
            )
        container = parsed.netloc
        account = settings.azure_account_name
        m = _ABFS_NETLOC.match(parsed.netloc)
        if m:
            container, account = m.group("container"), m.group("account")
        if not container:
            raise StorageError("STRATUS_STORAGE_URL must name a container, e.g. az://weather")
        opts: dict[str, str] = {}
        endpoint = settings.azure_endpoint
        key = settings.azure_account_key
        sas = settings.azure_sas_token
        if settings.azure_connection_string:
            conn = _parse_connection_string(settings.azure_connection_string)
            account = conn.get("AccountName", account)
            key = conn.get("AccountKey", key)
            sas = conn.get("SharedAccessSignature", sas)
            endpoint = conn.get("BlobEndpoint", endpoint)
        if not account:
            raise StorageError(
                "Azure storage needs an account: set AZURE_STORAGE_ACCOUNT_NAME "
                "or AZURE_STORAGE_CONNECTION_STRING"
            )
        opts["account_name"] = account
        # fail within seconds, not minutes, when the store is down: the API answers 503
        opts["max_retries"] = str(settings.storage_max_retries)
        opts["retry_timeout"] = f"{settings.storage_retry_timeout:g}s"
        # ...and when it hangs (accepts connections, never answers): no request waits longer
        opts["timeout"] = f"{settings.storage_retry_timeout:g}s"
        if key:
            opts["account_key"] = key
        if sas:
            opts["sas_token"] = sas.lstrip("?")
        if endpoint:
            endpoint = endpoint.rstrip("/")
            opts["endpoint"] = endpoint
            if endpoint.startswith("http://"):
                opts["allow_http"] = "true"
        root = f"az://{container}{parsed.path}".rstrip("/")
        return cls(
            root=root,
            scheme="az",
            options=opts,
            container=container,
            account=account,
            endpoint=endpoint,
        )

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    def table_url(self, relative: str) -> str:
        relative = relative.strip("/")
        return f"{self.root}/{relative}"

    def local_path(self, uri: str) -> str:
        """A file URI returned by delta-rs as a plain local path (local storage only)."""
        if uri.startswith("file://"):
            return urlparse(uri).path
        return uri

    def open_file(self, uri: str) -> Any:
        """A data file of a table, for PyArrow to read: a local path, or (Azure) the blob's bytes
        (a ``pyarrow.Buffer``), fetched with this storage's retries and timeouts (503 when the
        store is down or hangs). Delta data files never change, so callers may cache them."""
        if self.is_local:
            return self.local_path(uri)
        import pyarrow as pa
        from azure.core.exceptions import AzureError

        head = f"az://{self.container}/"
        if not uri.startswith(head):
            raise StorageError(f"{uri} is not in container {self.container}")
        blob = uri[len(head) :]
        try:
            client = self._blob_service().get_blob_client(str(self.container), blob)
            data = client.download_blob(max_concurrency=1).readall()
        except AzureError as exc:
            raise unavailable(f"cannot read {uri}", exc) from None
        return pa.py_buffer(data)

    def prepare(self) -> None:
        """Create the root folder or the Azure container if it does not exist yet."""
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)
            return
        self._ensure_container()

    def _blob_service(self) -> Any:
        """The storage's one Blob service client (thread-safe; built on first use)."""
        return self._blob_client

    @functools.cached_property
    def _blob_client(self) -> Any:
        from azure.storage.blob import BlobServiceClient, ExponentialRetry

        assert self.options is not None and self.container is not None  # set for Azure
        account_url = self.endpoint or f"https://{self.account}.blob.core.windows.net"
        credential: Any = None  # a key dict or a SAS token string
        if "account_key" in self.options:
            credential = {"account_name": self.account, "account_key": self.options["account_key"]}
        elif "sas_token" in self.options:
            credential = self.options["sas_token"]
        timeout = float(self.options.get("timeout", "30s").rstrip("s"))
        return BlobServiceClient(
            account_url=account_url,
            credential=credential,
            retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2),
            connection_timeout=5,
            read_timeout=timeout,  # a store that accepts and never answers: 503, not a hang
        )

    def delete_prefix(self, url: str) -> None:
        """Delete every blob under ``url`` (``az://container/folder``) in the container."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        head = f"az://{self.container}/"
        if not url.startswith(head) or not url[len(head) :].strip("/"):
            raise StorageError(f"{url} is not a folder in container {self.container}")
        prefix = url[len(head) :].strip("/") + "/"
        try:
            container = self._blob_service().get_container_client(self.container)
            for blob in container.list_blobs(name_starts_with=prefix):
                with contextlib.suppress(ResourceNotFoundError):
                    container.delete_blob(blob.name)
        except AzureError as exc:
            raise unavailable(f"cannot delete {url}", exc) from None

    def _ensure_container(self) -> None:
        from stratus.extras import MissingExtra, require

        try:
            require("azure", "Azure Blob Storage (STRATUS_STORAGE_URL=az://...)")
        except MissingExtra as exc:
            raise StorageError(str(exc)) from None
        from azure.core.exceptions import AzureError, ResourceExistsError

        account_url = self.endpoint or f"https://{self.account}.blob.core.windows.net"
        try:
            client = self._blob_service()
            client.create_container(self.container)
            log.info("created Azure container %s", self.container)
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise StorageError(
                f"Azure Blob Storage at {account_url} is not reachable "
                f"({type(exc).__name__}); check AZURE_STORAGE_* settings"
            ) from None
