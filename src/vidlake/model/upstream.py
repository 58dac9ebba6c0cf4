"""The transformers internals vidlake's SAM 3 layer replaces or calls, pinned and checked.

Why: `batched_tracker`, `batched_detector`, `meta_parity`, `quality` and `events` reach into
transformers'
private SAM 3 code (methods with a leading underscore, a module global). Private code changes
without notice, so, as transformers' own `utils/check_copies.py` does for its "Copied from"
code, every such internal is listed here with:

- the parameters vidlake passes or receives, checked at load by `problems()`: a missing
  internal, or one whose signature lost a parameter, is a one-line error for the quality steps
  every run needs (`quality.check`); it turns the batched passes off with one warning (the
  model runs transformers' own per-object and per-prompt path), and Meta's-behaviour fixes
  (`meta_parity`) off with one warning;
- a hash of its source in the tested transformers (pyproject pins that range), which
  tests/model/test_upstream.py compares one test per internal, so an upstream change fails
  by name and points at the vidlake code to re-read.

To accept a new transformers release: read the diff of each failing internal against the
vidlake code named beside it, adapt that code, then update the hash (`source_hash(name)`).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import textwrap
from dataclasses import dataclass

TESTED_TRANSFORMERS = "5.25"

_VIDEO = "transformers.models.sam3_video.modeling_sam3_video"
_TRACKER = "transformers.models.sam3_tracker_video.modeling_sam3_tracker_video"
_DETECTOR = "transformers.models.sam3.modeling_sam3"


@dataclass(frozen=True)
class Internal:
    """One upstream function or method vidlake depends on."""

    name: str  # "module:Class.method" or "module:function"
    params: tuple[str, ...]  # parameters vidlake passes or relies on
    source_sha: str  # sha256 of its dedented source, first 16 hex digits, in the tested release
    used_by: str  # the vidlake code that replaces, copies or calls it
    part: str = "always"  # who needs it: "always" (every run), "batched" (the batched passes
    # only) or "parity" (vidlake.model.meta_parity only)


INTERNALS: tuple[Internal, ...] = (
    Internal(
        f"{_VIDEO}:nms_masks",
        ("pred_probs", "pred_masks", "prob_threshold", "iou_threshold"),
        "bb2ef3703b8d3a04",
        "quality.check, events (wrapped), batched_detector (called)",
    ),
    Internal(
        f"{_VIDEO}:fill_holes_in_mask_scores",
        ("mask", "max_area", "fill_holes", "remove_sprinkles"),
        "ae27c0b6655e9e88",
        "quality.check, events (wrapped)",
    ),
    Internal(
        f"{_VIDEO}:_get_connected_components_with_padding",
        ("mask",),
        "5aed79d687578479",
        "quality.CvUtils.cc_2d (called by it)",
    ),
    Internal(
        f"{_VIDEO}:Sam3VideoModel.run_tracker_propagation",
        ("inference_session", "frame_idx", "reverse"),
        "143146deec17fd4d",
        "quality (calls the mask clean-up)",
    ),
    Internal(
        f"{_VIDEO}:Sam3VideoModel.build_outputs",
        ("inference_session", "det_out", "tracker_low_res_masks_global", "tracker_update_plan"),
        "ae744db5a26f2531",
        "quality (calls the mask clean-up)",
    ),
    Internal(
        f"{_VIDEO}:Sam3VideoModel._associate_det_trk",
        ("det_masks", "det_scores", "trk_masks", "trk_obj_ids", "det_prompt_ids", "trk_prompt_ids"),
        "39b3e7b508b08611",
        "events (wrapped), meta_parity._per_prompt_association (wraps it)",
    ),
    Internal(
        f"{_VIDEO}:Sam3VideoModel._process_hotstart",
        ("inference_session", "frame_idx", "reverse"),
        "be552829c651f262",
        "events (wrapped)",
    ),
    Internal(
        f"{_VIDEO}:Sam3VideoModel._prepare_recondition_masks",
        ("inference_session", "frame_idx", "det_out"),
        "f8f3a26d40f5f9cd",
        "events (wrapped)",
    ),
    Internal(
        f"{_VIDEO}:Sam3VideoModel._suppress_overlapping_based_on_recent_occlusion",
        ("inference_session", "frame_idx", "tracker_low_res_masks_global"),
        "072370339febfc0d",
        "events (wrapped)",
    ),
    Internal(
        f"{_VIDEO}:Sam3VideoModel.run_detection",
        ("inference_session", "vision_embeds"),
        "7c38f9a7fe186a4c",
        "batched_detector.run_detection (replaces it)",
        part="batched",
    ),
    Internal(
        f"{_DETECTOR}:Sam3Model.forward",
        ("vision_embeds", "text_embeds", "attention_mask"),
        "77a58f9ff67fcb79",
        "batched_detector (calls forward without hooks)",
        part="batched",
    ),
    Internal(
        f"{_DETECTOR}:Sam3Model.get_text_features",
        ("input_ids", "attention_mask"),
        "19f39836cfd5a331",
        "batched_detector, sam3._add_prompt (call it)",
        part="batched",
    ),
    Internal(
        f"{_TRACKER}:Sam3TrackerVideoModel.forward",
        ("inference_session", "frame_idx", "reverse", "run_mem_encoder"),
        "1dd345e5ed67797f",
        "batched_tracker.forward (replaces it)",
        part="batched",
    ),
    Internal(
        f"{_TRACKER}:Sam3TrackerVideoModel._single_frame_forward",
        ("image_embeddings", "multimask_output"),
        "bfcc061ba2edfc4e",
        "batched_tracker._sam_heads (copies its no-prompt path)",
        part="batched",
    ),
    Internal(
        f"{_TRACKER}:Sam3TrackerVideoModel._run_single_frame_inference",
        (
            "inference_session",
            "frame_idx",
            "obj_idx",
            "batch_size",
            "is_init_cond_frame",
            "point_inputs",
            "mask_inputs",
            "reverse",
            "prev_sam_mask_logits",
        ),
        "b58c4ef6f2ca7d2f",
        "batched_tracker (calls it)",
        part="batched",
    ),
    Internal(
        f"{_TRACKER}:Sam3TrackerVideoModel._batch_encode_memories",
        (
            "inference_session",
            "frame_idx",
            "objects_needing_memory_encoding",
            "high_res_masks_for_memory",
            "object_score_logits_for_memory",
            "is_mask_from_pts_per_obj",
        ),
        "710806bc5d518c86",
        "batched_tracker (calls it)",
        part="batched",
    ),
    Internal(
        f"{_TRACKER}:Sam3TrackerVideoModel._gather_memory_frame_outputs",
        ("inference_session", "obj_idx", "frame_idx", "track_in_reverse_time"),
        "60d1be02dba19c96",
        "batched_tracker (calls it)",
        part="batched",
    ),
    Internal(
        f"{_TRACKER}:Sam3TrackerVideoModel._get_object_pointers",
        (
            "inference_session",
            "obj_idx",
            "frame_idx",
            "num_total_frames",
            "device",
            "track_in_reverse_time",
        ),
        "6cef7ca2e577e6e5",
        "batched_tracker (calls it)",
        part="batched",
    ),
    Internal(
        f"{_TRACKER}:Sam3TrackerVideoModel._prepare_vision_features",
        ("inference_session", "frame_idx", "batch_size"),
        "b5821cd8f26641fb",
        "batched_tracker (calls it)",
        part="batched",
    ),
    Internal(
        f"{_TRACKER}:Sam3TrackerVideoModel._build_memory_attention_inputs",
        ("temporal_positions_and_previous_outputs", "device"),
        "d92c84a335a70a1f",
        "batched_tracker (calls it)",
        part="batched",
    ),
    Internal(
        f"{_TRACKER}:Sam3TrackerVideoModel._process_object_pointers",
        (
            "temporal_offsets",
            "pointer_tokens",
            "max_object_pointers_to_use",
            "batch_size",
            "num_channels",
            "device",
        ),
        "6b675c94818c285c",
        "batched_tracker (calls it)",
        part="batched",
    ),
    Internal(
        f"{_TRACKER}:Sam3TrackerVideoModel._use_multimask",
        ("is_init_cond_frame", "point_inputs"),
        "a95efbc4e9badc98",
        "batched_tracker (calls it)",
        part="batched",
    ),
    Internal(
        f"{_DETECTOR}:Sam3Model.forward",
        (
            "pixel_values",
            "vision_embeds",
            "input_ids",
            "attention_mask",
            "text_embeds",
            "input_boxes",
            "input_boxes_labels",
        ),
        "77a58f9ff67fcb79",
        "meta_parity._forward_with_empty_geometry_prompt (wraps it)",
        part="parity",
    ),
    Internal(
        f"{_DETECTOR}:Sam3GeometryEncoder.forward",
        ("box_embeddings", "box_mask", "box_labels", "img_feats", "img_pos_embeds"),
        "6fd8710541c56100",
        "meta_parity._forward_with_empty_geometry_prompt (calls it with no boxes)",
        part="parity",
    ),
    Internal(
        f"{_VIDEO}:Sam3VideoModel._tracker_add_new_objects",
        ("inference_session", "frame_idx", "new_obj_ids", "new_obj_masks", "reverse"),
        "53c1caae42cbad94",
        "meta_parity._tracker_add_new_objects (replaces it)",
        part="parity",
    ),
)


def resolve(name: str):
    """The function or method NAME ("module:Qual.name") names, or None if it is gone."""
    module_name, _, qualname = name.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError:
        return None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def source_hash(name: str) -> str | None:
    """sha256 (16 hex digits) of NAME's dedented source; None if it is gone."""
    obj = resolve(name)
    if obj is None:
        return None
    source = textwrap.dedent(inspect.getsource(obj))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def problems(part: str | None = None) -> list[str]:
    """What is missing or changed in shape, one line each (empty when all is as tested).

    part: "always", "batched" or "parity" for the internals that part needs (see
    `Internal.part`), None for all.
    """
    found = []
    for internal in INTERNALS:
        if part is not None and internal.part != part:
            continue
        obj = resolve(internal.name)
        if obj is None:
            found.append(f"{internal.name} is gone ({internal.used_by} needs it)")
            continue
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            continue
        lost = [p for p in internal.params if p not in params]
        if lost:
            found.append(
                f"{internal.name} lost parameter(s) {', '.join(lost)} ({internal.used_by})"
            )
    return found
