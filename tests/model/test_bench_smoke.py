"""CI smoke test of bench/sam3_gpu.py: tiny model, two frames, two concept counts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sam3_gpu.py"


def test_bench_runs_in_tiny_mode_and_prints_its_table(capsys):
    spec = importlib.util.spec_from_file_location("sam3_gpu", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    rows = bench.main(["--tiny", "--frames", "2", "--concepts", "1,4", "--repeats", "1"])

    assert [r["concepts"] for r in rows] == [1, 4]
    assert all(r["fps"] > 0 and r["seconds"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "tiny random SAM 3" in out and "frames/s" in out and "command:" in out
