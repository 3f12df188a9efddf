"""benchmarks/load.py's bookkeeping: wrk output parsing and the zero-error / saturation rules.

No timing is asserted here: the load test itself prints figures (benchmarks/load.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import load  # benchmarks/load.py

# A real wrk 4.1 output of the weather workload (Debian's wrk, the script's Lua hook).
WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:36187/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    36.35ms   12.19ms 103.82ms   77.98%
    Req/Sec   110.10     21.71   140.00     80.00%
  Latency Distribution
     50%   35.20ms
     75%   43.23ms
     90%   49.77ms
     99%   79.76ms
  331 requests in 3.02s, 9.91MB read
Requests/sec:    109.71
Transfer/sec:      3.29MB
STRATUS-LOAD {"requests": 331, "duration_us": 3016933, "bytes": 10392930, "errors": \
{"connect": 0, "read": 0, "write": 0, "status": 2, "timeout": 1}, "latency_us": {"p50": 35200, \
"p90": 49774, "p99": 79763, "max": 103818, "mean": 36352.1}, "statuses": {"200": 329, "429": 2}}
"""


def run(conns: int, rps: float, p50: float = 10.0, p99: float = 30.0, errors: int = 0) -> load.Run:
    statuses = {"200": int(rps * 10) - errors}
    if errors:
        statuses["503"] = errors
    return load.Run(conns, 10.0, int(rps * 10), 0, p50, p50, p99, p99, statuses, {"timeout": 0})


def test_parse_wrk_reads_the_hook_line_and_counts_errors() -> None:
    r = load.parse_wrk(WRK_OUTPUT, 4)
    assert r.requests == 331
    assert r.rps == pytest.approx(331 / 3.016933)
    assert (r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms) == (35.2, 49.774, 79.763, 103.818)
    assert r.statuses == {"200": 329, "429": 2}
    assert r.non_200 == 2 and r.socket_error_count == 1 and r.errors == 3
    assert load.describe_errors(r) == "HTTP 429: 2, timeout: 1"
    assert load.latency_distribution(WRK_OUTPUT) == {50: 35.2, 90: 49.77, 99: 79.76}


def test_parse_wrk_rejects_output_without_hook_or_disagreeing_with_wrk() -> None:
    with pytest.raises(ValueError, match="STRATUS-LOAD"):
        load.parse_wrk(WRK_OUTPUT.split("STRATUS-LOAD")[0], 4)
    with pytest.raises(ValueError, match="p99"):
        load.parse_wrk(WRK_OUTPUT.replace("99%   79.76ms", "99%   1.20s"), 4)


def test_lua_script_quotes_paths_and_reads_token_from_env() -> None:
    script = load.lua_script(['/api/v1/weather?city_id=a"b&start=2020-01-01'])
    assert 'local paths = { "/api/v1/weather?city_id=a\\"b&start=2020-01-01" }' in script
    assert 'os.getenv("STRATUS_LOAD_TOKEN")' in script
    assert "idx = idx % #paths + 1" in script  # Python %-escapes resolved


def test_choose_picks_the_knee_of_the_throughput_curve() -> None:
    steps = [run(1, 60), run(2, 85), run(4, 100, 40, 90), run(8, 103, 80, 200), run(16, 101)]
    c = load.choose(steps)
    assert c.connections == 4 and c.first_error is None  # 100 >= 0.95 x 103
    assert c.best_rps == 103
    assert c.note.startswith("saturates at 4 connections")


def test_choose_ignores_steps_from_the_first_error_on() -> None:
    steps = [run(1, 60), run(2, 85), run(4, 120, errors=1), run(8, 200)]
    c = load.choose(steps)
    assert c.connections == 2 and c.first_error == 4
    assert "not saturated" in c.note and "errors from 4 connections" in c.note
    assert load.choose([run(1, 50, errors=3)]).connections is None


def test_reported_figure_falls_back_to_the_last_error_free_step() -> None:
    w = load.Workload("weather", ["/x"], steps=[run(1, 60), run(2, 85), run(4, 86)])
    w.choice = load.choose(w.steps)
    assert w.choice.connections == 2
    w.long = run(2, 90, errors=5)
    fig, source = w.reported()
    assert fig is w.steps[1] and "long run had errors" in source
    w.long = run(2, 84)
    fig, source = w.reported()
    assert fig is w.long and source == "10 s run"


def test_unbalanced_workers_are_flagged() -> None:
    even = load.Run(8, 10.0, 900, 0, 9.0, 9.0, 9.0, 9.0, {"200": 900}, {}, worker_cpu=(0.9, 0.8))
    assert not even.unbalanced
    assert load.dataclasses.replace(even, worker_cpu=(1.2, 0.04)).unbalanced
    assert not load.dataclasses.replace(even, worker_cpu=(1.2,)).unbalanced


def test_cpu_per_request_and_others_cpu() -> None:
    r = load.Run(4, 10.0, 500, 0, 9.0, 9.0, 9.0, 9.0, {"200": 500}, {}, 1.0, (0.5, 0.5), 0.1, 1.5)
    assert r.cpu_ms_per_request == pytest.approx(20.0)  # 10 CPU-seconds over 500 requests
    assert r.others_cpu == pytest.approx(0.4)
