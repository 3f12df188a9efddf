"""`Lakehouse.commit_log`: the Delta log's commits numbered right even when another writer
commits between loading the table and listing its history (delta-rs lists from the newest
commit in storage but numbers down from the loaded snapshot's version)."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake

from stratus.catalog import TableSpec
from stratus.lakehouse.storage import Storage
from stratus.lakehouse.tables import Lakehouse

SPEC = TableSpec("main.lab.events", pa.schema([("n", pa.int64())]), key=("n",))


def _commit(url: str, n: int) -> None:
    """Commit number ``n`` (version ``n``), tagged with it in the commit info."""
    write_deltalake(
        url,
        pa.table({"n": pa.array([n], pa.int64())}),
        mode="append",
        commit_properties=CommitProperties(custom_metadata={"n": str(n)}),
    )


def _lakehouse(tmp_path: Path) -> tuple[Lakehouse, str]:
    lake = Lakehouse(Storage(root=str(tmp_path), scheme="file"))
    url = lake.url(SPEC)
    Path(url).mkdir(parents=True)
    return lake, url


def _numbers(entries: list[dict]) -> list[tuple[int, int]]:
    return [(int(e["version"]), int(e["n"])) for e in entries]


def test_a_commit_between_load_and_history_does_not_shift_the_numbers(tmp_path: Path) -> None:
    lake, url = _lakehouse(tmp_path)
    for n in range(3):
        _commit(url, n)
    loaded = DeltaTable(url)  # at version 2
    _commit(url, 3)  # a second writer commits version 3 meanwhile

    # the bug this guards against: delta-rs numbers the listing from the snapshot (2)
    raw = loaded.history()
    assert (raw[0]["version"], raw[0]["n"]) == (2, "3"), "delta-rs changed its numbering"

    entries = lake.commit_log(SPEC, table=loaded)
    assert _numbers(entries) == [(3, 3), (2, 2), (1, 1), (0, 0)]
    limited = lake.commit_log(SPEC, 2, table=DeltaTable(url, version=1))
    assert _numbers(limited) == [(3, 3), (2, 2)]
    assert [v for v, _ in lake.history(SPEC)] == [0, 1, 2, 3]


def test_history_read_while_another_writer_commits_is_numbered_right(tmp_path: Path) -> None:
    lake, url = _lakehouse(tmp_path)
    _commit(url, 0)
    done = threading.Event()

    def writer() -> None:
        try:
            for n in range(1, 16):
                _commit(url, n)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    listings = 0
    try:
        while not done.is_set() or listings < 3:
            entries = lake.commit_log(SPEC, table=DeltaTable(url))
            assert all(v == n for v, n in _numbers(entries)), _numbers(entries)
            listings += 1
    finally:
        thread.join()
    assert _numbers(lake.commit_log(SPEC))[0] == (15, 15)
