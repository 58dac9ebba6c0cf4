from __future__ import annotations

import logging
from pathlib import Path

import av
import fsspec
import numpy as np
import pytest

from vidlake.errors import VideoError
from vidlake.operators import decode as decode_module
from vidlake.operators.clips import plan_clips
from vidlake.operators.decode import ClipDecoder, decode_clip
from vidlake.operators.probe import probe_video
from vidlake.records import ClipSpec
from vidlake.synthetic.corpus import SyntheticVideo
from vidlake.synthetic.segmenter import color_masks


def _clips(video: SyntheticVideo, **kwargs: float) -> list[ClipSpec]:
    options = {"clip_seconds": 3.0, "fps": 4.0, "overlap_s": 1.0} | kwargs
    return plan_clips("vid", probe_video(video.uri), **options)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_decoded_frames_are_the_planned_source_frames(
    synthetic_corpus: list[SyntheticVideo], backend: str
) -> None:
    # Seeking to a later clip must land on exactly its frames: the shapes move every frame, so
    # a frame off by one would show each shape a few pixels away from its true mask.
    for video in synthetic_corpus:
        for spec in _clips(video):
            frames = decode_clip(spec, backend=backend)
            assert frames.shape == (spec.n_frames, video.height, video.width, 3)
            assert frames.dtype == np.uint8
            masks = color_masks(frames, video.concepts)
            for t, index in enumerate(spec.frame_indices):
                for concept in video.concepts:
                    truth = video.mask(concept, int(index))
                    if truth.sum() < 50:
                        continue
                    assert _iou(masks[concept][t], truth) >= 0.95, (video.uri, concept, index)


def test_decord_and_pyav_give_nearly_equal_pixels(synthetic_corpus: list[SyntheticVideo]) -> None:
    video = synthetic_corpus[0]
    spec = _clips(video)[1]
    a = decode_clip(spec, backend="decord").astype(np.int16)
    b = decode_clip(spec, backend="pyav").astype(np.int16)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 0.5
    assert np.abs(a - b).max() <= 8


def test_clip_decoder_reuses_one_reader_for_all_clips(
    synthetic_corpus: list[SyntheticVideo],
) -> None:
    video = synthetic_corpus[0]
    specs = _clips(video)
    with ClipDecoder(video.uri) as decoder:
        reused = [decoder.decode(spec) for spec in specs]
    for spec, frames in zip(specs, reused, strict=True):
        np.testing.assert_array_equal(frames, decode_clip(spec))


def test_pyav_decoder_goes_forward_through_consecutive_clips(
    synthetic_corpus: list[SyntheticVideo], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Consecutive overlapping clips continue one forward pass (no seek per clip); a jump back
    # or far ahead seeks. Every order gives exactly the frames of a fresh decoder per clip.
    video = synthetic_corpus[0]
    specs = _clips(video, clip_seconds=1.0, overlap_s=0.5, fps=8.0)
    assert len(specs) >= 4
    fresh = [decode_clip(spec, backend="pyav") for spec in specs]
    seeks = []
    real_seek = av.container.InputContainer.seek

    def counting_seek(self, *args, **kwargs):
        seeks.append(args)
        return real_seek(self, *args, **kwargs)

    monkeypatch.setattr(av.container.InputContainer, "seek", counting_seek)
    with ClipDecoder(video.uri, backend="pyav") as decoder:
        forward = [decoder.decode(spec) for spec in specs]
        assert len(seeks) == 1  # the first clip only
        again = decoder.decode(specs[0])  # backwards: seeks
        assert len(seeks) == 2
    for spec, got, want in zip(specs, forward, fresh, strict=True):
        np.testing.assert_array_equal(got, want, err_msg=f"clip {spec.clip_index}")
    np.testing.assert_array_equal(again, fresh[0])


def test_pyav_resizes_each_frame_once_as_the_stack_resize_would(
    synthetic_corpus: list[SyntheticVideo], monkeypatch: pytest.MonkeyPatch
) -> None:
    # PyAV frames are resized as they are converted (a frame two clips share, once); the
    # result is what resizing each clip's native frames gives.
    video = synthetic_corpus[0]
    specs = _clips(video, clip_seconds=1.0, overlap_s=0.5, fps=8.0)
    native = [decode_clip(spec, backend="pyav") for spec in specs]
    resized = []
    real_resize = decode_module._resize_frame

    def counting_resize(frame, max_side):
        resized.append(1)
        return real_resize(frame, max_side)

    monkeypatch.setattr(decode_module, "_resize_frame", counting_resize)
    with ClipDecoder(video.uri, max_side=80, backend="pyav") as decoder:
        small = [decoder.decode(spec) for spec in specs]
    distinct = {int(i) for spec in specs for i in spec.frame_indices}
    assert len(resized) == len(distinct) < sum(spec.n_frames for spec in specs)
    for got, frames in zip(small, native, strict=True):
        assert got.shape == (len(frames), 60, 80, 3)
        np.testing.assert_array_equal(got, decode_module._resize(frames, 80))


def test_falls_back_to_pyav_when_decord_cannot_open(
    synthetic_corpus: list[SyntheticVideo],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    video = synthetic_corpus[1]
    spec = _clips(video)[1]
    expected = decode_clip(spec, backend="pyav")

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error reading video...")

    monkeypatch.setattr(decode_module.decord, "VideoReader", refuse)
    with caplog.at_level(logging.DEBUG, logger="vidlake.operators.decode"):
        frames = decode_clip(spec)
    np.testing.assert_array_equal(frames, expected)
    assert "decoding with PyAV" in caplog.text


def test_max_side_resizes_keeping_aspect(synthetic_corpus: list[SyntheticVideo]) -> None:
    spec = _clips(synthetic_corpus[2])[0]
    frames = decode_clip(spec, max_side=80)
    assert frames.shape == (spec.n_frames, 60, 80, 3)
    assert decode_clip(spec, max_side=1000).shape[1:3] == (120, 160)  # never scaled up


def test_remote_uri_decodes_like_the_local_file(synthetic_corpus: list[SyntheticVideo]) -> None:
    video = synthetic_corpus[2]
    fs = fsspec.filesystem("memory")
    fs.pipe("/vidlake-decode/c.mp4", Path(video.uri).read_bytes())
    try:
        local = _clips(video)[1]
        remote = ClipSpec(**{**local.__dict__, "video_uri": "memory://vidlake-decode/c.mp4"})
        for backend in ("decord", "pyav"):
            np.testing.assert_array_equal(decode_clip(remote, backend=backend), decode_clip(local))
    finally:
        fs.rm("/vidlake-decode", recursive=True)


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "zero_frames"])
def test_unreadable_video_raises_one_line_video_error(
    bad_inputs: dict[str, Path], kind: str
) -> None:
    spec = ClipSpec(
        video_id="bad",
        video_uri=str(bad_inputs[kind]),
        clip_index=0,
        start_s=0.0,
        end_s=1.0,
        sampled_fps=1.0,
        frame_indices=np.array([0], np.int64),
        times_s=np.array([0.0]),
    )
    with pytest.raises(VideoError) as caught:
        decode_clip(spec)
    assert "\n" not in str(caught.value)
    assert str(bad_inputs[kind]) in str(caught.value)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_frame_past_the_end_raises(synthetic_corpus: list[SyntheticVideo], backend: str) -> None:
    video = synthetic_corpus[2]
    spec = _clips(video)[0]
    spec = ClipSpec(**{**spec.__dict__, "frame_indices": np.array([0, video.n_frames + 10])})
    with pytest.raises(VideoError, match="requested but"):
        decode_clip(spec, backend=backend)


def _remux(src: str, dst: Path, fmt: str) -> str:
    """The same H.264 packets in another container (no re-encoding)."""
    with av.open(src) as source, av.open(str(dst), "w", format=fmt) as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is None:  # the flush packet
                continue
            packet.stream = stream
            target.mux(packet)
    return str(dst)


@pytest.mark.parametrize(
    ("fmt", "name"), [("mpegts", "a.ts"), ("mpegts", "ts_named.mp4"), ("matroska", "a.mkv")]
)
def test_other_containers_decode_the_right_frames(
    synthetic_corpus: list[SyntheticVideo], tmp_path: Path, fmt: str, name: str
) -> None:
    # decord 0.6 seeks MPEG-TS to the wrong frames; the decoder must route it to PyAV.
    video = synthetic_corpus[0]
    uri = _remux(video.uri, tmp_path / name, fmt)
    info = probe_video(uri)
    assert info.n_frames == video.n_frames  # mkv/ts record no count: estimated from duration
    for spec in plan_clips("vid", info, clip_seconds=3.0, fps=2.0, overlap_s=1.0)[1:]:
        masks = color_masks(decode_clip(spec), ["blue circle"])["blue circle"]
        for t, index in enumerate(spec.frame_indices):
            assert _iou(masks[t], video.mask("blue circle", int(index))) >= 0.95, (name, index)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_index_just_past_an_estimated_end_repeats_the_last_frame(
    synthetic_corpus: list[SyntheticVideo], backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Containers without a frame count get an estimate that can overshoot by a frame.
    video = synthetic_corpus[2]
    spec = _clips(video)[0]
    last = video.n_frames - 1
    spec = ClipSpec(**{**spec.__dict__, "frame_indices": np.array([last - 1, last, last + 1])})
    with caplog.at_level(logging.WARNING, logger="vidlake.operators.decode"):
        frames = decode_clip(spec, backend=backend)
    assert frames.shape[0] == 3
    np.testing.assert_array_equal(frames[2], frames[1])
    assert not np.array_equal(frames[0], frames[1])
    assert "repeating its last frame" in caplog.text
