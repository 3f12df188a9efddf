"""Master-key providers, data-key envelopes and the KeyManager (stratus.pii.keys/envelope)."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stratus.pii.cipher import ColumnCipher
from stratus.pii.envelope import (
    DataKey,
    InMemoryDataKeyStore,
    KeyManager,
    new_data_key,
    rewrap,
    unwrap,
)
from stratus.pii.errors import (
    DataKeyExistsError,
    KeyMissingError,
    KeyProviderError,
    KeyringError,
    KeyringPermissionError,
    KeyRotationError,
    KeyUnwrapError,
)
from stratus.pii.keys import (
    AzureKeyVaultProvider,
    EnvKeyProvider,
    KeyProvider,
    LocalKeyFileProvider,
    WrappingKeyProvider,
    env_key_id,
    generate_master_key,
)

SCOPE = "hr.employees.email"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    return tmp_path / "home" / "keys" / "keyring.json"


# ---- local keyring file ----------------------------------------------------------------------
def test_keyring_created_on_first_use_owner_only(keyring: Path) -> None:
    provider = LocalKeyFileProvider(keyring)
    assert not keyring.exists()
    key_id = provider.current_id()
    assert keyring.exists()
    assert mode_of(keyring) == 0o600
    assert mode_of(keyring.parent) == 0o700
    doc = json.loads(keyring.read_text())
    assert doc["version"] == 1
    assert doc["current"] == key_id
    assert list(doc["keys"]) == [key_id]
    key = provider.get(key_id)
    assert len(key) == 32
    assert base64.b64decode(doc["keys"][key_id]) == key
    # stable: a second provider on the same file sees the same key
    other = LocalKeyFileProvider(keyring)
    assert other.current_id() == key_id
    assert other.get(key_id) == key
    # nothing but the keyring (and no temp file) in the directory
    assert sorted(p.name for p in keyring.parent.iterdir()) == ["keyring.json"]
    assert isinstance(provider, KeyProvider)
    assert not isinstance(provider, WrappingKeyProvider)


def test_keyring_owner_only_even_with_permissive_umask(keyring: Path) -> None:
    old = os.umask(0)
    try:
        LocalKeyFileProvider(keyring).current_id()
    finally:
        os.umask(old)
    assert mode_of(keyring) == 0o600
    assert mode_of(keyring.parent) == 0o700


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_keyring_accessible_by_others_is_refused(keyring: Path, mode: int) -> None:
    provider = LocalKeyFileProvider(keyring)
    key_id = provider.current_id()
    keyring.chmod(mode)
    fresh = LocalKeyFileProvider(keyring)
    with pytest.raises(KeyringPermissionError) as err:
        fresh.get(key_id)
    message = str(err.value)
    assert str(keyring) in message
    assert f"{mode:04o}" in message
    assert "chmod 600" in message
    with pytest.raises(KeyringPermissionError):
        fresh.current_id()
    with pytest.raises(KeyringPermissionError):
        fresh.rotate()


def test_rotate_keeps_old_keys_readable(keyring: Path) -> None:
    provider = LocalKeyFileProvider(keyring)
    first = provider.current_id()
    first_key = provider.get(first)
    second = provider.rotate()
    assert second != first
    assert provider.current_id() == second
    assert provider.get(first) == first_key
    assert provider.get(second) != first_key
    assert mode_of(keyring) == 0o600
    doc = json.loads(keyring.read_text())
    assert doc["current"] == second
    assert set(doc["keys"]) == {first, second}
    # another process's provider (with a warm cache) sees the rotation
    other = LocalKeyFileProvider(keyring)
    other.get(first)
    third = provider.rotate()
    assert other.current_id() == third
    assert len(other.get(third)) == 32
    assert provider.key_ids() == [first, second, third]
    leftovers = [p.name for p in keyring.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_missing_keyring_file_is_a_clear_error_and_not_recreated(keyring: Path) -> None:
    provider = LocalKeyFileProvider(keyring)
    with pytest.raises(KeyMissingError) as err:
        provider.get("local-20240101-abcdef")
    message = str(err.value)
    assert "local-20240101-abcdef" in message
    assert "local-file" in message
    assert str(keyring) in message
    assert "does not exist" in message
    assert not keyring.exists()


def test_unknown_key_id_is_a_clear_error(keyring: Path) -> None:
    provider = LocalKeyFileProvider(keyring)
    provider.current_id()
    with pytest.raises(KeyMissingError) as err:
        provider.get("local-19990101-000000")
    message = str(err.value)
    assert "'local-19990101-000000'" in message
    assert "provider local-file" in message
    assert str(keyring) in message


def test_lost_keyring_replaced_by_a_new_one_does_not_give_garbage(keyring: Path) -> None:
    manager = KeyManager(LocalKeyFileProvider(keyring), InMemoryDataKeyStore())
    cipher = ColumnCipher.from_manager(manager, SCOPE)
    sealed = cipher.encrypt(pa.array(["ada@example.com"]))
    keyring.unlink()  # the key file is lost; a new one gets created by the next writer
    fresh = KeyManager(LocalKeyFileProvider(keyring), manager.store)
    with pytest.raises(KeyMissingError, match="does not exist"):
        ColumnCipher(SCOPE, lambda v: fresh.key(SCOPE, v), 1).decrypt(sealed)
    fresh.provider.current_id()  # a new keyring exists now, with another key
    with pytest.raises(KeyMissingError, match="not found in keyring"):
        fresh.key(SCOPE, 1)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("not json", "not valid JSON"),
        ('{"version": 2, "current": "a", "keys": {"a": ""}}', "version 1"),
        ('{"version": 1, "current": "a", "keys": {}}', "non-empty"),
        ('{"version": 1, "current": "b", "keys": {"a": "' + "A" * 43 + "=" + '"}}', "'current'"),
        ('{"version": 1, "current": "a", "keys": {"a": "c2hvcnQ="}}', "32 bytes"),
        ('{"version": 1, "current": "a", "keys": {"a": "!!!"}}', "base64"),
    ],
)
def test_malformed_keyring_is_refused(keyring: Path, content: str, match: str) -> None:
    keyring.parent.mkdir(parents=True)
    keyring.write_text(content)
    keyring.chmod(0o600)
    with pytest.raises(KeyringError, match=match):
        LocalKeyFileProvider(keyring).get("a")


def test_concurrent_first_use_agrees_on_one_keyring(keyring: Path) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def first_use() -> None:
        provider = LocalKeyFileProvider(keyring)
        barrier.wait()
        ids.append(provider.current_id())

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert list(json.loads(keyring.read_text())["keys"]) == ids[:1]


# ---- environment variable --------------------------------------------------------------------
def test_env_provider_current_key_and_id() -> None:
    text = generate_master_key()
    key = base64.b64decode(text)
    provider = EnvKeyProvider(env={"STRATUS_MASTER_KEY": text})
    key_id = provider.current_id()
    assert key_id == env_key_id(key)
    assert key_id.startswith("env-")
    assert text not in key_id and key.hex() not in key_id
    assert provider.get(key_id) == key
    assert EnvKeyProvider(env={"STRATUS_MASTER_KEY": text}).current_id() == key_id
    assert EnvKeyProvider(env={"STRATUS_MASTER_KEY": generate_master_key()}).current_id() != key_id


def test_env_provider_errors_are_clear_and_never_echo_the_key() -> None:
    with pytest.raises(KeyMissingError, match="STRATUS_MASTER_KEY is not set"):
        EnvKeyProvider(env={}).current_id()
    with pytest.raises(KeyringError, match="not valid base64"):
        EnvKeyProvider(env={"STRATUS_MASTER_KEY": "secret!value"}).current_id()
    short = base64.b64encode(b"sixteen bytes!!!").decode()
    with pytest.raises(KeyringError, match="32 bytes") as err:
        EnvKeyProvider(env={"STRATUS_MASTER_KEY": short}).current_id()
    assert short not in str(err.value)
    provider = EnvKeyProvider(env={"STRATUS_MASTER_KEY": generate_master_key()})
    with pytest.raises(KeyMissingError) as missing:
        provider.get("env-0000000000000000")
    message = str(missing.value)
    assert "env-0000000000000000" in message
    assert "STRATUS_MASTER_KEY_PREVIOUS" in message
    assert "provider env" in message
    with pytest.raises(KeyRotationError, match="STRATUS_MASTER_KEY_PREVIOUS"):
        provider.rotate()


def test_env_key_change_with_previous_key_keeps_data_readable() -> None:
    old, new = generate_master_key(), generate_master_key()
    env = {"STRATUS_MASTER_KEY": old}
    provider = EnvKeyProvider(env=env)
    store = InMemoryDataKeyStore()
    manager = KeyManager(provider, store)
    cipher = ColumnCipher.from_manager(manager, SCOPE)
    sealed = cipher.encrypt(pa.array(["ada@example.com", None]))
    old_id = provider.current_id()

    # the operator changes the key and keeps the old one as previous
    env["STRATUS_MASTER_KEY"] = new
    env["STRATUS_MASTER_KEY_PREVIOUS"] = f"{generate_master_key()}, {old}"
    restarted = KeyManager(EnvKeyProvider(env=env), store)
    reader = ColumnCipher(SCOPE, lambda v: restarted.key(SCOPE, v), 1, pa.string())
    assert reader.decrypt(sealed).to_pylist() == ["ada@example.com", None]
    # re-wrap moves every data key to the new master; then the old key can go
    assert restarted.rewrap_all() == 1
    assert {k.master_id for k in store.all()} == {provider.current_id()} != {old_id}
    del env["STRATUS_MASTER_KEY_PREVIOUS"]
    after = KeyManager(EnvKeyProvider(env=env), store)
    reader = ColumnCipher(SCOPE, lambda v: after.key(SCOPE, v), 1, pa.string())
    assert reader.decrypt(sealed).to_pylist() == ["ada@example.com", None]


def test_env_key_change_without_previous_key_is_key_missing() -> None:
    env = {"STRATUS_MASTER_KEY": generate_master_key()}
    store = InMemoryDataKeyStore()
    KeyManager(EnvKeyProvider(env=env), store).data_key(SCOPE)
    env["STRATUS_MASTER_KEY"] = generate_master_key()
    with pytest.raises(KeyMissingError, match="STRATUS_MASTER_KEY_PREVIOUS"):
        KeyManager(EnvKeyProvider(env=env), store).key(SCOPE, 1)


def test_env_provider_custom_variable_names() -> None:
    key = generate_master_key()
    provider = EnvKeyProvider("MY_KEY", env={"MY_KEY": key})
    assert provider.previous_variable == "MY_KEY_PREVIOUS"
    assert provider.get(provider.current_id()) == base64.b64decode(key)


# ---- Azure Key Vault interface ---------------------------------------------------------------
def test_azure_provider_without_sdk_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("azure.keyvault", "azure.keyvault.keys", "azure.keyvault.keys.crypto"):
        monkeypatch.setitem(sys.modules, module, None)  # import -> ImportError
    with pytest.raises(KeyProviderError, match="pip install azure-keyvault-keys"):
        AzureKeyVaultProvider("https://vault.example.net", "stratus-master")


class FakeVault:
    """Stands in for Key Vault's KeyClient and CryptographyClient (wrap = local AES-GCM)."""

    class ResourceNotFoundError(Exception):
        pass

    class _Key:
        def __init__(self, key_id: str) -> None:
            self.id = key_id

    class _Result:
        def __init__(self, **kw: bytes) -> None:
            self.__dict__.update(kw)

    def __init__(self) -> None:
        self.versions: dict[str, bytes] = {}
        self.rotate_key("stratus-master")

    def get_key(self, name: str) -> FakeVault._Key:
        return self._Key(list(self.versions)[-1])

    def rotate_key(self, name: str) -> FakeVault._Key:
        key_id = f"https://vault.example.net/keys/{name}/v{len(self.versions) + 1}"
        self.versions[key_id] = AESGCM.generate_key(256)
        return self._Key(key_id)

    def crypto(self, key_id: str) -> FakeVault:
        if key_id not in self.versions:
            raise self.ResourceNotFoundError(key_id)
        self._current = self.versions[key_id]
        return self

    def wrap_key(self, algorithm: str, key: bytes) -> FakeVault._Result:
        nonce = os.urandom(12)
        return self._Result(encrypted_key=nonce + AESGCM(self._current).encrypt(nonce, key, None))

    def unwrap_key(self, algorithm: str, wrapped: bytes) -> FakeVault._Result:
        return self._Result(key=AESGCM(self._current).decrypt(wrapped[:12], wrapped[12:], None))


def test_kms_provider_wraps_data_keys_and_rotates() -> None:
    vault = FakeVault()
    provider = AzureKeyVaultProvider(
        "https://vault.example.net", "stratus-master", key_client=vault, crypto_client=vault.crypto
    )
    assert isinstance(provider, WrappingKeyProvider)
    with pytest.raises(KeyProviderError, match="never leaves"):
        provider.get(provider.current_id())
    store = InMemoryDataKeyStore()
    manager = KeyManager(provider, store)
    version, key = manager.data_key(SCOPE)
    stored = store.get(SCOPE, version)
    assert stored is not None and stored.wrapped[0] == 0x02
    assert key not in stored.wrapped
    assert unwrap(stored, provider) == key
    moved = DataKey("hr.employees.phone", version, stored.master_id, stored.wrapped)
    with pytest.raises(KeyUnwrapError):
        unwrap(moved, provider)
    new_id = manager.rotate_master()
    assert new_id.endswith("/v2")
    assert store.get(SCOPE, version).master_id == new_id  # type: ignore[union-attr]
    assert KeyManager(provider, store).key(SCOPE, version) == key
    gone = DataKey(SCOPE, version, "https://vault.example.net/keys/x/v9", stored.wrapped)
    with pytest.raises(KeyMissingError, match="v9"):
        unwrap(gone, provider)


# ---- envelope --------------------------------------------------------------------------------
@pytest.fixture
def local(keyring: Path) -> LocalKeyFileProvider:
    return LocalKeyFileProvider(keyring)


def test_data_key_wrap_round_trip(local: LocalKeyFileProvider) -> None:
    data_key, plaintext = new_data_key(SCOPE, 1, local)
    assert len(plaintext) == 32
    assert data_key.scope == SCOPE and data_key.version == 1
    assert data_key.master_id == local.current_id()
    assert plaintext not in data_key.wrapped
    assert data_key.wrapped.hex() not in repr(data_key)
    assert unwrap(data_key, local) == plaintext


def test_wrapped_data_key_is_bound_to_scope_version_and_master(local: LocalKeyFileProvider) -> None:
    data_key, _ = new_data_key(SCOPE, 1, local)
    for moved in (
        DataKey("hr.employees.phone", 1, data_key.master_id, data_key.wrapped),
        DataKey(SCOPE, 2, data_key.master_id, data_key.wrapped),
    ):
        with pytest.raises(KeyUnwrapError, match="authentication failed"):
            unwrap(moved, local)
    flipped = bytearray(data_key.wrapped)
    flipped[-1] ^= 1
    with pytest.raises(KeyUnwrapError):
        unwrap(DataKey(SCOPE, 1, data_key.master_id, bytes(flipped)), local)


def test_wrong_master_key_material_is_detected(keyring: Path, local: LocalKeyFileProvider) -> None:
    data_key, _ = new_data_key(SCOPE, 1, local)
    doc = json.loads(keyring.read_text())
    doc["keys"][data_key.master_id] = base64.b64encode(os.urandom(32)).decode()
    keyring.write_text(json.dumps(doc))
    with pytest.raises(KeyUnwrapError, match=data_key.master_id):
        unwrap(data_key, LocalKeyFileProvider(keyring))


def test_rewrap_changes_master_not_data_key(local: LocalKeyFileProvider) -> None:
    data_key, plaintext = new_data_key(SCOPE, 3, local)
    new_master = local.rotate()
    again = rewrap(data_key, local)
    assert again.master_id == new_master != data_key.master_id
    assert (again.scope, again.version) == (SCOPE, 3)
    assert again.wrapped != data_key.wrapped
    assert unwrap(again, local) == plaintext


def test_in_memory_store_contract(local: LocalKeyFileProvider) -> None:
    store = InMemoryDataKeyStore()
    assert store.latest(SCOPE) is None and store.all() == []
    one, _ = new_data_key(SCOPE, 1, local)
    two, _ = new_data_key(SCOPE, 2, local)
    store.put(two)
    store.put(one)
    assert store.latest(SCOPE) == two
    assert store.get(SCOPE, 1) == one
    assert store.get(SCOPE, 9) is None
    assert store.all() == [one, two]
    with pytest.raises(DataKeyExistsError):
        store.put(one)
    with pytest.raises(KeyMissingError):
        store.replace(DataKey("other.t.c", 1, "m", b""))


def test_invalid_scope_or_version(local: LocalKeyFileProvider) -> None:
    with pytest.raises(ValueError, match="scope"):
        new_data_key("", 1, local)
    with pytest.raises(ValueError, match="version"):
        new_data_key(SCOPE, 0, local)


# ---- KeyManager ------------------------------------------------------------------------------
class CountingProvider:
    """Wraps a provider and counts get() calls."""

    def __init__(self, inner: LocalKeyFileProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.gets = 0

    def current_id(self) -> str:
        return self.inner.current_id()

    def get(self, key_id: str) -> bytes:
        self.gets += 1
        return self.inner.get(key_id)

    def rotate(self) -> str:
        return self.inner.rotate()


def test_data_key_created_once_and_cached(local: LocalKeyFileProvider) -> None:
    store = InMemoryDataKeyStore()
    manager = KeyManager(local, store)
    version, key = manager.data_key(SCOPE)
    assert version == 1
    assert manager.data_key(SCOPE) == (1, key)
    assert manager.key(SCOPE, 1) == key
    assert len(store.all()) == 1
    counting = CountingProvider(local)
    reader = KeyManager(counting, store)
    for _ in range(5):
        assert reader.key(SCOPE, 1) == key
    assert counting.gets == 1
    reader.forget()
    assert reader.key(SCOPE, 1) == key
    assert counting.gets == 2
    other_version, other = manager.data_key("hr.employees.phone")
    assert other_version == 1 and other != key


def test_missing_data_key_version_is_key_missing(local: LocalKeyFileProvider) -> None:
    manager = KeyManager(local, InMemoryDataKeyStore())
    manager.data_key(SCOPE)
    with pytest.raises(KeyMissingError, match=r"'hr.employees.email' version 7"):
        manager.key(SCOPE, 7)


def test_new_data_key_version_keeps_old_versions(local: LocalKeyFileProvider) -> None:
    manager = KeyManager(local, InMemoryDataKeyStore())
    _, first = manager.data_key(SCOPE)
    assert manager.new_data_key_version(SCOPE) == 2
    version, second = manager.data_key(SCOPE)
    assert version == 2 and second != first
    assert manager.key(SCOPE, 1) == first
    assert manager.new_data_key_version("new.scope.col") == 1


def test_concurrent_first_data_key_agrees(local: LocalKeyFileProvider) -> None:
    """Two processes create version 1 at once: the store's put conflict decides."""
    store = InMemoryDataKeyStore()

    class Racing(InMemoryDataKeyStore):
        def __init__(self) -> None:
            super().__init__()
            self.raced = False

        def latest(self, scope: str) -> DataKey | None:
            found = store.latest(scope)
            if found is None and not self.raced:
                self.raced = True
                KeyManager(local, store).data_key(scope)  # the other process wins
                return None
            return found

        def put(self, data_key: DataKey) -> None:
            store.put(data_key)

        def get(self, scope: str, version: int) -> DataKey | None:
            return store.get(scope, version)

    version, key = KeyManager(local, Racing()).data_key(SCOPE)
    assert version == 1
    assert key == KeyManager(local, store).key(SCOPE, 1)
    assert len(store.all()) == 1


def test_rotate_master_rewraps_without_changing_data_keys(keyring: Path) -> None:
    provider = LocalKeyFileProvider(keyring)
    store = InMemoryDataKeyStore()
    manager = KeyManager(provider, store)
    scopes = ["hr.employees.email", "hr.employees.phone", "hr.employees.salary"]
    plain = {s: manager.data_key(s)[1] for s in scopes}
    manager.new_data_key_version(scopes[0])
    plain_v2 = manager.key(scopes[0], 2)
    cipher = ColumnCipher.from_manager(manager, scopes[1])
    sealed = cipher.encrypt(pa.array(["+1-415-555-0123"]))
    old_master = provider.current_id()
    before = {(k.scope, k.version): k.wrapped for k in store.all()}

    new_master = manager.rotate_master()

    assert new_master != old_master and provider.current_id() == new_master
    after = store.all()
    assert len(after) == 4
    assert all(k.master_id == new_master for k in after)
    assert all(before[(k.scope, k.version)] != k.wrapped for k in after)
    # a fresh manager (cold cache) unwraps the same plaintext data keys
    fresh = KeyManager(LocalKeyFileProvider(keyring), store)
    assert {s: fresh.key(s, 1) for s in scopes} == plain
    assert fresh.key(scopes[0], 2) == plain_v2
    # the old master key is no longer needed: drop it from the keyring, data still decrypts
    doc = json.loads(keyring.read_text())
    del doc["keys"][old_master]
    keyring.write_text(json.dumps(doc))
    cold = KeyManager(LocalKeyFileProvider(keyring), store)
    reader = ColumnCipher(scopes[1], lambda v: cold.key(scopes[1], v), 1, pa.string())
    assert reader.decrypt(sealed).to_pylist() == ["+1-415-555-0123"]
    assert cold.rewrap_all() == 0


def test_rotate_master_with_a_lost_old_key_changes_nothing(keyring: Path) -> None:
    provider = LocalKeyFileProvider(keyring)
    store = InMemoryDataKeyStore()
    KeyManager(provider, store).data_key(SCOPE)
    lost = DataKey("hr.other.col", 1, "local-19990101-000000", b"\x01" + bytes(60))
    store.put(lost)
    current = provider.current_id()
    with pytest.raises(KeyMissingError, match="local-19990101-000000"):
        KeyManager(LocalKeyFileProvider(keyring), store).rotate_master()
    assert LocalKeyFileProvider(keyring).current_id() == current
