"""Envelope encryption: one data key per scope (``catalog.schema.table.column``), wrapped by a
master key from a :class:`~stratus.pii.keys.KeyProvider`.

A data key is 32 random bytes used by :class:`~stratus.pii.cipher.ColumnCipher`. Only its
wrapped form is stored (:class:`DataKeyStore`). Wrapping is AES-256-GCM under the master key with
the scope, the data-key version and the master-key id as associated data, so a wrapped key moved
to another scope or version fails to unwrap instead of decrypting the wrong column::

    wrapped = 0x01 | nonce (12) | AES-GCM(master, nonce, data key, aad) (32 + 16 tag)

With a KMS provider (:class:`~stratus.pii.keys.WrappingKeyProvider`, whose master key never
leaves the KMS) a random key-encryption key is wrapped by the KMS and the data key by that KEK
with the same associated data::

    wrapped = 0x02 | len(kms blob) (2, big endian) | kms blob | nonce (12) | AES-GCM(kek, ...)

Master rotation (:meth:`KeyManager.rotate_master`) re-wraps every data key with the new master
key: the data keys themselves, hence all encrypted data, are unchanged. A new data-key version
(:meth:`KeyManager.new_data_key_version`) is for re-encrypting data (``keys rotate --data``);
older versions stay in the store so rows written under them stay readable.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stratus.pii.errors import DataKeyExistsError, KeyMissingError, KeyUnwrapError
from stratus.pii.keys import KeyProvider, WrappingKeyProvider

__all__ = [
    "DataKey",
    "DataKeyStore",
    "InMemoryDataKeyStore",
    "KeyManager",
    "new_data_key",
    "rewrap",
    "unwrap",
]

DATA_KEY_BYTES = 32
_NONCE = 12
_LOCAL, _KMS = 0x01, 0x02


@dataclass(frozen=True)
class DataKey:
    """A wrapped data key: ``scope`` (e.g. "hr.employees.email"), ``version`` (1, 2, ...),
    the id of the master key that wrapped it, and the wrapped bytes (never the plaintext)."""

    scope: str
    version: int
    master_id: str
    wrapped: bytes = dataclasses.field(repr=False)


def _check_scope(scope: str, version: int) -> None:
    if not scope or "\x00" in scope:
        raise ValueError("a data-key scope must be a non-empty string without NUL characters")
    if not 1 <= version <= 0xFFFFFFFF:
        raise ValueError(f"a data-key version must be in 1..2**32-1, got {version}")


def _aad(scope: str, version: int, master_id: str) -> bytes:
    return b"stratus.pii.data-key\x00" + f"{scope}\x00{version}\x00{master_id}".encode()


def _wrap(key: bytes, scope: str, version: int, provider: KeyProvider) -> DataKey:
    master_id = provider.current_id()
    aad = _aad(scope, version, master_id)
    nonce = secrets.token_bytes(_NONCE)
    if isinstance(provider, WrappingKeyProvider):
        kek = AESGCM.generate_key(256)
        blob = provider.wrap_key(master_id, kek)
        if len(blob) > 0xFFFF:
            raise ValueError("the KMS returned a wrapped key longer than 65535 bytes")
        body = AESGCM(kek).encrypt(nonce, key, aad)
        wrapped = bytes([_KMS]) + len(blob).to_bytes(2, "big") + blob + nonce + body
    else:
        wrapped = bytes([_LOCAL]) + nonce + AESGCM(provider.get(master_id)).encrypt(nonce, key, aad)
    return DataKey(scope, version, master_id, wrapped)


def new_data_key(scope: str, version: int, provider: KeyProvider) -> tuple[DataKey, bytes]:
    """A fresh random data key for ``scope``/``version``, wrapped with the current master key."""
    _check_scope(scope, version)
    key = AESGCM.generate_key(256)
    return _wrap(key, scope, version, provider), key


def unwrap(data_key: DataKey, provider: KeyProvider) -> bytes:
    """The plaintext of ``data_key``. Raises :class:`KeyMissingError` if its master key is gone
    and :class:`KeyUnwrapError` if the master key does not authenticate it."""
    what = f"data key {data_key.scope!r} version {data_key.version}"
    aad = _aad(data_key.scope, data_key.version, data_key.master_id)
    blob = data_key.wrapped
    try:
        if blob[:1] == bytes([_LOCAL]):
            master = provider.get(data_key.master_id)
            key = AESGCM(master).decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], aad)
        elif blob[:1] == bytes([_KMS]) and isinstance(provider, WrappingKeyProvider):
            size = int.from_bytes(blob[1:3], "big")
            kek = provider.unwrap_key(data_key.master_id, blob[3 : 3 + size])
            rest = blob[3 + size :]
            key = AESGCM(kek).decrypt(rest[:_NONCE], rest[_NONCE:], aad)
        elif blob[:1] == bytes([_KMS]):
            raise KeyUnwrapError(
                f"{what} was wrapped by a KMS, but provider {provider.name} is not one"
            )
        else:
            raise KeyUnwrapError(f"{what} has an unknown wrapping format")
    except (InvalidTag, ValueError):
        raise KeyUnwrapError(
            f"{what} could not be unwrapped with master key {data_key.master_id!r} from provider "
            f"{provider.name}: authentication failed (wrong key material, or the wrapped key was "
            "altered or moved)"
        ) from None
    if len(key) != DATA_KEY_BYTES:
        raise KeyUnwrapError(f"{what} unwrapped to {len(key)} bytes instead of {DATA_KEY_BYTES}")
    return key


def rewrap(data_key: DataKey, provider: KeyProvider) -> DataKey:
    """``data_key`` wrapped with the provider's current master key; the data key is unchanged."""
    return _wrap(unwrap(data_key, provider), data_key.scope, data_key.version, provider)


class DataKeyStore(Protocol):
    """Where wrapped data keys live (the metastore in production).

    ``put`` must raise :class:`DataKeyExistsError` when (scope, version) is already stored, so
    that two writers creating the first key of a scope at once agree on one of them; ``replace``
    overwrites an existing (scope, version) (master rotation) and raises
    :class:`KeyMissingError` when there is none.
    """

    def get(self, scope: str, version: int) -> DataKey | None: ...

    def latest(self, scope: str) -> DataKey | None: ...

    def put(self, data_key: DataKey) -> None: ...

    def all(self) -> list[DataKey]: ...

    def replace(self, data_key: DataKey) -> None: ...


class InMemoryDataKeyStore:
    """A thread-safe :class:`DataKeyStore` in a dict, for tests and tools."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, int], DataKey] = {}
        self._lock = threading.Lock()

    def get(self, scope: str, version: int) -> DataKey | None:
        with self._lock:
            return self._keys.get((scope, version))

    def latest(self, scope: str) -> DataKey | None:
        with self._lock:
            versions = [v for (s, v) in self._keys if s == scope]
            return self._keys[(scope, max(versions))] if versions else None

    def put(self, data_key: DataKey) -> None:
        with self._lock:
            slot = (data_key.scope, data_key.version)
            if slot in self._keys:
                raise DataKeyExistsError(
                    f"data key {data_key.scope!r} version {data_key.version} already exists"
                )
            self._keys[slot] = data_key

    def all(self) -> list[DataKey]:
        with self._lock:
            return sorted(self._keys.values(), key=lambda k: (k.scope, k.version))

    def replace(self, data_key: DataKey) -> None:
        with self._lock:
            slot = (data_key.scope, data_key.version)
            if slot not in self._keys:
                raise KeyMissingError(
                    f"no data key {data_key.scope!r} version {data_key.version} to replace"
                )
            self._keys[slot] = data_key


class KeyManager:
    """Data keys by scope: created on first use, unwrapped once and cached in memory.

    Thread-safe within a process; across processes the store's ``put`` conflict decides.
    """

    def __init__(self, provider: KeyProvider, store: DataKeyStore) -> None:
        self.provider = provider
        self.store = store
        self._cache: dict[tuple[str, int], bytes] = {}
        self._lock = threading.RLock()

    def data_key(self, scope: str) -> tuple[int, bytes]:
        """The current (latest) version of ``scope``'s data key and its plaintext, creating
        version 1 on first use."""
        with self._lock:
            latest = self.store.latest(scope)
            if latest is None:
                _check_scope(scope, 1)
                created, key = new_data_key(scope, 1, self.provider)
                try:
                    self.store.put(created)
                except DataKeyExistsError:
                    latest = self.store.latest(scope)
                    if latest is None:  # pragma: no cover - a store that lies
                        raise
                else:
                    self._cache[(scope, 1)] = key
                    return 1, key
            return latest.version, self._plaintext(latest)

    def key(self, scope: str, version: int) -> bytes:
        """The plaintext of ``scope``'s data key ``version`` (e.g. from a ciphertext header)."""
        with self._lock:
            cached = self._cache.get((scope, version))
            if cached is not None:
                return cached
            stored = self.store.get(scope, version)
            if stored is None:
                raise KeyMissingError(
                    f"data key {scope!r} version {version} does not exist; data encrypted with it "
                    "cannot be decrypted"
                )
            return self._plaintext(stored)

    def _plaintext(self, data_key: DataKey) -> bytes:
        slot = (data_key.scope, data_key.version)
        key = self._cache.get(slot)
        if key is None:
            key = unwrap(data_key, self.provider)
            self._cache[slot] = key
        return key

    def new_data_key_version(self, scope: str) -> int:
        """Add a new data-key version for ``scope`` (which becomes current) and return it.

        Existing versions are kept: rows encrypted with them stay readable until rewritten."""
        with self._lock:
            while True:
                latest = self.store.latest(scope)
                version = 1 if latest is None else latest.version + 1
                created, key = new_data_key(scope, version, self.provider)
                try:
                    self.store.put(created)
                except DataKeyExistsError:
                    continue  # another writer took this version: go one further
                self._cache[(scope, version)] = key
                return version

    def rewrap_all(self) -> int:
        """Re-wrap every data key not wrapped by the current master key; returns how many.

        Data keys (hence data) are unchanged. Used after a master rotation, and after changing
        an environment master key by hand."""
        with self._lock:
            current = self.provider.current_id()
            count = 0
            for stored in self.store.all():
                if stored.master_id == current:
                    continue
                key = self._plaintext(stored)
                self.store.replace(_wrap(key, stored.scope, stored.version, self.provider))
                count += 1
            return count

    def rotate_master(self) -> str:
        """Make a new master key current and re-wrap every data key with it. No data changes;
        returns the new master-key id."""
        with self._lock:
            # unwrap everything first: a missing old master key fails before anything changes
            for stored in self.store.all():
                self._plaintext(stored)
            new_id = self.provider.rotate()
            self.rewrap_all()
            return new_id

    def forget(self) -> None:
        """Drop the cached plaintext data keys."""
        with self._lock:
            self._cache.clear()
