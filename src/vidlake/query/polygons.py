"""Polygons of a stored mask: OpenCV's border following (`cv2.findContours`) on the decoded
COCO RLE, for the exports whose formats hold polygons (YOLO segmentation, CVAT).

Vertices are pixel indices (x = column, y = row) of the mask's outermost pixels, as
Ultralytics' and supervision's mask-to-polygon converters give them: `cv2.fillPoly` of the
polygons gives the mask back exactly when it has no holes. Holes are dropped (the formats'
polygons have none) and a mask in several parts gives one polygon per part, largest first.
"""

from __future__ import annotations

import numpy as np

MIN_VERTICES = 3  # fewer is a line or a point, which no polygon format reads as an area


def mask_polygons(rle: dict) -> list[np.ndarray]:
    """(K, 2) int32 x, y vertices of each part of the mask RLE (size [h, w], counts), largest
    part first (by pixels, ties in scan order); [] for an empty mask.

    A part of one or two pixels in a line is kept as a polygon of 3 or 4 vertices (its pixels
    repeated), so every non-empty mask has a polygon: a caller never drops an object silently.
    """
    import cv2
    from pycocotools import mask as mask_utils

    # decode gives a column-major (Fortran-ordered) array; OpenCV needs rows contiguous.
    mask = np.ascontiguousarray(mask_utils.decode({"size": rle["size"], "counts": rle["counts"]}))
    if not mask.any():
        return []
    # CHAIN_APPROX_SIMPLE keeps only the ends of straight runs; their fill is the same.
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    parts = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(np.int32)
        if len(points) < MIN_VERTICES:
            points = np.resize(points, (MIN_VERTICES, 2))  # repeated cyclically
        part = np.zeros_like(mask)
        cv2.fillPoly(part, [points], 1)
        parts.append((-int(part.sum()), int(points[0, 1]), int(points[0, 0]), points))
    parts.sort(key=lambda p: p[:3])
    return [p[3] for p in parts]
