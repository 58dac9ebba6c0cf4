"""Smoke run of bench/resume.py: a real job killed mid-run, rerun, its redone work counted."""

from __future__ import annotations


def test_killed_job_rerun_redoes_only_what_was_not_committed(tmp_path, bench_resume, capsys):
    args = ["--videos", "8", "--kill-at", "0.25", "--workdir", str(tmp_path)]
    (row,) = bench_resume.main(args)
    out = capsys.readouterr().out
    total = int(out.split(" clips;", 1)[0].rsplit(" ", 1)[1])
    # The kill came after at least 2 of 8 videos were committed and before the last one.
    assert 2 <= row["committed_at_kill"] < 8
    # The rerun segments the clips of the uncommitted videos only: fewer than all, at least one.
    assert 0 < row["rerun_clips"] < total
    assert 0 <= row["orphaned_clips"] <= total
    assert row["redone_share"] == row["orphaned_clips"] / total
