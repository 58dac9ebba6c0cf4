from __future__ import annotations

import numpy as np
import pytest

from vidlake.errors import UsageError
from vidlake.operators.clips import plan_clips
from vidlake.records import VideoInfo


def _info(seconds: float, fps: float = 30.0) -> VideoInfo:
    n = int(round(seconds * fps))
    return VideoInfo(
        "v.mp4", fps=fps, n_frames=n, duration_s=n / fps, width=64, height=48, codec="h264"
    )


def test_windows_overlap_and_the_last_one_is_cut_at_the_end() -> None:
    clips = plan_clips("vid", _info(25.0), clip_seconds=10.0, fps=6.0, overlap_s=1.0)
    assert [(c.start_s, c.end_s) for c in clips] == [(0.0, 10.0), (9.0, 19.0), (18.0, 25.0)]
    assert [c.clip_index for c in clips] == [0, 1, 2]
    assert len({c.clip_id for c in clips}) == 3
    assert clips[0].frame_indices.tolist() == list(range(0, 300, 5))
    assert clips[2].n_frames == 42  # 7 s at 6 fps
    assert all(c.sampled_fps == 6.0 for c in clips)


def test_overlapping_clips_share_source_frames() -> None:
    first, second, _ = plan_clips("vid", _info(25.0), clip_seconds=10.0, fps=6.0, overlap_s=1.0)
    shared = np.intersect1d(first.frame_indices, second.frame_indices)
    assert shared.tolist() == [270, 275, 280, 285, 290, 295]


def test_frames_are_in_range_and_times_are_their_timestamps() -> None:
    info = _info(7.3, fps=29.97)
    for clip in plan_clips("vid", info, clip_seconds=3.0, fps=4.0, overlap_s=0.5):
        idx = clip.frame_indices
        assert idx.dtype == np.int64
        assert (np.diff(idx) > 0).all()
        assert idx.min() >= 0 and idx.max() < info.n_frames
        np.testing.assert_allclose(clip.times_s, idx / info.fps)
        assert (clip.times_s >= clip.start_s - 1 / info.fps).all()
        assert (clip.times_s < clip.end_s).all()


def test_short_video_gives_one_clip() -> None:
    clips = plan_clips("vid", _info(3.0), clip_seconds=10.0, fps=6.0, overlap_s=1.0)
    assert len(clips) == 1
    assert (clips[0].start_s, clips[0].end_s) == (0.0, 3.0)
    assert clips[0].n_frames == 18


def test_video_ending_on_a_window_edge_gives_no_extra_clip() -> None:
    clips = plan_clips("vid", _info(19.0), clip_seconds=10.0, fps=6.0, overlap_s=1.0)
    assert [(c.start_s, c.end_s) for c in clips] == [(0.0, 10.0), (9.0, 19.0)]


def test_sampling_fps_is_capped_at_the_source_fps() -> None:
    (clip,) = plan_clips("vid", _info(2.0, fps=5.0), clip_seconds=10.0, fps=30.0, overlap_s=1.0)
    assert clip.sampled_fps == 5.0
    assert clip.frame_indices.tolist() == list(range(10))


def test_no_clip_is_empty_and_windows_cover_the_video() -> None:
    for seconds in np.arange(0.1, 12.0, 0.37):
        info = _info(float(seconds), fps=24.0)
        if info.n_frames == 0:
            continue
        clips = plan_clips("vid", info, clip_seconds=4.0, fps=3.0, overlap_s=1.0)
        assert clips and all(c.n_frames > 0 for c in clips)
        assert clips[-1].end_s == pytest.approx(info.n_frames / info.fps)
        for before, after in zip(clips, clips[1:], strict=False):
            assert after.start_s < before.end_s  # contiguous, overlapping windows


@pytest.mark.parametrize(
    ("clip_seconds", "fps", "overlap_s"),
    [(1.0, 6.0, 1.0), (5.0, 6.0, -0.5), (5.0, 0.0, 1.0), (0.0, 6.0, 0.0)],
)
def test_bad_arguments_raise_usage_error(clip_seconds: float, fps: float, overlap_s: float) -> None:
    with pytest.raises(UsageError):
        plan_clips("vid", _info(10.0), clip_seconds=clip_seconds, fps=fps, overlap_s=overlap_s)
