"""The ConceptSegmenter protocol: clip frames and concept prompts in, masklets out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from vidlake.records import Masklet


@runtime_checkable
class ConceptSegmenter(Protocol):
    """Finds, segments and tracks every object matching each concept in one clip.

    Implementations load their weights once (constructor) and keep `segment` free of hidden
    state between calls, so one instance serves many clips in a Ray actor.
    """

    model_id: str

    def segment(self, frames: np.ndarray, concepts: Sequence[str]) -> list[Masklet]:
        """Masklets for all concepts in one pass over the clip.

        frames: (T, H, W, 3) uint8 RGB. Object ids are unique within the returned list.
        """
        ...
