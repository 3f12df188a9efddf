"""PII protection: column encryption, envelope keys, equality tokens, masks and detection.

Pure Python + pyarrow (and ``cryptography``); no Flask, no Delta. Pieces:

* :mod:`~stratus.pii.keys` - master-key providers (local keyring file, environment, Azure
  Key Vault interface);
* :mod:`~stratus.pii.envelope` - per-scope data keys wrapped by a master key, the
  :class:`KeyManager` that creates, caches and rotates them;
* :mod:`~stratus.pii.cipher` - :class:`ColumnCipher`: AES-256-GCM per value over Arrow arrays,
  HMAC tokens for equality lookups;
* :mod:`~stratus.pii.masks` - what readers without ``UNMASK`` see;
* :mod:`~stratus.pii.detect` - which columns of an ingest look like PII, and why.
"""

from __future__ import annotations

from stratus.pii.cipher import ColumnCipher, original_type, scope_for, type_from_text, type_to_text
from stratus.pii.detect import Detection, detect_pii, kind_from_name
from stratus.pii.envelope import (
    DataKey,
    DataKeyStore,
    InMemoryDataKeyStore,
    KeyManager,
    new_data_key,
    rewrap,
    unwrap,
)
from stratus.pii.errors import (
    DataKeyExistsError,
    DecryptError,
    KeyMissingError,
    KeyProviderError,
    KeyringError,
    KeyringPermissionError,
    KeyRotationError,
    KeyUnwrapError,
    PiiError,
)
from stratus.pii.keys import (
    AzureKeyVaultProvider,
    EnvKeyProvider,
    KeyProvider,
    LocalKeyFileProvider,
    WrappingKeyProvider,
    generate_master_key,
)
from stratus.pii.masks import Masker, MaskPolicy, mask, parse_mask

__all__ = [
    "AzureKeyVaultProvider",
    "ColumnCipher",
    "DataKey",
    "DataKeyExistsError",
    "DataKeyStore",
    "DecryptError",
    "Detection",
    "EnvKeyProvider",
    "InMemoryDataKeyStore",
    "KeyManager",
    "KeyMissingError",
    "KeyProvider",
    "KeyProviderError",
    "KeyRotationError",
    "KeyUnwrapError",
    "KeyringError",
    "KeyringPermissionError",
    "LocalKeyFileProvider",
    "MaskPolicy",
    "Masker",
    "PiiError",
    "WrappingKeyProvider",
    "detect_pii",
    "generate_master_key",
    "kind_from_name",
    "mask",
    "new_data_key",
    "original_type",
    "parse_mask",
    "rewrap",
    "scope_for",
    "type_from_text",
    "type_to_text",
    "unwrap",
]
