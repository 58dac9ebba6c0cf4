"""The record types passed between stages, defined once.

Every stage speaks these types: operators take and return them, pipeline/ converts them to
Arrow rows only at the Ray Data boundary (store/schema.py holds the Arrow schemas).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


def stable_id(*parts: object) -> str:
    """A 16-hex-digit id derived from parts: the same inputs give the same id in every run."""
    h = hashlib.sha1("\x1f".join(str(p) for p in parts).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class VideoSource:
    """A video file found by listing the sources; the fingerprint says whether it changed."""

    uri: str
    size: int
    version: str  # etag or mtime, whichever the filesystem reports

    @property
    def video_id(self) -> str:
        return stable_id("video", self.uri)

    @property
    def fingerprint(self) -> str:
        return stable_id(self.uri, self.size, self.version)


@dataclass(frozen=True)
class VideoInfo:
    """What probing a video found. Times in seconds; width/height in pixels of the stored stream."""

    uri: str
    fps: float
    n_frames: int
    duration_s: float
    width: int
    height: int
    codec: str


@dataclass(frozen=True)
class ClipSpec:
    """One clip of a video: the source frames to sample and their timestamps.

    frame_indices: (T,) int64 source frame numbers; times_s: (T,) float64 their timestamps.
    """

    video_id: str
    video_uri: str
    clip_index: int
    start_s: float
    end_s: float
    sampled_fps: float
    frame_indices: np.ndarray
    times_s: np.ndarray

    @property
    def clip_id(self) -> str:
        return stable_id("clip", self.video_id, self.clip_index)

    @property
    def n_frames(self) -> int:
        return int(len(self.frame_indices))


@dataclass
class Masklet:
    """One object tracked through one clip, as a segmenter returns it.

    frame_idx: (K,) int32 indices into the clip's sampled frames where the object is present.
    boxes: (K, 4) float32 xyxy in pixels of the decoded frames.
    scores: (K,) float32 per-frame scores (SAM 3: the tracker's object score on each frame).
    masks: K COCO RLE dicts ({"size": [h, w], "counts": bytes}), column-major as pycocotools.
    presence: clip-level presence score of the concept (max over frames), 1.0 if the model has none.
    detection_score: the score of the detection that started the object (SAM 3), None when the
    segmenter has no such score.
    """

    concept: str
    object_id: int
    frame_idx: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    masks: list[dict]
    presence: float = 1.0
    detection_score: float | None = None

    @property
    def score(self) -> float:
        """The object's score: its detection score where the segmenter has one, else the best
        per-frame score."""
        if self.detection_score is not None:
            return float(self.detection_score)
        return float(self.scores.max()) if len(self.scores) else 0.0


@dataclass
class ClipResult:
    """A clip after segmentation: its spec, masklets and a JPEG thumbnail of its middle frame."""

    spec: ClipSpec
    height: int
    width: int
    masklets: list[Masklet] = field(default_factory=list)
    thumbnail: bytes = b""
    max_objects: int | None = None  # the --max-objects cap the clip was segmented under
    # concept or prompt name -> (T,) float32 presence probability per sampled frame, for the
    # segmenters that report one (SAM 3's detector); empty otherwise.
    presence: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Prompt:
    """A named concept prompt: a text phrase, exemplar boxes on a reference frame, or both.

    Masklets found with it are stored under `name`. boxes: xyxy in pixels of the reference
    frame (frame `frame_index` of `video_uri`, at the video's native size); positive[i] says
    whether box i shows the concept (True) or something that is not it (False). A prompt with
    no boxes is a text prompt stored under a name other than its text. Like a text concept,
    the prompt is applied to every clip of every video, not only to the reference video.
    reference_frame: (H, W, 3) uint8 RGB pixels of the reference frame, attached by
    `vidlake.model.prompts.with_reference_frames` where the segmenter runs; None on the
    driver and in the recorded configuration.
    """

    name: str
    text: str | None = None
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    positive: tuple[bool, ...] = ()
    video_uri: str | None = None
    frame_index: int | None = None
    reference_frame: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def has_exemplars(self) -> bool:
        return len(self.boxes) > 0

    def describe(self) -> dict:
        """The prompt as JSON-ready data, without the reference frame's pixels."""
        return {
            "name": self.name,
            "text": self.text,
            "boxes": [list(b) for b in self.boxes],
            "positive": list(self.positive),
            "video_uri": self.video_uri,
            "frame_index": self.frame_index,
        }
