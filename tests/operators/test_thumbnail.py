from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vidlake.operators.thumbnail import crop_thumbnail, jpeg_thumbnail


def _open(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return np.asarray(image.convert("RGB"))


def _frame() -> np.ndarray:
    frame = np.full((120, 160, 3), 48, np.uint8)
    frame[20:60, 100:140] = (230, 40, 40)
    return frame


def test_thumbnail_is_scaled_down_keeping_aspect() -> None:
    thumb = _open(jpeg_thumbnail(_frame(), max_side=64))
    assert thumb.shape == (48, 64, 3)
    assert _open(jpeg_thumbnail(_frame(), max_side=500)).shape == (120, 160, 3)


def test_crop_thumbnail_shows_the_box_region() -> None:
    crop = _open(crop_thumbnail(_frame(), (100.0, 20.0, 140.0, 60.0)))
    assert crop.shape == (40, 40, 3)
    assert np.abs(crop.astype(int) - (230, 40, 40)).mean() < 12


def test_crop_box_is_clipped_to_the_frame() -> None:
    crop = _open(crop_thumbnail(_frame(), (150.5, -10.0, 400.0, 30.2)))
    assert crop.shape == (31, 10, 3)
    assert _open(crop_thumbnail(_frame(), (50.0, 50.0, 50.0, 50.0))).shape == (1, 1, 3)
    assert _open(crop_thumbnail(_frame(), (500.0, 500.0, 600.0, 600.0))).shape == (1, 1, 3)


def test_crop_larger_than_max_side_is_scaled() -> None:
    crop = _open(crop_thumbnail(_frame(), (0, 0, 160, 120), max_side=32))
    assert crop.shape == (24, 32, 3)


def test_thumbnail_rejects_non_rgb_frames() -> None:
    with pytest.raises(ValueError):
        jpeg_thumbnail(np.zeros((10, 10), np.uint8))
