"""bench/query_scale.py keeps working: its --small mode, end to end (no timing asserts)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "query_scale.py"


def test_small_benchmark_runs_and_agrees_with_duckdb(tmp_path):
    spec = importlib.util.spec_from_file_location("query_scale", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(
        ["--small", "--clips", "2000", "--masklets", "20000", "--concepts", "200",
         "--queries", "5", "--out", str(tmp_path / "bench")]
    )  # fmt: skip
    assert report["rows"]["clips"] == 2000 and report["rows"]["masklets"] == 20000
    assert report["rows"]["concepts"] == 200
    assert set(report["results"]) == {
        "concept lookup",
        "filtered lookup",
        "co-occurrence",
        "then within 5 s",
        "min duration 2 s",
        "region",
        "stats",
    }
    assert all(r["median_rows"] > 0 for r in report["results"].values())
