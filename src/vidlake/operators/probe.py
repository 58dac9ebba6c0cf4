"""Listing video sources and probing videos (fps, frame count, size, codec) with PyAV over fsspec.

Local paths and object-store URIs (s3://...) go through the same code: fsspec opens the file and
PyAV reads it through the file object, seeking as it needs, so probing a remote video reads its
header and first frame, not the whole file.
"""

from __future__ import annotations

import logging
import math
from pathlib import PurePosixPath

import av
import fsspec
from fsspec.core import has_magic, url_to_fs
from fsspec.implementations.local import LocalFileSystem

from vidlake.errors import EmptySourceError, UsageError, VideoError, counted
from vidlake.records import VideoInfo, VideoSource
from vidlake.store.object_store import check_uri

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg"}
)
MANIFEST_EXTENSIONS: frozenset[str] = frozenset({".txt"})


def probe_video(uri: str, storage_options: dict | None = None) -> VideoInfo:
    """The VideoInfo of a video (fps, frame count, duration, size, codec of its first video stream).

    Raises VideoError with a one-line message naming the uri when the file is missing or empty,
    is not a video, is truncated (e.g. an mp4 whose moov atom is lost), or has no decodable
    frame: probing decodes the first frame to be sure the video is usable.

    n_frames is the container's frame count when it records one (mp4/mov do, exactly); otherwise
    (mkv, webm, some avi) it is estimated as round(duration * fps) and may be off by a frame.
    """
    fs, path = _filesystem(uri, storage_options)
    if not fs.exists(path):
        raise VideoError(f"video not found: {uri}")
    if fs.isdir(path):
        raise VideoError(f"not a video file but a folder: {uri}")
    size = fs.size(path)
    if not size:
        raise VideoError(f"empty file (0 bytes), not a video: {uri}")
    with fs.open(path, "rb") as f:
        head = f.read(12)
        f.seek(0)
        try:
            with av.open(f, mode="r") as container:
                return _probe_container(uri, container)
        except (av.FFmpegError, OSError) as e:  # PyAV's file-object layer raises OSError
            raise VideoError(_unreadable_message(uri, head, e)) from e


def _probe_container(uri: str, container: av.container.InputContainer) -> VideoInfo:
    if not container.streams.video:
        raise VideoError(f"no video stream in {uri}")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    if not math.isfinite(fps) or fps <= 0:
        raise VideoError(f"no frame rate recorded for the video stream of {uri}")

    if stream.duration is not None and stream.time_base is not None:
        duration_s = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration_s = container.duration / av.time_base
    else:
        duration_s = 0.0

    n_frames = int(stream.frames or 0)
    if n_frames <= 0:
        n_frames = int(round(duration_s * fps))
        logger.debug("%s records no frame count; estimated %d from duration", uri, n_frames)
    if duration_s <= 0 and n_frames > 0:
        duration_s = n_frames / fps

    first = next(container.decode(stream), None)
    if first is None or n_frames <= 0:
        raise VideoError(f"video has zero decodable frames: {uri}")
    return VideoInfo(
        uri=uri,
        fps=fps,
        n_frames=n_frames,
        duration_s=duration_s,
        width=int(ctx.width or first.width),
        height=int(ctx.height or first.height),
        codec=str(ctx.name),
    )


def _unreadable_message(uri: str, head: bytes, error: Exception) -> str:
    """One line saying why FFmpeg could not read a file, from its error and first bytes."""
    reason = str(getattr(error, "strerror", None) or error).splitlines()[0]
    if head[4:8] == b"ftyp":
        return f"truncated or damaged mp4/mov (moov atom missing or unreadable: {reason}): {uri}"
    return f"not a readable video ({reason}): {uri}"


def list_videos(
    source: str,
    storage_options: dict | None = None,
    missing: list[tuple[VideoSource, str]] | None = None,
) -> list[VideoSource]:
    """The videos named by a source, sorted by uri, each with its size and version (etag/mtime).

    source is one of:
    - a file: listed whatever its extension (it was named explicitly; probing judges it);
    - a folder: every file below it (recursively) with a video extension (VIDEO_EXTENSIONS,
      case-insensitive); other files are ignored, corrupt videos are listed and fail at probe;
      hidden files and folders (names starting with ".") below it are skipped;
    - a glob ("s3://bucket/videos/**/*.mp4"): every matching file, whatever its extension;
      hidden ones only if the pattern has a part starting with "." (as a shell's glob);
    - a manifest (.txt): one uri per line, blank lines and lines starting with # ignored;
      each uri is itself a file (relative paths are taken relative to the manifest's folder).

    uris are absolute paths for local files and protocol://path for the others.
    Raises VideoError when the source does not exist, EmptySourceError when it names no video
    at all. A uri in a manifest that does not exist (or is a folder) raises VideoError too,
    unless MISSING is given: it then gets (the video, why) and the rest of the manifest is
    listed.
    """
    fs, path = _filesystem(source, storage_options)
    # A name with glob characters that exists as such ("clip [1].mp4") is that file or folder.
    if has_magic(path) and not fs.exists(path):
        matches = [p for p in fs.glob(path) if fs.isfile(p)]
        base = _glob_base(path)
        # As a shell's glob: a hidden name only when the pattern asks for one (".*.mp4").
        asks_hidden = _is_hidden(path, base)
        found = [p for p in matches if asks_hidden or not _is_hidden(p, base)]
        if not found:  # then every match, if any, was hidden
            raise EmptySourceError(f"no files match the glob {source}{_hidden_note(matches)}")
        return sorted((_source(fs, p) for p in found), key=lambda s: s.uri)
    if not fs.exists(path):
        raise VideoError(f"video source not found: {source}")
    if fs.isdir(path):
        videos = [p for p in fs.find(path) if _has_video_extension(p)]
        found = [p for p in videos if not _is_hidden(p, path)]
        if not found:  # then every video, if any, was hidden
            extensions = ", ".join(sorted(VIDEO_EXTENSIONS))
            raise EmptySourceError(
                f"no video files ({extensions}) under {source}{_hidden_note(videos)}"
            )
        return sorted((_source(fs, p) for p in found), key=lambda s: s.uri)
    if PurePosixPath(path).suffix.lower() in MANIFEST_EXTENSIONS:
        return _read_manifest(source, fs, path, storage_options, missing)
    return [_source(fs, path)]


def _is_hidden(path: str, base: str) -> bool:
    """Whether PATH is a dot-file or lies in a dot-folder below BASE (macOS's "._clip.mp4"
    AppleDouble files, editors' and sync tools' temporary copies); BASE itself may be one."""
    relative = PurePosixPath(path).relative_to(PurePosixPath(base)) if base else path
    return any(p.startswith(".") and p not in (".", "..") for p in PurePosixPath(relative).parts)


def _glob_base(pattern: str) -> str:
    """The folder a glob pattern lists: its parts before the first with glob characters."""
    parts = PurePosixPath(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if has_magic(part))
    return str(PurePosixPath(*parts[:fixed])) if fixed else ""


def _hidden_note(skipped: list[str]) -> str:
    """ " (2 hidden files skipped)", or "" when none was."""
    return f" ({counted(len(skipped), 'hidden file')} skipped)" if skipped else ""


def _read_manifest(
    source: str,
    fs: fsspec.AbstractFileSystem,
    path: str,
    storage_options: dict | None,
    missing: list[tuple[VideoSource, str]] | None,
) -> list[VideoSource]:
    with fs.open(path, "rt") as f:
        lines = [line.strip() for line in f]
    base = PurePosixPath(path).parent
    sources: dict[str, VideoSource] = {}
    n_missing = 0
    for line in lines:
        if not line or line.startswith("#"):
            continue
        try:
            check_uri(line)  # "s3:/b/x.mp4" is a typo, not a path relative to the manifest
        except UsageError as exc:
            uri, problem = line, f"manifest {source}: {exc}"
        else:
            entry = line
            if "://" not in line and not PurePosixPath(line).is_absolute():
                entry = fs.unstrip_protocol(str(base / line))
            entry_fs, entry_path = _filesystem(entry, storage_options)
            uri = entry_path if isinstance(entry_fs, LocalFileSystem) else entry
            problem = None
            if not entry_fs.exists(entry_path):
                problem = f"video {line!r} listed in manifest {source} not found"
            elif entry_fs.isdir(entry_path):
                problem = f"manifest {source} lists a folder, not a video file: {line}"
        if problem is None:
            item = _source(entry_fs, entry_path)
            sources[item.uri] = item
        elif missing is None:
            raise VideoError(problem)
        else:
            missing.append((VideoSource(uri=uri, size=0, version="missing"), problem))
            n_missing += 1
    if not sources and not n_missing:
        raise EmptySourceError(f"manifest lists no videos: {source}")
    return sorted(sources.values(), key=lambda s: s.uri)


def _filesystem(uri: str, storage_options: dict | None) -> tuple[fsspec.AbstractFileSystem, str]:
    check_uri(uri)  # "s3:/bucket" is a typo, not the local path ./s3:/bucket
    try:
        return url_to_fs(uri, **(storage_options or {}))
    except (ValueError, ImportError) as e:
        raise VideoError(f"cannot open {uri}: {e}") from e


def _source(fs: fsspec.AbstractFileSystem, path: str) -> VideoSource:
    """A VideoSource from fsspec's info(): size, and etag (object stores) or mtime (files)."""
    info = fs.info(path)
    version = ""
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified"):
        if info.get(key):
            version = info[key]
            break
    uri = path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)
    return VideoSource(uri=uri, size=int(info.get("size") or 0), version=str(version).strip('"'))


def _has_video_extension(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in VIDEO_EXTENSIONS
