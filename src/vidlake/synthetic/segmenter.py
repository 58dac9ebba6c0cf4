"""ColorSegmenter: the ground-truth segmenter of the synthetic corpus, by colour thresholding.

It stands in for SAM 3 in pipeline tests and in `vidlake demo`: it finds a palette concept's
pixels by their colour, so what it returns on a synthetic video is known in advance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from vidlake.errors import UsageError
from vidlake.operators.encode import encode_rles
from vidlake.records import Masklet, Prompt
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

    def segment(
        self,
        frames: np.ndarray,
        concepts: Sequence[str],
        prompts: Sequence[Prompt] | None = None,
        max_objects: int | None = None,
    ) -> list[Masklet]:
        """Masklets of the palette concepts among concepts, and of the prompts, in the clip.

        frames: (T, H, W, 3) uint8 RGB. Boxes are xyxy pixel edges (x1 = last column + 1),
        scores and presence 1.0; concepts not in PALETTE and absent concepts give no masklet.
        A prompt stands for the palette colours its positive exemplar boxes show on its
        reference frame (each box: the colour of most of its shape pixels), less those its
        negative boxes show; a prompt without positive boxes stands for its text's colour.
        Its masklets carry the prompt's name, object id len(PALETTE) * (1 + prompt index) +
        colour index. max_objects keeps that many masklets, the largest areas first.
        """
        masklets = [
            self._masklet(concept, masks, _CONCEPTS.index(concept))
            for concept, masks in color_masks(frames, concepts, self.tolerance).items()
        ]
        for i, prompt in enumerate(prompts or ()):
            colours = exemplar_concepts(prompt, self.tolerance)
            for concept, masks in color_masks(frames, colours, self.tolerance).items():
                object_id = len(_CONCEPTS) * (1 + i) + _CONCEPTS.index(concept)
                masklets.append(self._masklet(prompt.name, masks, object_id))
        masklets = [m for m in masklets if m is not None]
        if max_objects is not None:
            # Scores are all 1.0 here: rank by total area so the cap keeps the biggest objects.
            by_area = sorted(masklets, key=lambda m: -sum(_rle_area(r) for r in m.masks))
            keep = {id(m) for m in by_area[:max_objects]}
            masklets = [m for m in masklets if id(m) in keep]
        logger.debug("segmented %d frames: %d masklets", len(frames), len(masklets))
        return masklets

    def _masklet(self, concept: str, masks: np.ndarray, object_id: int) -> Masklet | None:
        """The masklet of (T, H, W) bool masks over the frames where they reach min_pixels."""
        areas = masks.sum(axis=(1, 2))
        present = np.flatnonzero(areas >= self.min_pixels)
        if len(present) == 0:
            return None
        kept = masks[present]
        return Masklet(
            concept=concept,
            object_id=object_id,
            frame_idx=present.astype(np.int32),
            boxes=_boxes_xyxy(kept),
            scores=np.ones(len(present), np.float32),
            masks=encode_rles(kept),
            presence=1.0,
        )


def exemplar_concepts(prompt: Prompt, tolerance: float = 80.0) -> list[str]:
    """The palette concepts a prompt stands for, from its exemplar boxes on its reference frame.

    A box stands for the palette colour of most of the shape pixels inside it; positive boxes
    add their colour, negative boxes remove theirs. No positive box: the text's colour, if
    the text is a palette concept.
    """
    if not prompt.boxes:
        return [prompt.text] if prompt.text in PALETTE else []
    if prompt.reference_frame is None:
        raise UsageError(f"prompt {prompt.name!r} has exemplar boxes but no reference frame")
    frame = prompt.reference_frame
    wanted: list[str] = []
    unwanted: set[str] = set()
    for box, positive in zip(prompt.boxes, prompt.positive, strict=True):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        masks = color_masks(frame[y0:y1, x0:x1], None, tolerance)
        areas = {c: int(m.sum()) for c, m in masks.items() if m.any()}
        if not areas:
            continue
        colour = max(areas, key=areas.get)
        if positive:
            wanted.append(colour)
        else:
            unwanted.add(colour)
    if not any(prompt.positive) and prompt.text in PALETTE:
        wanted.append(prompt.text)
    return [c for c in dict.fromkeys(wanted) if c not in unwanted]


def _rle_area(rle: dict) -> int:
    from pycocotools import mask as mask_utils

    return int(mask_utils.area(rle))


def _boxes_xyxy(masks: np.ndarray) -> np.ndarray:
    """(N, 4) float32 boxes x0, y0, x1, y1 (x1/y1 exclusive) of non-empty masks (N, H, W) bool."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes
