"""The /weather hot path (cached row groups + binary search) against the engine (DuckDB).

The table is built to hold what the hot path must get right: a city over several row groups of
one file whose "24:00" rows carry the previous day's date; a city with gaps and nulls; a city
in two files written in reverse time order; a city whose file is not sorted by ts (the hot path
must hand it to the engine); a city in the cities table without any observations.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratus.api.encoding import json_body
from stratus.catalog import registry
from stratus.config import Settings
from stratus.context import Stratus
from stratus.lakehouse.rowcache import RowGroupCache
from stratus.weather.queries import encode_cursor
from stratus.weather.schema import CITIES_SCHEMA, HOURLY_FIELDS, HOURLY_SCHEMA
from tests.conftest import azure_settings

LONG, GAPS, SPLIT, UNSORTED, EMPTY = "a-long", "b.gaps", "c_split", "d4-unsorted", "e-empty"
CITIES = [LONG, GAPS, SPLIT, UNSORTED, EMPTY]
FIRST, LAST = dt.date(2020, 1, 1), dt.date(2022, 12, 31)


def hours(city: str, start: dt.datetime, n: int, rng: np.random.Generator) -> pa.Table:
    """``n`` hourly rows from ``start``; midnight rows are "2400" of the previous date."""
    ts = [start + dt.timedelta(hours=i) for i in range(n)]
    date = [(t - dt.timedelta(hours=1)).date() if t.hour == 0 else t.date() for t in ts]
    hour = ["2400" if t.hour == 0 else f"{t.hour:02d}00" for t in ts]
    temp = np.round(rng.normal(12, 8, n), 1)
    descriptions = ["Clear", "Rain", 'Fog "dense"', "Snow\nshowers", None]
    return pa.table(
        {
            "city_id": [city] * n,
            "date": date,
            "hour": hour,
            "ts": pa.array(ts, pa.timestamp("us")),
            "temp": temp,
            "wind_speed": np.round(rng.uniform(0, 20, n), 2),
            "description": [descriptions[i % len(descriptions)] for i in range(n)],
            "precipitation": np.round(rng.exponential(1.0, n), 2),
            "humidity": np.round(rng.uniform(10, 100, n), 1),
        },
        schema=HOURLY_SCHEMA,
    )


def with_nulls(table: pa.Table, rng: np.random.Generator) -> pa.Table:
    for name in ("temp", "description", "humidity"):
        col = table.column(name)
        mask = pa.array(rng.random(table.num_rows) < 0.2)
        nulls = pa.nulls(table.num_rows, col.type)
        table = table.set_column(
            table.schema.get_field_index(name), name, pa.compute.if_else(mask, nulls, col)
        )
    return table


@pytest.fixture(scope="module", params=["local", pytest.param("azure", marks=pytest.mark.azure)])
def lake(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stratus]:
    """The same table on local disk and on Azurite: the hot path serves both."""
    rng = np.random.default_rng(16)
    home: Path = tmp_path_factory.mktemp("fastpath") / "home"
    if request.param == "azure":
        settings = azure_settings(request.getfixturevalue("azurite"), home)
    else:
        settings = Settings(home=home)
    stratus = Stratus.from_settings(settings)
    lh = stratus.lakehouse
    # 3 years in one file: row groups of 8,760 rows (the writer's row-group size)
    lh.append(registry.HOURLY, hours(LONG, dt.datetime(2020, 1, 1, 1), 1096 * 24, rng))
    gaps = hours(GAPS, dt.datetime(2020, 2, 10, 1), 60 * 24, rng)
    gaps = with_nulls(gaps.filter(pa.array(rng.random(gaps.num_rows) > 0.3)), rng)
    lh.append(registry.HOURLY, gaps)
    # two files, the later months written first
    lh.append(registry.HOURLY, hours(SPLIT, dt.datetime(2020, 3, 1, 1), 31 * 24, rng))
    lh.append(registry.HOURLY, hours(SPLIT, dt.datetime(2020, 1, 1, 1), 40 * 24, rng))
    # a file out of ts order (written around the Lakehouse, which sorts)
    unsorted = hours(UNSORTED, dt.datetime(2020, 1, 5, 1), 20 * 24, rng)
    unsorted = unsorted.take(rng.permutation(unsorted.num_rows))
    write_deltalake(
        lh.url(registry.HOURLY),
        unsorted.drop_columns([]),
        mode="append",
        partition_by=["city_id"],
        storage_options=lh.storage.options,
    )
    lh.invalidate(registry.HOURLY)
    cities = pa.Table.from_pylist(
        [{"city_id": c, "name": c, "timezone": "UTC"} for c in CITIES], schema=CITIES_SCHEMA
    )
    lh.append(registry.CITIES, cities)
    yield stratus
    stratus.close()


def both(stratus: Stratus, cities: list[str], start: dt.date, end: dt.date, **kw: object):
    q = stratus.weather
    fast = q.hourly(cities, start, end, **kw)  # type: ignore[arg-type]
    slow = q.hourly(cities, start, end, engine_only=True, **kw)  # type: ignore[arg-type]
    return fast, slow


def test_fast_path_answers_and_matches_a_simple_week(lake: Stratus) -> None:
    fast_path = lake.weather.fast
    before = fast_path.answered
    fast, slow = both(
        lake, [LONG], dt.date(2020, 12, 29), dt.date(2021, 1, 4), fields=HOURLY_FIELDS, limit=5000
    )
    assert fast.table.slice(0, 1).column("hour")[0].as_py() == "0100"
    assert fast_path.answered == before + 1
    assert fast.json is not None  # one city: served from the cached encodings
    assert fast.table.num_rows == 7 * 24
    assert fast.table.to_pylist() == slow.table.to_pylist()
    assert fast.next_cursor is None and slow.next_cursor is None


def test_unsorted_file_goes_to_the_engine(lake: Stratus) -> None:
    fast_path = lake.weather.fast
    declined = fast_path.declined
    fast, slow = both(
        lake, [UNSORTED], dt.date(2020, 1, 6), dt.date(2020, 1, 9), fields=["temp"], limit=50
    )
    assert fast_path.declined == declined + 1
    assert fast.table.to_pylist() == slow.table.to_pylist()
    assert fast.next_cursor == slow.next_cursor is not None


def test_slice_is_zero_copy(lake: Stratus) -> None:
    q = lake.weather
    page = q.hourly([LONG], dt.date(2020, 6, 1), dt.date(2020, 6, 7), fields=["temp"], limit=5000)
    groups = list(q.fast.cache._groups.values())
    temp = page.table.column("temp").chunks[0]
    # the page's buffer is the cached row group's, not a copy
    assert any(
        temp.buffers()[1].address == g.batch.column("temp").buffers()[1].address for g in groups
    )


day = st.dates(min_value=FIRST - dt.timedelta(days=5), max_value=LAST + dt.timedelta(days=5))
moment = st.datetimes(min_value=dt.datetime(2019, 12, 30), max_value=dt.datetime(2023, 1, 2))


@st.composite
def cursors(draw: st.DrawFn, start: dt.date, span: int, cities: list[str]) -> str | None:
    """None; a cursor on an hour inside the range (as the API hands them out: rows at the same
    ts are then decided by city), or one anywhere, after cities that exist or sort
    before/after all of them."""
    kind = draw(st.sampled_from(["none", "row", "anywhere"]))
    if kind == "none":
        return None
    city = draw(st.sampled_from(cities + CITIES + ["a", "zzz"]))
    if kind == "row":
        first = dt.datetime.combine(start, dt.time())
        ts = first + dt.timedelta(hours=draw(st.integers(0, (span + 1) * 24)))
    else:
        ts = draw(moment)
    return encode_cursor(ts, city)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cities=st.lists(st.sampled_from(CITIES), min_size=1, max_size=5, unique=True),
    start=day,
    span=st.integers(min_value=0, max_value=120),
    fields=st.lists(st.sampled_from(HOURLY_FIELDS), min_size=1, unique=True),
    limit=st.integers(min_value=1, max_value=400),
    data=st.data(),
)
def test_fast_path_and_engine_give_the_same_pages(
    lake: Stratus,
    cities: list[str],
    start: dt.date,
    span: int,
    fields: list[str],
    limit: int,
    data: st.DataObject,
) -> None:
    end = start + dt.timedelta(days=span)
    cursor = data.draw(cursors(start, span, cities))
    fast, slow = both(lake, cities, start, end, fields=fields, limit=limit, cursor=cursor)
    assert fast.table.column_names == slow.table.column_names == fields
    assert fast.table.to_pylist() == slow.table.to_pylist()
    assert fast.next_cursor == slow.next_cursor
    # the JSON served from the cached per-row-group encodings is the engine page's JSON
    assert json_body(fast.table, {}, fast.json) == json_body(slow.table, {})


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cities=st.lists(st.sampled_from([LONG, GAPS, SPLIT]), min_size=1, max_size=3, unique=True),
    limit=st.integers(min_value=50, max_value=3000),
)
def test_paging_through_the_fast_path_returns_every_row_once(
    lake: Stratus, cities: list[str], limit: int
) -> None:
    start, end = dt.date(2020, 1, 20), dt.date(2020, 3, 20)
    whole = lake.weather.hourly(
        cities, start, end, fields=["city_id", "ts"], limit=100_000, engine_only=True
    ).table.to_pylist()
    got, cursor = [], None
    while True:
        page = lake.weather.hourly(
            cities, start, end, fields=["city_id", "ts"], limit=limit, cursor=cursor
        )
        got += page.table.to_pylist()
        cursor = page.next_cursor
        if cursor is None:
            break
    assert got == whole


# ---- the cache ---------------------------------------------------------------------------------
def test_cache_is_bounded_and_evicts_least_recently_used(lake: Stratus) -> None:
    files = [
        lake.lakehouse.storage.local_path(e.uri)
        for e in lake.lakehouse.entries(registry.HOURLY)[1]
        if e.partition["city_id"] == LONG
    ]
    schema = lake.weather.fast._file_schema
    opener = lake.lakehouse.storage.open_file
    one = RowGroupCache(1 << 40, opener).get(files[0], 0, schema).nbytes
    cache = RowGroupCache(int(one * 2.5), opener)
    for i in (0, 1, 0, 2):  # 0 is used again before 2 arrives: 1 is the oldest
        cache.get(files[0], i, schema)
    assert len(cache) == 2 and cache.evictions == 1
    assert {k[1] for k in cache._groups} == {0, 2}
    assert cache.bytes <= cache.max_bytes
    assert cache.hits == 1 and cache.misses == 3


def test_json_text_counts_against_the_cache_bound(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    stratus = Stratus.from_settings(Settings(home=tmp_path / "home"))
    try:
        for c in ("x1", "x2", "x3"):
            stratus.lakehouse.append(
                registry.HOURLY, hours(c, dt.datetime(2020, 1, 1, 1), 24 * 60, rng)
            )
        q = stratus.weather
        week = (dt.date(2020, 1, 2), dt.date(2020, 1, 8))
        page = q.hourly(["x1"], *week, fields=list(HOURLY_FIELDS), limit=5000)
        cache = q.fast.cache
        (group,) = cache._groups.values()
        before, derived_before = cache.bytes, group.derived_bytes  # (its city column)
        json_body(page.table, {}, page.json)
        added = group.derived_bytes - derived_before
        assert added > 0 and cache.bytes == before + added
        assert type(cache.bytes) is int
        # a bound that holds one group with its JSON text: the next city evicts the first
        cache.max_bytes = group.size + 1
        other = q.hourly(["x2"], *week, fields=["temp"], limit=9)
        json_body(other.table, {}, other.json)
        assert cache.evictions >= 1 and cache.bytes <= cache.max_bytes
        assert cache.bytes == sum(g.size for g in cache._groups.values())
    finally:
        stratus.close()


def test_new_version_drops_only_the_files_it_removed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    stratus = Stratus.from_settings(Settings(home=tmp_path / "home"))
    try:
        lh, q = stratus.lakehouse, stratus.weather
        lh.append(registry.HOURLY, hours("x1", dt.datetime(2020, 1, 1, 1), 24 * 10, rng))
        lh.append(registry.HOURLY, hours("x2", dt.datetime(2020, 1, 1, 1), 24 * 10, rng))
        week = (dt.date(2020, 1, 2), dt.date(2020, 1, 8))
        for c in ("x1", "x2"):
            q.hourly([c], *week, fields=["temp"], limit=5000)
        assert len(q.fast.cache) == 2
        # a new version that adds a file: both cached row groups stay
        lh.append(registry.HOURLY, hours("x3", dt.datetime(2020, 1, 1, 1), 24 * 10, rng))
        q.hourly(["x3"], *week, fields=["temp"], limit=5000)
        assert len(q.fast.cache) == 3 and q.fast.cache.misses == 3
        # a merge that rewrites x1's file: only that one is dropped, and the page is new
        changed = hours("x1", dt.datetime(2020, 1, 1, 1), 24 * 10, rng)
        lh.merge(registry.HOURLY, changed)
        page = q.hourly(["x1"], *week, fields=["ts", "temp"], limit=5000)
        assert len(q.fast.cache) == 3  # x1's new file read in, its old one gone
        paths = {k[0] for k in q.fast.cache._groups}
        live = {lh.storage.local_path(e.uri) for e in lh.entries(registry.HOURLY)[1]}
        assert paths <= live
        expected = changed.filter(
            pa.compute.and_(
                pa.compute.greater_equal(changed["date"], pa.scalar(week[0])),
                pa.compute.less_equal(changed["date"], pa.scalar(week[1])),
            )
        ).select(["ts", "temp"])
        assert page.table.to_pylist() == expected.to_pylist()
    finally:
        stratus.close()


def test_cache_off_means_engine_only(tmp_path: Path) -> None:
    stratus = Stratus.from_settings(Settings(home=tmp_path / "home", row_cache_mb=0))
    try:
        rng = np.random.default_rng(2)
        stratus.lakehouse.append(registry.HOURLY, hours("x1", dt.datetime(2020, 1, 1, 1), 48, rng))
        page = stratus.weather.hourly(
            ["x1"], dt.date(2020, 1, 1), dt.date(2020, 1, 2), fields=["temp"], limit=10
        )
        assert page.table.num_rows == 10 and page.next_cursor
        assert not stratus.weather.fast.enabled and stratus.weather.fast.answered == 0
    finally:
        stratus.close()


def test_a_remote_file_is_downloaded_once_for_its_footer_and_row_groups(lake: Stratus) -> None:
    """Azure: the footer and every row group of a file come from one download (kept among the
    last FETCHED_FILES files); local disk: the path is opened each time, nothing is kept."""
    storage = lake.lakehouse.storage
    path = next(
        storage.local_path(e.uri)
        for e in lake.lakehouse.entries(registry.HOURLY)[1]
        if e.partition["city_id"] == LONG
    )
    calls: list[str] = []

    def opener(p: str) -> object:
        calls.append(p)
        return storage.open_file(p)

    cache = RowGroupCache(1 << 40, opener)
    groups = cache.row_groups(path)
    assert len(groups) == 4  # 1,096 days of hours in row groups of 8,760
    for g in groups:
        assert cache.get(path, g.index, lake.weather.fast._file_schema).batch.num_rows > 0
    assert len(calls) == (1 + len(groups) if storage.is_local else 1)
    cache.clear()
    cache.row_groups(path)
    assert len(calls) == (2 + len(groups) if storage.is_local else 2)  # cleared: fetched again
