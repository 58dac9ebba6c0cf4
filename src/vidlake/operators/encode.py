"""COCO RLE encoding of masks (pycocotools), the only mask format vidlake stores."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE of one mask: {"size": [h, w], "counts": bytes}.

    mask: (H, W) bool or uint8. pycocotools wants Fortran (column-major) order; the
    result decodes with `pycocotools.mask.decode` to the same (H, W) mask.
    """
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"]}


def encode_rles(masks: np.ndarray) -> list[dict]:
    """COCO RLEs of a stack of masks (N, H, W) bool, in one pycocotools call."""
    if len(masks) == 0:
        return []
    # A bool stack is viewed as uint8 (no copy); the one copy is pycocotools' (H, W, N) F-order.
    as_u8 = masks.view(np.uint8) if masks.dtype == np.bool_ else masks.astype(np.uint8)
    rles = mask_utils.encode(np.asfortranarray(as_u8.transpose(1, 2, 0)))
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"]} for r in rles]


def decode_rle(rle: dict) -> np.ndarray:
    """The (H, W) bool mask of a COCO RLE dict (counts as bytes or str)."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode()
    return mask_utils.decode({"size": list(rle["size"]), "counts": counts}).astype(bool)


def mask_area(rle: dict) -> int:
    """Pixels set in a COCO RLE mask, without decoding it."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode()
    return int(mask_utils.area({"size": list(rle["size"]), "counts": counts}))
