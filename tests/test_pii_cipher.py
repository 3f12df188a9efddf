"""Column encryption and tokens over Arrow arrays (stratus.pii.cipher)."""

from __future__ import annotations

import datetime as dt
import decimal
import hmac
import io
import math
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc
import pytest

from stratus.pii.cipher import (
    FORMAT,
    OVERHEAD,
    ColumnCipher,
    _hmac_sha256_many,
    original_type,
    scope_for,
    type_from_text,
    type_to_text,
)
from stratus.pii.envelope import InMemoryDataKeyStore, KeyManager
from stratus.pii.errors import DecryptError, KeyMissingError
from stratus.pii.keys import LocalKeyFileProvider

SCOPE = "hr.employees.email"
KNOWN_EMAIL = "grace.hopper@example.com"


@pytest.fixture
def manager(tmp_path: Path) -> KeyManager:
    return KeyManager(LocalKeyFileProvider(tmp_path / "keyring.json"), InMemoryDataKeyStore())


@pytest.fixture
def keys() -> dict[int, bytes]:
    return {1: os.urandom(32), 2: os.urandom(32)}


def make(
    keys: dict[int, bytes], scope: str = SCOPE, version: int = 1, **kw: object
) -> ColumnCipher:
    def key_for(v: int) -> bytes:
        if v not in keys:
            raise KeyMissingError(f"data key {scope!r} version {v} does not exist")
        return keys[v]

    return ColumnCipher(scope, key_for, version, **kw)  # type: ignore[arg-type]


# ---- round trips -----------------------------------------------------------------------------
ROUND_TRIPS = {
    "strings": pa.array([KNOWN_EMAIL, None, "", "ada@example.org", None, "x"]),
    "unicode": pa.array(["Zoë Ñúñez", "李小龍", "🙂 emoji", "\x00nul and \n newline", None]),
    "large_string": pa.array(["a", None, "bb"], pa.large_string()),
    "binary": pa.array([b"\x00\xff\x10", None, b""], pa.binary()),
    "float64": pa.array([54321.5, None, 0.1, 85916.76, -0.0, 1e300, float("inf")]),
    "float32": pa.array([1.25, None, 0.1], pa.float32()),
    "int64": pa.array([0, -1, 2**63 - 1, None, 42]),
    "uint8": pa.array([0, 255, None], pa.uint8()),
    "decimal": pa.array(
        [decimal.Decimal("50000.00"), None, decimal.Decimal("-0.01")], pa.decimal128(12, 2)
    ),
    "date32": pa.array([dt.date(2015, 11, 25), None, dt.date(1970, 1, 1)]),
    "date64": pa.array([dt.date(2015, 11, 25), None], pa.date64()),
    "timestamp": pa.array(
        [dt.datetime(2024, 5, 29, 12, 30, 1, 123456), None], pa.timestamp("us", tz="UTC")
    ),
    "bool": pa.array([True, False, None]),
    "all_null": pa.nulls(4, pa.string()),
    "empty": pa.array([], pa.string()),
}


@pytest.mark.parametrize("name", list(ROUND_TRIPS))
def test_round_trip_restores_values_and_type(keys: dict[int, bytes], name: str) -> None:
    values = ROUND_TRIPS[name]
    cipher = make(keys)
    sealed = cipher.encrypt(values)
    assert sealed.type == pa.binary()
    assert len(sealed) == len(values)
    assert sealed.null_count == values.null_count
    assert sealed.is_null().equals(values.is_null())
    back = cipher.decrypt(sealed)
    assert back.type == values.type
    assert back.to_pylist() == values.to_pylist()
    # a fresh cipher told the type (as the lead's read path will be) decrypts the same
    assert make(keys, value_type=values.type).decrypt(sealed).to_pylist() == values.to_pylist()


def test_nan_round_trips(keys: dict[int, bytes]) -> None:
    cipher = make(keys)
    back = cipher.decrypt(cipher.encrypt(pa.array([float("nan"), 1.0])))
    assert back.type == pa.float64()
    assert math.isnan(back[0].as_py()) and back[1].as_py() == 1.0


def test_salary_float64_decrypts_to_float64(manager: KeyManager) -> None:
    salaries = pa.array([85916.76, 55293.16, None], pa.float64())
    cipher = ColumnCipher.from_manager(manager, "hr.employees.salary")
    sealed = cipher.encrypt(salaries)
    field = cipher.encrypted_field("salary")
    assert field.type == pa.binary()
    assert original_type(field) == pa.float64()
    reader = ColumnCipher.from_manager(manager, "hr.employees.salary", original_type(field))
    back = reader.decrypt(sealed)
    assert back.type == pa.float64()
    assert back.to_pylist() == [85916.76, 55293.16, None]


def test_type_text_round_trip() -> None:
    for value_type in (
        pa.float64(),
        pa.decimal128(12, 2),
        pa.timestamp("us", tz="Europe/Berlin"),
        pa.date32(),
        pa.large_string(),
    ):
        assert type_from_text(type_to_text(value_type)) == value_type
    assert original_type(pa.field("x", pa.binary())) is None
    assert scope_for("main.hr.employees", "email") == "main.hr.employees.email"


def test_chunked_sliced_and_dictionary_inputs(keys: dict[int, bytes]) -> None:
    cipher = make(keys)
    chunked = pa.chunked_array([["a", None], [], ["b", "c"]])
    assert cipher.decrypt(cipher.encrypt(chunked)).to_pylist() == ["a", None, "b", "c"]
    base = pa.array(["zero", None, "two", "three", None, "five"])
    sliced = base.slice(1, 4)  # non-zero offset, with nulls
    sealed = cipher.encrypt(sliced)
    assert cipher.decrypt(sealed).to_pylist() == [None, "two", "three", None]
    assert cipher.decrypt(sealed.slice(2)).to_pylist() == ["three", None]
    assert cipher.decrypt(pa.chunked_array([sealed.slice(0, 2), sealed.slice(2)])).to_pylist() == [
        None,
        "two",
        "three",
        None,
    ]
    encoded = pa.array(["x", "y", "x", None]).dictionary_encode()
    assert cipher.decrypt(cipher.encrypt(encoded)).to_pylist() == ["x", "y", "x", None]


def test_batches_across_boundaries(keys: dict[int, bytes]) -> None:
    values = pa.array([None if i % 5 == 0 else f"v{i}" * (i % 7) for i in range(103)])
    cipher = make(keys, batch_size=8)
    sealed = cipher.encrypt(values)
    assert cipher.decrypt(sealed).to_pylist() == values.to_pylist()
    tokens = cipher.token(values)
    assert tokens.equals(make(keys).token(values))


def test_many_values_round_trip(keys: dict[int, bytes]) -> None:
    values = pa.array([f"user{i}@example.net" if i % 97 else None for i in range(150_000)])
    cipher = make(keys)
    assert cipher.decrypt(cipher.encrypt(values)).equals(values)


def test_layout_and_overhead(keys: dict[int, bytes]) -> None:
    values = pa.array(["a", "", "héllo", None])
    sealed = make(keys, version=2).encrypt(values)
    for plain, blob in zip(values.to_pylist(), sealed.to_pylist(), strict=True):
        if plain is None:
            assert blob is None
            continue
        assert len(blob) == len(plain.encode()) + OVERHEAD
        assert blob[0] == FORMAT
        assert int.from_bytes(blob[1:5], "big") == 2


def test_type_recorded_and_new_values_cast(keys: dict[int, bytes]) -> None:
    cipher = make(keys)
    assert cipher.value_type is None
    cipher.encrypt(pa.array([1.5]))
    assert cipher.value_type == pa.float64()
    sealed = cipher.encrypt(pa.array([2, None]))  # ints into a float column: cast
    assert cipher.decrypt(sealed).to_pylist() == [2.0, None]
    with pytest.raises(TypeError, match="cannot encrypt"):
        make(keys).encrypt(pa.array([[1, 2]]))
    with pytest.raises(TypeError, match="cannot encrypt"):
        ColumnCipher(SCOPE, keys.__getitem__, 1, pa.list_(pa.int64()))
    with pytest.raises(TypeError, match="must be binary"):
        make(keys).decrypt(pa.array(["not encrypted"]))
    with pytest.raises(ValueError, match="unknown"):
        make(keys).encrypted_field("email")


# ---- nonces, AAD, tampering ------------------------------------------------------------------
def test_fresh_nonce_per_value(keys: dict[int, bytes]) -> None:
    cipher = make(keys)
    sealed = cipher.encrypt(pa.array([KNOWN_EMAIL] * 2000)).to_pylist()
    assert len(set(sealed)) == 2000
    nonces = {blob[5:17] for blob in sealed}
    assert len(nonces) == 2000
    again = cipher.encrypt(pa.array([KNOWN_EMAIL])).to_pylist()[0]
    assert again not in sealed


def test_value_from_another_column_fails(keys: dict[int, bytes]) -> None:
    email = make(keys, "hr.employees.email")
    phone = make(keys, "hr.employees.phone", value_type=pa.string())
    sealed = email.encrypt(pa.array([KNOWN_EMAIL]))
    with pytest.raises(DecryptError) as err:
        phone.decrypt(sealed)
    message = str(err.value)
    assert "'hr.employees.phone'" in message
    assert "row 0" in message
    assert KNOWN_EMAIL not in message
    same_table_other_name = make(keys, "hr.employee.email")
    with pytest.raises(DecryptError):
        same_table_other_name.decrypt(sealed)


@pytest.mark.parametrize(
    ("position", "what"),
    [(-1, "tag"), (-17, "ciphertext"), (7, "nonce"), (4, "version byte"), (0, "format byte")],
)
def test_tampered_value_is_detected(keys: dict[int, bytes], position: int, what: str) -> None:
    cipher = make(keys)
    values = pa.array(["a@example.com", None, KNOWN_EMAIL, "c@example.com"])
    blobs = cipher.encrypt(values).to_pylist()
    victim = bytearray(blobs[2])
    victim[position] ^= 0x01
    blobs[2] = bytes(victim)
    with pytest.raises((DecryptError, KeyMissingError)) as err:
        cipher.decrypt(pa.array(blobs, pa.binary()))
    message = str(err.value)
    assert KNOWN_EMAIL not in message
    if err.type is DecryptError:
        assert "row 2" in message and "'hr.employees.email'" in message


def test_truncated_and_foreign_values(keys: dict[int, bytes]) -> None:
    cipher = make(keys, value_type=pa.string())
    with pytest.raises(DecryptError, match="row 1 is too short"):
        cipher.decrypt(pa.array([None, b"\x01\x00\x00\x00\x01short"], pa.binary()))
    with pytest.raises(DecryptError, match="row 0 has an unknown format"):
        cipher.decrypt(pa.array([b"\x07" + bytes(40)], pa.binary()))


def test_tamper_row_index_is_absolute_across_batches(keys: dict[int, bytes]) -> None:
    cipher = make(keys, batch_size=4)
    blobs = cipher.encrypt(pa.array([f"v{i}" for i in range(10)])).to_pylist()
    blobs[9] = blobs[9][:-1] + bytes([blobs[9][-1] ^ 1])
    with pytest.raises(DecryptError, match="row 9 failed authentication"):
        cipher.decrypt(pa.array(blobs, pa.binary()))


def test_wrong_text_type_on_decrypt(keys: dict[int, bytes]) -> None:
    cipher = make(keys)
    sealed = cipher.encrypt(pa.array([b"\xff\xfe"], pa.binary()))
    with pytest.raises(DecryptError, match="not text"):
        cipher.decrypt(sealed, pa.string())


# ---- key versions ----------------------------------------------------------------------------
def test_old_key_version_still_decrypts_after_new_version(manager: KeyManager) -> None:
    scope = "hr.employees.phone"
    first = ColumnCipher.from_manager(manager, scope)
    old_rows = first.encrypt(pa.array(["+1-415-555-0101", None]))
    assert manager.new_data_key_version(scope) == 2
    second = ColumnCipher.from_manager(manager, scope)
    assert second.version == 2
    new_rows = second.encrypt(pa.array(["+1-212-555-0199"]))
    assert new_rows.to_pylist()[0][1:5] == (2).to_bytes(4, "big")
    mixed = pa.concat_arrays([old_rows, new_rows])
    assert second.decrypt(mixed).to_pylist() == ["+1-415-555-0101", None, "+1-212-555-0199"]
    # a reader with a cold cache gets both keys from the store
    cold = KeyManager(manager.provider, manager.store)
    reader = ColumnCipher.from_manager(cold, scope, pa.string())
    assert reader.decrypt(mixed).to_pylist() == ["+1-415-555-0101", None, "+1-212-555-0199"]


def test_unknown_key_version_is_key_missing(keys: dict[int, bytes]) -> None:
    sealed = make({3: os.urandom(32)}, version=3).encrypt(pa.array(["x"]))
    with pytest.raises(KeyMissingError, match="version 3"):
        make(keys).decrypt(sealed)


def test_mixed_versions_with_a_tampered_row(keys: dict[int, bytes]) -> None:
    one, two = make(keys, version=1), make(keys, version=2)
    blobs = one.encrypt(pa.array(["a", "b"])).to_pylist() + two.encrypt(pa.array(["c"])).to_pylist()
    assert two.decrypt(pa.array(blobs, pa.binary())).to_pylist() == ["a", "b", "c"]
    blobs[1] = blobs[1][:-1] + bytes([blobs[1][-1] ^ 1])
    with pytest.raises(DecryptError, match="row 1"):
        two.decrypt(pa.array(blobs, pa.binary()))


# ---- no plaintext in the encrypted data ------------------------------------------------------
def test_known_plaintext_never_in_encrypted_buffers(manager: KeyManager) -> None:
    emails = [f"person{i}@example.org" for i in range(500)]
    emails[250] = KNOWN_EMAIL
    values = pa.array(emails)
    cipher = ColumnCipher.from_manager(manager, SCOPE)
    sealed = cipher.encrypt(values)
    tokens = cipher.token(values)
    raw = b"".join(buf.to_pybytes() for buf in sealed.buffers() if buf is not None)
    raw += b"".join(buf.to_pybytes() for buf in tokens.buffers() if buf is not None)
    for needle in (KNOWN_EMAIL, "grace.hopper", "hopper@", "person1@example.org"):
        assert needle.encode() not in raw
        assert needle.encode("utf-16-le") not in raw
    # nor in the Arrow IPC stream of a table holding the encrypted column and its token
    table = pa.table({"email": sealed, "email_token": tokens})
    sink = io.BytesIO()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    assert KNOWN_EMAIL.encode() not in sink.getvalue()
    assert cipher.decrypt(sealed)[250].as_py() == KNOWN_EMAIL


def test_salary_text_never_in_encrypted_buffers(keys: dict[int, bytes]) -> None:
    sealed = make(keys).encrypt(pa.array([85916.76, 123456.78]))
    raw = b"".join(buf.to_pybytes() for buf in sealed.buffers() if buf is not None)
    assert b"85916.76" not in raw and b"123456.78" not in raw


# ---- tokens ----------------------------------------------------------------------------------
def test_tokens_deterministic_per_scope(keys: dict[int, bytes]) -> None:
    values = pa.array([KNOWN_EMAIL, "ada@example.org", KNOWN_EMAIL, None])
    tokens = make(keys).token(values)
    assert tokens.type == pa.binary()
    listed = tokens.to_pylist()
    assert listed[0] == listed[2] != listed[1]
    assert listed[3] is None
    assert all(len(t) == 32 for t in listed[:3])
    assert make(keys).token(values).equals(tokens)  # another cipher instance, same tokens
    assert make(keys).token_for(KNOWN_EMAIL) == listed[0]
    other_scope = make(keys, "hr.contractors.email").token(values).to_pylist()
    assert other_scope[0] != listed[0]
    other_version = make(keys).token(values, version=2).to_pylist()
    assert other_version[0] != listed[0]
    assert make(keys, version=2).token_for(KNOWN_EMAIL) == other_version[0]
    assert make(keys).token_for(KNOWN_EMAIL, version=2) == other_version[0]
    other_key = make({1: os.urandom(32)}).token(values).to_pylist()
    assert other_key[0] != listed[0]
    with pytest.raises(ValueError, match="null"):
        make(keys).token_for(None)


def test_token_for_uses_the_column_type(keys: dict[int, bytes]) -> None:
    salaries = make(keys)
    tokens = salaries.token(pa.array([50000.0, 61000.5])).to_pylist()
    assert salaries.token_for(50000) == tokens[0]  # an int looked up in a float column
    assert salaries.token_for(61000.5) == tokens[1]
    dates = make(keys, value_type=pa.date32())
    assert (
        dates.token_for(dt.date(2015, 11, 25))
        == dates.token(pa.array([dt.date(2015, 11, 25)])).to_pylist()[0]
    )
    tokens_and_ciphertexts = make(keys).token(pa.array(["x"])).to_pylist()[0]
    assert tokens_and_ciphertexts != make(keys).encrypt(pa.array(["x"])).to_pylist()[0][17:49]


def test_fast_hmac_matches_stdlib() -> None:
    messages = [b"", b"a", "ünïcode".encode(), os.urandom(1000)]
    for key in (os.urandom(32), os.urandom(64), os.urandom(100), b""):
        expected = [hmac.digest(key, m, "sha256") for m in messages]
        assert _hmac_sha256_many(key, messages) == expected


def test_cipher_version_must_be_valid(keys: dict[int, bytes]) -> None:
    with pytest.raises(ValueError, match="version"):
        make(keys, version=0)
    assert "hr.employees.email" in repr(make(keys))
