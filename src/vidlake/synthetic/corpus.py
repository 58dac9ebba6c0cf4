"""Synthetic videos with exact ground truth: coloured shapes moving over a dark-grey background.

Each concept is a shape drawn in one colour ("red square", "blue circle", ...); `PALETTE` holds
them. A video is H.264 (yuv420p, low CRF) so that thresholding the decoded colours recovers the
drawn masks almost exactly, and `SyntheticVideo.mask` rasterises the same shapes again, so tests
compare what the pipeline finds against pixels that are known, not guessed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

logger = logging.getLogger(__name__)

# RGB colours chosen far apart from each other and from the background in RGB and in YUV, and so
# that the blend of any colour with the background (what chroma subsampling makes of a shape's
# edge) stays well away from every other colour (> 115 RGB units).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red square": (230, 40, 40),
    "blue circle": (40, 80, 240),
    "green triangle": (40, 200, 60),
    "yellow star": (245, 225, 50),
}
BACKGROUND: tuple[int, int, int] = (48, 48, 48)

_KINDS = ("square", "circle", "triangle", "star")


@dataclass(frozen=True)
class ShapeSpec:
    """One shape of a video: where it starts, how it moves and when it is drawn.

    start_xy: centre in pixels at frame 0 (may lie outside the frame: the shape enters later).
    velocity_xy: pixels per second. size: side (square) or diameter (circle, triangle, star).
    appear_frame/disappear_frame: drawn on frames appear_frame <= f < disappear_frame
    (disappear_frame None: until the end). It is visible where it is drawn and inside the frame.
    """

    concept: str
    start_xy: tuple[float, float]
    velocity_xy: tuple[float, float] = (0.0, 0.0)
    size: float = 36.0
    appear_frame: int = 0
    disappear_frame: int | None = None

    def __post_init__(self) -> None:
        if self.concept not in PALETTE:
            raise ValueError(f"unknown concept {self.concept!r}; known: {sorted(PALETTE)}")
        if self.size <= 0:
            raise ValueError(f"shape size must be > 0, got {self.size}")

    @property
    def kind(self) -> str:
        return self.concept.split()[-1]

    @property
    def color(self) -> tuple[int, int, int]:
        return PALETTE[self.concept]

    def center(self, frame_index: int, fps: float) -> tuple[float, float]:
        """Centre (x, y) in pixels at a frame; positions are rounded to whole pixels."""
        t = frame_index / fps
        x = self.start_xy[0] + self.velocity_xy[0] * t
        y = self.start_xy[1] + self.velocity_xy[1] * t
        return float(round(x)), float(round(y))

    def is_drawn(self, frame_index: int) -> bool:
        end = self.disappear_frame
        return frame_index >= self.appear_frame and (end is None or frame_index < end)


@dataclass(frozen=True)
class VideoSpec:
    """What to write for one synthetic video. width and height must be even (yuv420p)."""

    name: str
    shapes: tuple[ShapeSpec, ...]
    duration_s: float = 6.0
    width: int = 160
    height: int = 120
    fps: float = 12.0

    @property
    def n_frames(self) -> int:
        return int(round(self.duration_s * self.fps))


@dataclass
class SyntheticVideo:
    """A written synthetic video and its ground truth.

    mask/visible_frames/visible_seconds are computed from the shapes with the rasteriser that
    drew the frames, so they are exact for the pixels before compression.
    """

    uri: str
    fps: float
    n_frames: int
    width: int
    height: int
    shapes: tuple[ShapeSpec, ...] = field(default_factory=tuple)

    @property
    def concepts(self) -> list[str]:
        return [s.concept for s in self.shapes]

    def render(self, frame_index: int) -> np.ndarray:
        """The frame as drawn before encoding: (H, W, 3) uint8 RGB."""
        frame = np.empty((self.height, self.width, 3), np.uint8)
        frame[:] = BACKGROUND
        for shape in self.shapes:
            if shape.is_drawn(frame_index):
                frame[_rasterise(shape, frame_index, self.fps, self.height, self.width)] = (
                    shape.color
                )
        return frame

    def mask(self, concept: str, frame_index: int) -> np.ndarray:
        """(H, W) bool: the pixels of the concept's shape visible at a frame.

        Shapes are drawn in the order of `shapes`; a later shape hides an earlier one, so the
        mask is what is visible, as a segmenter would see it. All False when the concept is
        absent from the video or not drawn at that frame.
        """
        visible = np.zeros((self.height, self.width), bool)
        for shape in self.shapes:
            if not shape.is_drawn(frame_index):
                continue
            pixels = _rasterise(shape, frame_index, self.fps, self.height, self.width)
            if shape.concept == concept:
                visible |= pixels
            else:
                visible &= ~pixels
        return visible

    def visible_frames(self, concept: str) -> np.ndarray:
        """(F,) int64 indices of the frames where the concept has at least one visible pixel."""
        return np.array(
            [f for f in range(self.n_frames) if self.mask(concept, f).any()], dtype=np.int64
        )

    def visible_seconds(self, concept: str) -> list[tuple[float, float]]:
        """Time spans [start_s, end_s) in which the concept is visible, in order.

        A span runs from its first visible frame's timestamp to the timestamp just after its
        last visible frame ((last + 1) / fps); an absent concept gives [].
        """
        frames = self.visible_frames(concept)
        spans: list[tuple[float, float]] = []
        if len(frames) == 0:
            return spans
        breaks = np.flatnonzero(np.diff(frames) > 1)
        starts = np.concatenate([frames[:1], frames[breaks + 1]])
        ends = np.concatenate([frames[breaks], frames[-1:]])
        for a, b in zip(starts, ends, strict=True):
            spans.append((float(a / self.fps), float((b + 1) / self.fps)))
        return spans


def _rasterise(
    shape: ShapeSpec, frame_index: int, fps: float, height: int, width: int
) -> np.ndarray:
    """(H, W) bool pixels a shape covers at a frame, sampled at pixel centres, no antialiasing."""
    cx, cy = shape.center(frame_index, fps)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    r = shape.size / 2.0
    if shape.kind == "square":
        return (np.abs(xs - cx) < r) & (np.abs(ys - cy) < r)
    if shape.kind == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 < r**2
    if shape.kind == "triangle":
        angles = np.deg2rad([-90.0, 30.0, 150.0])
        return _inside_polygon(xs, ys, cx + r * np.cos(angles), cy + r * np.sin(angles))
    if shape.kind == "star":
        angles = np.deg2rad(-90.0 + 36.0 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        return _inside_polygon(xs, ys, cx + radii * np.cos(angles), cy + radii * np.sin(angles))
    raise ValueError(f"no rasteriser for shape kind {shape.kind!r}; known: {_KINDS}")


def _inside_polygon(xs: np.ndarray, ys: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon test of pixel centres (xs, ys) against vertices (px, py)."""
    inside = np.zeros(xs.shape, bool)
    n = len(px)
    for i in range(n):
        x0, y0, x1, y1 = px[i], py[i], px[(i + 1) % n], py[(i + 1) % n]
        if y0 == y1:
            continue
        crosses = (ys >= min(y0, y1)) & (ys < max(y0, y1))
        x_at_y = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xs < x_at_y)
    return inside


def default_specs(seed: int = 0) -> list[VideoSpec]:
    """The default corpus: three short videos with designed visibility.

    - a_red_first_half: red square only in the first half (frames 0-47 of 96), blue circle
      crossing left to right all along. 8 s.
    - b_no_red: no red square; green triangle all along; yellow star enters from the right
      edge after about 2 s. 6 s.
    - c_all_four: all four concepts; the yellow star leaves through the right edge at about
      2 s. 4 s.
    seed jitters start positions by a few pixels without changing which frames show what.
    """
    rng = np.random.default_rng(seed)

    def jitter(x: float, y: float) -> tuple[float, float]:
        dx, dy = rng.integers(-3, 4, size=2)
        return float(x + dx), float(y + dy)

    return [
        VideoSpec(
            name="a_red_first_half",
            duration_s=8.0,
            shapes=(
                ShapeSpec("red square", jitter(40, 35), (4.0, 0.0), 36, 0, 48),
                ShapeSpec("blue circle", jitter(25, 88), (14.0, 0.0), 34),
            ),
        ),
        VideoSpec(
            name="b_no_red",
            duration_s=6.0,
            shapes=(
                ShapeSpec("green triangle", jitter(40, 40), (10.0, 4.0), 40),
                # Starts 50 px right of the frame; fully outside until its left tip crosses x=160.
                ShapeSpec("yellow star", (210.0, 85.0), (-20.0, 0.0), 40),
            ),
        ),
        VideoSpec(
            name="c_all_four",
            duration_s=4.0,
            shapes=(
                ShapeSpec("red square", jitter(30, 30), (0.0, 0.0), 34),
                ShapeSpec("blue circle", jitter(125, 30), (-5.0, 3.0), 34),
                ShapeSpec("green triangle", jitter(35, 88), (6.0, 0.0), 36),
                ShapeSpec("yellow star", (120.0, 88.0), (30.0, 0.0), 38),
            ),
        ),
    ]


def write_video(spec: VideoSpec, path: Path | str, crf: int = 12) -> SyntheticVideo:
    """Writes one synthetic video as H.264 mp4 (yuv420p) and gives its ground truth."""
    if spec.width % 2 or spec.height % 2:
        raise ValueError(
            f"width and height must be even for yuv420p, got {spec.width}x{spec.height}"
        )
    if spec.n_frames <= 0:
        raise ValueError(f"video {spec.name!r} has no frames (duration_s={spec.duration_s})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    video = SyntheticVideo(
        uri=str(path),
        fps=float(spec.fps),
        n_frames=spec.n_frames,
        width=spec.width,
        height=spec.height,
        shapes=tuple(spec.shapes),
    )
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=_rate(spec.fps))
        stream.width = spec.width
        stream.height = spec.height
        stream.pix_fmt = "yuv420p"
        # A keyframe every 2 s, as in real footage, so decoding a later clip really seeks.
        gop = max(1, round(2 * spec.fps))
        stream.options = {"crf": str(crf), "preset": "medium", "g": str(gop), "bf": "2"}
        for i in range(spec.n_frames):
            frame = av.VideoFrame.from_ndarray(video.render(i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    logger.debug("wrote %s: %d frames", path, spec.n_frames)
    return video


def write_corpus(
    out_dir: Path | str, specs: list[VideoSpec] | None = None, seed: int = 0
) -> list[SyntheticVideo]:
    """Writes the videos of specs (default: `default_specs(seed)`) as out_dir/<name>.mp4."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = default_specs(seed) if specs is None else specs
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"video names must be unique, got {names}")
    return [write_video(spec, out_dir / f"{spec.name}.mp4") for spec in specs]


def write_bad_inputs(out_dir: Path | str) -> dict[str, Path]:
    """Writes inputs that must fail to probe or decode, keyed by what is wrong with them.

    - "empty": a zero-byte .mp4.
    - "text": a text file named .mp4.
    - "truncated": a real mp4 cut to 40% of its bytes; the moov atom (written at the end by
      the mp4 muxer) is lost, so no stream can be found.
    - "zero_frames": an mp4 with a video stream and no packets (fragmented, empty moov).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "empty": out_dir / "empty.mp4",
        "text": out_dir / "not_a_video.mp4",
        "truncated": out_dir / "truncated.mp4",
        "zero_frames": out_dir / "zero_frames.mp4",
    }
    paths["empty"].write_bytes(b"")
    paths["text"].write_text("this is a text file, not a video\n" * 20)

    full = write_video(
        VideoSpec(
            name="full",
            duration_s=2.0,
            shapes=(ShapeSpec("red square", (20.0, 60.0), (40.0, 0.0)),),
        ),
        out_dir / "full_before_truncation.mp4",
    )
    data = Path(full.uri).read_bytes()
    paths["truncated"].write_bytes(data[: int(len(data) * 0.4)])
    Path(full.uri).unlink()

    # A plain mp4 with no samples loses its track (FFmpeg drops empty tracks when reading), so
    # this one is fragmented with an empty moov up front: the track survives, with no fragment.
    with av.open(
        str(paths["zero_frames"]),
        mode="w",
        format="mp4",
        options={"movflags": "frag_keyframe+empty_moov"},
    ) as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        container.start_encoding()  # writes the header; no frame is ever encoded
    return paths


def _rate(fps: float) -> Fraction:
    """fps as the Fraction PyAV wants for a stream rate (12 -> 12/1, 29.97 -> 2997/100)."""
    return Fraction(fps).limit_denominator(1001)


__all__ = [
    "BACKGROUND",
    "PALETTE",
    "ShapeSpec",
    "SyntheticVideo",
    "VideoSpec",
    "default_specs",
    "write_bad_inputs",
    "write_corpus",
    "write_video",
]
