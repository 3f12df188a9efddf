"""Compute engines behind one interface.

A query names its inputs as :class:`TableScan` objects (a table plus the pruned list of its
current data files) and is written in SQL common to DuckDB and Spark SQL. The local engine runs
it in-process with DuckDB; a Spark engine can run the same scans and SQL through Spark Connect.
"""

from stratus.engine.base import Engine, TableScan
from stratus.engine.local import LocalEngine

__all__ = ["Engine", "LocalEngine", "TableScan"]
