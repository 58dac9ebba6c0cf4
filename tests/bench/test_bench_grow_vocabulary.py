"""Smoke run of bench/grow_vocabulary.py: a concept added to an index, against a whole index."""

from __future__ import annotations

import math


def test_adding_a_concept_is_measured_against_a_whole_index(bench_grow_vocabulary, capsys):
    args = ["--videos", "1", "--repeat", "1", "--fps", "1", "--clip-seconds", "4"]
    ratio = bench_grow_vocabulary.main(args)
    out = capsys.readouterr().out
    assert math.isfinite(ratio) and ratio > 0
    assert "(0 indexed, 1 grown)" in out  # the adding job segmented the indexed video
    assert f"= {ratio:.2f} (target <= 0.5)" in out and "command: " in out
