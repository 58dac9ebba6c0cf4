"""Fixtures for model/ tests: the tiny random SAM 3 checkpoint, loaded once, and a short clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CLIP_SHAPE = (6, 96, 128)  # T, H, W: not the model's 112 px square, on purpose


@pytest.fixture(scope="session")
def tiny_segmenter(tiny_sam3_dir: Path):
    """The tiny checkpoint loaded on CPU through load_segmenter, as a user's would be."""
    from vidlake.model import load_segmenter

    return load_segmenter(str(tiny_sam3_dir), device="cpu")


@pytest.fixture(scope="session")
def concepts() -> list[str]:
    """Three prompts: two for the shapes in clip_frames and one for nothing in it."""
    return ["red square", "green box", "person"]


@pytest.fixture(scope="session")
def clip_frames() -> np.ndarray:
    """(6, 96, 128, 3) uint8 RGB: a red square moving right and a green box moving left."""
    t, h, w = CLIP_SHAPE
    frames = np.full((t, h, w, 3), 40, dtype=np.uint8)
    for i in range(t):
        frames[i, 10 + i : 40 + i, 10 + 2 * i : 50 + 2 * i] = (220, 30, 30)
        frames[i, 50:90, 70 - i : 120 - i] = (30, 200, 40)
    return frames
