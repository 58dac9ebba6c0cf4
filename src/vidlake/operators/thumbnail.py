"""JPEG thumbnails of clip frames and of object crops, small enough to store in table rows."""

from __future__ import annotations

import io
import logging
import math

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)


def jpeg_thumbnail(frame: np.ndarray, max_side: int = 256, quality: int = 80) -> bytes:
    """JPEG bytes of a frame (H, W, 3) uint8 RGB, scaled down so its longer side <= max_side.

    Never scaled up; aspect kept; each side at least 1 px.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    image = Image.fromarray(np.ascontiguousarray(frame))
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def crop_thumbnail(
    frame: np.ndarray, box: np.ndarray | tuple[float, float, float, float], max_side: int = 128
) -> bytes:
    """JPEG bytes of the box region of a frame (H, W, 3) uint8 RGB, longer side <= max_side.

    box: x0, y0, x1, y1 in pixels (xyxy); it is clipped to the frame and widened outward to whole
    pixels, and a box outside the frame or thinner than a pixel still gives a crop of at least
    1x1 px at its nearest in-frame position.
    """
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"box must be finite, got {box}")
    left = min(max(math.floor(min(x0, x1)), 0), w - 1)
    top = min(max(math.floor(min(y0, y1)), 0), h - 1)
    right = max(min(math.ceil(max(x0, x1)), w), left + 1)
    bottom = max(min(math.ceil(max(y0, y1)), h), top + 1)
    return jpeg_thumbnail(frame[top:bottom, left:right], max_side=max_side)
