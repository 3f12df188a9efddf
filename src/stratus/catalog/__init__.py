"""The catalog owns table names (``catalog.schema.table``) and where each table lives.

This is the seam the Unity-Catalog-compatible metastore replaces: every reader and writer
resolves a name here and never builds a storage path itself.
"""

from stratus.catalog.registry import TableSpec, UnknownTableError, builtin_tables, resolve

__all__ = ["TableSpec", "UnknownTableError", "builtin_tables", "resolve"]
