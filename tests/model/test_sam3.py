"""Sam3Segmenter on the tiny random checkpoint: the real transformers code path, on CPU."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vidlake.errors import UsageError
from vidlake.model.sam3 import Sam3Segmenter, batched
from vidlake.model.segmenter import ConceptSegmenter


def _as_tuples(masklets):
    return [
        (
            m.concept,
            m.object_id,
            m.frame_idx.tolist(),
            m.boxes.tobytes(),
            m.scores.tobytes(),
            [(tuple(r["size"]), r["counts"]) for r in m.masks],
            m.presence,
        )
        for m in masklets
    ]


def test_tiny_segmenter_is_a_sam3_concept_segmenter(tiny_segmenter, tiny_sam3_dir):
    assert isinstance(tiny_segmenter, Sam3Segmenter)
    assert isinstance(tiny_segmenter, ConceptSegmenter)
    assert tiny_segmenter.model_id == str(tiny_sam3_dir)


def test_segment_gives_well_formed_masklets(tiny_segmenter, clip_frames, concepts):
    t, h, w = clip_frames.shape[:3]
    masklets = tiny_segmenter.segment(clip_frames, concepts)

    assert masklets, "the tiny model must emit objects"
    assert len({m.object_id for m in masklets}) == len(masklets)
    for m in masklets:
        k = len(m.frame_idx)
        assert m.concept in concepts
        assert k >= 1
        assert m.frame_idx.dtype == np.int32
        assert np.all((m.frame_idx >= 0) & (m.frame_idx < t))
        assert np.all(np.diff(m.frame_idx) > 0), "frame_idx sorted, no frame twice"
        assert m.boxes.shape == (k, 4) and m.boxes.dtype == np.float32
        x1, y1, x2, y2 = m.boxes.T
        assert np.all((x1 >= 0) & (x1 <= x2) & (x2 <= w))
        assert np.all((y1 >= 0) & (y1 <= y2) & (y2 <= h))
        assert m.scores.shape == (k,) and m.scores.dtype == np.float32
        assert np.all((m.scores >= 0) & (m.scores <= 1))
        assert 0.0 <= m.presence <= 1.0
        assert len(m.masks) == k
        for rle in m.masks:
            assert rle["size"] == [h, w]
            assert mask_utils.decode(rle).shape == (h, w)


def test_objects_are_tracked_beyond_their_first_frame(tiny_segmenter, clip_frames, concepts):
    masklets = tiny_segmenter.segment(clip_frames, concepts)
    assert max(len(m.frame_idx) for m in masklets) == len(clip_frames)


def test_presence_is_one_value_per_concept(tiny_segmenter, clip_frames, concepts):
    masklets = tiny_segmenter.segment(clip_frames, concepts)
    by_concept: dict[str, set[float]] = {}
    for m in masklets:
        by_concept.setdefault(m.concept, set()).add(m.presence)
    assert all(len(values) == 1 for values in by_concept.values())
    # The detector's presence head is read, not defaulted to 1.0.
    assert all(v < 1.0 for values in by_concept.values() for v in values)


def test_same_input_gives_same_masklets_with_no_state_between_calls(
    tiny_segmenter, clip_frames, concepts
):
    first = tiny_segmenter.segment(clip_frames, concepts)
    other = tiny_segmenter.segment(clip_frames[::-1].copy(), ["dog"])
    again = tiny_segmenter.segment(clip_frames, concepts)
    assert other and all(m.concept == "dog" for m in other)
    assert _as_tuples(first) == _as_tuples(again)


def test_masks_encoded_on_the_device_are_the_same_masklets(tiny_segmenter, clip_frames, concepts):
    # The CUDA path (run boundaries found on the device, see encode_rles_tensor) runs on CPU
    # tensors too: the masklets must be those of the host path, byte for byte.
    host = tiny_segmenter.segment(clip_frames, concepts)
    tiny_segmenter.device_rle = True
    try:
        drained = tiny_segmenter.drain_s
        on_device = tiny_segmenter.segment(clip_frames, concepts)
    finally:
        tiny_segmenter.device_rle = False
    assert host and _as_tuples(on_device) == _as_tuples(host)
    assert tiny_segmenter.drain_s > drained


@pytest.mark.parametrize("hotstart", [0, 4], ids=["streamed", "hotstart-buffered"])
def test_outputs_the_tracker_no_longer_reads_are_dropped_with_the_same_masklets(
    tiny_segmenter, concepts, monkeypatch, hotstart
):
    # With a hotstart delay (real checkpoints: 15 frames) outputs come out that many frames
    # late, so the dropped frame is further behind the tracker; results must not change.
    model = tiny_segmenter.model
    for name in ("hotstart_delay", "hotstart_unmatch_thresh", "hotstart_dup_thresh"):
        monkeypatch.setattr(model, name, hotstart)
    window = tiny_segmenter.memory_window
    t, h, w = window + 8, 96, 128
    frames = np.full((t, h, w, 3), 40, dtype=np.uint8)
    for i in range(t):
        frames[i, 10 + i : 40 + i, 10 + 2 * i : 50 + 2 * i] = (220, 30, 30)
        frames[i, 50:90, 70 - i : 120 - i] = (30, 200, 40)
    held: list[int] = []  # per frame: the most frames' outputs any object's session keeps
    drain = tiny_segmenter._drain_frame

    def drain_and_count(session, output, tracks):
        held.append(max((len(o["non_cond_frame_outputs"])
                         for o in session.output_dict_per_obj.values()), default=0))  # fmt: skip
        return drain(session, output, tracks)

    monkeypatch.setattr(tiny_segmenter, "_drain_frame", drain_and_count)
    tiny_segmenter.forget_old_frames = False
    try:
        kept_all = tiny_segmenter.segment(frames, concepts)
    finally:
        tiny_segmenter.forget_old_frames = True
    held_all, held[:] = list(held), []
    bounded = tiny_segmenter.segment(frames, concepts)

    assert kept_all and _as_tuples(bounded) == _as_tuples(kept_all)
    assert max(held_all) >= t - hotstart - 1  # without: every frame tracked so far
    # with: the tracker's window, plus the frames outputs come out late by
    assert max(held) <= window + hotstart + 1 < max(held_all)


def test_all_concepts_share_one_backbone_pass_per_frame(
    tiny_segmenter, clip_frames, monkeypatch, concepts
):
    detector = tiny_segmenter.model.detector_model
    calls = []
    original = detector.get_vision_features

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(detector, "get_vision_features", counting)
    masklets = tiny_segmenter.segment(clip_frames, concepts)
    assert len(calls) == len(clip_frames)
    assert masklets


def test_duplicate_and_blank_concepts_are_dropped(tiny_segmenter, clip_frames):
    masklets = tiny_segmenter.segment(clip_frames, ["red square", " ", "red square"])
    assert masklets and {m.concept for m in masklets} == {"red square"}


def test_no_concepts_or_no_frames_gives_no_masklets(tiny_segmenter, clip_frames, concepts):
    assert tiny_segmenter.segment(clip_frames, []) == []
    assert tiny_segmenter.segment(clip_frames[:0], concepts) == []


@pytest.mark.parametrize(
    "frames",
    [np.zeros((2, 32, 32), np.uint8), np.zeros((2, 32, 32, 3), np.float32)],
    ids=["no-channels", "float"],
)
def test_frames_that_are_not_uint8_rgb_are_a_usage_error(tiny_segmenter, frames, concepts):
    with pytest.raises(UsageError, match="uint8 RGB"):
        tiny_segmenter.segment(frames, concepts)


@pytest.mark.parametrize(
    "asked, device, expected",
    [(None, "cuda", True), (None, "cuda:1", True), (None, "cpu", False),
     (False, "cuda", False), (True, "cpu", True)],
)  # fmt: skip
def test_passes_are_batched_by_default_with_cuda_only(asked, device, expected):
    assert batched(asked, device) is expected


def test_batched_passes_are_installed_as_asked(tiny_sam3_dir):
    def installed(segmenter):  # the instance-level overrides of vidlake.model.batched_*
        return ("forward" in vars(segmenter.model.tracker_model),
                "run_detection" in vars(segmenter.model))  # fmt: skip

    default = Sam3Segmenter(str(tiny_sam3_dir), device="cpu")
    assert (default.batch_objects, default.batch_concepts) == (False, False)
    assert installed(default) == (False, False)  # CPU: bit for bit the reference
    both = Sam3Segmenter(str(tiny_sam3_dir), device="cpu", batch_objects=True, batch_concepts=True)
    assert installed(both) == (True, True)
    objects = Sam3Segmenter(str(tiny_sam3_dir), device="cpu", batch_objects=True)
    assert installed(objects) == (True, False)


def test_scores_are_the_trackers_per_frame_scores(tiny_segmenter, clip_frames, concepts):
    """masklet.scores[i] is SAM 3's tracker object score on frame frame_idx[i] (the detection
    score on the frame it was detected); masklet.score is the detection's."""
    seen: dict[int, dict[int, float]] = {}
    detection: dict[int, float] = {}
    model = tiny_segmenter.model
    forward = model.forward

    def recording(*args, **kwargs):
        out = forward(*args, **kwargs)
        for object_id, value in (out.obj_id_to_tracker_score or {}).items():
            seen.setdefault(int(object_id), {})[int(out.frame_idx)] = value
        detection.update(out.obj_id_to_score or {})
        return out

    model.forward = recording
    try:
        masklets = tiny_segmenter.segment(clip_frames, concepts)
    finally:
        del model.forward
    per_frame_varies = False
    for m in masklets:
        expected = [seen[m.object_id][int(f)] for f in m.frame_idx]
        np.testing.assert_allclose(m.scores, np.asarray(expected, np.float32), rtol=1e-6)
        assert m.score == pytest.approx(detection[m.object_id])
        per_frame_varies |= len(set(m.scores.tolist())) > 1
    assert per_frame_varies, "per-frame scores must not repeat the first detection's score"


def test_presence_per_frame_for_every_concept(tiny_segmenter, clip_frames, concepts):
    masklets, presence = tiny_segmenter.segment_with_presence(clip_frames, concepts)
    assert set(presence) == set(concepts)  # "person" too, with or without objects
    for concept, values in presence.items():
        assert values.shape == (len(clip_frames),) and values.dtype == np.float32
        assert np.all((values >= 0) & (values <= 1))
        for m in masklets:
            if m.concept == concept:
                assert m.presence == pytest.approx(float(values.max()))
