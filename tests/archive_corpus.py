"""An archive folder for tests: videos in the containers broadcast and consumer archives hold,
files that are not videos, and bad inputs named like videos.

A plain module (not conftest.py) so tests import its constants by a name no other module
shares; tests/conftest.py's `archive` fixture writes the folder once per session.
"""

from __future__ import annotations

from pathlib import Path

# (file name, encoder, pixel format, frames per second): one short clip each (8 frames,
# 128x96: H.263 takes only a few sizes), in the containers and codecs of broadcast and
# consumer archives. "camera_dump" has no extension: listing finds it by its content.
ARCHIVE_VIDEOS = (
    ("h264.ts", "libx264", "yuv420p", 8),
    ("clip é 1.m2ts", "libx264", "yuv420p", 8),
    ("hevc.mts", "libx265", "yuv420p", 8),
    ("mpeg2.mxf", "mpeg2video", "yuv420p", 25),  # MXF takes broadcast rates only
    ("wmv2.wmv", "wmv2", "yuv420p", 8),
    ("flv1.flv", "flv", "yuv420p", 8),
    ("h263.3gp", "h263", "yuv420p", 8),
    ("prores.mov", "prores_ks", "yuv422p10le", 8),
    ("av1.mp4", "libsvtav1", "yuv420p", 8),
    ("hevc.mp4", "libx265", "yuv420p", 8),
    ("camera_dump", "libx264", "yuv420p", 8),
)
# Files a folder listing skips as not videos, by extension, and inputs that must fail alone.
ARCHIVE_NOT_VIDEOS = {".jpg": 1, ".m4a": 1, ".txt": 1, ".bin": 1}
ARCHIVE_BAD = {"empty.ts": "empty file", "fake.mxf": "not a readable video",
               "audio_only.mp4": "no video stream"}  # fmt: skip


def _write_clip(path: Path, codec: str, pix_fmt: str, fps: int, n_frames: int = 8) -> None:
    import av
    import numpy as np

    container_format = "mpegts" if path.suffix == "" else None
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 128, 96, pix_fmt
        if codec == "libx265":
            stream.options = {"x265-params": "log-level=error"}
        for i in range(n_frames):
            frame = np.full((96, 128, 3), 48, np.uint8)
            frame[30:60, 8 * i : 8 * i + 30] = (230, 40, 40)  # a red square moving right
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _write_audio(path: Path) -> None:
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        samples = np.zeros((1, 16000), np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_archive(folder: Path) -> Path:
    """FOLDER filled with ARCHIVE_VIDEOS, ARCHIVE_NOT_VIDEOS' files and ARCHIVE_BAD's."""
    import av
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for name, codec, pix_fmt, fps in ARCHIVE_VIDEOS:
        _write_clip(folder / name, codec, pix_fmt, fps)
    with av.open(str(folder / "photo.jpg"), "w", format="image2") as out:
        stream = out.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        image = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 90, np.uint8), format="rgb24")
        for packet in [*stream.encode(image), *stream.encode()]:
            out.mux(packet)
    _write_audio(folder / "voice.m4a")
    (folder / "notes.txt").write_text("shot list\n")
    (folder / "unknown.bin").write_text("not a video, whatever its extension says\n")
    (folder / "empty.ts").write_bytes(b"")
    (folder / "fake.mxf").write_text("a text file named like a video\n")
    _write_audio(folder / "audio_only.mp4")
    return folder
