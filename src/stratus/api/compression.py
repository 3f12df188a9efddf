"""gzip or deflate for API answers when the client asks (``Accept-Encoding``).

JSON and CSV answers under ``/api/`` of at least ``STRATUS_COMPRESS_MIN_BYTES`` bytes are
compressed (gzip preferred, then deflate, by the client's q-values); streamed answers (large
pages) are compressed piece by piece as they go out. Parquet is compressed already and never
touched, nor are the Delta Sharing protocol's answers (its clients fetch files by byte range).
Compressible answers carry ``Vary: Accept-Encoding`` whether compressed or not.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

from flask import Flask, Response, request

from stratus.config import Settings

LEVEL = 5  # zlib's speed/size balance for small JSON pages (6 is its default)
COMPRESSIBLE = ("application/json", "application/problem+json", "text/csv", "text/plain")
PREFIX = "/api/"
_WBITS = {"gzip": 31, "deflate": 15}  # gzip container; zlib container (HTTP's "deflate")


def chosen_encoding() -> str | None:
    """gzip or deflate if the request accepts it (q > 0), gzip first on a tie."""
    header = request.headers.get("Accept-Encoding")
    if not header:
        return None
    accepted = request.accept_encodings
    best, best_q = None, 0.0
    for name in ("gzip", "deflate"):
        q = accepted[name]
        if q > best_q:
            best, best_q = name, q
    return best


def _stream(pieces: Iterable[str] | Iterable[bytes], encoding: str) -> Iterator[bytes]:
    z = zlib.compressobj(LEVEL, zlib.DEFLATED, _WBITS[encoding])
    try:
        for piece in pieces:
            out = z.compress(piece.encode() if isinstance(piece, str) else piece)
            if out:
                yield out
        yield z.flush()
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


def compress(resp: Response, min_bytes: int) -> Response:
    if (
        min_bytes <= 0
        or resp.status_code != 200
        or resp.mimetype not in COMPRESSIBLE
        or not request.path.startswith(PREFIX)
        or "Content-Encoding" in resp.headers
    ):
        return resp
    resp.vary.add("Accept-Encoding")
    encoding = chosen_encoding()
    if encoding is None:
        return resp
    if resp.is_streamed:
        resp.response = _stream(resp.response, encoding)
        resp.headers.pop("Content-Length", None)
    else:
        data = resp.get_data()
        if len(data) < min_bytes:
            return resp
        z = zlib.compressobj(LEVEL, zlib.DEFLATED, _WBITS[encoding])
        resp.set_data(z.compress(data) + z.flush())
    resp.headers["Content-Encoding"] = encoding
    return resp


def install(app: Flask, settings: Settings) -> None:
    min_bytes = settings.compress_min_bytes

    @app.after_request
    def _compress(resp: Response) -> Response:
        return compress(resp, min_bytes)
