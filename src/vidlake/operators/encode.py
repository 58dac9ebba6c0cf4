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


def encode_rles_tensor(masks) -> list[dict]:
    """COCO RLEs of a stack of masks held as a torch tensor (N, H, W) bool, on any device.

    The same bytes as `encode_rles` on the same masks. The run boundaries are found where the
    masks are (on a GPU: one pass over the masks there), and only the boundary positions, a few
    thousand integers per mask, come to the host, instead of N full-resolution bitmaps; the
    host then only compresses the run lengths to COCO's string form (pycocotools). In the
    segment actor on a GPU this takes mask encoding off the path the model waits on.
    """
    import torch

    n, h, w = masks.shape
    if n == 0:
        return []
    length = h * w
    flat = masks.bool().transpose(1, 2).reshape(n, length)  # column-major, as COCO counts
    rows, cols = torch.nonzero(flat[:, 1:] != flat[:, :-1], as_tuple=True)
    starts_with_one = flat[:, 0].cpu().numpy()
    rows = rows.cpu().numpy()
    cols = cols.cpu().numpy().astype(np.int64) + 1  # index where each new run starts
    splits = np.searchsorted(rows, np.arange(1, n))
    uncompressed = []
    for i, starts in enumerate(np.split(cols, splits)):
        counts = np.diff(np.concatenate(([0], starts, [length])))
        if starts_with_one[i]:
            counts = np.concatenate(([0], counts))
        uncompressed.append({"size": [h, w], "counts": counts.tolist()})
    rles = mask_utils.frPyObjects(uncompressed, h, w)
    return [{"size": [h, w], "counts": r["counts"]} for r in rles]


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
