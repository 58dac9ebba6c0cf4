"""SAM 3's quality steps, always on: mask NMS, hole filling and sprinkle removal.

Why: transformers' `modeling_sam3_video` runs the detector's mask NMS (`nms_masks`, IoU
`det_nms_thresh`) and the clean-up of low-resolution masks (`fill_holes_in_mask_scores`:
background components of area <= `fill_hole_area` filled, foreground ones removed) through a
hub kernel, `kernels-community/cv-utils`, loaded into the module global `cv_utils_kernel` on
first use. Without the `kernels` package, or offline (every cluster we run on), the load fails
and transformers skips all three with one warning: every detection is kept and no mask is
cleaned, so an index gets duplicate objects and specked masks.

How: `install()` puts `CvUtils` in that global before transformers tries the hub, so
transformers' own `nms_masks` and `fill_holes_in_mask_scores` run unchanged and call it:

- `generic_nms(ious, scores, iou_threshold)`: greedy NMS over a pairwise IoU matrix, Meta's
  `sam3.perflib.nms.generic_nms_cpu` step for step (highest score first, drop every later
  detection whose IoU with a kept one is above the threshold; same `argsort()[::-1]` order,
  so ties break alike);
- `cc_2d(masks, get_counts=True)`: 8-connected component labels and per-pixel component areas
  of a (B, 1, H, W) batch, what Meta's CPU path (`skimage.measure.label`, full connectivity) and
  its CUDA paths (cc_torch, Triton) compute; here `scipy.ndimage.label` labels the whole batch
  in one call (a 3-D structure that connects nothing across the batch axis).

Both run on the host: the IoU matrix (at most the detector's queries) and the low-resolution
masks (288 x 288 at 1008 px input) are small, and the greedy NMS is sequential anyway. On CUDA
that is one copy each way per call; bench/RESULTS.md has the cost.

The global is module-wide: every `Sam3VideoModel` in the process gets the same steps, which is
what we want (the same masks on every machine, whatever kernels are installed). `check()` runs
transformers' two functions on a made-up case at load and raises if a step had no effect (an
upstream change that bypasses the global), so a model never runs without them silently.
"""

from __future__ import annotations

import numpy as np
import torch

from vidlake.errors import UsageError
from vidlake.model import upstream

_MODULE = "transformers.models.sam3_video.modeling_sam3_video"


class CvUtils:
    """Stands in for the `kernels-community/cv-utils` kernel in transformers' SAM 3 video model."""

    @staticmethod
    def generic_nms(
        ious: torch.Tensor, scores: torch.Tensor, iou_threshold: float, use_iou_matrix: bool = True
    ) -> torch.Tensor:
        """Indices (int64, on scores' device) of the detections greedy NMS keeps, best first.

        ious: (N, N) pairwise IoU; scores: (N,). A detection is dropped when its IoU with a kept,
        higher-scored one is above iou_threshold (Meta's `generic_nms_cpu`).
        """
        if not use_iou_matrix:
            raise ValueError("vidlake's NMS takes a pairwise IoU matrix (use_iou_matrix=True)")
        ious_np = ious.float().detach().cpu().numpy()
        scores_np = scores.float().detach().cpu().numpy()
        order = scores_np.argsort()[::-1]
        kept = []
        while order.size > 0:
            i = int(order[0])
            kept.append(i)
            order = order[1:][ious_np[i, order[1:]] <= iou_threshold]
        return torch.tensor(kept, dtype=torch.int64, device=scores.device)

    @staticmethod
    def cc_2d(masks: torch.Tensor, get_counts: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels, counts): 8-connected components of each (1, H, W) plane of masks (B, 1, H, W).

        labels: int32, 0 on background, components numbered from 1 (unique over the batch);
        counts: int32, each foreground pixel's component area, 0 on background. Both on masks'
        device.
        """
        from scipy import ndimage

        if masks.dim() != 4 or masks.shape[1] != 1:
            raise ValueError(f"masks must be (B, 1, H, W), got {tuple(masks.shape)}")
        planes = masks[:, 0].detach().cpu().numpy().astype(bool)
        structure = np.zeros((3, 3, 3), dtype=bool)
        structure[1] = True  # 8-connected in each plane, never across planes
        labels, _ = ndimage.label(planes, structure=structure)
        areas = np.bincount(labels.ravel())
        areas[0] = 0
        counts = areas[labels]
        to = masks.device
        return (
            torch.from_numpy(labels.astype(np.int32))[:, None].to(to),
            torch.from_numpy(counts.astype(np.int32))[:, None].to(to),
        )


def install() -> None:
    """transformers' SAM 3 video model runs NMS, hole filling and sprinkle removal with
    `CvUtils`, in this process, from now on; `check()` then proves it."""
    import importlib

    module = importlib.import_module(_MODULE)
    changed = upstream.problems(part="always")
    if not hasattr(module, "cv_utils_kernel"):
        changed.insert(0, f"{_MODULE}.cv_utils_kernel is gone")
    if changed:
        raise UsageError(
            f"this transformers ({_transformers_version()}) is not the tested "
            f"{upstream.TESTED_TRANSFORMERS} where vidlake plugs in SAM 3's NMS and mask "
            f"clean-up ({changed[0]}); install the tested range (pip install -e . picks it)"
        )
    module.cv_utils_kernel = CvUtils()
    check()


def check() -> None:
    """Raises UsageError unless transformers' `nms_masks` drops a duplicate detection and
    `fill_holes_in_mask_scores` fills a small hole and removes a speck, as SAM 3 does."""
    import importlib

    module = importlib.import_module(_MODULE)
    masks = torch.full((3, 16, 16), -1.0)
    masks[0, 2:10, 2:10] = 1.0
    masks[1, 2:10, 3:10] = 1.0  # a duplicate of 0, lower score
    masks[2, 11:15, 11:15] = 1.0
    probs = torch.tensor([0.9, 0.8, 0.7])
    keep = module.nms_masks(probs, masks, prob_threshold=0.5, iou_threshold=0.1)
    mask = torch.full((1, 1, 16, 16), -1.0)
    mask[0, 0, 2:12, 2:12] = 1.0
    mask[0, 0, 5, 5] = -1.0  # a one-pixel hole
    mask[0, 0, 14, 14] = 1.0  # a one-pixel speck
    cleaned = module.fill_holes_in_mask_scores(mask, max_area=4)
    broken = []
    if keep.tolist() != [True, False, True]:
        broken.append("mask NMS")
    if not cleaned[0, 0, 5, 5] > 0:
        broken.append("hole filling")
    if not cleaned[0, 0, 14, 14] <= 0:
        broken.append("sprinkle removal")
    if broken:
        raise UsageError(
            f"SAM 3's {' and '.join(broken)} did not run in this transformers "
            f"({_transformers_version()}); vidlake will not index without them: install the "
            "tested range (pip install -e . picks it)"
        )


def _transformers_version() -> str:
    import transformers

    return transformers.__version__
