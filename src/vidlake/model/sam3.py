"""The SAM 3 backend: transformers' `Sam3VideoModel` + `Sam3VideoProcessor` behind ConceptSegmenter.

One inference session per clip, every concept of the vocabulary added to it as a text prompt,
so each frame goes through the vision backbone once whatever the number of concepts. Outputs are
drained frame by frame: masks are encoded to COCO RLE as soon as a frame comes out of the model,
so a clip never holds more than one frame of full-resolution masks.

Exemplar prompts (boxes on a reference frame, positive or negative, with or without a phrase).
transformers' video session takes text prompts only; its detector (`Sam3Model`) takes boxes as
`input_boxes` and turns them, in its geometry encoder, into prompt tokens (ROI-pooled features
of the boxes on *that image* plus box position and label embeddings, refined by attention to
that image's features) that it appends to the text tokens before the DETR encoder. What we do:
encode the boxes once per clip on the reference frame's features with that same geometry
encoder, concatenate the tokens to the phrase's text tokens exactly as `Sam3Model.forward`
does, and put the result in the session's prompt-embedding cache (`prompt_embeddings` /
`prompt_attention_masks`, which `Sam3VideoModel.run_detection` reads before it would encode the
text). Every frame of every clip is then detected with "this phrase and what these boxes show
on the reference frame", and the tracker works unchanged. On the reference frame itself this is
bit-for-bit what passing `input_boxes` to the detector gives (tests check it). On every other
frame it is vidlake's design, not SAM 3's: Meta's video predictor applies a visual prompt on its
own frame only (and then tracks what it found), while vidlake reuses the prompt's tokens as a
concept on every frame of every clip, which is what makes an exemplar something that can be
searched for in other videos.
A prompt with boxes and no phrase is encoded with the text "visual", as `Sam3Processor` does.
Cost: one extra backbone pass per distinct reference frame per clip.

SAM 3's quality steps always run: mask NMS, hole filling and sprinkle removal, which
transformers runs only with a hub kernel it downloads at run time, are plugged in at load
(`vidlake.model.quality`), and loading fails rather than run without them.

`max_objects` caps the objects tracked at once (the session's `max_num_objects`: new detections
beyond it are dropped, highest scores kept, so tracker memory stays bounded) and then the
masklets returned (highest scores kept), so a clip never yields more than the cap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vidlake.errors import UsageError
from vidlake.model import quality, upstream
from vidlake.model.checkpoint import (
    load_checkpoint_config,
    load_error,
    resolve_checkpoint,
)
from vidlake.model.prompts import normalised_boxes, prompt_text
from vidlake.model.segmenter import cap_masklets
from vidlake.operators.encode import encode_rles, encode_rles_tensor
from vidlake.records import Masklet, Prompt

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
    detection_score: float = 0.0
    frame_idx: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    masks: list[dict] = field(default_factory=list)


def batched(asked: bool | None, device: str) -> bool:
    """Whether to batch a SAM 3 pass (objects, concepts): as ASKED, else (None) with CUDA."""
    return device.startswith("cuda") if asked is None else bool(asked)


class Sam3Segmenter:
    """SAM 3 concept segmentation and tracking of clips, loaded once and called per clip.

    checkpoint: a hub id (default `facebook/sam3`), a local folder, or an fsspec URI
    (resolved and cached by `resolve_checkpoint`). `model_id` is that spec string, so the
    index records what the user asked for, not a cache path.
    device: "auto" (CUDA if present), "cpu", "cuda", "cuda:1"... Weights stay fp32; on CUDA
    the forward passes run under bf16 autocast.
    compile: wrap the detector's vision encoder (most of the FLOPs, fixed input shape) in
    `torch.compile`; worth it for long jobs on GPU, not for tests.
    batch_objects: run alike tracked objects through the tracker in one batched pass per frame
    (`vidlake.model.batched_tracker`) instead of transformers' one pass per object. Faster;
    the same tracks, but not bit for bit the reference's masks (float rounding of batched
    matrix products; a mask pixel at a logit of ~0 may flip).
    batch_concepts: run the detector once per frame for all text prompts (and once per group
    of alike exemplar prompts) instead of once per prompt (`vidlake.model.batched_detector`);
    per-prompt NMS and thresholds unchanged. Same caveat: equal to float rounding.
    Both default (None) to on with CUDA, where they raise frames/s 2.3x on an H100 and bf16
    autocast already rounds otherwise than the fp32 reference, and off on CPU, where masks
    are then bit for bit transformers' own (bench/RESULTS.md, tests/pipeline/test_fidelity.py).

    meta_parity: where transformers' port of SAM 3 departs from Meta's predictor, do what
    Meta's does (`vidlake.model.meta_parity`: the geometry encoder's token on text prompts,
    the mask a new object starts from, new objects of a prompt with nothing tracked). Off by
    default for now: on, it is not yet exact with every weight (bench/RESULTS.md), and the
    tests comparing vidlake with transformers' documented path still assume it off. Measured
    against Meta's own `sam3` package in bench/RESULTS.md ("Fidelity to Meta's SAM 3").

    On CUDA masks are run-length encoded on the GPU (`encode_rles_tensor`; `device_rle`), so
    only run boundaries cross to the host; on CPU pycocotools encodes them. `drain_s` counts
    the seconds spent post-processing and encoding frames' outputs, time the model does not run.

    `forget_old_frames`: the session keeps every tracked frame's outputs (memory features,
    masks, object pointers: ~4 MiB per object and frame at 1008 px) although the tracker reads
    only the last `memory_window` frames (its memory bank and object pointers) and the
    conditioning frames; older non-conditioning outputs are dropped as the clip advances, so a
    clip's memory stops growing after `memory_window` frames. Results are unchanged (tested).
    """

    def __init__(
        self,
        checkpoint: str,
        device: str = "auto",
        compile: bool = False,
        cache_dir: str | None = None,
        storage_options: dict | None = None,
        batch_objects: bool | None = None,
        batch_concepts: bool | None = None,
        meta_parity: bool = False,
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
        quality.install()
        self.autocast_dtype = torch.bfloat16 if self.device.startswith("cuda") else None
        self.device_rle = self.device.startswith("cuda")
        self.drain_s = 0.0
        tracker = self.model.tracker_model.config
        self.memory_window = max(tracker.num_maskmem, tracker.max_object_pointers_in_encoder)
        self.forget_old_frames = True
        self.batch_objects = batched(batch_objects, self.device)
        self.batch_concepts = batched(batch_concepts, self.device)
        if self.batch_objects or self.batch_concepts:
            changed = upstream.problems(part="batched")
            if changed:
                # The batched passes replace and call transformers internals; with any of them
                # gone or reshaped, run transformers' own passes (exact, slower) and say so.
                logger.warning(
                    "transformers %s differs from the tested %s where vidlake's batched SAM 3 "
                    "passes plug in (%s); running transformers' per-object and per-prompt "
                    "passes instead",
                    _transformers_version(),
                    upstream.TESTED_TRANSFORMERS,
                    "; ".join(changed),
                )
                self.batch_objects = self.batch_concepts = False
        self.meta_parity = meta_parity
        if meta_parity:
            changed = upstream.problems(part="parity")
            if changed:
                logger.warning(
                    "transformers %s differs from the tested %s where vidlake gives SAM 3 "
                    "Meta's behaviour back (%s); running transformers' port as it is, whose "
                    "detections and new objects differ from Meta's",
                    _transformers_version(),
                    upstream.TESTED_TRANSFORMERS,
                    "; ".join(changed),
                )
                self.meta_parity = False
        if self.meta_parity:
            from vidlake.model.meta_parity import enable_meta_parity

            enable_meta_parity(self.model)
        if self.batch_objects:
            from vidlake.model.batched_tracker import enable_batched_tracking

            enable_batched_tracking(self.model)
        if self.batch_concepts:
            from vidlake.model.batched_detector import enable_batched_detection

            enable_batched_detection(self.model)
        if compile:
            encoder = self.model.detector_model.vision_encoder
            self.model.detector_model.vision_encoder = torch.compile(encoder)
        # transformers warns on every frame once a clip reaches max_num_objects; in a job over
        # thousands of clips that floods the driver's log. Only that message is dropped: every
        # other warning of the module (a quality step skipped, say) still shows.
        upstream_logger = logging.getLogger("transformers.models.sam3_video.modeling_sam3_video")
        if _drop_object_cap_notice not in upstream_logger.filters:
            upstream_logger.addFilter(_drop_object_cap_notice)
        logger.info("loaded SAM 3 %s on %s", checkpoint, self.device)

    def segment(
        self,
        frames: np.ndarray,
        concepts: Sequence[str],
        prompts: Sequence[Prompt] | None = None,
        max_objects: int | None = None,
    ) -> list[Masklet]:
        """Masklets of every object of every concept and prompt in the clip, in one pass
        (`segment_with_presence`'s masklets)."""
        return self.segment_with_presence(frames, concepts, prompts, max_objects)[0]

    def segment_with_presence(
        self,
        frames: np.ndarray,
        concepts: Sequence[str],
        prompts: Sequence[Prompt] | None = None,
        max_objects: int | None = None,
    ) -> tuple[list[Masklet], dict[str, np.ndarray]]:
        """(masklets, presence): every object of every concept and prompt in the clip, in one
        pass, and the detector's presence probability of each concept and prompt name on each
        frame ((T,) float32; whether the concept is in the frame at all, objects or not).

        frames: (T, H, W, 3) uint8 RGB. Boxes are xyxy in pixels of these frames and masks are
        RLEs at (H, W). prompts: named prompts (exemplar prompts need their reference_frame
        attached, see `with_reference_frames`); their masklets carry the prompt's name as
        concept. max_objects: at most that many masklets, highest scores kept. Object ids come
        from the model's session and are unique in the result; masklets are sorted by object
        id, frame_idx ascending within each. A masklet's `scores` are the tracker's per-frame
        object scores (the detection's score on the frame it was detected, as SAM 3 reports
        them), its `detection_score` the score of the detection that started it.
        """
        import torch

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise UsageError(
                f"frames must be (T, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}"
            )
        if max_objects is not None and max_objects < 1:
            raise UsageError(f"max_objects must be >= 1, got {max_objects}")
        texts = list(dict.fromkeys(c.strip() for c in concepts if c.strip()))
        prompts = list(prompts or ())
        clash = set(texts) & {p.name for p in prompts}
        if clash:
            raise UsageError(f"prompt name {sorted(clash)[0]!r} is also a text concept")
        if len(frames) == 0 or not (texts or prompts):
            return [], {}

        session = self.processor.init_video_session(
            video=list(frames),
            inference_device=self.device,
            processing_device=self.device,
            video_storage_device="cpu",
            dtype=torch.float32,
        )
        if texts:
            session = self.processor.add_text_prompt(session, texts)
        with torch.inference_mode(), self._autocast():
            for prompt in prompts:
                self._add_prompt(session, prompt)
        presence = _PresenceRecorder(session)
        hook = self.model.detector_model.register_forward_hook(presence, with_kwargs=True)
        tracks: dict[int, _Track] = {}
        default_cap = self.model.max_num_objects
        if max_objects is not None:
            self.model.max_num_objects = min(default_cap, max_objects)
        try:
            with self._autocast():
                for output in self.model.propagate_in_video_iterator(session):
                    self._drain_frame(session, output, tracks)
                    if self.forget_old_frames:
                        self._forget_frame(session, int(output.frame_idx) - self.memory_window)
        finally:
            self.model.max_num_objects = default_cap
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
                    detection_score=track.detection_score,
                )
            )
        by_name = {
            name: presence.per_frame(prompt_id, len(frames))
            for prompt_id, name in session.prompts.items()
        }
        return cap_masklets(masklets, max_objects)[0], by_name

    def _add_prompt(self, session, prompt: Prompt) -> int:
        """Adds a named prompt to the session; its exemplar boxes become prompt tokens.

        The session is keyed by the prompt's name (its masklets' concept); the phrase (or
        "visual") is tokenized as `add_text_prompt` does. With boxes, the detector's geometry
        encoder runs on the reference frame and its tokens are appended to the text tokens in
        the session's prompt-embedding cache, as `Sam3Model.forward` appends them for
        `input_boxes` (see the module docstring).
        """
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        prompt_id = len(session.prompts)
        session.prompts[prompt_id] = prompt.name
        encoded = self.processor.tokenizer(
            prompt_text(prompt), return_tensors="pt", padding="max_length", max_length=32
        ).to(self.device)
        session.prompt_input_ids[prompt_id] = encoded.input_ids
        session.prompt_attention_masks[prompt_id] = encoded.attention_mask
        if not prompt.boxes:
            return prompt_id

        detector = self.model.detector_model
        text = detector.get_text_features(
            input_ids=encoded.input_ids, attention_mask=encoded.attention_mask, return_dict=True
        )
        tokens, token_mask = self.exemplar_tokens(prompt)
        features = torch.cat([text.pooler_output, tokens], dim=1)
        mask = torch.cat([encoded.attention_mask.bool(), token_mask.bool()], dim=1)
        session.prompt_embeddings[prompt_id] = BaseModelOutputWithPooling(
            last_hidden_state=text.last_hidden_state, pooler_output=features
        )
        session.prompt_attention_masks[prompt_id] = mask
        return prompt_id

    def exemplar_tokens(self, prompt: Prompt):
        """(tokens (1, N+1, D), mask (1, N+1) bool): the geometry encoder's output for the
        prompt's boxes on its reference frame, what `Sam3Model.forward` computes from
        `input_boxes` on that frame (N boxes and a CLS token)."""
        import torch

        detector = self.model.detector_model
        pixels = self.processor.video_processor(
            videos=[prompt.reference_frame[None]], device=self.device, return_tensors="pt"
        ).pixel_values_videos[0]
        vision = detector.get_vision_features(pixel_values=pixels.to(self.device, torch.float32))
        boxes = torch.from_numpy(normalised_boxes(prompt))[None].to(self.device)
        labels = torch.tensor([[int(p) for p in prompt.positive]], device=self.device)
        out = detector.geometry_encoder(
            box_embeddings=boxes,
            box_mask=torch.ones_like(labels, dtype=torch.bool),
            box_labels=labels,
            img_feats=vision.fpn_hidden_states[:-1],
            img_pos_embeds=vision.fpn_position_encoding[:-1],
        )
        return out.last_hidden_state, out.attention_mask

    def _drain_frame(self, session, output, tracks: dict[int, _Track]) -> None:
        """Post-process one frame's model output and append its objects to tracks as RLEs."""
        start = time.perf_counter()
        self._drain_objects(session, output, tracks)
        self.drain_s += time.perf_counter() - start

    def _drain_objects(self, session, output, tracks: dict[int, _Track]) -> None:
        processed = self.processor.postprocess_outputs(session, output)
        object_ids = processed["object_ids"].tolist()
        if not object_ids:
            return
        if self.device_rle:
            rles = encode_rles_tensor(processed["masks"])
        else:
            rles = encode_rles(processed["masks"].cpu().numpy())
        boxes = processed["boxes"].float().cpu().numpy()
        detection_scores = processed["scores"].float().cpu().numpy()
        # The tracker's object score on this frame (sigmoid); on the frame an object is
        # detected, its detection score (SAM 3 has no tracker score for it there).
        tracker_scores = output.obj_id_to_tracker_score or {}
        frame_idx = int(output.frame_idx)
        for i, object_id in enumerate(object_ids):
            track = tracks.get(object_id)
            if track is None:
                track = tracks[object_id] = _Track(prompt_id=session.obj_id_to_prompt_id[object_id])
            track.detection_score = float(detection_scores[i])
            track.frame_idx.append(frame_idx)
            track.boxes.append(boxes[i])
            track.scores.append(float(tracker_scores.get(object_id, detection_scores[i])))
            track.masks.append(rles[i])

    @staticmethod
    def _forget_frame(session, frame_idx: int) -> None:
        """Drops every object's non-conditioning outputs of FRAME_IDX, a frame the tracker no
        longer reads (the clip propagates forward, one frame per step)."""
        for outputs in session.output_dict_per_obj.values():
            outputs["non_cond_frame_outputs"].pop(frame_idx, None)

    def _autocast(self):
        """bf16 autocast on CUDA, a no-op context on CPU (fp32 there: bf16 on CPU is slow)."""
        import contextlib

        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def _drop_object_cap_notice(record: logging.LogRecord) -> bool:
    """False for transformers' per-frame "hitting self.max_num_objects=..." warning."""
    return "max_num_objects" not in record.getMessage()


class _PresenceRecorder:
    """Forward hook on the detector that keeps the max presence probability per prompt id.

    SAM 3's detector returns a presence logit per (frame, prompt) that says whether the concept
    is in the frame at all; `Sam3VideoModel.run_detection` multiplies it into the detection
    scores and drops it. The hook recovers it without a second forward pass, matching each
    detector call to its prompt by the attention-mask tensor the session passes for that prompt.
    """

    def __init__(self, session) -> None:
        self._prompt_of_mask = {id(m): pid for pid, m in session.prompt_attention_masks.items()}
        # prompt id -> presence per detector call; the session calls the detector once per
        # prompt on each frame, in frame order, so call i is frame i.
        self._frames: dict[int, list[float]] = {}

    def __call__(self, module, args, kwargs, output) -> None:
        logits = getattr(output, "presence_logits", None)
        prompt_id = self._prompt_of_mask.get(id(kwargs.get("attention_mask")))
        if logits is None or prompt_id is None:
            return
        self._frames.setdefault(prompt_id, []).append(float(logits.float().sigmoid().max()))

    def max_for(self, prompt_id: int) -> float:
        """Max presence probability of the prompt over the clip's frames; 1.0 if none was seen."""
        values = self._frames.get(prompt_id)
        return max(values) if values else 1.0

    def per_frame(self, prompt_id: int, n_frames: int) -> np.ndarray:
        """(n_frames,) float32: the prompt's presence probability on each frame, 1.0 where the
        detector reported none."""
        values = np.ones(n_frames, dtype=np.float32)
        seen = self._frames.get(prompt_id, [])[:n_frames]
        values[: len(seen)] = seen
        return values
