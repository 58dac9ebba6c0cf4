"""ColorSegmenter: the ground-truth segmenter of the synthetic corpus, by colour thresholding.

It stands in for SAM 3 in pipeline tests and in `vidlake demo`: it finds a palette concept's
pixels by their colour, so what it returns on a synthetic video is known in advance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from vidlake.operators.encode import encode_rles
from vidlake.records import Masklet
from vidlake.synthetic.corpus import BACKGROUND, PALETTE

logger = logging.getLogger(__name__)

# BT.601 RGB -> YUV with luma weighted twice. yuv420p keeps full-resolution luma but halves
# chroma, so a shape's edge pixels carry their true luma and a blend of chroma; weighting luma
# makes them fall on the right side of the shape/background boundary (IoU ~0.99 vs ~0.94 in RGB).
_RGB_TO_WEIGHTED_YUV = np.diag([2.0, 1.0, 1.0]) @ np.array(
    [[0.299, 0.587, 0.114], [-0.169, -0.331, 0.5], [0.5, -0.419, -0.081]]
)
# Classes: background first, then the palette in its order.
_CLASS_COLORS = np.array([BACKGROUND, *PALETTE.values()], dtype=np.float32)
_CLASS_YUV = (_CLASS_COLORS @ _RGB_TO_WEIGHTED_YUV.T).astype(np.float32)
_CONCEPTS = list(PALETTE)


def color_masks(
    frames: np.ndarray, concepts: Sequence[str] | None = None, tolerance: float = 80.0
) -> dict[str, np.ndarray]:
    """{concept: (T, H, W) bool} pixels whose colour is nearest that concept's palette colour.

    frames: (T, H, W, 3) uint8 RGB (a single (H, W, 3) frame is taken as T=1). A pixel belongs to
    a concept when, in luma-weighted YUV, the concept's colour is its nearest among the palette
    and the background, and closer than tolerance (pixels of other colours belong to none).
    Concepts not in PALETTE are left out of the result.
    """
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) RGB, got shape {frames.shape}")
    asked = _CONCEPTS if concepts is None else concepts
    wanted = [c for c in dict.fromkeys(asked) if c in PALETTE]
    masks = {c: np.zeros(frames.shape[:3], bool) for c in wanted}
    if not wanted:
        return masks
    transform = _RGB_TO_WEIGHTED_YUV.T.astype(np.float32)
    for t, frame in enumerate(frames):  # per frame: bounded memory on large frames
        yuv = frame.astype(np.float32) @ transform
        dist = np.linalg.norm(yuv[:, :, None, :] - _CLASS_YUV[None, None], axis=-1)
        label = dist.argmin(axis=-1)
        close = dist.min(axis=-1) < tolerance
        for concept in wanted:
            masks[concept][t] = close & (label == _CONCEPTS.index(concept) + 1)
    return masks


class ColorSegmenter:
    """A ConceptSegmenter for the synthetic palette: one masklet per palette concept per clip.

    object_id is the concept's index in PALETTE, so it is stable across clips (a track id for
    free). Frames where the concept has fewer than min_pixels pixels count as absent (a shape
    entering the frame shows as noise-like slivers for a frame or two).
    """

    model_id = "synthetic:color"

    def __init__(self, min_pixels: int = 8, tolerance: float = 80.0) -> None:
        self.min_pixels = min_pixels
        self.tolerance = tolerance

    def segment(self, frames: np.ndarray, concepts: Sequence[str]) -> list[Masklet]:
        """Masklets of the palette concepts among concepts found in the clip.

        frames: (T, H, W, 3) uint8 RGB. Boxes are xyxy pixel edges (x1 = last column + 1),
        scores and presence 1.0; concepts not in PALETTE and absent concepts give no masklet.
        """
        masklets = []
        for concept, masks in color_masks(frames, concepts, self.tolerance).items():
            areas = masks.sum(axis=(1, 2))
            present = np.flatnonzero(areas >= self.min_pixels)
            if len(present) == 0:
                continue
            kept = masks[present]
            masklets.append(
                Masklet(
                    concept=concept,
                    object_id=_CONCEPTS.index(concept),
                    frame_idx=present.astype(np.int32),
                    boxes=_boxes_xyxy(kept),
                    scores=np.ones(len(present), np.float32),
                    masks=encode_rles(kept),
                    presence=1.0,
                )
            )
        logger.debug("segmented %d frames: %d masklets", len(frames), len(masklets))
        return masklets


def _boxes_xyxy(masks: np.ndarray) -> np.ndarray:
    """(N, 4) float32 boxes x0, y0, x1, y1 (x1/y1 exclusive) of non-empty masks (N, H, W) bool."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes
