"""Masks: what a reader without ``UNMASK`` sees instead of a PII value.

Every mask takes an Arrow array (any type; the decrypted plaintext) and returns a **string**
array of the same length; nulls stay null. Defaults per kind:

=========  ===========================================  ===================================
kind       mask                                         example
=========  ===========================================  ===================================
email      first character, ``***``, ``@`` and domain   ``jane.doe@example.com`` ->
                                                        ``j***@example.com``
phone      last 4 digits (an extension is ignored)      ``+1-415-555-0123`` -> ``***-***-0123``
salary     a range of width 10,000                      ``54321.5`` -> ``50,000-59,999``
name       initials                                     ``Jane Doe`` -> ``J. D.``
other      ``***``
=========  ===========================================  ===================================

A value the mask cannot parse (an e-mail without ``@``, a phone with fewer than 7 digits, a
salary that is not a number) becomes ``***``: a mask never falls back to the plaintext.

:class:`MaskPolicy` maps kinds to masks and is configurable from a mapping or the environment,
``STRATUS_MASK_<KIND>=<spec>`` with specs ``null``, ``redact``, ``email``, ``phone`` (alias
``last4``), ``initials``, ``range`` or ``range:<width>`` (e.g. ``STRATUS_MASK_SALARY=null``,
``STRATUS_MASK_SALARY=range:25000``).
"""

from __future__ import annotations

import base64
import decimal
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DEFAULT_SALARY_WIDTH",
    "REDACTED",
    "MaskPolicy",
    "Masker",
    "mask",
    "mask_email",
    "mask_initials",
    "mask_null",
    "mask_phone",
    "parse_mask",
    "redact",
    "salary_range",
]

Masker = Callable[[pa.Array], pa.Array]
REDACTED = "***"
DEFAULT_SALARY_WIDTH = 10_000
_MIN_PHONE_DIGITS = 7
_EMAIL = r"(?s)^(.).*(@[^@]+)$"
_EXTENSION = r"(?i)\s*(?:x|ext\.?|extension|#)\s*\d+\s*$"


def _as_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if values.type == pa.large_string():
        return values.cast(pa.string())
    t = values.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        # bytes need not be UTF-8 (a cast would fail): mask their base64 text
        return pa.array(
            [None if v is None else base64.b64encode(v).decode() for v in values.to_pylist()],
            pa.string(),
        )
    if values.type != pa.string():
        return pc.cast(values, pa.string())
    return values


def _redacted_where(ok: pa.Array, masked: pa.Array) -> pa.Array:
    """``masked`` where ``ok``, ``***`` elsewhere (nulls stay null)."""
    return pc.if_else(ok, masked, pa.scalar(REDACTED, pa.string()))


def redact(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``***`` for every non-null value."""
    valid = pc.is_valid(values)
    if isinstance(valid, pa.ChunkedArray):
        valid = valid.combine_chunks()
    return pc.if_else(valid, pa.scalar(REDACTED, pa.string()), pa.scalar(None, pa.string()))


def mask_null(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Null for every value."""
    return pa.nulls(len(values), pa.string())


def mask_email(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``jane.doe@example.com`` -> ``j***@example.com``; no ``@`` -> ``***``."""
    text = _as_strings(values)
    ok = pc.match_substring_regex(text, _EMAIL)
    return _redacted_where(ok, pc.replace_substring_regex(text, _EMAIL, r"\1***\2"))


def mask_phone(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``+1 (415) 555-0123 x12`` -> ``***-***-0123``; fewer than 7 digits -> ``***``."""
    text = _as_strings(values)
    digits = pc.replace_substring_regex(pc.replace_substring_regex(text, _EXTENSION, ""), r"\D", "")
    ok = pc.greater_equal(pc.utf8_length(digits), _MIN_PHONE_DIGITS)
    last4 = pc.utf8_slice_codeunits(digits, start=-4)
    return _redacted_where(ok, pc.binary_join_element_wise("***-***-", last4, ""))


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | decimal.Decimal):
        number = float(value)
    elif isinstance(value, str):
        cleaned = value.strip().replace(",", "").replace("_", "").lstrip("$€£¥ ")
        try:
            number = float(cleaned)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _range_label(low: int, high: int) -> str:
    return f"{low:,}-{high:,}" if low >= 0 else f"{low:,} to {high:,}"


def salary_range(width: int = DEFAULT_SALARY_WIDTH) -> Masker:
    """A mask turning amounts into ranges: width 10,000 gives ``54321.5`` -> ``50,000-59,999``."""
    if width <= 0:
        raise ValueError(f"a salary range width must be positive, got {width}")

    def mask_salary(values: pa.Array | pa.ChunkedArray) -> pa.Array:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
            numbers = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
            null = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            numbers = np.where(null, np.nan, numbers)
        else:
            numbers = np.array(
                [
                    np.nan if (n := _number(v)) is None else n
                    for v in values.to_pylist()  # decimals, strings: few per page
                ],
                dtype=np.float64,
            )
            null = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        finite = np.isfinite(numbers)
        lows = np.floor(np.where(finite, numbers, 0.0) / width).astype(np.int64) * width
        buckets, inverse = np.unique(lows, return_inverse=True)
        labels = [_range_label(low, low + width - 1) for low in buckets.tolist()]
        out = np.array(labels, dtype=object)[inverse] if labels else np.array([], dtype=object)
        out = np.where(finite, out, REDACTED)
        return pa.array(out.tolist(), pa.string(), mask=null)

    mask_salary.__doc__ = f"Salary as a range of width {width:,}."
    return mask_salary


def mask_initials(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``Jane Doe`` -> ``J. D.``; no letters -> ``***``."""
    out: list[str | None] = []
    for value in _as_strings(values).to_pylist():
        if value is None:
            out.append(None)
            continue
        letters = [word[0].upper() + "." for word in value.split() if word[0].isalpha()]
        out.append(" ".join(letters) if letters else REDACTED)
    return pa.array(out, pa.string())


def parse_mask(spec: str) -> Masker:
    """A mask from its configuration text: ``null``, ``redact`` (or ``***``), ``email``,
    ``phone`` (or ``last4``), ``initials``, ``range`` or ``range:<width>``."""
    text = spec.strip().lower()
    named: dict[str, Masker] = {
        "null": mask_null,
        "redact": redact,
        REDACTED: redact,
        "email": mask_email,
        "phone": mask_phone,
        "last4": mask_phone,
        "initials": mask_initials,
    }
    if text in named:
        return named[text]
    if text == "range" or text.startswith("range:"):
        width_text = text.partition(":")[2].replace(",", "").replace("_", "").strip()
        try:
            width = int(width_text) if width_text else DEFAULT_SALARY_WIDTH
        except ValueError:
            raise ValueError(f"bad mask {spec!r}: range width must be an integer") from None
        return salary_range(width)
    choices = ", ".join([*sorted(named), "range:<width>"])
    raise ValueError(f"unknown mask {spec!r}; expected one of {choices}")


def _defaults() -> dict[str, Masker]:
    return {
        "email": mask_email,
        "phone": mask_phone,
        "salary": salary_range(DEFAULT_SALARY_WIDTH),
        "name": mask_initials,
    }


@dataclass(frozen=True)
class MaskPolicy:
    """Which mask applies to which PII kind; kinds without an entry get ``default``."""

    masks: Mapping[str, Masker] = field(default_factory=_defaults)
    default: Masker = redact

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> MaskPolicy:
        """Defaults overridden by ``{kind: spec}`` (e.g. ``{"salary": "null"}``)."""
        masks = _defaults()
        for kind, spec in config.items():
            masks[kind.strip().lower()] = parse_mask(spec)
        return cls(masks)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] = os.environ, prefix: str = "STRATUS_MASK_"
    ) -> MaskPolicy:
        """Defaults overridden by ``STRATUS_MASK_<KIND>=<spec>`` variables."""
        config = {
            name[len(prefix) :]: value
            for name, value in env.items()
            if name.startswith(prefix) and len(name) > len(prefix)
        }
        return cls.from_config(config)

    def masker(self, kind: str) -> Masker:
        return self.masks.get(kind.strip().lower(), self.default)

    def mask(self, kind: str, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """``values`` masked for ``kind``: a string array, nulls kept."""
        return self.masker(kind)(values)


_DEFAULT_POLICY = MaskPolicy()


def mask(
    kind: str, values: pa.Array | pa.ChunkedArray, policy: MaskPolicy | None = None
) -> pa.Array:
    """``values`` masked for ``kind`` by ``policy`` (default: the built-in masks)."""
    return (policy or _DEFAULT_POLICY).mask(kind, values)
