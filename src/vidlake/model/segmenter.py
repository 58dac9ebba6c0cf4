"""The ConceptSegmenter protocol: clip frames and concept prompts in, masklets out."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from vidlake.records import Masklet, Prompt


@runtime_checkable
class ConceptSegmenter(Protocol):
    """Finds, segments and tracks every object matching each concept in one clip.

    Implementations load their weights once (constructor) and keep `segment` free of hidden
    state between calls, so one instance serves many clips in a Ray actor.

    `segment(frames, concepts)` is all a plug-in must take. Segmenters that support them also
    take `prompts` (named `Prompt`s: exemplar boxes on a reference frame, with or without a
    phrase; masklets stored under the prompt's name) and `max_objects` (at most that many
    objects per clip, the highest scores kept); `accepts(segmenter, "prompts")` tells.
    """

    model_id: str

    def segment(self, frames: np.ndarray, concepts: Sequence[str]) -> list[Masklet]:
        """Masklets for all concepts in one pass over the clip.

        frames: (T, H, W, 3) uint8 RGB. Object ids are unique within the returned list.
        """
        ...


def accepts(segmenter: ConceptSegmenter, argument: str) -> bool:
    """Whether segmenter.segment takes the keyword argument (e.g. "prompts", "max_objects")."""
    try:
        params = inspect.signature(segmenter.segment).parameters
    except (TypeError, ValueError):
        return False
    return argument in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def segment_with_presence(
    segmenter: ConceptSegmenter, frames: np.ndarray, concepts: Sequence[str], **kwargs
) -> tuple[list[Masklet], dict[str, np.ndarray]]:
    """(masklets, presence per concept and frame) from segmenters that report presence
    (`segment_with_presence`, as SAM 3's), else (segment(...), {})."""
    method = getattr(segmenter, "segment_with_presence", None)
    if method is not None:
        return method(frames, concepts, **kwargs)
    return segmenter.segment(frames, concepts, **kwargs), {}


def cap_masklets(masklets: list[Masklet], max_objects: int | None) -> tuple[list[Masklet], int]:
    """(the max_objects masklets of highest score, how many were dropped); order kept.

    Ties go to the lower object id, so the same clip always keeps the same objects.
    """
    if max_objects is None or len(masklets) <= max_objects:
        return list(masklets), 0
    ranked = sorted(range(len(masklets)), key=lambda i: (-masklets[i].score, masklets[i].object_id))
    keep = set(ranked[:max_objects])
    return [m for i, m in enumerate(masklets) if i in keep], len(masklets) - max_objects


def prompt_names(concepts: Sequence[str], prompts: Sequence[Prompt] | None) -> list[str]:
    """Every name a clip's masklets may carry: the concepts, then the prompts' names."""
    return [*concepts, *(p.name for p in prompts or ())]
