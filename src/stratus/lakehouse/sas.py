"""Shared access signatures for Azure Blob Storage, signed with the storage account key.

The one place Stratus signs Azure SAS tokens:

* :func:`sign`, for Unity Catalog credential vending (:mod:`stratus.api.uc_credentials`): a SAS
  over one table's folder, or, where the account has no hierarchical namespace (flat Blob
  storage, Azurite), over the container;
* :func:`blob_url`, for Delta Sharing (:mod:`stratus.sharing.signing`): a read-only URL to one
  blob.

SAS tokens are secrets: never log them or put them in error messages.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from stratus.lakehouse.storage import Storage, StorageError

# clock skew allowed between Stratus and the storage service
START_SKEW = dt.timedelta(minutes=5)
SCOPES = ("directory", "container")


@dataclass(frozen=True)
class Sas:
    token: str  # without the leading "?"
    expires: dt.datetime
    scope: str  # directory | container
    prefix: str  # the blob-name prefix (folder) the caller asked for, within the container


def blob_prefix(storage: Storage, url: str) -> str:
    """The folder of ``url`` (``az://container/a/b``) inside the Stratus container."""
    head = f"az://{storage.container}"
    if url.rstrip("/") != head and not url.startswith(head + "/"):
        raise StorageError(f"{url} is not in container {storage.container}")
    return url[len(head) :].strip("/")


def _signing(storage: Storage, expires: dt.datetime, purpose: str) -> dict[str, Any]:
    """The arguments every SAS here shares: account, container, key, lifetime and protocol."""
    key = (storage.options or {}).get("account_key")
    if not key or not storage.account or not storage.container:
        raise StorageError(
            f"{purpose} needs the storage account key (AZURE_STORAGE_ACCOUNT_KEY "
            "or a connection string with AccountKey) to sign SAS tokens"
        )
    return {
        "account_name": storage.account,
        "container_name": storage.container,
        "account_key": key,
        "expiry": expires,
        "start": dt.datetime.now(dt.UTC) - START_SKEW,
        "protocol": "https" if _base(storage).startswith("https://") else "https,http",
    }


def _base(storage: Storage) -> str:
    return (storage.endpoint or f"https://{storage.account}.blob.core.windows.net").rstrip("/")


def sign(
    storage: Storage, url: str, *, write: bool, expires: dt.datetime, scope: str = "directory"
) -> Sas:
    """A SAS for everything under ``url``: read and list, plus add, create, write and delete when
    ``write``. ``scope`` ``directory`` signs a directory SAS (``sr=d``; the account needs a
    hierarchical namespace, as ADLS Gen2 has); ``container`` signs a container SAS (``sr=c``),
    which any account accepts but which covers every table in the container."""
    from azure.storage.blob import (
        BlobSasPermissions,
        ContainerSasPermissions,
        generate_blob_sas,
        generate_container_sas,
    )

    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    common = _signing(storage, expires, "vending Azure credentials")
    prefix = blob_prefix(storage, url)
    rights = {"read": True, "list": True}
    if write:
        rights |= {"add": True, "create": True, "write": True, "delete": True}
    if scope == "container":
        token = generate_container_sas(permission=ContainerSasPermissions(**rights), **common)
    else:
        token = generate_blob_sas(
            blob_name=prefix,
            permission=BlobSasPermissions(**rights),
            is_directory=True,
            **common,
        )
    return Sas(token=token, expires=expires, scope=scope, prefix=prefix)


def blob_url(storage: Storage, url: str, path: str, *, expires: dt.datetime) -> str:
    """A read-only, expiring URL to the one blob ``path`` under ``url`` (``az://container/a``)."""
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    common = _signing(storage, expires, "sharing files on Azure")
    blob = "/".join(part for part in (blob_prefix(storage, url), path.strip("/")) if part)
    token = generate_blob_sas(blob_name=blob, permission=BlobSasPermissions(read=True), **common)
    return f"{_base(storage)}/{storage.container}/{quote(blob, safe='/')}?{token}"


__all__ = ["SCOPES", "Sas", "blob_prefix", "blob_url", "sign"]
