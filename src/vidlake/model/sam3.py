"""The SAM 3 backend: transformers' `Sam3VideoModel` + `Sam3VideoProcessor` behind ConceptSegmenter.

One inference session per clip, every concept of the vocabulary added to it as a text prompt,
so each frame goes through the vision backbone once whatever the number of concepts. Outputs are
drained frame by frame: masks are encoded to COCO RLE as soon as a frame comes out of the model,
so a clip never holds more than one frame of full-resolution masks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vidlake.errors import UsageError
from vidlake.model.checkpoint import (
    load_checkpoint_config,
    load_error,
    resolve_checkpoint,
)
from vidlake.operators.encode import encode_rles
from vidlake.records import Masklet

logger = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> str:
    """The torch device string to run on: "cuda" when device is "auto" and CUDA is available."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} asked for, but CUDA is not available here")
    return device


@dataclass
class _Track:
    """What one object id has accumulated so far in a clip: per-frame RLEs, never float masks."""

    prompt_id: int
    frame_idx: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    masks: list[dict] = field(default_factory=list)


class Sam3Segmenter:
    """SAM 3 concept segmentation and tracking of clips, loaded once and called per clip.

    checkpoint: a hub id (default `facebook/sam3`), a local folder, or an fsspec URI
    (resolved and cached by `resolve_checkpoint`). `model_id` is that spec string, so the
    index records what the user asked for, not a cache path.
    device: "auto" (CUDA if present), "cpu", "cuda", "cuda:1"... Weights stay fp32; on CUDA
    the forward passes run under bf16 autocast.
    compile: wrap the detector's vision encoder (most of the FLOPs, fixed input shape) in
    `torch.compile`; worth it for long jobs on GPU, not for tests.
    """

    def __init__(
        self,
        checkpoint: str,
        device: str = "auto",
        compile: bool = False,
        cache_dir: str | None = None,
        storage_options: dict | None = None,
    ) -> None:
        import torch
        from transformers import Sam3VideoModel, Sam3VideoProcessor

        self.model_id = checkpoint
        self.device = resolve_device(device)
        path = resolve_checkpoint(checkpoint, cache_dir=cache_dir, storage_options=storage_options)
        config = load_checkpoint_config(checkpoint, path)
        try:
            self.processor = Sam3VideoProcessor.from_pretrained(path)
            self.model = Sam3VideoModel.from_pretrained(path, config=config)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise load_error(checkpoint, exc) from exc
        self.model.to(self.device).eval()
        self.autocast_dtype = torch.bfloat16 if self.device.startswith("cuda") else None
        if compile:
            encoder = self.model.detector_model.vision_encoder
            self.model.detector_model.vision_encoder = torch.compile(encoder)
        # transformers warns on every frame once a clip reaches max_num_objects; in a job over
        # thousands of clips that floods the driver's log, so keep its errors only.
        logging.getLogger("transformers.models.sam3_video.modeling_sam3_video").setLevel(
            logging.ERROR
        )
        logger.info("loaded SAM 3 %s on %s", checkpoint, self.device)

    def segment(self, frames: np.ndarray, concepts: Sequence[str]) -> list[Masklet]:
        """Masklets of every object of every concept in the clip, from one pass over its frames.

        frames: (T, H, W, 3) uint8 RGB. Boxes are xyxy in pixels of these frames and masks are
        RLEs at (H, W). Object ids come from the model's session and are unique in the result;
        masklets are sorted by object id, frame_idx ascending within each.
        """
        import torch

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise UsageError(
                f"frames must be (T, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}"
            )
        prompts = list(dict.fromkeys(c.strip() for c in concepts if c.strip()))
        if len(frames) == 0 or not prompts:
            return []

        session = self.processor.init_video_session(
            video=list(frames),
            inference_device=self.device,
            processing_device=self.device,
            video_storage_device="cpu",
            dtype=torch.float32,
        )
        session = self.processor.add_text_prompt(session, prompts)
        presence = _PresenceRecorder(session)
        hook = self.model.detector_model.register_forward_hook(presence, with_kwargs=True)
        tracks: dict[int, _Track] = {}
        try:
            with self._autocast():
                for output in self.model.propagate_in_video_iterator(session):
                    self._drain_frame(session, output, tracks)
        finally:
            hook.remove()

        masklets = []
        for object_id in sorted(tracks):
            track = tracks[object_id]
            order = np.argsort(track.frame_idx, kind="stable")
            masklets.append(
                Masklet(
                    concept=session.prompts[track.prompt_id],
                    object_id=int(object_id),
                    frame_idx=np.asarray(track.frame_idx, dtype=np.int32)[order],
                    boxes=np.stack(track.boxes).astype(np.float32)[order],
                    scores=np.asarray(track.scores, dtype=np.float32)[order],
                    masks=[track.masks[i] for i in order],
                    presence=presence.max_for(track.prompt_id),
                )
            )
        return masklets

    def _drain_frame(self, session, output, tracks: dict[int, _Track]) -> None:
        """Post-process one frame's model output and append its objects to tracks as RLEs."""
        processed = self.processor.postprocess_outputs(session, output)
        object_ids = processed["object_ids"].tolist()
        if not object_ids:
            return
        masks = processed["masks"].cpu().numpy()
        boxes = processed["boxes"].float().cpu().numpy()
        scores = processed["scores"].float().cpu().numpy()
        rles = encode_rles(masks)
        frame_idx = int(output.frame_idx)
        for i, object_id in enumerate(object_ids):
            track = tracks.get(object_id)
            if track is None:
                track = tracks[object_id] = _Track(prompt_id=session.obj_id_to_prompt_id[object_id])
            track.frame_idx.append(frame_idx)
            track.boxes.append(boxes[i])
            track.scores.append(float(scores[i]))
            track.masks.append(rles[i])

    def _autocast(self):
        """bf16 autocast on CUDA, a no-op context on CPU (fp32 there: bf16 on CPU is slow)."""
        import contextlib

        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)


class _PresenceRecorder:
    """Forward hook on the detector that keeps the max presence probability per prompt id.

    SAM 3's detector returns a presence logit per (frame, prompt) that says whether the concept
    is in the frame at all; `Sam3VideoModel.run_detection` multiplies it into the detection
    scores and drops it. The hook recovers it without a second forward pass, matching each
    detector call to its prompt by the attention-mask tensor the session passes for that prompt.
    """

    def __init__(self, session) -> None:
        self._prompt_of_mask = {id(m): pid for pid, m in session.prompt_attention_masks.items()}
        self._max: dict[int, float] = {}

    def __call__(self, module, args, kwargs, output) -> None:
        logits = getattr(output, "presence_logits", None)
        prompt_id = self._prompt_of_mask.get(id(kwargs.get("attention_mask")))
        if logits is None or prompt_id is None:
            return
        value = float(logits.float().sigmoid().max())
        self._max[prompt_id] = max(value, self._max.get(prompt_id, 0.0))

    def max_for(self, prompt_id: int) -> float:
        """Max presence probability of the prompt over the clip's frames; 1.0 if none was seen."""
        return self._max.get(prompt_id, 1.0)
