"""Smoke run of bench/memory.py with short videos: every peak it reports is finite and positive."""

from __future__ import annotations

import math


def test_short_and_long_video_peaks_are_measured(tmp_path, bench_memory):
    rows = bench_memory.main(
        ["--short-s", "2", "--long-s", "6", "--workdir", str(tmp_path), "--no-results"]
    )
    assert [r.role for r in rows] == [
        "driver",
        "segment actor (largest)",
        "task workers (largest)",
        "raylet/GCS (largest)",
    ]
    for r in rows:
        for got in (r.short_mib, r.long_mib, r.growth + 1.0):
            assert math.isfinite(got) and got > 0, (r.role, got)
