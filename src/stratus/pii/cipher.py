"""Column encryption: AES-256-GCM per value over Arrow arrays, and keyed equality tokens.

One :class:`ColumnCipher` serves one scope (``catalog.schema.table.column``). Each non-null value
becomes one binary value::

    0x01 (format) | data-key version (4, big endian) | nonce (12) | ciphertext | GCM tag (16)

so a value is 33 bytes longer than its plaintext. The associated data binds the scope and the
5-byte header, so a value copied into another column, or with an altered version, fails to
decrypt (:class:`DecryptError`, naming the column and row, never the value). The nonce is fresh
random per value; they are drawn in bulk, one ``os.urandom`` call per batch. With random 96-bit
nonces NIST advises at most 2**32 encryptions per key: add a data-key version well before that.

The AES key and the token key are both derived from the scope's data key with HKDF-SHA256
(separate ``info`` strings, both naming the scope), so the data key itself is never used
directly and the two uses never share a key.

Values that are not strings (integers, floats, decimals, dates, timestamps, booleans) are
encrypted as their canonical text: floats as Python's shortest round-trip ``repr``, everything
else as Arrow's cast to string (decimal digits, ISO dates). The Arrow type is recorded
(:attr:`ColumnCipher.value_type`, :meth:`ColumnCipher.encrypted_field`) and :meth:`decrypt`
casts back to it, so a float64 salary decrypts to float64. Tokens are HMAC-SHA256 of the same
canonical bytes, so equal values give equal tokens within a scope and data-key version.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from itertools import repeat
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stratus.pii.errors import DecryptError

if TYPE_CHECKING:
    from stratus.pii.envelope import KeyManager

__all__ = [
    "FORMAT",
    "OVERHEAD",
    "ColumnCipher",
    "original_type",
    "scope_for",
    "type_from_text",
    "type_to_text",
]

FORMAT = 0x01
_NONCE = 12
HEADER = 1 + 4 + _NONCE  # format byte, version, nonce
OVERHEAD = HEADER + 16  # + GCM tag
TOKEN_BYTES = 32
META_SCOPE = b"stratus.pii.scope"
META_TYPE = b"stratus.pii.type"
META_TYPE_NAME = b"stratus.pii.type_name"
_INT32_MAX = 2**31 - 1

ArrayLike: TypeAlias = pa.Array | pa.ChunkedArray


def scope_for(table: str, column: str) -> str:
    """The scope of a column: ``"<table full name>.<column>"``."""
    return f"{table}.{column}"


def type_to_text(value_type: pa.DataType) -> str:
    """An exact, portable text form of an Arrow type (base64 of an Arrow IPC schema)."""
    schema = pa.schema([pa.field("v", value_type)])
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def type_from_text(text: str) -> pa.DataType:
    """The inverse of :func:`type_to_text`."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text))).field(0).type


def original_type(field: pa.Field) -> pa.DataType | None:
    """The plaintext type recorded by :meth:`ColumnCipher.encrypted_field`, if any."""
    text = (field.metadata or {}).get(META_TYPE)
    return type_from_text(text.decode()) if text else None


def _derive(key: bytes, purpose: str, scope: str) -> bytes:
    info = f"stratus.pii.{purpose}\x00{scope}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


def _hmac_sha256_many(key: bytes, messages: list[bytes]) -> list[bytes]:
    """``[hmac.digest(key, m, "sha256") for m in messages]``, about 3x faster: the keyed inner
    and outer SHA-256 states (RFC 2104) are computed once and copied per message."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    block = key.ljust(64, b"\x00")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    out: list[bytes] = []
    append, copy_inner, copy_outer = out.append, inner.copy, outer.copy
    for message in messages:
        h = copy_inner()
        h.update(message)
        o = copy_outer()
        o.update(h.digest())
        append(o.digest())
    return out


# ---- canonical text ----------------------------------------------------------------------------
_TEXT_TYPES = (pa.string(), pa.large_string(), pa.binary(), pa.large_binary())


def _plain_type(value_type: pa.DataType) -> pa.DataType:
    """The Arrow type a decrypted value has before the cast back to ``value_type``."""
    return value_type if value_type in _TEXT_TYPES else pa.string()


def _supported(value_type: pa.DataType) -> bool:
    t = pa.types
    return (
        value_type in _TEXT_TYPES
        or t.is_integer(value_type)
        or t.is_float32(value_type)
        or t.is_float64(value_type)
        or t.is_decimal(value_type)
        or t.is_date(value_type)
        or t.is_timestamp(value_type)
        or t.is_boolean(value_type)
    )


def _normalise(values: ArrayLike) -> pa.Array:
    """One contiguous array with dictionaries decoded and views turned into plain strings."""
    if isinstance(values, pa.ChunkedArray):
        values = values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    if not isinstance(values, pa.Array):
        raise TypeError(f"expected a pyarrow Array or ChunkedArray, got {type(values).__name__}")
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if values.type == pa.string_view():
        values = values.cast(pa.string())
    elif values.type == pa.binary_view():
        values = values.cast(pa.binary())
    elif pa.types.is_null(values.type):
        values = pa.nulls(len(values), pa.string())
    return values


def _canonical(values: pa.Array) -> pa.Array:
    """``values`` as a string/binary array of canonical plaintext bytes (nulls stay null)."""
    value_type = values.type
    if value_type in _TEXT_TYPES:
        return values
    if pa.types.is_floating(value_type):
        return pa.array([None if v is None else repr(v) for v in values.to_pylist()], pa.string())
    return pc.cast(values, pa.string())


def _restore(plain: pa.Array, value_type: pa.DataType) -> pa.Array:
    if plain.type == value_type:
        return plain
    if pa.types.is_date64(value_type):
        return pc.cast(pc.cast(plain, pa.date32()), value_type)
    return pc.cast(plain, value_type)


class _Segments:
    """The bytes of a string/binary array: one ``bytes`` object, per-row offsets into it."""

    __slots__ = ("data", "n", "null_count", "offsets", "valid", "validity")

    def __init__(self, array: pa.Array) -> None:
        n = len(array)
        large = array.type in (pa.large_string(), pa.large_binary())
        buffers = array.buffers()
        raw = np.frombuffer(
            buffers[1], dtype=np.int64 if large else np.int32, count=array.offset + n + 1
        )[array.offset :]
        start, end = int(raw[0]), int(raw[-1])
        self.data = (
            buffers[2].slice(start, end - start).to_pybytes() if buffers[2] is not None else b""
        )
        self.offsets = raw.astype(np.int64) - start
        self.n = n
        self.null_count = array.null_count
        if self.null_count:
            mask = array.is_valid()
            self.valid: np.ndarray | None = mask.to_numpy(zero_copy_only=False)
            self.validity = mask.buffers()[1]  # offset 0: a fresh array
        else:
            self.valid = None
            self.validity = None

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def starts_ends(self) -> tuple[list[int], list[int]]:
        """Start and end offsets of the non-null rows, as Python ints."""
        starts, ends = self.offsets[:-1], self.offsets[1:]
        if self.valid is not None:
            starts, ends = starts[self.valid], ends[self.valid]
        return starts.tolist(), ends.tolist()

    def values(self) -> list[bytes]:
        """The non-null values as bytes objects."""
        data = self.data
        starts, ends = self.starts_ends()
        return [data[a:b] for a, b in zip(starts, ends, strict=True)]


def _build(
    value_type: pa.DataType,
    n: int,
    lengths: np.ndarray,
    data: bytes,
    validity: pa.Buffer | None,
    null_count: int,
) -> pa.Array:
    """A string/binary array from per-row lengths (0 for nulls) and the concatenated bytes."""
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if value_type in (pa.string(), pa.binary()):
        if offsets[-1] > _INT32_MAX:
            raise OverflowError("batch too large for 32-bit offsets")
        offsets = offsets.astype(np.int32)
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(value_type, n, buffers, null_count=null_count)


def _concat(pieces: list[pa.Array], value_type: pa.DataType) -> pa.Array:
    if not pieces:
        return pa.array([], value_type)
    if len(pieces) == 1:
        return pieces[0]
    total = sum(p.nbytes for p in pieces)
    if value_type in (pa.string(), pa.binary()) and total > _INT32_MAX:
        wide = pa.large_string() if value_type == pa.string() else pa.large_binary()
        pieces = [p.cast(wide) for p in pieces]
    return pa.concat_arrays(pieces)


class ColumnCipher:
    """Encrypts, decrypts and tokenises the values of one column (one scope).

    ``key_for(version)`` returns the 32-byte data key of a version (e.g.
    ``functools.partial(manager.key, scope)``); ``version`` is the one new values are encrypted
    with. ``value_type`` is the plaintext Arrow type; if not given, the first :meth:`encrypt`
    records it. Derived keys are cached per version; the cipher is cheap to create, and safe
    to share between threads once ``value_type`` is known.
    """

    def __init__(
        self,
        scope: str,
        key_for: Callable[[int], bytes],
        version: int,
        value_type: pa.DataType | None = None,
        *,
        batch_size: int = 65_536,
    ) -> None:
        if not 1 <= version <= 0xFFFFFFFF:
            raise ValueError(f"a data-key version must be in 1..2**32-1, got {version}")
        if value_type is not None and not _supported(value_type):
            raise TypeError(f"cannot encrypt values of type {value_type}")
        self.scope = scope
        self.version = version
        self.value_type = value_type
        self.batch_size = max(1, batch_size)
        self._key_for = key_for
        self._scope_bytes = scope.encode()
        self._aeads: dict[int, tuple[Any, Any, bytes]] = {}  # version -> (encrypt, decrypt, aad)
        self._token_keys: dict[int, bytes] = {}

    @classmethod
    def from_manager(
        cls, manager: KeyManager, scope: str, value_type: pa.DataType | None = None
    ) -> ColumnCipher:
        """A cipher encrypting with ``scope``'s current data key (created on first use)."""
        version, _ = manager.data_key(scope)

        def key_for(v: int) -> bytes:
            return manager.key(scope, v)

        return cls(scope, key_for, version, value_type)

    def __repr__(self) -> str:
        return f"ColumnCipher({self.scope!r}, version={self.version}, type={self.value_type})"

    # keys
    def _header(self, version: int) -> bytes:
        return bytes([FORMAT]) + version.to_bytes(4, "big")

    def _aead(self, version: int) -> tuple[Any, Any, bytes]:
        found = self._aeads.get(version)
        if found is None:
            aead = AESGCM(_derive(self._key_for(version), "value", self.scope))
            aad = b"stratus.pii.value\x00" + self._scope_bytes + b"\x00" + self._header(version)
            found = self._aeads[version] = (aead.encrypt, aead.decrypt, aad)
        return found

    def _token_key(self, version: int) -> bytes:
        key = self._token_keys.get(version)
        if key is None:
            key = self._token_keys[version] = _derive(self._key_for(version), "token", self.scope)
        return key

    def _prepare(self, values: ArrayLike) -> pa.Array:
        array = _normalise(values)
        if self.value_type is None:
            if not _supported(array.type):
                raise TypeError(f"cannot encrypt column {self.scope!r} of type {array.type}")
            self.value_type = array.type
        elif array.type != self.value_type:
            array = array.cast(self.value_type)
        return array

    def _batches(self, array: pa.Array) -> list[pa.Array]:
        size = self.batch_size
        return [array.slice(i, size) for i in range(0, len(array), size)]

    # public API
    def encrypted_field(self, name: str) -> pa.Field:
        """The binary field of the encrypted column, recording scope and plaintext type."""
        if self.value_type is None:
            raise ValueError("the plaintext type is unknown: pass value_type or encrypt first")
        metadata = {
            META_SCOPE: self._scope_bytes,
            META_TYPE: type_to_text(self.value_type).encode(),
            META_TYPE_NAME: str(self.value_type).encode(),
        }
        return pa.field(name, pa.binary(), nullable=True, metadata=metadata)

    def encrypt(self, values: ArrayLike) -> pa.Array:
        """Encrypt every non-null value; returns a binary array of the same length."""
        array = self._prepare(values)
        encrypt, _, aad = self._aead(self.version)
        header = self._header(self.version)
        pieces = []
        for batch in self._batches(array):
            seg = _Segments(_canonical(batch))
            plains = seg.values()
            m = len(plains)
            pool = os.urandom(_NONCE * m)
            nonces = [pool[i : i + _NONCE] for i in range(0, _NONCE * m, _NONCE)]
            sealed = list(map(encrypt, nonces, plains, repeat(aad, m)))
            parts: list[bytes] = [header] * (3 * m)
            parts[1::3] = nonces
            parts[2::3] = sealed
            lengths = seg.lengths() + OVERHEAD
            if seg.valid is not None:
                lengths[~seg.valid] = 0
            pieces.append(
                _build(pa.binary(), seg.n, lengths, b"".join(parts), seg.validity, seg.null_count)
            )
        return _concat(pieces, pa.binary())

    def decrypt(self, values: ArrayLike, value_type: pa.DataType | None = None) -> pa.Array:
        """Decrypt a binary array made by :meth:`encrypt` (of any data-key version) back to
        ``value_type`` (default: the recorded type, else string)."""
        array = _normalise(values)
        if array.type not in (pa.binary(), pa.large_binary()):
            raise TypeError(f"encrypted column {self.scope!r} must be binary, got {array.type}")
        target = value_type or self.value_type or pa.string()
        plain_type = _plain_type(target)
        pieces = []
        for index, batch in enumerate(self._batches(array)):
            first_row = index * self.batch_size
            seg = _Segments(batch)
            plains = self._open(seg, first_row)
            lengths = seg.lengths() - OVERHEAD
            if seg.valid is not None:
                lengths[~seg.valid] = 0
            plain = _build(
                plain_type, seg.n, lengths, b"".join(plains), seg.validity, seg.null_count
            )
            if plain_type in (pa.string(), pa.large_string()):
                try:
                    plain.validate(full=True)
                except pa.ArrowInvalid:
                    raise DecryptError(
                        f"column {self.scope!r}: decrypted values are not text; wrong value_type?"
                    ) from None
            pieces.append(plain)
        return _restore(_concat(pieces, plain_type), target)

    def _open(self, seg: _Segments, first_row: int) -> list[bytes]:
        """The plaintexts of the non-null rows of one batch of ciphertexts."""
        data = seg.data
        starts, ends = seg.starts_ends()
        if not starts:
            return []
        rows = np.asarray(starts, dtype=np.int64)
        short = (np.asarray(ends, dtype=np.int64) - rows) < OVERHEAD
        if short.any():
            self._fail(seg, first_row, int(np.argmax(short)), "is too short to be a ciphertext")
        raw = np.frombuffer(data, dtype=np.uint8)
        if (raw[rows] != FORMAT).any():
            bad = int(np.argmax(raw[rows] != FORMAT))
            self._fail(seg, first_row, bad, "has an unknown format byte")
        versions = (
            (raw[rows + 1].astype(np.uint32) << 24)
            | (raw[rows + 2].astype(np.uint32) << 16)
            | (raw[rows + 3].astype(np.uint32) << 8)
            | raw[rows + 4].astype(np.uint32)
        )
        nonces = [data[a + 5 : a + HEADER] for a in starts]
        sealed = [data[a + HEADER : b] for a, b in zip(starts, ends, strict=True)]
        distinct = np.unique(versions).tolist()
        try:
            if len(distinct) == 1:
                _, decrypt, aad = self._aead(int(distinct[0]))
                return list(map(decrypt, nonces, sealed, repeat(aad, len(starts))))
            opened = {v: self._aead(int(v)) for v in distinct}
            return [
                opened[v][1](nonce, body, opened[v][2])
                for v, nonce, body in zip(versions.tolist(), nonces, sealed, strict=True)
            ]
        except InvalidTag:
            pass
        for i, (v, nonce, body) in enumerate(zip(versions.tolist(), nonces, sealed, strict=True)):
            _, decrypt, aad = self._aead(int(v))
            try:
                decrypt(nonce, body, aad)
            except InvalidTag:
                self._fail(
                    seg,
                    first_row,
                    i,
                    "failed authentication (wrong key or column, or the value was altered)",
                )
        raise DecryptError(f"column {self.scope!r}: decryption failed")  # pragma: no cover

    def _fail(self, seg: _Segments, first_row: int, nth_valid: int, why: str) -> None:
        row = nth_valid if seg.valid is None else int(np.flatnonzero(seg.valid)[nth_valid])
        raise DecryptError(f"cannot decrypt column {self.scope!r}: row {first_row + row} {why}")

    def token(self, values: ArrayLike, version: int | None = None) -> pa.Array:
        """HMAC-SHA256 tokens (32 bytes, binary) of the values, null for null; deterministic
        per scope and data-key version (default: the cipher's current version)."""
        array = self._prepare(values)
        key = self._token_key(self.version if version is None else version)
        pieces = []
        for batch in self._batches(array):
            seg = _Segments(_canonical(batch))
            plains = seg.values()
            digests = _hmac_sha256_many(key, plains)
            lengths = np.full(seg.n, TOKEN_BYTES, dtype=np.int64)
            if seg.valid is not None:
                lengths[~seg.valid] = 0
            pieces.append(
                _build(pa.binary(), seg.n, lengths, b"".join(digests), seg.validity, seg.null_count)
            )
        return _concat(pieces, pa.binary())

    def token_for(self, value: object, version: int | None = None) -> bytes:
        """The token of one plaintext value (e.g. a lookup ``?email=a@b.com``), as stored by
        :meth:`token` for a column of :attr:`value_type`."""
        if value is None:
            raise ValueError("null has no token: filter on the encrypted column being null")
        single = pa.array([value], type=self.value_type) if self.value_type else pa.array([value])
        token = self.token(single, version)[0].as_py()
        assert isinstance(token, bytes)
        return token
