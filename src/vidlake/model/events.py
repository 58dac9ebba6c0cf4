"""Counts of SAM 3's decisions while a model runs: what its thresholds and heuristics did.

Why: a threshold no test crosses is a threshold no test checks. `count_events(model)` wraps, for
the duration of a block, the places in transformers' `Sam3VideoModel` where SAM 3 decides:

- `detections`: detector outputs above `score_threshold_detection` (after NMS), per frame and
  prompt; `confident_detections`: those also at or above `new_det_thresh`;
- `nms_dropped`: detections above the score threshold that mask NMS removed;
- `new_objects`: tracks started from a detection (`new_det_thresh`, no matching track);
- `holes_filled` / `sprinkles_removed`: mask pixels flipped by the clean-up (`fill_hole_area`);
- `hotstart_removed`: tracks removed by the hotstart heuristics (unmatched or duplicate);
- `occlusion_suppressed`: track masks blanked by occlusion suppression on a frame;
- `reconditioned`: tracks whose memory was reconditioned from a high-confidence detection.

The wrappers observe and return what the wrapped call returns, unchanged; module functions
(`nms_masks`, `fill_holes_in_mask_scores`) are swapped in the module for the block, instance
methods on the one model (`vidlake.model.overrides`). Tests assert the counts; the fidelity bench
prints them.
"""

from __future__ import annotations

import contextlib
import importlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

from vidlake.model.overrides import overridden, override

_MODULE = "transformers.models.sam3_video.modeling_sam3_video"


@contextlib.contextmanager
def count_events(model: Any) -> Iterator[Counter]:
    """A Counter of SAM 3's decisions (see the module docstring) made by MODEL in the block."""
    module = importlib.import_module(_MODULE)
    counts: Counter = Counter()
    nms_masks = module.nms_masks
    fill = module.fill_holes_in_mask_scores

    def counting_nms(pred_probs, pred_masks, prob_threshold, iou_threshold):
        keep = nms_masks(pred_probs, pred_masks, prob_threshold, iou_threshold)
        counts["nms_dropped"] += int((pred_probs > prob_threshold).sum()) - int(keep.sum())
        return keep

    def counting_fill(mask, max_area, fill_holes=True, remove_sprinkles=True):
        out = fill(mask, max_area, fill_holes, remove_sprinkles)
        counts["holes_filled"] += int(((mask <= 0) & (out > 0)).sum())
        counts["sprinkles_removed"] += int(((mask > 0) & (out <= 0)).sum())
        return out

    # What the instance runs now (its own overrides, e.g. meta_parity's association, if any),
    # bound, so counting never changes what runs.
    associate = model._associate_det_trk
    hotstart = model._process_hotstart
    recondition = model._prepare_recondition_masks
    suppress = model._suppress_overlapping_based_on_recent_occlusion

    def counting_detection(self, *args, **kwargs):
        out = detect(*args, **kwargs)
        for det in out.values():
            scores = det["scores"]
            counts["detections"] += int(scores.numel())
            counts["confident_detections"] += int((scores >= self.new_det_thresh).sum())
        return out

    def counting_associate(self, *args, **kwargs):
        out = associate(*args, **kwargs)
        counts["new_objects"] += len(out[0])
        return out

    def counting_hotstart(self, *args, **kwargs):
        removed, metadata = hotstart(*args, **kwargs)
        counts["hotstart_removed"] += len(removed)
        return removed, metadata

    def counting_recondition(self, *args, **kwargs):
        masks, ids = recondition(*args, **kwargs)
        counts["reconditioned"] += len(ids)
        return masks, ids

    def counting_suppress(self, *args, **kwargs):
        masks = kwargs["tracker_low_res_masks_global"]
        before = (masks > 0).flatten(1).any(dim=1).clone()
        out = suppress(*args, **kwargs)
        after = (out > 0).flatten(1).any(dim=1)
        counts["occlusion_suppressed"] += int((before & ~after).sum())
        return out

    # What the instance runs now (vidlake's batched detector, if enabled), counted through.
    detect = model.run_detection
    module.nms_masks = counting_nms
    module.fill_holes_in_mask_scores = counting_fill
    try:
        with contextlib.ExitStack() as stack:
            for name, fn in (
                ("run_detection", counting_detection),
                ("_associate_det_trk", counting_associate),
                ("_process_hotstart", counting_hotstart),
                ("_prepare_recondition_masks", counting_recondition),
                ("_suppress_overlapping_based_on_recent_occlusion", counting_suppress),
            ):
                stack.enter_context(
                    overridden(model, name, lambda n=name, f=fn: override(model, n, f))
                )
            yield counts
    finally:
        module.nms_masks = nms_masks
        module.fill_holes_in_mask_scores = fill
