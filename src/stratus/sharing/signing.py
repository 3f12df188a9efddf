"""Pre-signed, expiring file URLs for recipients.

* Azure Blob Storage: real SAS URLs (read-only, one blob, expiring), signed with the account key
  by :func:`stratus.lakehouse.sas.blob_url`.
* Local disk: Stratus-signed URLs ``<endpoint>/files/<token>``. The token carries the file path
  (relative to the lakehouse root), the expiry, the recipient and the recipient token it was
  issued to, and an HMAC-SHA256 over all of them with a server secret: changing any byte breaks
  the signature (compared in constant time); expired, tampered or revoked -> 403.

The secret is ``STRATUS_SHARING_SECRET`` (at least 32 characters; the same on every server of a
deployment) or else a random 256-bit key created once in ``$STRATUS_HOME/sharing.secret`` (mode
0600). URLs live ``STRATUS_SHARING_URL_TTL`` seconds (default 3600).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from stratus.lakehouse import sas
from stratus.lakehouse.storage import Storage

SECRET_ENV = "STRATUS_SHARING_SECRET"  # noqa: S105 - a variable name
TTL_ENV = "STRATUS_SHARING_URL_TTL"
SECRET_FILE = "sharing.secret"  # noqa: S105 - a file name
DEFAULT_TTL = 3600
MIN_TTL, MAX_TTL = 10, 7 * 24 * 3600
_DOMAIN = b"stratus.sharing.url.v1\n"


class SignatureError(Exception):
    """A download URL that is malformed, tampered with or expired."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def url_ttl() -> int:
    raw = os.environ.get(TTL_ENV)
    if not raw:
        return DEFAULT_TTL
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{TTL_ENV} must be a number of seconds") from None
    if not MIN_TTL <= value <= MAX_TTL:
        raise ValueError(f"{TTL_ENV} must be between {MIN_TTL} and {MAX_TTL} seconds")
    return value


def load_secret(home: Path) -> bytes:
    """The URL-signing key: from the environment, or created once under ``home`` (0600)."""
    env = os.environ.get(SECRET_ENV)
    if env:
        if len(env) < 32:
            raise ValueError(f"{SECRET_ENV} must be at least 32 characters")
        return hashlib.sha256(env.encode()).digest()
    path = home / SECRET_FILE
    for _ in range(50):
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            text = None
        if text:
            try:
                key = bytes.fromhex(text)
            except ValueError:
                key = b""
            if len(key) < 32:
                raise ValueError(f"{path} does not hold a 256-bit hex key")
            return key
        if text is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                time.sleep(0.01)  # another process is writing it
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            os.chmod(path, 0o600)
            continue
        time.sleep(0.01)
    raise ValueError(f"cannot read the sharing secret in {path}")


@dataclass(frozen=True)
class SignedFile:
    path: str  # relative to the lakehouse root
    recipient_id: str
    token_id: str
    expires_ms: int


class UrlSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._secret, _DOMAIN + payload.encode(), hashlib.sha256).digest()

    def sign(self, path: str, recipient_id: str, token_id: str, expires_ms: int) -> str:
        payload = _b64(
            orjson.dumps({"p": path, "r": recipient_id, "t": token_id, "e": int(expires_ms)})
        )
        return f"{payload}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now_ms: int | None = None) -> SignedFile:
        payload, sep, signature = token.rpartition(".")
        if not sep or not payload or not signature:
            raise SignatureError("malformed URL")
        try:
            given = _unb64(signature)
        except (binascii.Error, ValueError):
            raise SignatureError("malformed URL") from None
        if not hmac.compare_digest(given, self._mac(payload)):
            raise SignatureError("invalid URL signature")
        try:
            doc = orjson.loads(_unb64(payload))
            signed = SignedFile(str(doc["p"]), str(doc["r"]), str(doc["t"]), int(doc["e"]))
        except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            raise SignatureError("malformed URL") from None
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if signed.expires_ms <= now:
            raise SignatureError("the URL has expired")
        return signed


class AzureSigner:
    """Read-only SAS URLs for single blobs (signed in :mod:`stratus.lakehouse.sas`)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def url(self, table_url: str, path: str, expires: dt.datetime) -> str:
        return sas.blob_url(self.storage, table_url, path, expires=expires)


__all__ = ["AzureSigner", "SignatureError", "SignedFile", "UrlSigner", "load_secret", "url_ttl"]
