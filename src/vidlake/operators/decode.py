"""Decoding the sampled frames of clips: decord first, PyAV when decord cannot open or read a video.

decord seeks accurately and decodes a batch of frame indices fast (except in MPEG-TS, which
goes to PyAV), but over a file object (any remote URI) it reads the whole file into memory
first; `ClipDecoder` keeps one opened reader for all the clips of a video so that happens once
per video, not once per clip. PyAV reads a remote file through fsspec by ranges and maps frames
to indices by their timestamps (exact for constant-frame-rate video, which is what the clip
planner assumes too).
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from types import TracebackType
from typing import Literal

import av
import numpy as np
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from PIL import Image

from vidlake.errors import VideoError
from vidlake.records import ClipSpec

try:
    import decord
except ImportError:  # decord has wheels for x86_64 only; PyAV decodes everywhere
    decord = None

logger = logging.getLogger(__name__)

Backend = Literal["auto", "decord", "pyav"]

# Estimated frame counts (containers that record none) can overshoot the real count by a frame
# or two; requested indices this far past the last decodable frame repeat that frame.
_TAIL_TOLERANCE = 2

# decord 0.6 opens MPEG-TS but its seeks land a GOP or so away from the asked frame, silently
# (seen: every index off by 24 frames, keyframes 2 s apart); these go to PyAV directly.
_MPEG_TS_EXTENSIONS = frozenset({".ts", ".m2ts", ".mts"})
_TS_PACKET = 188

if decord is not None:
    decord.logging.set_level(decord.logging.QUIET)
    _DECORD_ERRORS: tuple[type[BaseException], ...] = (
        decord.DECORDError,
        RuntimeError,
        IndexError,
        AssertionError,  # decord asserts frame count > 0 when opening
    )
else:
    _DECORD_ERRORS = (RuntimeError,)


def decode_clip(
    spec: ClipSpec,
    storage_options: dict | None = None,
    max_side: int | None = None,
    backend: Backend = "auto",
) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB: exactly the frames spec.frame_indices, in order (T == spec.n_frames).

    With max_side, frames are resized so the longer side is at most max_side, aspect kept.
    backend "auto" tries decord, then PyAV; "decord"/"pyav" use only that one. Raises VideoError
    (one line, naming the uri) when the frames cannot be decoded.
    """
    with ClipDecoder(spec.video_uri, storage_options, max_side, backend) as decoder:
        return decoder.decode(spec)


class ClipDecoder:
    """Decodes many clips of one video with one opened reader.

    Open it once per video (it is a context manager), call `decode` for each of its clips.
    Each decoder decodes on one thread: parallelism comes from running many decode tasks.
    """

    def __init__(
        self,
        uri: str,
        storage_options: dict | None = None,
        max_side: int | None = None,
        backend: Backend = "auto",
    ) -> None:
        if max_side is not None and max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {max_side}")
        if backend not in ("auto", "decord", "pyav"):
            raise ValueError(f"backend must be 'auto', 'decord' or 'pyav', got {backend!r}")
        self.uri = uri
        self.max_side = max_side
        self.backend = backend
        try:
            self._fs, self._path = url_to_fs(uri, **(storage_options or {}))
        except (ValueError, ImportError) as e:
            raise VideoError(f"cannot open {uri}: {e}") from e
        if not self._fs.exists(self._path):
            raise VideoError(f"video not found: {uri}")
        if not self._fs.size(self._path):
            raise VideoError(f"empty file (0 bytes), not a video: {uri}")
        self._decord_reader = None
        self._decord_failed = backend == "pyav" or decord is None
        if backend == "auto" and not self._decord_failed and self._is_mpeg_ts():
            logger.debug("%s is MPEG-TS; decoding with PyAV (decord seeks it wrongly)", uri)
            self._decord_failed = True
        self._container: av.container.InputContainer | None = None
        self._file = None
        self._cursor: _PyAVCursor | None = None

    # -- public -----------------------------------------------------------------------------

    def decode(self, spec: ClipSpec) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB frames spec.frame_indices of this video (see decode_clip)."""
        if spec.video_uri != self.uri:
            raise ValueError(f"clip of {spec.video_uri} given to the decoder of {self.uri}")
        indices = np.asarray(spec.frame_indices, dtype=np.int64)
        if len(indices) == 0:
            raise VideoError(f"clip {spec.clip_index} of {self.uri} has no frames to decode")
        if (indices < 0).any():
            raise VideoError(f"negative frame index in clip {spec.clip_index} of {self.uri}")

        if not self._decord_failed:
            frames = self._decode_decord(indices)
            if frames is not None:
                return _resize(frames, self.max_side)
        if self.backend == "decord":
            raise VideoError(f"decord cannot decode clip {spec.clip_index} of {self.uri}")
        return self._decode_pyav(indices)  # resized frame by frame as they are converted

    def close(self) -> None:
        """Releases the readers and the file they read."""
        self._decord_reader = None
        self._close_pyav()

    def __enter__(self) -> ClipDecoder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _is_mpeg_ts(self) -> bool:
        """Whether the file is an MPEG transport stream (by extension or 0x47 sync bytes)."""
        if PurePosixPath(self._path).suffix.lower() in _MPEG_TS_EXTENSIONS:
            return True
        with self._fs.open(self._path, "rb") as f:
            head = f.read(_TS_PACKET + 1)
        return len(head) > _TS_PACKET and head[0] == head[_TS_PACKET] == 0x47

    # -- decord -----------------------------------------------------------------------------

    def _decode_decord(self, indices: np.ndarray) -> np.ndarray | None:
        """Frames from decord, or None (logged) when decord cannot open or read this video."""
        try:
            if self._decord_reader is None:
                self._decord_reader = self._open_decord()
            reader = self._decord_reader
            n = len(reader)
            wanted = _clamp_tail(indices, n, self.uri)
            return reader.get_batch(wanted.tolist()).asnumpy()
        except _DECORD_ERRORS as e:
            logger.debug("decord cannot read %s (%s); decoding with PyAV", self.uri, _first_line(e))
            self._decord_failed = True
            self._decord_reader = None
            return None

    def _open_decord(self) -> decord.VideoReader:
        if isinstance(self._fs, LocalFileSystem):
            return decord.VideoReader(self._path, num_threads=1)
        # decord reads a file object to its end into memory before opening it.
        with self._fs.open(self._path, "rb") as f:
            return decord.VideoReader(f, num_threads=1)

    # -- PyAV -------------------------------------------------------------------------------

    def _decode_pyav(self, indices: np.ndarray) -> np.ndarray:
        try:
            cursor = self._cursor
            got = cursor.advance(indices) if cursor and cursor.can_continue(indices) else None
            if got is None or _misses(got, indices):
                cursor = self._fresh_cursor(seek=True, first=int(indices.min()))
                got = cursor.advance(indices)
            if _misses(got, indices):
                # The seek landed past the first wanted frame, or nowhere (MPEG-TS without an
                # index can seek to its end): reopen and decode from the start, which reaches
                # every frame whatever the demuxer's seeking does.
                logger.debug("seeking in %s missed frames; decoding from the start", self.uri)
                cursor = self._fresh_cursor(seek=False, first=0)
                got = cursor.advance(indices)
        except (av.FFmpegError, OSError) as e:  # PyAV's file-object layer raises OSError
            self._cursor = None
            raise VideoError(f"cannot decode {self.uri}: {_first_line(e)}") from e
        self._cursor = cursor
        if cursor.last_frame is None:
            raise VideoError(f"no decodable frame from index {int(indices.min())} of {self.uri}")
        wanted = _clamp_tail(indices, cursor.last_seen + 1, self.uri)
        if cursor.last_seen in wanted and cursor.last_seen not in got:
            got[cursor.last_seen] = cursor.convert(cursor.last_frame)  # tail repeat
        missing = sorted(set(wanted.tolist()) - set(got))
        if missing:
            raise VideoError(
                f"frames {missing[:5]} of {self.uri} cannot be decoded (damaged or truncated video)"
            )
        return np.stack([got[int(i)] for i in wanted])

    def _fresh_cursor(self, seek: bool, first: int) -> _PyAVCursor:
        """A cursor at FIRST (seek: the keyframe at or before it) or at the start."""
        self._cursor = None
        if not seek:
            self._close_pyav()
        container = self._open_pyav()
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        if not rate:
            raise VideoError(f"no frame rate recorded for the video stream of {self.uri}")
        cursor = _PyAVCursor(container, stream, float(rate), seek, self._convert)
        if seek:
            # backward=True lands on the keyframe at or before the target; decoding goes forward.
            target = int(first / cursor.fps / stream.time_base) + cursor.start_pts
            container.seek(target, stream=stream, backward=True, any_frame=False)
        return cursor

    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        """(H, W, 3) uint8 RGB of a decoded frame, resized to max_side."""
        return _resize_frame(frame.to_ndarray(format="rgb24"), self.max_side)

    def _open_pyav(self) -> av.container.InputContainer:
        if self._container is None:
            if isinstance(self._fs, LocalFileSystem):
                # FFmpeg reads a local file itself, faster than through a Python file object.
                self._container = av.open(self._path, mode="r")
            else:
                self._file = self._fs.open(self._path, "rb")
                self._container = av.open(self._file, mode="r")
            if not self._container.streams.video:
                raise VideoError(f"no video stream in {self.uri}")
        return self._container

    def _close_pyav(self) -> None:
        self._cursor = None
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._file is not None:
            self._file.close()
            self._file = None


# A clip whose first frame is at most this far past where the open PyAV decoder stands is
# reached by decoding forward; farther ones seek (to the keyframe before them).
_FORWARD_GAP_S = 4.0


class _PyAVCursor:
    """A forward pass of PyAV decoding that successive clips of one video continue.

    Consecutive clips (overlapping or not) are decoded by going on from where the previous
    clip stopped, not by seeking back to a keyframe for each: the overlap's frames are kept
    from the previous clip. Frames map to indices by their timestamps (by decode order when a
    pass from the start has none). CONVERT makes a wanted frame the array a clip holds (RGB,
    resized), once per frame: frames shared by two clips are converted once.
    """

    def __init__(self, container, stream, fps: float, seek: bool, convert) -> None:
        self.frames = container.decode(stream)
        self.fps = fps
        self.convert = convert
        self.time_base = float(stream.time_base)
        self.start_pts = stream.start_time or 0
        self.seek = seek
        self.counted = -1
        self.last_seen = -1  # highest index decoded so far
        self.last_frame: av.VideoFrame | None = None
        self.pending: tuple[int, av.VideoFrame] | None = None  # decoded past the last request
        self.recent: dict[int, np.ndarray] = {}  # the previous request's frames
        self.exhausted = False

    def can_continue(self, indices: np.ndarray) -> bool:
        """Whether INDICES are reachable going forward: earlier ones kept, the gap short."""
        if self.exhausted or self.last_frame is None:
            return False
        next_index = self.pending[0] if self.pending else self.last_seen + 1
        behind = [int(i) for i in indices if i < next_index]
        if any(i not in self.recent for i in behind):
            return False
        ahead = indices[indices >= next_index]
        return not len(ahead) or int(ahead.min()) - next_index <= _FORWARD_GAP_S * self.fps

    def advance(self, indices: np.ndarray) -> dict[int, np.ndarray]:
        """{index: (H, W, 3) uint8} of the wanted INDICES reached; {} if timestamps fail."""
        wanted = set(indices.tolist())
        last = int(indices.max())
        got = {i: f for i, f in self.recent.items() if i in wanted}
        queue = [self.pending] if self.pending else []
        self.pending = None
        for index, frame in self._indexed(queue):
            if index is None:
                return {}
            if index > last:
                self.pending = (index, frame)
                break
            if index > self.last_seen:
                self.last_seen, self.last_frame = index, frame
            if index in wanted:
                got[index] = self.convert(frame)
        else:
            self.exhausted = True
        self.recent = got
        return got

    def _indexed(self, queue: list[tuple[int, av.VideoFrame]]):
        """(index, frame) of the queued frames then of the decoder; index None when unknown."""
        yield from queue
        for frame in self.frames:
            self.counted += 1
            if frame.pts is not None:
                yield int(round((frame.pts - self.start_pts) * self.time_base * self.fps)), frame
            elif not self.seek:
                yield self.counted, frame  # no timestamps: frame order from the start
            else:
                yield None, frame


def _misses(got: dict[int, np.ndarray], indices: np.ndarray) -> bool:
    """Whether a pass reached nothing, or skipped wanted frames before the last one it got."""
    if not got:
        return True
    top = max(got)
    return any(int(i) not in got for i in indices if i < top)


def _clamp_tail(indices: np.ndarray, n_available: int, uri: str) -> np.ndarray:
    """indices with those just past the last frame (estimated counts) set to the last frame."""
    over = indices >= n_available
    if not over.any():
        return indices
    if int(indices.max()) >= n_available + _TAIL_TOLERANCE:
        raise VideoError(
            f"frame {int(indices.max())} requested but {uri} has only {n_available} frames"
        )
    logger.warning(
        "%s has %d frames, fewer than its estimated count; repeating its last frame",
        uri,
        n_available,
    )
    return np.minimum(indices, n_available - 1)


def _resize(frames: np.ndarray, max_side: int | None) -> np.ndarray:
    """frames (T, H, W, 3) uint8 scaled so max(H, W) <= max_side (bilinear), aspect kept."""
    if max_side is None or max_side >= max(frames.shape[1:3]):
        return np.ascontiguousarray(frames)
    return np.stack([_resize_frame(f, max_side) for f in frames])


def _resize_frame(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """One (H, W, 3) uint8 frame scaled so max(H, W) <= max_side (bilinear), aspect kept."""
    h, w, _ = frame.shape
    if max_side is None or max_side >= max(h, w):
        return frame
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))


def _first_line(error: BaseException) -> str:
    """The gist of an error in one line (FFmpeg's reason without the file name it repeats)."""
    text = str(getattr(error, "strerror", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
