"""Prompts batched through SAM 3's detector (vidlake.model.batched_detector) on the tiny model.

A batched call runs the same operations on the same values as each prompt's own call, but not
bit for bit: every GEMM gets B times the rows and BLAS picks kernels (summation orders) by
shape. Measured on CPU with the uncalibrated tiny model: pred_logits differ by <= 4e-8 on values
~0.1, pred_masks by <= 5e-8 on ~0.04, presence_logits by <= 3e-9 on ~0.01, semantic_seg by
<= 1e-6 on ~0.6 (float32 ulps); pred_boxes are equal. The calibrated tiny model scales the
score and mask heads (vidlake.model.tiny.CALIBRATION), and the differences with them, so the
absolute tolerance is `ATOL` times the output's largest magnitude. Detections and masklets come
out equal (the differences never move a threshold or a mask pixel's sign here).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoModel

from vidlake.model.batched_detector import (
    DetectorCalls,
    batched_detection,
    disable_batched_detection,
    enable_batched_detection,
)
from vidlake.records import Prompt

ATOL = 1e-6
RTOL = 1e-5
OUTPUTS = ("pred_logits", "presence_logits", "pred_masks", "pred_boxes", "semantic_seg")


def _exemplar(frames: np.ndarray, name: str, boxes: tuple) -> Prompt:
    return Prompt(
        name=name,
        boxes=boxes,
        positive=(True,) * len(boxes),
        video_uri="reference.mp4",
        frame_index=0,
        reference_frame=frames[0],
    )


@pytest.fixture(scope="module")
def session_and_vision(tiny_segmenter, clip_frames, concepts):
    """A session with the 3 text concepts, two 2-box exemplar prompts (one group of equal
    shapes) and a 1-box one (alone), and frame 0's vision embeddings."""
    segmenter = tiny_segmenter
    session = segmenter.processor.init_video_session(
        video=list(clip_frames), inference_device="cpu", processing_device="cpu",
        video_storage_device="cpu", dtype=torch.float32,
    )  # fmt: skip
    session = segmenter.processor.add_text_prompt(session, concepts)
    two = ((10, 10, 50, 40), (70, 50, 120, 90))
    with torch.inference_mode():
        for prompt in (
            _exemplar(clip_frames, "both", two),
            _exemplar(clip_frames, "both again", two[::-1]),
            _exemplar(clip_frames, "red only", two[:1]),
        ):
            segmenter._add_prompt(session, prompt)
        pixels = session.get_frame(0).unsqueeze(0)
        vision = segmenter.model.detector_model.get_vision_features(pixel_values=pixels)
    return session, vision


class _Outputs:
    """Forward hook recording each detector call's prompt (by its attention mask, as
    vidlake's presence hook does) and outputs."""

    def __init__(self, session) -> None:
        self.prompt_of_mask = {id(m): pid for pid, m in session.prompt_attention_masks.items()}
        self.calls: list[tuple[int | None, object]] = []

    def __call__(self, module, args, kwargs, output) -> None:
        self.calls.append((self.prompt_of_mask.get(id(kwargs["attention_mask"])), output))


def _run_detection(model, session, vision) -> tuple[dict, list]:
    outputs = _Outputs(session)
    hook = model.detector_model.register_forward_hook(outputs, with_kwargs=True)
    try:
        with torch.inference_mode():
            detections = model.run_detection(inference_session=session, vision_embeds=vision)
    finally:
        hook.remove()
    return detections, outputs.calls


def test_detector_outputs_per_prompt_match_the_per_prompt_calls(tiny_segmenter, session_and_vision):
    model = tiny_segmenter.model
    session, vision = session_and_vision
    reference, reference_calls = _run_detection(model, session, vision)
    with batched_detection(model) as stats:
        batched, batched_calls = _run_detection(model, session, vision)

    # One call for the 3 texts, one for the 2 two-box exemplars, the 1-box one alone.
    assert (stats.batched_calls, stats.single_calls) == (2, 1)
    assert dict(stats.group_sizes) == {3: 1, 2: 1}
    # Hooks still see one call per prompt, attributable to it, in prompt order.
    prompt_ids = list(session.prompts)
    assert [pid for pid, _ in reference_calls] == prompt_ids
    assert [pid for pid, _ in batched_calls] == prompt_ids
    for (_, expected), (_, actual) in zip(reference_calls, batched_calls, strict=True):
        for name in OUTPUTS:
            want, got = getattr(expected, name), getattr(actual, name)
            assert got.shape == want.shape, name
            # float32 rounding: the calibrated mask heads (vidlake.model.tiny.CALIBRATION) sums
            # terms of ~1e2 into logits of ~1, so masks carry ~1e-5 of rounding (measured 5.5e-6)
            atol = (
                2e-5
                if name in ("pred_masks", "semantic_seg")
                else ATOL * max(1.0, want.abs().max().item())
            )
            torch.testing.assert_close(got, want, atol=atol, rtol=RTOL, msg=name)

    assert list(batched) == list(reference) == prompt_ids
    for pid in prompt_ids:
        assert len(batched[pid]["scores"]) == len(reference[pid]["scores"]) > 0
        for key in ("bbox", "mask", "scores"):
            want = reference[pid][key]
            atol = 2e-5 if key == "mask" else ATOL * max(1.0, float(want.abs().max()))
            torch.testing.assert_close(batched[pid][key], want, atol=atol, rtol=RTOL)


def test_segment_masklets_match(tiny_segmenter, clip_frames, concepts):
    assert "person" in concepts  # nothing in clip_frames is a person
    reference = tiny_segmenter.segment(clip_frames, concepts)
    with batched_detection(tiny_segmenter.model) as stats:
        batched = tiny_segmenter.segment(clip_frames, concepts)

    assert stats.frames == len(clip_frames)
    assert stats.calls_per_frame == 1.0
    assert len(batched) == len(reference) > 0
    for want, got in zip(reference, batched, strict=True):
        assert (got.concept, got.object_id) == (want.concept, want.object_id)
        np.testing.assert_array_equal(got.frame_idx, want.frame_idx)
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-6)
        assert got.masks == want.masks
        assert got.presence == pytest.approx(want.presence, abs=1e-6)
        assert got.presence < 1.0, "the presence hook saw the prompt's calls"


def test_enabling_is_per_instance(tiny_segmenter, tiny_sam3_dir, clip_frames, concepts):
    from vidlake.model import load_segmenter

    upstream = Sam3VideoModel.run_detection
    other = load_segmenter(str(tiny_sam3_dir), device="cpu")
    stats = enable_batched_detection(tiny_segmenter.model)
    try:
        assert Sam3VideoModel.run_detection is upstream
        assert "run_detection" not in other.model.__dict__
        other.segment(clip_frames[:2], concepts)
        assert stats == DetectorCalls(), "the other instance kept upstream's loop"
        tiny_segmenter.segment(clip_frames[:2], concepts)
        assert stats.frames == 2
    finally:
        disable_batched_detection(tiny_segmenter.model)
    assert "run_detection" not in tiny_segmenter.model.__dict__
    with pytest.raises(TypeError):
        enable_batched_detection(tiny_segmenter.model.detector_model)
