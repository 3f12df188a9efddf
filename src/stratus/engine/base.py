from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from stratus.catalog import TableSpec


@dataclass(frozen=True)
class TableScan:
    """The files of one table version that a query may read (already pruned)."""

    spec: TableSpec
    files: Sequence[str]


class Engine(Protocol):
    def query(
        self,
        sql: str,
        scans: Mapping[str, TableScan],
        params: Sequence[object] = (),
    ) -> pa.Table:
        """Run ``sql`` where each key of ``scans`` names a relation; ``?`` binds ``params``."""
        ...
