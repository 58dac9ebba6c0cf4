"""SAM 3's detector run once per frame for all alike prompts, instead of once per prompt.

Why: transformers' `Sam3VideoModel.run_detection` calls the detector (`Sam3Model.forward`)
once per prompt on every frame, with the frame's vision embeddings and that prompt's text
embeddings; on GPU each call is launch bound (~37 ms on an H200), so a clip with many concepts
pays that many calls per frame.

Why stacking prompts along the batch is equivalent (transformers 5.24): with `vision_embeds`
and `text_embeds` given, `Sam3Model.forward` reads the vision side from `fpn_hidden_states` and
`fpn_position_encoding` (batch 1 for a video frame) and the prompt side from
`text_embeds.pooler_output` (1, L, D) and `attention_mask` (1, L). Every tensor after that
carries the batch as its leading dimension (the decoder's stacked per-layer outputs as their
second) and no operation mixes batch elements: the DETR encoder (vision self-attention, cross-
attention to the prompt with a per-element padding mask, MLP), the DETR decoder (queries,
reference boxes and presence token are parameters expanded to the batch; box RPB from each
element's own boxes), the dot-product scoring (mean over each element's valid tokens) and the
mask decoder (per-element cross-attention, pixel decoder, `einsum("bqc,bchw->bqhw")`). So
prompts whose `pooler_output` and mask have equal shapes (text prompts: all, they are padded to
32 tokens; exemplar prompts: per number of boxes) can go through one call, with the vision
embeddings expanded to the batch, and each element's outputs are that prompt's own.

What stays per prompt is upstream's post-processing, done here on each prompt's slice exactly
as upstream does it on its own call: presence multiply, mask NMS (`nms_masks` over that
prompt's queries only, so prompts never suppress each other), thresholding. The returned dict
has the same keys, order and tensors as upstream's.

Exactness: not bit for bit. Every linear layer becomes one GEMM with B times the rows, and BLAS
picks kernels (and summation orders) by shape, as in `batched_tracker`. See
tests/model/test_batched_detector.py for the differences measured on the tiny model.

Forward hooks on the detector (vidlake's `_PresenceRecorder` reads `presence_logits` per
prompt, keyed by the identity of the `attention_mask` kwarg) still see one call per prompt:
the batched call goes through `forward` without hooks, then the detector's forward hooks are
called once per prompt, in prompt order, with the kwargs upstream would pass (the session's own
`attention_mask` tensor) and that prompt's slice of the outputs. Anything that cannot be
replayed that way (forward pre-hooks, global module hooks) sends the frame down upstream's
per-prompt path instead.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.modules import module as torch_module
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.sam3.modeling_sam3 import (
    Sam3ImageSegmentationOutput,
    Sam3Model,
    Sam3VisionEncoderOutput,
)
from transformers.models.sam3_video import modeling_sam3_video

from vidlake.model.overrides import overridden, override, restore


@dataclass
class DetectorCalls:
    """What the batched detection ran, to count detector calls per frame."""

    frames: int = 0  # run_detection calls (one per frame)
    batched_calls: int = 0
    batched_prompts: int = 0
    single_calls: int = 0
    group_sizes: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def calls(self) -> int:
        return self.batched_calls + self.single_calls

    @property
    def calls_per_frame(self) -> float:
        return self.calls / self.frames if self.frames else 0.0


def enable_batched_detection(
    model: Any, min_group: int = 2, stats: DetectorCalls | None = None
) -> DetectorCalls:
    """Routes this Sam3VideoModel's `run_detection` through `batched_run_detection`.
    Instance-level: the class and other instances keep upstream's per-prompt loop. Returns the
    stats object the batched path counts into.

    min_group: smaller groups of alike prompts take upstream's per-prompt call.
    """
    _check(model)
    stats = stats if stats is not None else DetectorCalls()

    def run_detection(self, inference_session, vision_embeds):
        return batched_run_detection(
            self, inference_session, vision_embeds, min_group=min_group, stats=stats
        )

    override(model, "run_detection", run_detection)
    return stats


def disable_batched_detection(model: Any) -> None:
    """Back to upstream's per-prompt `run_detection` for this instance."""
    _check(model)
    restore(model, "run_detection")


@contextlib.contextmanager
def batched_detection(model: Any, min_group: int = 2) -> Iterator[DetectorCalls]:
    """`with batched_detection(segmenter.model) as stats:` batched detector inside the block."""
    _check(model)
    with overridden(
        model, "run_detection", lambda: enable_batched_detection(model, min_group=min_group)
    ) as stats:
        yield stats


def _check(model: Any) -> None:
    if not isinstance(model, modeling_sam3_video.Sam3VideoModel):
        raise TypeError(f"expected a Sam3VideoModel, got {type(model)}")


def batched_run_detection(
    model: Any,
    inference_session: Any,
    vision_embeds: Sam3VisionEncoderOutput,
    min_group: int = 2,
    stats: DetectorCalls | None = None,
) -> dict[int, dict[str, torch.Tensor]]:
    """`Sam3VideoModel.run_detection` with alike prompts in one detector call.

    Same arguments, same session updates (lazily cached text embeddings) and same output as
    upstream's (transformers 5.24): {prompt_id: {"bbox", "mask", "scores"}} in prompt order.
    """
    session = inference_session
    detector: Sam3Model = model.detector_model
    stats = stats if stats is not None else DetectorCalls()
    stats.frames += 1
    prompt_ids = list(session.prompts.keys())
    if not prompt_ids:
        raise ValueError(
            "No prompts available for detection. Please add prompts to the session first."
        )

    groups: dict[tuple, list[int]] = defaultdict(list)
    for prompt_id in prompt_ids:
        text_embeds = _text_embeds(detector, session, prompt_id)
        features, mask = text_embeds.pooler_output, session.prompt_attention_masks[prompt_id]
        key = (tuple(features.shape), features.dtype, tuple(mask.shape), mask.dtype)
        groups[key].append(prompt_id)

    replayable = _hooks_replayable(detector) and vision_embeds.fpn_hidden_states[0].shape[0] == 1
    outputs: dict[int, Sam3ImageSegmentationOutput] = {}
    for members in groups.values():
        if len(members) < min_group or not replayable:
            for prompt_id in members:  # upstream's call, hooks and all
                outputs[prompt_id] = detector(
                    vision_embeds=vision_embeds,
                    text_embeds=session.prompt_embeddings[prompt_id],
                    attention_mask=session.prompt_attention_masks[prompt_id],
                )
                stats.single_calls += 1
            continue
        outputs.update(_run_group(detector, session, vision_embeds, members))
        stats.batched_calls += 1
        stats.batched_prompts += len(members)
        stats.group_sizes[len(members)] += 1

    return {pid: _postprocess(model, outputs[pid]) for pid in prompt_ids}


def _text_embeds(detector: Sam3Model, session: Any, prompt_id: int) -> BaseModelOutputWithPooling:
    """The prompt's cached embeddings, computed and cached on first use as upstream does."""
    if prompt_id not in session.prompt_embeddings:
        session.prompt_embeddings[prompt_id] = detector.get_text_features(
            input_ids=session.prompt_input_ids[prompt_id],
            attention_mask=session.prompt_attention_masks[prompt_id],
            return_dict=True,
        )
    return session.prompt_embeddings[prompt_id]


def _hooks_replayable(detector: Sam3Model) -> bool:
    """Only the detector's own forward hooks can be replayed per prompt faithfully."""
    return not (
        detector._forward_pre_hooks
        or torch_module._global_forward_pre_hooks
        or torch_module._global_forward_hooks
    )


def _run_group(
    detector: Sam3Model, session: Any, vision_embeds: Sam3VisionEncoderOutput, members: list[int]
) -> dict[int, Sam3ImageSegmentationOutput]:
    """One detector call over the prompts in MEMBERS (equal embedding shapes), split back into
    each prompt's outputs, with the detector's forward hooks called once per prompt."""
    batch = len(members)
    features = torch.cat([session.prompt_embeddings[p].pooler_output for p in members])
    mask = torch.cat([session.prompt_attention_masks[p] for p in members])
    vision = Sam3VisionEncoderOutput(
        last_hidden_state=_expand(vision_embeds.last_hidden_state, batch),
        fpn_hidden_states=tuple(_expand(t, batch) for t in vision_embeds.fpn_hidden_states),
        fpn_position_encoding=tuple(_expand(t, batch) for t in vision_embeds.fpn_position_encoding),
    )
    # `forward`, not `__call__`: hooks must see per-prompt calls, replayed below.
    batched = detector.forward(
        vision_embeds=vision,
        text_embeds=BaseModelOutputWithPooling(pooler_output=features),
        attention_mask=mask,
    )
    outputs = {}
    for i, prompt_id in enumerate(members):
        output = _slice(batched, i)
        kwargs = {
            "vision_embeds": vision_embeds,
            "text_embeds": session.prompt_embeddings[prompt_id],
            "attention_mask": session.prompt_attention_masks[prompt_id],
        }
        outputs[prompt_id] = _call_forward_hooks(detector, kwargs, output)
    return outputs


def _expand(tensor: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """A batch-1 tensor viewed as BATCH copies (no copy made)."""
    return None if tensor is None else tensor.expand(batch, *tensor.shape[1:])


def _slice(batched: Sam3ImageSegmentationOutput, i: int) -> Sam3ImageSegmentationOutput:
    """Element I of a batched detector output, shaped as its own call's (batch 1). Only the
    default outputs: the optional hidden states and attentions are not requested upstream."""
    one = slice(i, i + 1)
    refs = batched.decoder_reference_boxes
    return Sam3ImageSegmentationOutput(
        pred_masks=batched.pred_masks[one],
        pred_boxes=batched.pred_boxes[one],
        pred_logits=batched.pred_logits[one],
        presence_logits=batched.presence_logits[one],
        semantic_seg=None if batched.semantic_seg is None else batched.semantic_seg[one],
        decoder_reference_boxes=None if refs is None else refs[:, one],  # (layers, B, Q, 4)
    )


def _call_forward_hooks(
    detector: Sam3Model, kwargs: dict, output: Sam3ImageSegmentationOutput
) -> Sam3ImageSegmentationOutput:
    """The detector's forward hooks, called as `Module.__call__` calls them after a forward
    with these kwargs (no positional args); a hook's non-None return replaces the output."""
    for hook_id, hook in list(detector._forward_hooks.items()):
        if hook_id in detector._forward_hooks_with_kwargs:
            result = hook(detector, (), kwargs, output)
        else:
            result = hook(detector, (), output)
        if result is not None:
            output = result
    return output


def _postprocess(model: Any, detector_outputs: Sam3ImageSegmentationOutput) -> dict:
    """Upstream's per-prompt post-processing in `run_detection`, verbatim (transformers 5.24)."""
    pred_logits = detector_outputs.pred_logits
    presence_logits = detector_outputs.presence_logits

    pred_probs = pred_logits.sigmoid()
    presence_scores = presence_logits.sigmoid()
    pred_probs = pred_probs * presence_scores

    if model.det_nms_thresh > 0.0:
        keep = modeling_sam3_video.nms_masks(
            pred_probs=pred_probs[0],
            pred_masks=detector_outputs.pred_masks[0],
            prob_threshold=model.score_threshold_detection,
            iou_threshold=model.det_nms_thresh,
        )
        pred_probs[0][~keep] = 0.0  # suppressed detections

    pred_boxes_xyxy = detector_outputs.pred_boxes
    pred_masks = detector_outputs.pred_masks
    pos_pred_idx = torch.where(pred_probs > model.score_threshold_detection)
    return {
        "bbox": pred_boxes_xyxy[pos_pred_idx[0], pos_pred_idx[1]],
        "mask": pred_masks[pos_pred_idx[0], pos_pred_idx[1]],
        "scores": pred_probs[pos_pred_idx[0], pos_pred_idx[1]],
    }
