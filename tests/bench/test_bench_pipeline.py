"""Smoke runs of bench/pipeline.py at tiny sizes: every figure it prints is finite and positive.

The targets are the benchmark's business, not the tests'; these only keep the script working.
"""

from __future__ import annotations

import math

import pytest


def assert_finite_positive(rows) -> None:
    assert rows
    for row in rows:
        for what in ("value", "baseline", "ratio"):
            got = getattr(row, what)
            assert math.isfinite(got), (row.section, row.name, what, got)
            # "s over" rows are differences of two timings: at smoke sizes noise can make one
            # zero or negative (CI saw -0.0005 s); every other figure is a rate, size or time.
            if " s over " not in row.name:
                assert got > 0, (row.section, row.name, what, got)


def test_smoke_run_gives_every_stage_row(tmp_path, bench_pipeline):
    rows = bench_pipeline.main(
        [
            "--size",
            "smoke",
            "--only",
            "efficiency,decode,masks,writes,commits",
            "--workdir",
            str(tmp_path),
            "--no-results",
        ]
    )
    assert_finite_positive(rows)
    sections = {r.section for r in rows}
    assert sections == {"1 efficiency", "2 decode", "3 masks", "4 writes"}
    names = {r.name for r in rows}
    assert "index e2e / segment stage alone" in names
    assert "decode tasks (decord) / plain decord" in names
    assert "decode tasks (PyAV fallback) / plain PyAV" in names
    assert "model busy / job wall time x actors" in names
    assert "encode_rles / pycocotools.mask.encode" in names
    assert "write stage / lance.write_dataset" in names
    assert "commit s per video, last 1 / first 1 of 12" in names


@pytest.mark.slow
def test_smoke_run_of_scaling_and_memory(tmp_path, bench_pipeline):
    rows = bench_pipeline.main(
        ["--size", "smoke", "--only", "scaling,memory", "--workdir", str(tmp_path), "--no-results"]
    )
    assert_finite_positive(rows)
    assert {"5 scaling", "6 memory"} <= {r.section for r in rows}


def test_results_block_is_written_inside_the_pipeline_section_only(tmp_path, bench_memory):
    memory = bench_memory
    results = tmp_path / "RESULTS.md"
    before = (
        "# Benchmark results\n\n"
        f"{memory.SECTION}\n\n"
        "<!-- section: sam3 (bench/sam3_gpu.py, bench/memory.py) -->\n\nsam3 figures\n"
    )
    results.write_text(before)
    memory.write_results_block("bench/pipeline.py", "| a | 1 |", results)
    memory.write_results_block("bench/memory.py", "| m | 2 |", results)
    memory.write_results_block("bench/pipeline.py", "| a | 3 |", results)
    text = results.read_text()
    pipeline_part, sam3_part = text.split("<!-- section: sam3")
    assert "| a | 3 |" in pipeline_part and "| a | 1 |" not in text
    assert "| m | 2 |" in pipeline_part
    assert sam3_part.endswith("sam3 figures\n")
    assert pipeline_part.count("<!-- bench/pipeline.py begin -->") == 1
