"""Exemplar prompts and the object cap in the segmenters: the tiny SAM 3 (real transformers
code path) and the ground-truth colour segmenter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from vidlake.model.prompts import normalised_boxes
from vidlake.model.segmenter import cap_masklets
from vidlake.records import Masklet, Prompt
from vidlake.synthetic.corpus import PALETTE
from vidlake.synthetic.segmenter import ColorSegmenter, exemplar_concepts

BOXES = ((10.0, 10.0, 50.0, 40.0), (60.0, 50.0, 120.0, 90.0))


@pytest.fixture(scope="module")
def exemplar(clip_frames) -> Prompt:
    """A positive box on the red square and a negative one on the green box, on frame 0."""
    return Prompt(
        name="my red thing",
        boxes=BOXES,
        positive=(True, False),
        video_uri="reference.mp4",
        frame_index=0,
        reference_frame=clip_frames[0],
    )


def test_exemplar_boxes_reach_the_detectors_geometry_encoder(
    tiny_segmenter, clip_frames, exemplar, monkeypatch
):
    geometry = tiny_segmenter.model.detector_model.geometry_encoder
    seen = []
    original = geometry.forward

    def recording(**kwargs):
        seen.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(geometry, "forward", recording)
    tiny_segmenter.segment(clip_frames, ["red square"], prompts=[exemplar])

    assert len(seen) == 1, "boxes are encoded once per clip, on the reference frame"
    boxes = seen[0]["box_embeddings"]
    # (cx, cy, w, h) normalised by the 128x96 reference frame, in the order given.
    expected = [[30 / 128, 25 / 96, 40 / 128, 30 / 96], [90 / 128, 70 / 96, 60 / 128, 40 / 96]]
    np.testing.assert_allclose(boxes[0].numpy(), expected, rtol=1e-6)
    assert seen[0]["box_labels"].tolist() == [[1, 0]]


def test_every_frame_is_detected_with_the_exemplar_tokens(
    tiny_segmenter, clip_frames, exemplar, monkeypatch
):
    detector = tiny_segmenter.model.detector_model
    prompt_lengths = []

    def record(module, args, kwargs, output):
        prompt_lengths.append(kwargs["text_embeds"].pooler_output.shape[1])

    hook = detector.register_forward_hook(record, with_kwargs=True)
    try:
        tiny_segmenter.segment(clip_frames, ["red square"], prompts=[exemplar])
    finally:
        hook.remove()
    # Per frame: the text concept (32 text tokens), then the exemplar (32 + 2 boxes + CLS).
    assert prompt_lengths == [32, 32 + len(BOXES) + 1] * len(clip_frames)


def test_on_the_reference_frame_exemplar_tokens_equal_the_detectors_input_boxes(
    tiny_segmenter, clip_frames, exemplar
):
    segmenter = tiny_segmenter
    detector = segmenter.model.detector_model
    with torch.inference_mode():
        pixels = segmenter.processor.video_processor(
            videos=[clip_frames[0][None]], return_tensors="pt"
        ).pixel_values_videos[0]
        vision = detector.get_vision_features(pixel_values=pixels)
        text_inputs = segmenter.processor.tokenizer(
            "visual", return_tensors="pt", padding="max_length", max_length=32
        )
        text = detector.get_text_features(**text_inputs, return_dict=True)
        with_boxes = detector(
            vision_embeds=vision,
            text_embeds=text,
            attention_mask=text_inputs.attention_mask,
            input_boxes=torch.from_numpy(normalised_boxes(exemplar))[None],
            input_boxes_labels=torch.tensor([[1, 0]]),
        )
        tokens, mask = segmenter.exemplar_tokens(exemplar)
        combined = BaseModelOutputWithPooling(
            last_hidden_state=text.last_hidden_state,
            pooler_output=torch.cat([text.pooler_output, tokens], dim=1),
        )
        with_tokens = detector(
            vision_embeds=vision,
            text_embeds=combined,
            attention_mask=torch.cat([text_inputs.attention_mask.bool(), mask], dim=1),
        )
    for name in ("pred_logits", "pred_boxes", "pred_masks", "presence_logits"):
        assert torch.equal(getattr(with_boxes, name), getattr(with_tokens, name)), name


def test_exemplar_masklets_carry_the_prompts_name(tiny_segmenter, clip_frames, exemplar):
    named_text = Prompt(name="crimson", text="red square")
    masklets = tiny_segmenter.segment(
        clip_frames, ["person"], prompts=[exemplar, named_text], max_objects=None
    )
    assert {m.concept for m in masklets} <= {"person", "my red thing", "crimson"}
    assert "my red thing" in {m.concept for m in masklets}
    assert len({m.object_id for m in masklets}) == len(masklets)


def test_the_same_exemplar_gives_the_same_masklets(tiny_segmenter, clip_frames, exemplar):
    first = tiny_segmenter.segment(clip_frames, [], prompts=[exemplar])
    again = tiny_segmenter.segment(clip_frames, [], prompts=[exemplar])
    assert first and [(m.object_id, m.boxes.tobytes(), m.masks) for m in first] == [
        (m.object_id, m.boxes.tobytes(), m.masks) for m in again
    ]


def test_max_objects_caps_the_clip_and_keeps_the_models_limit(
    tiny_segmenter, clip_frames, concepts
):
    limit = tiny_segmenter.model.max_num_objects
    uncapped = tiny_segmenter.segment(clip_frames, concepts)
    capped = tiny_segmenter.segment(clip_frames, concepts, max_objects=2)
    assert len(uncapped) > 2 and len(capped) == 2
    assert tiny_segmenter.model.max_num_objects == limit
    # The tracker admitted the two best first-frame detections: the same objects as uncapped.
    best = sorted(uncapped, key=lambda m: -m.score)[:2]
    assert {m.object_id for m in capped} <= {m.object_id for m in uncapped}
    assert min(m.score for m in capped) >= min(m.score for m in best) - 1e-6


def test_cap_masklets_keeps_the_highest_scores_in_order():
    def masklet(object_id: int, score: float) -> Masklet:
        return Masklet(
            "c", object_id, np.zeros(1, np.int32), np.zeros((1, 4)), np.array([score]), [{}]
        )

    masklets = [masklet(0, 0.2), masklet(1, 0.9), masklet(2, 0.5), masklet(3, 0.9)]
    kept, dropped = cap_masklets(masklets, 2)
    assert [m.object_id for m in kept] == [1, 3] and dropped == 2
    assert cap_masklets(masklets, None) == (masklets, 0)


# -- the colour segmenter: exemplar boxes stand for the colour of the shape they hold -----------


def shapes_frame() -> np.ndarray:
    frame = np.full((60, 80, 3), 48, np.uint8)
    frame[5:25, 5:25] = PALETTE["red square"]
    frame[30:55, 40:70] = PALETTE["blue circle"]
    return frame


def test_an_exemplar_box_on_a_shape_stands_for_its_colour():
    frame = shapes_frame()
    on_red = Prompt("a", boxes=((0, 0, 30, 30),), positive=(True,), video_uri="v",
                    frame_index=0, reference_frame=frame)  # fmt: skip
    assert exemplar_concepts(on_red) == ["red square"]
    both_minus_blue = Prompt(
        "b",
        boxes=((0, 0, 30, 30), (35, 25, 75, 58), (38, 28, 72, 56)),
        positive=(True, True, False),
        video_uri="v",
        frame_index=0,
        reference_frame=frame,
    )
    assert exemplar_concepts(both_minus_blue) == ["red square"]
    assert exemplar_concepts(Prompt("c", text="blue circle")) == ["blue circle"]


def test_colour_segmenter_finds_the_exemplars_shape_in_other_frames():
    reference = shapes_frame()
    clip = np.full((3, 60, 80, 3), 48, np.uint8)
    clip[:, 40:50, 10:20] = PALETTE["blue circle"]  # elsewhere, smaller, in another clip
    prompt = Prompt("that shape", boxes=((38, 28, 72, 57),), positive=(True,), video_uri="v",
                    frame_index=0, reference_frame=reference)  # fmt: skip
    (masklet,) = ColorSegmenter().segment(clip, [], prompts=[prompt])
    assert masklet.concept == "that shape"
    assert masklet.frame_idx.tolist() == [0, 1, 2]
    assert masklet.boxes[0].tolist() == [10, 40, 20, 50]


def test_colour_segmenter_cap_keeps_the_largest_objects():
    frame = shapes_frame()[None]
    masklets = ColorSegmenter().segment(frame, ["red square", "blue circle"], max_objects=1)
    assert [m.concept for m in masklets] == ["blue circle"]
