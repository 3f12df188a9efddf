"""Errors of the PII library. None of them ever carries a plaintext value or key material."""

from __future__ import annotations


class PiiError(Exception):
    """Base class of every error raised by :mod:`stratus.pii`."""


class KeyMissingError(PiiError, LookupError):
    """A master key or data key that is needed does not exist (lost key file, unknown key id).

    Raised instead of ever returning wrong key material: data under a missing key stays
    unreadable with a clear error, never decrypts to garbage.
    """


class KeyringError(PiiError):
    """A keyring or key variable exists but cannot be used (malformed, wrong key length)."""


class KeyringPermissionError(KeyringError, PermissionError):
    """The local keyring file is accessible by group or others; it is refused."""


class KeyRotationError(PiiError):
    """The provider cannot rotate its master key by itself (e.g. an environment variable)."""


class KeyProviderError(PiiError):
    """A key provider is unavailable or misconfigured (e.g. a cloud SDK is not installed)."""


class KeyUnwrapError(PiiError):
    """A data key failed authentication when unwrapped: wrong master key material or tampering."""


class DataKeyExistsError(PiiError):
    """``DataKeyStore.put`` of a (scope, version) that is already stored (a concurrent writer)."""


class DecryptError(PiiError):
    """A ciphertext failed authentication or is malformed. Names the column, never the value."""
