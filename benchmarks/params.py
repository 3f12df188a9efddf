"""Cost of the HTTP edge's query parsing on the hot weather query (``GET /api/v1/weather``).

Prints microseconds per parse of a typical weather query string by ``parse_query`` (new and
old paging names) against, measured in the same run, the floor it cannot go below: pydantic
validating the already-built dict (``WeatherParams.model_validate``). The ratio is the edge's
own overhead (collecting the multi-dict, aliases). Run: ``python benchmarks/params.py``.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from flask import Flask
from werkzeug.datastructures import MultiDict

from stratus.api.params import WeatherParams, parse_query

ROUNDS, NUMBER = 40, 2000
BASE = [("city_id", "new-york-jfk"), ("start", "2013-06-01"), ("end", "2013-06-07")]
BASE += [("fields", "temp,humidity")]
NEW = MultiDict([*BASE, ("max_results", "100")])
OLD = MultiDict([*BASE, ("limit", "100")])
DATA = {
    "city_id": ["new-york-jfk"],
    "start": "2013-06-01",
    "end": "2013-06-07",
    "fields": ["temp,humidity"],
    "max_results": "100",
}


def best(**fns: Callable[[], object]) -> dict[str, float]:
    """Microseconds per call of each, best of ROUNDS rounds; the rounds of all of them are
    interleaved, so a burst of other load on the machine hits each alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            times[name].append(timeit.timeit(fn, number=NUMBER) / NUMBER * 1e6)
    return {name: min(t) for name, t in times.items()}


def main() -> None:
    with Flask(__name__).test_request_context("/"):
        t = best(
            floor=lambda: WeatherParams.model_validate(DATA),
            new=lambda: parse_query(WeatherParams, NEW),
            old=lambda: parse_query(WeatherParams, OLD),
        )
    floor, new, old = t["floor"], t["new"], t["old"]
    print(f"model_validate on a built dict (floor): {floor:6.2f} us")
    print(f"parse_query, max_results/page_token:   {new:6.2f} us  ({new / floor:.2f}x floor)")
    print(f"parse_query, old names limit/cursor:   {old:6.2f} us  ({old / floor:.2f}x floor)")


if __name__ == "__main__":
    main()
