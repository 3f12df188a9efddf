"""Stratus: a self-hostable, governed weather-data lakehouse behind a Flask API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stratus-lakehouse")  # the distribution's name on PyPI
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
