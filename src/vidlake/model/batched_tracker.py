"""SAM 3's tracker with alike objects batched through one forward pass per frame.

Why: transformers' `Sam3TrackerVideoModel.forward` runs every tracked object through its own
memory attention and mask decoder (`_run_single_frame_inference(..., batch_size=1)`), because
objects with new clicks or masks need different prompt inputs. In plain propagation (no new
inputs for an object on this frame) an object's pass reads only the frame's vision features,
which all objects share, and that object's own memory bank. So objects can be stacked along
the batch dimension whenever their memory-attention inputs have the same shape:

- the same number of memory frames (conditioning frames + stored non-conditioning frames of
  the last `num_maskmem - 1`), i.e. the same number of memory tokens, and
- the same number of object-pointer tokens, which memory attention takes as one scalar
  (`num_object_pointer_tokens`: the keys left without RoPE).

What may differ per object travels along the batch dimension: which frames its memories come
from, their temporal encodings (`memory_temporal_positional_encoding[offset - 1]`, offset 0 for
a conditioning frame) and the sine encodings of its pointers' temporal offsets. They are built by
the tracker's own per-object helpers, exactly as the per-object path builds them, and only
then concatenated along the batch.

Everything else goes the per-object way, unchanged: objects with new inputs (clicks or masks,
initial conditioning frames), objects whose group of alike objects is smaller than `min_group`,
and trackers without memory. Objects with a conditioning output on the frame reuse it, as
upstream does. Memory encoding stays one batched call over all objects, as upstream.

Exactness: each object goes through the same operations, on the same values, as in its own
pass, but not bit for bit: every linear layer becomes one GEMM with B times the rows, and BLAS
libraries pick kernels (and so summation orders) by shape. Measured on CPU (MKL, AVX-512):
one-row products (the mask decoder's hypernetwork, IoU and object-score heads, the
object-pointer projection) always differ in the last bit; 8-row ones (the mask decoder's
tokens) differ for K = 256 but not for K = 128; 64-row ones did not differ. On the tiny model
the tracker's mask logits differ by at most ~2e-9 on values of ~3e-3 (relative ~1e-6, a few
float32 ulps), without growing along a 24-frame clip; a mask pixel whose logit sits within that
of 0 may flip. cuBLAS picks kernels by shape too, so expect the same on GPU (in bf16 ulps).
Running the heads object by object removes only part of it, so there is no exact mode.

One deviation from upstream is needed: with multimask output (SAM 3 tracks with it) upstream's
`_single_frame_forward` picks the best of the 3 masks by indexing `[arange(B), arange(1),
argmax (B, 1)]`, which broadcasts to (B, B) for B > 1. `_sam_heads` below is that function's
no-prompt path with the index fixed (`arange(B)[:, None]`), identical to it for B = 1.
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
    NO_OBJ_SCORE,
    Sam3TrackerVideoModel,
    Sam3TrackerVideoSegmentationOutput,
)

from vidlake.model.overrides import overridden, override, restore


@dataclass
class TrackerPasses:
    """What the batched forward ran, to count passes per frame (a pass: one memory attention
    and mask decoder run, over one object or one batch of objects)."""

    calls: int = 0  # tracker forward calls
    batched_passes: int = 0
    batched_objects: int = 0
    single_passes: int = 0
    reused: int = 0  # objects whose conditioning output on the frame was reused
    passes_per_frame: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    group_sizes: Counter = field(default_factory=Counter)

    @property
    def passes(self) -> int:
        return self.batched_passes + self.single_passes


@dataclass
class _Step:
    """One object's work on the frame, as upstream's loop decides it."""

    obj_idx: int
    is_init_cond_frame: bool
    point_inputs: dict | None
    mask_inputs: torch.Tensor | None
    reverse: bool
    has_new_inputs: bool


@dataclass
class _Memory:
    """An object's memory-attention inputs, gathered as upstream gathers them."""

    gathered: list  # (temporal offset, stored output or None)
    pointer_offsets: list[int]
    pointer_tokens: list[torch.Tensor]
    max_pointers: int

    @property
    def key(self) -> tuple[int, int]:
        """(memory frames, object pointers): equal keys mean equal sequence lengths."""
        return sum(out is not None for _, out in self.gathered), len(self.pointer_tokens)


def enable_batched_tracking(
    model: Any,
    min_group: int = 2,
    stats: TrackerPasses | None = None,
) -> TrackerPasses:
    """Routes this Sam3VideoModel's tracker (`model.tracker_model`, or a Sam3TrackerVideoModel
    itself) through `batched_forward`. Instance-level: the class and other instances keep
    upstream's forward. Returns the stats object the forward counts into.

    min_group: smaller groups of alike objects take the per-object path.
    """
    tracker = _tracker_of(model)
    stats = stats if stats is not None else TrackerPasses()

    def forward(self, inference_session, frame_idx=None, frame=None, reverse=False,
                run_mem_encoder=True, **kwargs):  # fmt: skip
        return batched_forward(
            self, inference_session, frame_idx, frame, reverse, run_mem_encoder,
            min_group=min_group, stats=stats,
        )  # fmt: skip

    override(tracker, "forward", forward)
    return stats


def disable_batched_tracking(model: Any) -> None:
    """Back to upstream's per-object forward for this instance."""
    restore(_tracker_of(model), "forward")


@contextlib.contextmanager
def batched_tracking(model: Any, min_group: int = 2) -> Iterator[TrackerPasses]:
    """`with batched_tracking(segmenter.model) as stats:` batched tracker inside the block."""
    tracker = _tracker_of(model)
    with overridden(
        tracker, "forward", lambda: enable_batched_tracking(tracker, min_group=min_group)
    ) as stats:
        yield stats


def _tracker_of(model: Any) -> Sam3TrackerVideoModel:
    tracker = getattr(model, "tracker_model", model)
    if not isinstance(tracker, Sam3TrackerVideoModel):
        raise TypeError(f"expected a Sam3VideoModel or Sam3TrackerVideoModel, got {type(model)}")
    return tracker


@torch.inference_mode()
def batched_forward(
    tracker: Sam3TrackerVideoModel,
    inference_session: Any,
    frame_idx: int | None = None,
    frame: torch.Tensor | None = None,
    reverse: bool = False,
    run_mem_encoder: bool = True,
    min_group: int = 2,
    stats: TrackerPasses | None = None,
) -> Sam3TrackerVideoSegmentationOutput:
    """`Sam3TrackerVideoModel.forward` with alike propagated objects in batched passes.

    Same arguments, same session updates and same output as upstream's forward (transformers
    5.24); see the module docstring for which objects are batched.
    """
    session = inference_session
    stats = stats if stats is not None else TrackerPasses()
    stats.calls += 1
    if frame is not None:
        frame_idx = session.add_new_frame(frame, frame_idx)
    if frame is not None and session.get_obj_num() == 0:
        raise ValueError("No objects are provided for tracking; please add inputs first.")
    streaming = frame is not None
    num_objects = session.get_obj_num()
    pred_masks_per_obj: list[torch.Tensor | None] = [None] * num_objects
    object_score_logits_per_obj: list[torch.Tensor | None] = [None] * num_objects

    # 1. Upstream's loop, deciding only: reuse, per-object pass or batch candidate. `reverse` is
    # sticky as upstream's (an initial conditioning frame resets it for later objects).
    steps: list[_Step] = []
    for obj_idx in range(num_objects):
        obj_id = session.obj_idx_to_id(obj_idx)
        has_new_inputs = obj_id in session.obj_with_new_inputs
        has_cond_output = frame_idx in session.output_dict_per_obj[obj_idx]["cond_frame_outputs"]
        if not has_new_inputs and has_cond_output:
            pred_masks_per_obj[obj_idx] = session.get_output(
                obj_idx, frame_idx, "pred_masks", is_conditioning_frame=True
            )
            logits = session.get_output(
                obj_idx, frame_idx, "object_score_logits", is_conditioning_frame=True
            )
            object_score_logits_per_obj[obj_idx] = logits.squeeze(-1)
            stats.reused += 1
            continue
        is_init_cond_frame, point_inputs, mask_inputs = False, None, None
        if has_new_inputs:
            is_init_cond_frame = frame_idx not in session.frames_tracked_per_obj[obj_idx]
            if is_init_cond_frame:
                reverse = False
            point_inputs = session.point_inputs_per_obj[obj_idx].get(frame_idx, None)
            mask_inputs = session.mask_inputs_per_obj[obj_idx].get(frame_idx, None)
            if point_inputs is not None or mask_inputs is not None:
                session.obj_with_new_inputs.remove(obj_id)
        steps.append(
            _Step(obj_idx, is_init_cond_frame, point_inputs, mask_inputs, reverse, has_new_inputs)
        )

    # 2. Batch candidates grouped by sequence lengths; the rest one by one.
    outputs: dict[int, dict] = {}
    groups: dict[tuple[int, int], list[tuple[_Step, _Memory]]] = defaultdict(list)
    singles: list[_Step] = []
    for step in steps:
        if step.has_new_inputs or tracker.num_maskmem == 0:
            singles.append(step)
        else:
            memory = _gather_memory(tracker, session, frame_idx, step, streaming)
            groups[memory.key].append((step, memory))
    for members in groups.values():
        if len(members) < min_group:
            singles.extend(step for step, _ in members)
            continue
        group_outputs = _run_group(tracker, session, frame_idx, members)
        for (step, _), out in zip(members, group_outputs, strict=True):
            outputs[step.obj_idx] = out
        stats.batched_passes += 1
        stats.batched_objects += len(members)
        stats.group_sizes[len(members)] += 1
        stats.passes_per_frame[frame_idx] += 1
    for step in singles:
        outputs[step.obj_idx] = tracker._run_single_frame_inference(
            inference_session=session,
            obj_idx=step.obj_idx,
            frame_idx=frame_idx,
            batch_size=1,
            is_init_cond_frame=step.is_init_cond_frame,
            point_inputs=step.point_inputs,
            mask_inputs=step.mask_inputs,
            reverse=step.reverse,
            streaming=streaming,
        )
        stats.single_passes += 1
        stats.passes_per_frame[frame_idx] += 1

    # 3. Store in object order, as upstream does object by object.
    objects_needing_memory_encoding: list[int] = []
    high_res_masks_for_memory: list[torch.Tensor] = []
    object_score_logits_for_memory: list[torch.Tensor] = []
    is_mask_from_pts_per_obj: list[bool] = []
    for step in steps:
        obj_idx, current_out = step.obj_idx, outputs[step.obj_idx]
        session.store_output(
            obj_idx, frame_idx, output_value=current_out,
            is_conditioning_frame=step.is_init_cond_frame,
        )  # fmt: skip
        object_score_logits = current_out["object_score_logits"]
        if run_mem_encoder and tracker.num_maskmem > 0:
            objects_needing_memory_encoding.append(obj_idx)
            high_res_masks_for_memory.append(current_out["high_res_masks"])
            object_score_logits_for_memory.append(object_score_logits)
            is_mask_from_pts_per_obj.append(
                step.point_inputs is not None or step.mask_inputs is not None
            )
        pred_masks_per_obj[obj_idx] = current_out["pred_masks"]
        object_score_logits_per_obj[obj_idx] = object_score_logits.squeeze(-1)
        if not step.is_init_cond_frame:
            session.frames_tracked_per_obj[obj_idx][frame_idx] = {"reverse": step.reverse}

    tracker._batch_encode_memories(
        inference_session=session,
        frame_idx=frame_idx,
        objects_needing_memory_encoding=objects_needing_memory_encoding,
        high_res_masks_for_memory=high_res_masks_for_memory,
        object_score_logits_for_memory=object_score_logits_for_memory,
        is_mask_from_pts_per_obj=is_mask_from_pts_per_obj,
    )
    if len(pred_masks_per_obj) > 1:
        all_pred_masks = torch.cat(pred_masks_per_obj, dim=0)
        all_object_score_logits = torch.cat(object_score_logits_per_obj, dim=0)
    else:
        all_pred_masks = pred_masks_per_obj[0]
        all_object_score_logits = object_score_logits_per_obj[0]
    return Sam3TrackerVideoSegmentationOutput(
        object_ids=session.obj_ids.copy(),
        pred_masks=all_pred_masks,
        object_score_logits=all_object_score_logits,
        frame_idx=frame_idx,
    )


def _gather_memory(tracker, session, frame_idx: int, step: _Step, streaming: bool) -> _Memory:
    """Which stored outputs the object's pass would read: cheap (lookups, no tensor math)."""
    device = session.inference_device
    gathered = tracker._gather_memory_frame_outputs(session, step.obj_idx, frame_idx, step.reverse)
    offsets, tokens, max_pointers = tracker._get_object_pointers(
        session, step.obj_idx, frame_idx, session.num_frames, device, step.reverse, streaming
    )
    return _Memory(gathered, offsets, tokens, max_pointers)


def _run_group(tracker, session, frame_idx: int, members: list) -> list[dict]:
    """One memory attention + mask decoder pass over a group of objects with equal sequence
    lengths; returns each object's `current_out`, as `_run_single_frame_inference` makes it."""
    vision_feats, vision_pos_embeds = tracker._prepare_vision_features(session, frame_idx, 1)
    device = vision_feats[-1].device
    batch = len(members)
    memories, positions = [], []
    for _, memory in members:
        # The per-object tensors, built by upstream's helpers exactly as its own pass does.
        mems, mem_pos = tracker._build_memory_attention_inputs(memory.gathered, device)
        num_pointer_tokens = 0
        if memory.pointer_tokens:
            pointers, pointers_pos = tracker._process_object_pointers(
                memory.pointer_offsets, memory.pointer_tokens, memory.max_pointers,
                1, tracker.hidden_dim, device,
            )  # fmt: skip
            mems.append(pointers)
            mem_pos.append(pointers_pos)
            num_pointer_tokens = pointers.shape[0]
        memories.append(torch.cat(mems, dim=0).to(dtype=session.dtype))
        positions.append(torch.cat(mem_pos, dim=0))
    memory = torch.cat(memories, dim=1)  # (tokens, batch, mem_dim)
    memory_pos = torch.cat(positions, dim=1)

    channels = tracker.hidden_dim
    height, width = tracker.backbone_feature_sizes[-1]
    flat = tracker.memory_attention(
        current_vision_features=vision_feats[-1].expand(-1, batch, -1),
        current_vision_position_embeddings=vision_pos_embeds[-1].expand(-1, batch, -1),
        memory=memory,
        memory_posision_embeddings=memory_pos,
        num_object_pointer_tokens=num_pointer_tokens,
    )  # (1, batch, HW, C)
    pix_feat = flat[0].transpose(1, 2).view(batch, channels, height, width)
    high_res_features = [
        x.expand(-1, batch, -1).permute(1, 2, 0).view(batch, x.size(2), *s)
        for x, s in zip(vision_feats[:-1], tracker.backbone_feature_sizes[:-1], strict=True)
    ]
    out = _sam_heads(tracker, pix_feat, high_res_features)
    return [{key: value[i : i + 1] for key, value in out.items()} for i in range(batch)]


def _sam_heads(tracker, pix_feat: torch.Tensor, high_res_features: list) -> dict:
    """`Sam3TrackerVideoModel._single_frame_forward` without prompts (tracking), batched.

    Line for line upstream's code for image_embeddings given, no points/boxes/masks, one
    object per image; only the best-mask index is `arange(B)[:, None]` instead of `arange(B)`
    (see the module docstring).
    """
    batch = pix_feat.shape[0]
    device, dtype = pix_feat.device, pix_feat.dtype
    multimask_output = tracker._use_multimask(False, None)
    image_positional_embeddings = tracker.get_image_wide_positional_embeddings()
    image_positional_embeddings = image_positional_embeddings.repeat(batch, 1, 1, 1)
    input_points = torch.zeros(batch, 1, 1, 2, dtype=dtype, device=device)
    input_labels = -torch.ones(batch, 1, 1, dtype=torch.int32, device=device)
    sparse_embeddings, dense_embeddings = tracker.prompt_encoder(
        input_points=input_points, input_labels=input_labels, input_boxes=None, input_masks=None
    )
    low_res_multimasks, iou_scores, sam_output_tokens, object_score_logits = tracker.mask_decoder(
        image_embeddings=pix_feat,
        image_positional_embeddings=image_positional_embeddings,
        sparse_prompt_embeddings=sparse_embeddings,
        dense_prompt_embeddings=dense_embeddings,
        multimask_output=multimask_output,
        high_resolution_features=high_res_features,
        attention_similarity=None,
        target_embedding=None,
    )
    is_obj_appearing = object_score_logits > 0
    low_res_multimasks = torch.where(
        is_obj_appearing[:, None, None], low_res_multimasks, NO_OBJ_SCORE
    )
    high_res_multimasks = (
        F.interpolate(
            low_res_multimasks.squeeze(1).float(),
            size=(tracker.image_size, tracker.image_size),
            mode="bilinear",
            align_corners=False,
        )
        .unsqueeze(1)
        .to(low_res_multimasks.dtype)
    )
    sam_output_token = sam_output_tokens[:, :, 0]
    if multimask_output:
        best_iou_inds = torch.argmax(iou_scores, dim=-1)  # (B, 1)
        batch_inds = torch.arange(batch, device=device)[:, None]
        object_batch_inds = torch.arange(1, device=device)
        low_res_masks = low_res_multimasks[batch_inds, object_batch_inds, best_iou_inds]
        high_res_masks = high_res_multimasks[batch_inds, object_batch_inds, best_iou_inds]
        if sam_output_tokens.size(2) > 1:
            sam_output_token = sam_output_tokens[batch_inds, object_batch_inds, best_iou_inds]
    else:
        low_res_masks, high_res_masks = low_res_multimasks[:, :, 0], high_res_multimasks[:, :, 0]

    object_pointer = tracker.object_pointer_proj(sam_output_token)
    lambda_is_obj_appearing = is_obj_appearing.to(object_pointer.dtype)
    object_pointer = lambda_is_obj_appearing * object_pointer
    object_pointer = object_pointer + (1 - lambda_is_obj_appearing) * tracker.no_object_pointer
    out = {
        "pred_masks": low_res_masks,
        "object_pointer": object_pointer,
        "high_res_masks": high_res_masks,
    }
    if not tracker.training:
        out["object_score_logits"] = object_score_logits
    return out
