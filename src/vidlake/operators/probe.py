"""Listing video sources and probing videos (fps, frame count, size, codec) with PyAV over fsspec.

Local paths and object-store URIs (s3://...) go through the same code: fsspec opens the file and
PyAV reads it through the file object, seeking as it needs, so probing a remote video reads its
header and first frame, not the whole file.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import PurePosixPath

import av
import fsspec
from fsspec.core import has_magic, url_to_fs
from fsspec.implementations.local import LocalFileSystem

from vidlake.errors import EmptySourceError, UsageError, VideoError, counted
from vidlake.records import VideoInfo, VideoSource
from vidlake.store.object_store import check_uri

logger = logging.getLogger(__name__)

# Containers that archives hold video in: a folder listing takes these without opening them.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {
        *(".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".divx", ".mpg", ".mpeg"),
        *(".m1v", ".m2v", ".mpv", ".vob", ".ts", ".m2ts", ".mts", ".m2t", ".trp", ".tp"),
        *(".mxf", ".gxf", ".wmv", ".asf", ".flv", ".f4v", ".3gp", ".3g2", ".ogv", ".ogg"),
        *(".ogm", ".dv", ".dif", ".mod", ".tod", ".mjpeg", ".mjpg", ".h264", ".264", ".h265"),
        *(".265", ".hevc", ".ivf", ".y4m", ".nut", ".rm", ".rmvb", ".r3d", ".braw", ".dnxhd"),
    }
)
# Files that are plainly something else (images, audio, subtitles, text, sidecars, archives,
# checksums): a folder listing counts them as skipped without opening them. A file whose
# extension is in neither set (or that has none) is opened: listed if it holds a video stream.
NOT_VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {
        # images
        *(".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic"),
        *(".heif", ".avif", ".jxl", ".svg", ".ico", ".psd", ".exr", ".dpx", ".tga", ".raw"),
        *(".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".thm"),
        # audio
        *(".mp3", ".m4a", ".m4b", ".aac", ".wav", ".flac", ".opus", ".oga", ".wma", ".aif"),
        *(".aiff", ".ac3", ".eac3", ".dts", ".amr", ".ape", ".wv", ".mka", ".mid", ".midi"),
        # subtitles and captions
        *(".srt", ".vtt", ".ass", ".ssa", ".sub", ".idx", ".sup", ".scc", ".stl", ".ttml"),
        ".dfxp",
        # text, documents, sidecars and metadata
        *(".txt", ".md", ".rst", ".csv", ".tsv", ".log", ".nfo", ".html", ".htm", ".pdf"),
        *(".doc", ".docx", ".rtf", ".odt", ".xls", ".xlsx", ".json", ".jsonl", ".xml"),
        *(".xmp", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".edl", ".cue", ".m3u", ".m3u8"),
        *(".pls", ".bup", ".ifo", ".lrf", ".lrv", ".srf", ".aae", ".db", ".sqlite"),
        *(".md5", ".sha1", ".sha256", ".sfv", ".par2", ".torrent", ".lnk", ".url"),
        # archives
        *(".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".iso"),
    }
)
MANIFEST_EXTENSIONS: frozenset[str] = frozenset({".txt"})
NO_EXTENSION = "(no extension)"  # how skips of files without an extension are counted
# FFmpeg demuxers that read still images (a JPEG opens as a one-frame "video" stream).
_IMAGE_FORMATS = frozenset({"image2", "image2pipe"})


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
        kinds = sorted({s.type for s in container.streams})
        held = f" (only {', '.join(kinds)})" if kinds else ""
        raise VideoError(f"no video stream in {uri}{held}")
    if _is_image_format(container.format.name):
        raise VideoError(f"an image ({container.format.name}), not a video: {uri}")
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


def _is_image_format(name: str) -> bool:
    return name in _IMAGE_FORMATS or name.endswith("_pipe")


def holds_video(uri: str, storage_options: dict | None = None) -> bool:
    """Whether the file at URI is a container FFmpeg opens with a video stream that is not a
    still image: how a folder listing judges a file whose extension says nothing. Reads the
    file's head (FFmpeg's probe), not the whole file; anything unreadable is not a video."""
    return _holds_video(*_filesystem(uri, storage_options))


def _holds_video(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    try:
        if not fs.size(path):
            return False
        with fs.open(path, "rb") as f, av.open(f, mode="r") as container:
            return bool(container.streams.video) and not _is_image_format(container.format.name)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        logger.debug("%s does not open as a video: %s", path, exc)
        return False


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
    not_videos: Counter[str] | None = None,
) -> list[VideoSource]:
    """The videos named by a source, sorted by uri, each with its size and version (etag/mtime).

    source is one of:
    - a file: listed whatever its extension (it was named explicitly; probing judges it);
    - a folder: every file below it (recursively) with a video extension (VIDEO_EXTENSIONS,
      case-insensitive), and every other file that holds a video stream (`holds_video`) unless
      its extension says it is plainly something else (NOT_VIDEO_EXTENSIONS: images, audio,
      subtitles, text, sidecars, archives); corrupt videos are listed and fail at probe;
      hidden files and folders (names starting with ".") below it are skipped. The files
      skipped as not videos are counted by extension into NOT_VIDEOS ({".jpg": 2}) if given;
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
        files = fs.find(path)
        hidden = [p for p in files if _is_hidden(p, path)]
        skipped: Counter[str] = Counter()
        found = []
        for p in files:
            if _is_hidden(p, path):
                continue
            extension = PurePosixPath(p).suffix.lower()
            if extension in VIDEO_EXTENSIONS:
                found.append(p)
            elif extension not in NOT_VIDEO_EXTENSIONS and _holds_video(fs, p):
                found.append(p)
            else:
                skipped[extension or NO_EXTENSION] += 1
        if not_videos is not None:
            not_videos.update(skipped)
        if not found:
            notes = [n for n in (not_videos_note(skipped), _hidden_note(hidden)[2:-1]) if n]
            raise EmptySourceError(
                f"no video files under {source}" + (f" ({'; '.join(notes)})" if notes else "")
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


def not_videos_note(skipped: Counter[str] | dict[str, int]) -> str:
    """ "2 files skipped as not videos: 1 .jpg, 1 .txt", or "" when none was (most first)."""
    total = sum(skipped.values())
    if not total:
        return ""
    counts = ", ".join(
        f"{n} {ext}" for ext, n in sorted(skipped.items(), key=lambda i: (-i[1], i[0]))
    )
    return f"{counted(total, 'file')} skipped as not videos: {counts}"


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
