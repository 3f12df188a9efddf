"""The baseline of ``benchmarks/vs_minimal.py``: the smallest reasonable Flask app serving the
hourly table, with no governance at all (no authentication, authorization, audit, rate limit,
validation beyond parsing, or access log).

One cached ``pl.scan_delta`` LazyFrame per worker process; each request filters it by city and
date range, sorts by ts, collects, and encodes the rows with orjson. Run by gunicorn:
``MINIMAL_TABLE=<delta table path> gunicorn -k gthread -w 2 --threads 4 minimal_app:app``.
"""

from __future__ import annotations

import datetime as dt
import os

import orjson
import polars as pl
from flask import Flask, Response, request

app = Flask(__name__)
TABLE = os.environ["MINIMAL_TABLE"]
frame = pl.scan_delta(TABLE)  # the Delta log is read once, here


@app.get("/health")
def health() -> Response:
    return Response(b"ok")


@app.get("/api/v1/weather")
def weather() -> Response:
    city = request.args["city_id"]
    start = dt.date.fromisoformat(request.args["start"])
    end = dt.date.fromisoformat(request.args["end"])
    rows = (
        frame.filter((pl.col("city_id") == city) & pl.col("date").is_between(start, end))
        .sort("ts")
        .collect()
    )
    body = {"city_ids": [city], "count": rows.height, "data": rows.to_dicts()}
    return Response(orjson.dumps(body), mimetype="application/json")
