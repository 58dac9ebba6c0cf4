"""SAM 3 behind the ConceptSegmenter protocol: `load_segmenter(spec, device)` builds one.

Nothing here imports torch or transformers at import time, so the CLI starts fast; the
backends import them when they are built.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from vidlake.errors import UsageError
from vidlake.model.checkpoint import DEFAULT_MODEL, resolve_checkpoint
from vidlake.model.prompts import check_prompts
from vidlake.model.segmenter import ConceptSegmenter

logger = logging.getLogger(__name__)

SYNTHETIC_COLOR = "synthetic:color"

__all__ = [
    "DEFAULT_MODEL",
    "ConceptSegmenter",
    "check_model",
    "check_prompts",
    "is_sam3",
    "load_segmenter",
    "resolve_checkpoint",
]


def load_segmenter(
    spec: str = DEFAULT_MODEL, device: str = "auto", **kwargs: Any
) -> ConceptSegmenter:
    """A ready ConceptSegmenter for spec, weights loaded once.

    spec is one of:
    - "synthetic:color": the ground-truth colour segmenter for synthetic test videos;
    - "package.module:ClassName": a plug-in segmenter class, built as Class(device=device, **kwargs)
      when it takes a device argument, else Class(**kwargs);
    - a SAM 3 checkpoint: hub id (default facebook/sam3), local folder, or fsspec URI
      (s3://, gs://, https://, file://), loaded by `Sam3Segmenter`.
    kwargs go to the backend (for SAM 3: compile, cache_dir, storage_options).
    """
    if spec == SYNTHETIC_COLOR:
        from vidlake.synthetic.segmenter import ColorSegmenter

        return ColorSegmenter(**kwargs)
    if not is_sam3(spec):
        return _load_plugin(spec, device, **kwargs)

    from vidlake.model.sam3 import Sam3Segmenter

    return Sam3Segmenter(spec, device=device, **kwargs)


def is_sam3(spec: str) -> bool:
    """Whether SPEC names a SAM 3 checkpoint (hub id, folder, URI), not a built-in or plug-in."""
    return spec != SYNTHETIC_COLOR and not (":" in spec and "://" not in spec)


def check_model(spec: str = DEFAULT_MODEL, **kwargs: Any) -> dict:
    """The model's decision settings (SAM 3: thresholds, NMS, hotstart, hole area; empty for
    other segmenters); a one-line VidlakeError if SPEC cannot be loaded. Cheap (no weights).

    The index job calls this on the driver before any cluster work, so a bad --model is a
    usage error instead of a crash inside every segment actor, and records the settings with
    the run.
    """
    if spec == SYNTHETIC_COLOR:
        return {}
    if not is_sam3(spec):
        _plugin_class(spec)
        return {}
    from vidlake.model.checkpoint import check_checkpoint_config

    path = resolve_checkpoint(
        spec, cache_dir=kwargs.get("cache_dir"), storage_options=kwargs.get("storage_options")
    )
    return check_checkpoint_config(spec, path)


def _load_plugin(spec: str, device: str, **kwargs: Any) -> ConceptSegmenter:
    """The plug-in segmenter named "package.module:ClassName", instantiated."""
    import inspect

    cls = _plugin_class(spec)
    try:
        takes_device = "device" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        takes_device = False
    segmenter = cls(device=device, **kwargs) if takes_device else cls(**kwargs)
    if not isinstance(segmenter, ConceptSegmenter):
        raise UsageError(f"{spec} is not a ConceptSegmenter (needs model_id and segment())")
    logger.info("loaded plug-in segmenter %s", spec)
    return segmenter


def _plugin_class(spec: str) -> type:
    """The class a "package.module:ClassName" spec names; UsageError if it does not exist."""
    module_name, _, class_name = spec.partition(":")
    if module_name == "synthetic":
        raise UsageError(
            f"no synthetic segmenter {spec!r}: the built-in one is {SYNTHETIC_COLOR!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"cannot import segmenter module {module_name!r} of {spec!r}: {exc}"
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UsageError(f"segmenter module {module_name!r} has no {class_name!r} (from {spec!r})")
    return cls
