"""Objects batched through SAM 3's tracker (vidlake.model.batched_tracker) on the tiny model.

Batched and per-object passes run the same operations on the same values, but not bit for bit:
stacking objects changes every GEMM's row count, and BLAS picks its kernel (and summation
order) by shape (see the module docstring). So the tests ask for the same tracks and the same
stored state, and for mask logits equal to a few float32 ulps: the tiny model's logits are
~3e-3 and differ by ~2e-9; `LOGIT_ATOL` leaves 50x room.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from vidlake.model.batched_tracker import TrackerPasses, batched_tracking

LOGIT_ATOL = 1e-7
LOGIT_RTOL = 1e-5


@pytest.fixture(scope="module")
def sensitive_segmenter(tiny_sam3_dir):
    """The tiny checkpoint (own copy) with the tracker's temporal encodings made to matter.

    The tiny model keeps the zero initialisation of the memories' temporal encodings and of
    the no-object pointer, so a batched pass that mixed up objects' temporal offsets would go
    unnoticed. Random values (fixed seed; the encodings scaled up, the tiny model's memory
    attention barely moves its ~3e-3 logits) make such a mix-up change the logits by ~1e-5,
    100x `LOGIT_ATOL`, where batching itself changes them by ~2e-9.
    """
    from vidlake.model import load_segmenter

    segmenter = load_segmenter(str(tiny_sam3_dir), device="cpu")
    tracker = segmenter.model.tracker_model
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        encodings = tracker.memory_temporal_positional_encoding
        encodings.copy_(100 * torch.randn(encodings.shape, generator=generator))
        tracker.no_object_pointer.copy_(
            torch.randn(tracker.no_object_pointer.shape, generator=generator)
        )
    return segmenter


@pytest.fixture(scope="module")
def moving_shapes() -> np.ndarray:
    """(24, 96, 128, 3) uint8: a red square, a green box and a blue bar, all moving."""
    t, h, w = 24, 96, 128
    frames = np.full((t, h, w, 3), 40, dtype=np.uint8)
    for i in range(t):
        frames[i, 10 + i : 40 + i, 10 + 2 * i : 50 + 2 * i] = (220, 30, 30)
        frames[i, 50:90, 100 - 2 * i : 130 - 2 * i] = (30, 200, 40)
        frames[i, 60 - i : 80 - i, 40:60] = (30, 30, 220)
    return frames


def _segment(segmenter, frames, concepts, batched: bool):
    """(masklets, tracker logits per frame, per-object passes per frame, stats or None)."""
    model = segmenter.model
    tracker = model.tracker_model
    logits: dict[int, torch.Tensor] = {}
    passes: Counter = Counter()
    propagate, single = model.run_tracker_propagation, tracker._run_single_frame_inference

    def recording(inference_session, frame_idx, reverse):
        masks, scores = propagate(inference_session, frame_idx, reverse)
        logits[frame_idx] = masks.clone()
        return masks, scores

    def counting(*args, **kwargs):
        passes[kwargs["frame_idx"]] += 1
        return single(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model, "run_tracker_propagation", recording)
        patch.setattr(tracker, "_run_single_frame_inference", counting)
        if not batched:
            return segmenter.segment(frames, concepts), logits, passes, None
        with batched_tracking(model) as stats:
            return segmenter.segment(frames, concepts), logits, passes, stats


@pytest.mark.parametrize("hotstart", [0, None], ids=["streamed", "hotstart"])
def test_batched_tracking_gives_the_same_masklets(
    tiny_segmenter, moving_shapes, concepts, monkeypatch, hotstart
):
    # With Meta's hot-start heuristics (15 frames, the tiny model's own settings) tracks are
    # removed and new ones added mid-clip, so groups change from frame to frame.
    if hotstart is not None:
        for name in ("hotstart_delay", "hotstart_unmatch_thresh", "hotstart_dup_thresh"):
            monkeypatch.setattr(tiny_segmenter.model, name, hotstart)
    plain, plain_logits, plain_passes, _ = _segment(
        tiny_segmenter, moving_shapes, concepts, batched=False
    )
    batched, batched_logits, single_passes, stats = _segment(
        tiny_segmenter, moving_shapes, concepts, batched=True
    )

    assert plain and len(plain) > 2
    assert [(m.concept, m.object_id) for m in batched] == [(m.concept, m.object_id) for m in plain]
    for b, p in zip(batched, plain, strict=True):
        assert b.frame_idx.tolist() == p.frame_idx.tolist()
        assert b.presence == p.presence
        np.testing.assert_allclose(b.scores, p.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b.boxes, p.boxes, atol=1.0)  # pixels
        for rb, rp in zip(b.masks, p.masks, strict=True):
            flipped = int(np.sum(mask_utils.decode(rb) != mask_utils.decode(rp)))
            assert flipped <= 0.001 * rp["size"][0] * rp["size"][1]

    # The tracker's mask logits, object by object and frame by frame, equal to a few float32
    # ulps; except where a memory rounded to the neighbouring bfloat16 value (the tracker
    # stores its memories in bf16, so a last-bit difference before the cast can move a memory
    # by one bf16 ulp, 2**-8 relative): that object's later logits may move by as much.
    assert batched_logits.keys() == plain_logits.keys()
    diffs = [
        (batched_logits[f][o] - plain_logits[f][o]).abs().max().item()
        for f in plain_logits
        for o in range(plain_logits[f].shape[0])
    ]
    scale = max(plain_logits[f].abs().max().item() for f in plain_logits if plain_logits[f].numel())
    assert max(diffs) <= 2**-8 * scale, (max(diffs), scale)
    # Measured: the two objects of one duplicate pair round one frame's memory apart, and
    # differ by ~3e-5 on the 8 frames that memory stays in the window (16 of 192); the rest
    # differ by ~1e-8.
    assert sum(d <= LOGIT_ATOL for d in diffs) >= 0.75 * len(diffs), sorted(diffs)[-10:]

    # Passes (memory attention + mask decoder runs): per object and call upstream; batched,
    # objects with new inputs go one by one and alike tracked objects share one pass.
    assert stats.single_passes == sum(single_passes.values())
    assert 0 < stats.batched_passes
    assert stats.passes < sum(plain_passes.values())
    if hotstart == 0:  # every object is added on frame 0, then all share one pass per frame
        num_objects = len(plain)
        assert all(plain_passes[f] == num_objects for f in range(len(moving_shapes)))
        assert single_passes == {0: num_objects}
        assert stats.group_sizes == {num_objects: len(moving_shapes) - 1}
        assert all(stats.passes_per_frame[f] == 1 for f in range(1, len(moving_shapes)))
    else:
        assert len(stats.group_sizes) > 1


# -- the tracker alone: objects added mid-clip, a correction and a removal ----------------------

# frame -> obj_ids given a mask input on it (added, or corrected if already tracked)
INPUTS = {0: [10, 11, 12], 3: [13, 14], 4: [15], 8: [11]}
REMOVED = {10: 12}  # frame -> obj_id removed before it
NUM_FRAMES = 14


def _input_mask(obj_id: int, frame_idx: int, size: int) -> torch.Tensor:
    """A rectangle mask input, (1, 1, size, size) bool, different per object and frame."""
    mask = torch.zeros(1, 1, size, size, dtype=torch.bool)
    top, left = (3 * obj_id + frame_idx) % (size // 2), (5 * obj_id) % (size // 2)
    mask[..., top : top + size // 3, left : left + size // 4] = True
    return mask


def _track(segmenter, frames: np.ndarray, features: dict, batched: bool):
    """Drives the tracker frame by frame as Sam3VideoModel does (vision features cached by the
    caller, new objects as mask inputs), with memory encoded in the tracker's forward."""
    model, processor = segmenter.model, segmenter.processor
    tracker = model.tracker_model
    session = processor.init_video_session(
        video=list(frames), inference_device="cpu", processing_device="cpu",
        video_storage_device="cpu", dtype=torch.float32,
    )  # fmt: skip
    stats = TrackerPasses()
    outputs = []
    context = batched_tracking(model) if batched else None
    if context is not None:
        stats = context.__enter__()
    try:
        with torch.inference_mode():
            for frame_idx in range(NUM_FRAMES):
                session.cache.cache_vision_features(frame_idx, features[frame_idx])
                if frame_idx in REMOVED:
                    session.remove_object(REMOVED[frame_idx], strict=True)
                new = INPUTS.get(frame_idx, [])
                for obj_id in new:
                    mask = _input_mask(obj_id, frame_idx, model.low_res_mask_size)
                    session.add_mask_inputs(session.obj_id_to_idx(obj_id), frame_idx, mask)
                session.obj_with_new_inputs = list(new)
                out = tracker(inference_session=session, frame_idx=frame_idx, run_mem_encoder=True)
                outputs.append(out)
    finally:
        if context is not None:
            context.__exit__(None, None, None)
    return session, outputs, stats


def _stored(session) -> dict:
    """What the session stores per object: frames, keys, shapes and dtypes (values aside)."""
    return {
        obj_idx: {
            kind: {
                frame: {
                    k: (tuple(v.shape), v.dtype) if torch.is_tensor(v) else v
                    for k, v in out.items()
                }  # fmt: skip
                for frame, out in per_kind.items()
            }
            for kind, per_kind in per_obj.items()
        }
        for obj_idx, per_obj in session.output_dict_per_obj.items()
    }


def test_tracker_stores_what_the_per_object_path_stores(sensitive_segmenter, moving_shapes):
    segmenter = sensitive_segmenter
    model = segmenter.model
    features = {}
    with torch.inference_mode():
        for frame_idx in range(NUM_FRAMES):
            pixels = segmenter.processor.video_processor(
                videos=[moving_shapes[frame_idx][None]], return_tensors="pt"
            ).pixel_values_videos[0]
            vision = model.detector_model.get_vision_features(pixel_values=pixels)
            feats, pos = model.get_vision_features_for_tracker(vision_embeds=vision)
            features[frame_idx] = {"vision_feats": feats, "vision_pos_embeds": pos}

    plain, plain_out, _ = _track(segmenter, moving_shapes, features, batched=False)
    batched, batched_out, stats = _track(segmenter, moving_shapes, features, batched=True)

    for b, p in zip(batched_out, plain_out, strict=True):
        assert b.object_ids == p.object_ids and b.frame_idx == p.frame_idx
        torch.testing.assert_close(b.pred_masks, p.pred_masks, rtol=LOGIT_RTOL, atol=LOGIT_ATOL)
        torch.testing.assert_close(b.object_score_logits, p.object_score_logits)
    assert _stored(batched) == _stored(plain)
    assert batched.frames_tracked_per_obj == plain.frames_tracked_per_obj
    assert batched.obj_with_new_inputs == plain.obj_with_new_inputs == []
    for obj_idx, per_obj in plain.output_dict_per_obj.items():
        for kind, per_kind in per_obj.items():
            for frame, out in per_kind.items():
                for key, value in out.items():
                    got = batched.output_dict_per_obj[obj_idx][kind][frame][key]
                    if value.dtype == torch.bfloat16:
                        # memories are stored in bf16: a last-bit difference before the cast
                        # may round to the next bf16 value, one bf16 ulp at the tensor's scale
                        ulp = value.float().abs().max().item() * 2**-7
                        torch.testing.assert_close(got, value, rtol=0.0, atol=ulp)
                    else:
                        torch.testing.assert_close(got, value, rtol=LOGIT_RTOL, atol=LOGIT_ATOL)

    # Objects tracked since frame 0, the one corrected on frame 8 (an extra conditioning frame
    # and one fewer tracked frame: same sequence lengths, other temporal offsets) and the two
    # added on frame 3 are batched; the one added on frame 4 has no twin and goes alone.
    assert stats.batched_passes > 0 and stats.single_passes > sum(map(len, INPUTS.values()))
    assert max(stats.group_sizes) == 3
    assert 2 in stats.group_sizes


def test_batching_is_enabled_on_one_instance_and_undone(tiny_segmenter):
    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
        Sam3TrackerVideoModel,
    )

    tracker = tiny_segmenter.model.tracker_model
    upstream = Sam3TrackerVideoModel.forward
    with batched_tracking(tiny_segmenter.model):
        assert "forward" in tracker.__dict__
        assert Sam3TrackerVideoModel.forward is upstream
    assert "forward" not in tracker.__dict__
    assert tracker.forward.__func__ is upstream
