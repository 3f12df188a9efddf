"""Master-key providers: where the keys that wrap the per-column data keys live.

A provider hands out 32-byte AES-256 master keys by id. Data keys are wrapped with the
provider's *current* master key (see :mod:`stratus.pii.envelope`); every older master key stays
readable so that data keys wrapped before a rotation can still be unwrapped until they are
re-wrapped. A key that is not there raises :class:`KeyMissingError` naming the key id and the
provider: never a substitute key, never garbage.

Providers:

* :class:`LocalKeyFileProvider` (the default, a JSON keyring under ``STRATUS_HOME``)::

      {"version": 1, "current": "<id>", "keys": {"<id>": "<base64 32 bytes>", ...}}

  created on first use with owner-only permissions (file 0600, a created parent directory
  0700), always written atomically (temp file + fsync + rename), and refused when it is
  readable or writable by group/others.
* :class:`EnvKeyProvider`: a base64 key in ``STRATUS_MASTER_KEY``; older keys that must stay
  readable go (comma- or space-separated) in ``STRATUS_MASTER_KEY_PREVIOUS``. The key id is
  derived from a hash of the key, never the key itself. It cannot rotate by itself.
* :class:`AzureKeyVaultProvider`: the cloud KMS interface. The master key never leaves Key
  Vault; instead of :meth:`~KeyProvider.get` it offers ``wrap_key``/``unwrap_key``
  (:class:`WrappingKeyProvider`), which the envelope code uses when present.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stratus.pii.errors import (
    KeyMissingError,
    KeyProviderError,
    KeyringError,
    KeyringPermissionError,
    KeyRotationError,
)

__all__ = [
    "MASTER_KEY_BYTES",
    "AzureKeyVaultProvider",
    "EnvKeyProvider",
    "KeyProvider",
    "LocalKeyFileProvider",
    "WrappingKeyProvider",
    "generate_master_key",
]

MASTER_KEY_BYTES = 32
KEYRING_VERSION = 1


@runtime_checkable
class KeyProvider(Protocol):
    """A source of 32-byte master keys, addressed by id."""

    name: str

    def current_id(self) -> str:
        """The id of the master key new data keys are wrapped with."""
        ...

    def get(self, key_id: str) -> bytes:
        """The 32-byte master key ``key_id``; raises :class:`KeyMissingError` if absent."""
        ...

    def rotate(self) -> str:
        """Make a new master key current and return its id; older keys stay readable."""
        ...


@runtime_checkable
class WrappingKeyProvider(KeyProvider, Protocol):
    """A provider whose master keys never leave it (a cloud KMS): it wraps and unwraps for us."""

    def wrap_key(self, key_id: str, key: bytes) -> bytes: ...

    def unwrap_key(self, key_id: str, wrapped: bytes) -> bytes: ...


def generate_master_key() -> str:
    """A fresh random master key, base64-encoded (the format of ``STRATUS_MASTER_KEY``)."""
    return base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode("ascii")


def _decode_key(text: str, where: str) -> bytes:
    """Base64 text -> 32 bytes, or a KeyringError that says where (never echoes the text)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"{where} is not valid base64") from None
    if len(key) != MASTER_KEY_BYTES:
        raise KeyringError(
            f"{where} must decode to {MASTER_KEY_BYTES} bytes (AES-256), got {len(key)} bytes"
        )
    return key


# ---- local key file ----------------------------------------------------------------------------
class LocalKeyFileProvider:
    """Master keys in a JSON keyring file with owner-only permissions.

    The file is created by the first :meth:`current_id` or :meth:`rotate`; :meth:`get` never
    creates it, so a lost keyring is reported as such instead of silently replaced by a new,
    useless one. Keys are cached in memory once read; a cache miss re-reads the file so that a
    rotation made by another process is seen.
    """

    name = "local-file"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalKeyFileProvider({str(self.path)!r})"

    # public API
    def current_id(self) -> str:
        with self._lock:
            current, _ = self._load_or_create()
            return current

    def get(self, key_id: str) -> bytes:
        with self._lock:
            key = self._keys.get(key_id)
            if key is not None:
                return key
            if not self.path.exists():
                raise KeyMissingError(
                    f"master key {key_id!r} is unavailable: the keyring file {self.path} does "
                    f"not exist (provider {self.name}). Restore the keyring from its backup; "
                    "data protected by this key cannot be decrypted without it."
                )
            self._read()
            key = self._keys.get(key_id)
            if key is None:
                raise KeyMissingError(
                    f"master key {key_id!r} not found in keyring {self.path} "
                    f"(provider {self.name}; it holds {len(self._keys)} key(s)). Was the keyring "
                    "replaced? Restore the one that holds this key."
                )
            return key

    def rotate(self) -> str:
        with self._lock, self._file_lock():
            _, keys = self._load_or_create()
            new_id = self._new_id(keys)
            keys = {**keys, new_id: secrets.token_bytes(MASTER_KEY_BYTES)}
            self._write(new_id, keys, replace=True)
            self._keys.update(keys)
            return new_id

    def key_ids(self) -> list[str]:
        """The ids in the keyring (creating it if needed), oldest first."""
        with self._lock:
            self._load_or_create()
            return list(self._keys)

    # internals
    @staticmethod
    def _new_id(existing: Mapping[str, bytes]) -> str:
        while True:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
            key_id = f"local-{stamp}-{secrets.token_hex(6)}"
            if key_id not in existing:
                return key_id

    def _load_or_create(self) -> tuple[str, dict[str, bytes]]:
        if not self.path.exists():
            self._create()
        return self._read()

    def _create(self) -> None:
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(parent, 0o700)
        key_id = self._new_id({})
        with contextlib.suppress(FileExistsError):  # another process created it: use theirs
            self._write(key_id, {key_id: secrets.token_bytes(MASTER_KEY_BYTES)}, replace=False)

    def _read(self) -> tuple[str, dict[str, bytes]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise KeyMissingError(
                f"keyring file {self.path} does not exist (provider {self.name})"
            ) from None
        except OSError as exc:
            raise KeyringError(f"cannot open keyring {self.path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise KeyringError(f"keyring {self.path} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise KeyringPermissionError(
                    f"refusing to use keyring {self.path}: it is accessible by group/others "
                    f"(mode {mode:04o}); restrict it with `chmod 600 {self.path}`"
                )
            raw = fh.read()
        current, keys = self._parse(raw)
        self._keys.update(keys)
        return current, keys

    def _parse(self, raw: bytes) -> tuple[str, dict[str, bytes]]:
        where = f"keyring {self.path}"
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise KeyringError(f"{where} is not valid JSON") from None
        if not isinstance(doc, dict) or doc.get("version") != KEYRING_VERSION:
            raise KeyringError(f"{where} is malformed: expected an object with version 1")
        current, entries = doc.get("current"), doc.get("keys")
        if not isinstance(entries, dict) or not entries:
            raise KeyringError(f"{where} is malformed: 'keys' must be a non-empty object")
        keys: dict[str, bytes] = {}
        for key_id, text in entries.items():
            if not isinstance(text, str):
                raise KeyringError(f"{where} is malformed: key {key_id!r} is not a string")
            keys[key_id] = _decode_key(text, f"key {key_id!r} in {where}")
        if not isinstance(current, str) or current not in keys:
            raise KeyringError(f"{where} is malformed: 'current' does not name one of its keys")
        return current, keys

    def _write(self, current: str, keys: Mapping[str, bytes], *, replace: bool) -> None:
        doc = {
            "version": KEYRING_VERSION,
            "current": current,
            "keys": {k: base64.b64encode(v).decode("ascii") for k, v in keys.items()},
        }
        data = json.dumps(doc, indent=2).encode() + b"\n"
        parent = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if replace:
                os.replace(tmp, self.path)
            else:
                os.link(tmp, self.path)  # atomic create-if-absent
                os.unlink(tmp)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(parent)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """An exclusive lock between processes for read-modify-write of the keyring."""
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(parent, 0o700)
        lock = parent / f".{self.path.name}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---- environment variable ----------------------------------------------------------------------
_SEPARATORS = re.compile(r"[\s,]+")


def env_key_id(key: bytes) -> str:
    """The id of an environment master key: a truncated hash, which reveals nothing of the key."""
    return "env-" + hashlib.sha256(b"stratus.pii.master-key-id\x00" + key).hexdigest()[:16]


class EnvKeyProvider:
    """The master key from an environment variable (base64 of 32 bytes).

    To rotate: generate a key (:func:`generate_master_key`), move the current value to the
    ``<variable>_PREVIOUS`` variable (several keys may be listed, comma- or space-separated),
    set the new key in ``<variable>``, restart, and re-wrap the data keys
    (:meth:`stratus.pii.envelope.KeyManager.rewrap_all`). :meth:`rotate` itself refuses.
    The mapping is read on every call, so changes to ``os.environ`` are seen.
    """

    name = "env"

    def __init__(
        self,
        variable: str = "STRATUS_MASTER_KEY",
        env: Mapping[str, str] = os.environ,
        previous_variable: str | None = None,
    ) -> None:
        self.variable = variable
        self.previous_variable = previous_variable or f"{variable}_PREVIOUS"
        self.env = env

    def __repr__(self) -> str:
        return f"EnvKeyProvider({self.variable!r})"

    def _current(self) -> bytes:
        text = self.env.get(self.variable, "")
        if not text.strip():
            raise KeyMissingError(
                f"environment variable {self.variable} is not set (provider {self.name}); set it "
                "to a base64-encoded 32-byte key"
            )
        return _decode_key(text, f"environment variable {self.variable}")

    def _previous(self) -> list[bytes]:
        text = self.env.get(self.previous_variable, "")
        parts = [p for p in _SEPARATORS.split(text) if p]
        return [
            _decode_key(p, f"key #{i} of environment variable {self.previous_variable}")
            for i, p in enumerate(parts, 1)
        ]

    def current_id(self) -> str:
        return env_key_id(self._current())

    def get(self, key_id: str) -> bytes:
        for key in [self._current(), *self._previous()]:
            if secrets.compare_digest(env_key_id(key), key_id):
                return key
        raise KeyMissingError(
            f"master key {key_id!r} is neither in {self.variable} nor in {self.previous_variable} "
            f"(provider {self.name}); after a key change keep the old key in "
            f"{self.previous_variable} until every data key has been re-wrapped"
        )

    def rotate(self) -> str:
        raise KeyRotationError(
            f"provider {self.name} cannot create keys: generate a new key, move the current "
            f"value of {self.variable} to {self.previous_variable}, set {self.variable} to the "
            "new key, restart, then re-wrap the data keys"
        )


# ---- Azure Key Vault (cloud KMS interface) -----------------------------------------------------
_AZURE_HINT = (
    "AzureKeyVaultProvider needs the Azure SDK, which Stratus does not install: "
    "pip install azure-keyvault-keys azure-identity"
)


class AzureKeyVaultProvider:
    """The cloud KMS interface: a key (RSA, or AES on Managed HSM) in Azure Key Vault.

    The master key never leaves the vault, so :meth:`get` refuses; data keys are wrapped and
    unwrapped by the vault (``wrap_key``/``unwrap_key``, RSA-OAEP-256 by default), and the
    envelope layer binds each wrapped data key to its scope with its own AES-GCM layer.
    ``current_id`` is the versioned key id URL; :meth:`rotate` creates a new key version in the
    vault (``KeyClient.rotate_key``), older versions stay usable for unwrapping.

    The ``azure-keyvault-keys`` (and, for the default credential, ``azure-identity``) packages
    are optional and not Stratus dependencies; constructing this without them raises
    :class:`KeyProviderError`. ``key_client`` and ``crypto_client`` (a callable taking a key id)
    may be injected.
    """

    name = "azure-keyvault"

    def __init__(
        self,
        vault_url: str,
        key_name: str,
        credential: Any = None,
        *,
        algorithm: str = "RSA-OAEP-256",
        key_client: Any = None,
        crypto_client: Callable[[str], Any] | None = None,
    ) -> None:
        self.vault_url, self.key_name, self.algorithm = vault_url, key_name, algorithm
        if key_client is None or crypto_client is None:
            try:
                from azure.keyvault.keys import KeyClient
                from azure.keyvault.keys.crypto import CryptographyClient
            except ImportError:
                raise KeyProviderError(_AZURE_HINT) from None
            if credential is None:
                try:
                    from azure.identity import DefaultAzureCredential
                except ImportError:
                    raise KeyProviderError(_AZURE_HINT) from None
                credential = DefaultAzureCredential()
            key_client = key_client or KeyClient(vault_url=vault_url, credential=credential)
            crypto_client = crypto_client or (
                lambda key_id: CryptographyClient(key_id, credential=credential)
            )
        self._keys = key_client
        self._crypto = crypto_client

    def current_id(self) -> str:
        return str(self._keys.get_key(self.key_name).id)

    def get(self, key_id: str) -> bytes:
        raise KeyProviderError(
            f"master key {key_id!r} lives in Azure Key Vault and never leaves it; "
            "use wrap_key/unwrap_key"
        )

    def rotate(self) -> str:
        return str(self._keys.rotate_key(self.key_name).id)

    def wrap_key(self, key_id: str, key: bytes) -> bytes:
        return bytes(self._call(key_id, "wrap_key", key).encrypted_key)

    def unwrap_key(self, key_id: str, wrapped: bytes) -> bytes:
        return bytes(self._call(key_id, "unwrap_key", wrapped).key)

    def _call(self, key_id: str, method: str, data: bytes) -> Any:
        try:
            return getattr(self._crypto(key_id), method)(self.algorithm, data)
        except Exception as exc:  # the SDK's ResourceNotFoundError, HttpResponseError...
            if type(exc).__name__ == "ResourceNotFoundError":
                raise KeyMissingError(
                    f"master key {key_id!r} not found in Azure Key Vault {self.vault_url} "
                    f"(provider {self.name})"
                ) from None
            raise KeyProviderError(
                f"Azure Key Vault {method} with key {key_id!r} failed: {type(exc).__name__}"
            ) from exc
