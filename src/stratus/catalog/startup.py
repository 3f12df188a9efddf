"""One start-up at a time: a lock that holds across processes and machines.

Migrations and the built-in securables are written by whichever process starts first; every other
process (a gunicorn worker, a CLI command, a second replica on another machine) waits on the lock
and then finds the work done. PostgreSQL: a session-level advisory lock, which every client of
the database sees. SQLite: an exclusive ``flock`` on ``<database>.lock`` beside the file, which
every process on the machine sees (a SQLite file is never shared between machines). Other
databases fall back to a lock within this process.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

# pg_advisory_lock's 64-bit key: "stratus" start-up (any constant other programs do not use)
ADVISORY_KEY = 0x5354524154555301
_local = threading.RLock()
_held = threading.local()


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URL (None for in-memory databases)."""
    if not url.startswith("sqlite:///"):
        return None
    raw = url.removeprefix("sqlite:///").split("?", 1)[0]
    if not raw or raw == ":memory:":
        return None
    return Path(raw)


@contextmanager
def _holding() -> Iterator[None]:
    _held.depth = getattr(_held, "depth", 0) + 1
    try:
        yield
    finally:
        _held.depth -= 1


@contextmanager
def startup_lock(engine: Engine) -> Iterator[None]:
    """Hold the metastore's start-up lock (blocking until any other holder is done)."""
    if getattr(_held, "depth", 0):  # this thread holds it already
        yield
        return
    url = engine.url.render_as_string(hide_password=False)
    with _local, _holding():
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_KEY})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                    conn.commit()
            return
        path = sqlite_path(url) if engine.dialect.name == "sqlite" else None
        if path is None:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes, even on a crash
            yield
        finally:
            os.close(fd)
