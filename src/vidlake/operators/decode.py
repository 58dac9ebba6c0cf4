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

        frames = None
        if not self._decord_failed:
            frames = self._decode_decord(indices)
        if frames is None:
            if self.backend == "decord":
                raise VideoError(f"decord cannot decode clip {spec.clip_index} of {self.uri}")
            frames = self._decode_pyav(indices)
        return _resize(frames, self.max_side)

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
            container = self._open_pyav()
            stream = container.streams.video[0]
            got, last_seen, last_frame = self._pyav_frames(container, stream, indices, seek=True)
            if not got or any(int(i) not in got for i in indices if i < max(got)):
                # The seek landed past the first wanted frame, or nowhere (MPEG-TS without an
                # index can seek to its end): reopen and decode from the start, which reaches
                # every frame whatever the demuxer's seeking does.
                logger.debug("seeking in %s missed frames; decoding from the start", self.uri)
                self._close_pyav()
                container = self._open_pyav()
                stream = container.streams.video[0]
                got, last_seen, last_frame = self._pyav_frames(
                    container, stream, indices, seek=False
                )
        except (av.FFmpegError, OSError) as e:  # PyAV's file-object layer raises OSError
            raise VideoError(f"cannot decode {self.uri}: {_first_line(e)}") from e
        if last_frame is None:
            raise VideoError(f"no decodable frame from index {int(indices.min())} of {self.uri}")
        wanted = _clamp_tail(indices, last_seen + 1, self.uri)
        if last_seen in wanted and last_seen not in got:  # the tail repeats the last frame
            got[last_seen] = last_frame.to_ndarray(format="rgb24")
        missing = sorted(set(wanted.tolist()) - set(got))
        if missing:
            raise VideoError(
                f"frames {missing[:5]} of {self.uri} cannot be decoded (damaged or truncated video)"
            )
        return np.stack([got[int(i)] for i in wanted])

    def _open_pyav(self) -> av.container.InputContainer:
        if self._container is None:
            self._file = self._fs.open(self._path, "rb")
            self._container = av.open(self._file, mode="r")
            if not self._container.streams.video:
                raise VideoError(f"no video stream in {self.uri}")
        return self._container

    def _close_pyav(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def _pyav_frames(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        indices: np.ndarray,
        seek: bool,
    ) -> tuple[dict[int, np.ndarray], int, av.VideoFrame | None]:
        """Wanted frames reached {index: (H, W, 3) uint8}, the last index decoded and its frame.

        The frame is None when none was decoded. The last index tells a video shorter than
        its estimated frame count from a missed seek.
        """
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        if not rate:
            raise VideoError(f"no frame rate recorded for the video stream of {self.uri}")
        fps = float(rate)
        time_base = stream.time_base
        start_pts = stream.start_time or 0
        wanted = set(indices.tolist())
        first, last = int(indices.min()), int(indices.max())
        if seek:
            # backward=True lands on the keyframe at or before the target; decoding goes forward.
            target = int(first / fps / time_base) + start_pts
            container.seek(target, stream=stream, backward=True, any_frame=False)
        got: dict[int, np.ndarray] = {}
        last_seen, last_frame = -1, None
        counted = -1
        for frame in container.decode(stream):
            counted += 1
            if frame.pts is not None:
                index = int(round(float((frame.pts - start_pts) * time_base) * fps))
            elif not seek:
                index = counted  # no timestamps: frame order from the start is the index
            else:
                return {}, -1, None
            if index > last:
                break
            if index > last_seen:
                last_seen, last_frame = index, frame
            if index in wanted:
                got[index] = frame.to_ndarray(format="rgb24")
        return got, last_seen, last_frame


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
    if max_side is None:
        return np.ascontiguousarray(frames)
    _, h, w, _ = frames.shape
    scale = max_side / max(h, w)
    if scale >= 1:
        return np.ascontiguousarray(frames)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack(
        [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BILINEAR)) for f in frames]
    )


def _first_line(error: BaseException) -> str:
    """The gist of an error in one line (FFmpeg's reason without the file name it repeats)."""
    text = str(getattr(error, "strerror", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
