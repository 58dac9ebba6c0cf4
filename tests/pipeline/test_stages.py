"""The stream's first stages on their own: probe_and_plan's decode tasks, decode_rows."""

from __future__ import annotations

import pickle

import numpy as np

from vidlake.operators.clips import plan_clips
from vidlake.operators.probe import probe_video
from vidlake.pipeline import stages
from vidlake.synthetic.corpus import write_bad_inputs

PLAN = {"clip_seconds": 1.0, "fps": 4.0, "overlap_s": 0.25}


def test_probe_and_plan_gives_every_planned_clip_once_in_runs(synthetic_corpus):
    video = synthetic_corpus[0]
    tasks = list(
        stages.probe_and_plan({"uri": video.uri, "video_id": "v"}, clips_per_task=3, **PLAN)
    )
    planned = plan_clips("v", probe_video(video.uri), **PLAN)
    assert len(planned) > 3
    clips = [c for t in tasks for c in pickle.loads(t["clips"])]
    assert [c["clip_index"] for c in clips] == [s.clip_index for s in planned]
    assert all(len(pickle.loads(t["clips"])) <= 3 for t in tasks)
    assert {t["video_n_clips"] for t in tasks} == {len(planned)}
    assert all(t["error"] == "" for t in tasks)
    assert stages.load_info(tasks[0]["info"]).n_frames == video.n_frames


def test_an_unprobeable_video_flows_on_as_one_failed_clip(tmp_path):
    bad = write_bad_inputs(tmp_path)["text"]
    (task,) = stages.probe_and_plan({"uri": str(bad), "video_id": "b"}, clips_per_task=4, **PLAN)
    assert task["video_n_clips"] == 1 and task["info"] == b""
    assert str(bad) in task["error"]
    (row,) = stages.decode_rows(task)
    # The driver gets one row for the video, with the probe's error and nothing to segment.
    assert row["error"] == task["error"] and row["video_n_clips"] == 1
    assert row["frames"].shape[0] == 0
    out = stages.SegmentStage("synthetic:color", ("red square",))(row)
    assert out["error"] == task["error"] and out["video_n_clips"] == 1
    assert out["model_s"] == 0.0


def test_decoded_rows_carry_the_video_info_to_the_driver(synthetic_corpus):
    video = synthetic_corpus[1]
    task = next(
        stages.probe_and_plan({"uri": video.uri, "video_id": "v"}, clips_per_task=2, **PLAN)
    )
    rows = list(stages.decode_rows(task))
    assert len(rows) == len(pickle.loads(task["clips"]))
    for row in rows:
        assert row["error"] == "" and row["info"] == task["info"]
        assert row["frames"].dtype == np.uint8 and len(row["frames"]) == len(row["frame_indices"])
