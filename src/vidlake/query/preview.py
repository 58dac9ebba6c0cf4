"""Overlay previews of one clip: its masklets' masks, boxes and labels drawn over its frames.

Written as an animated GIF, an H.264 MP4, or a PNG contact sheet of the sampled frames.
Frames are decoded again from the source at the size the index stored them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path, PurePosixPath

import numpy as np

from vidlake.errors import UsageError
from vidlake.query.engine import ConceptIndex
from vidlake.query.export import OutPath, is_remote, local_output, prepare_output, writing
from vidlake.store.object_store import fsspec_options
from vidlake.store.schema import clip_spec

PREVIEW_FORMATS = (".gif", ".mp4", ".png")
MASK_ALPHA = 0.55
SHEET_COLUMNS = 4


# Sasha Trubetskoy's distinct colours, most distinct first; near pairs (lime, teal, brown)
# swapped for navy, maroon and olive, so any two differ by 75 or more in some channel.
OVERLAY_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (250, 190, 212),
    (0, 0, 128),
    (128, 0, 0),
    (128, 128, 0),
)
LABEL_PAD = 2  # pixels around a label's text, inside its filled background


def concept_colors(concepts: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """{concept: RGB}: OVERLAY_PALETTE in the concepts' sorted order, so the concepts drawn in
    one preview never share a colour (up to the palette's 12) and a clip looks the same each
    time. A hash per concept would be stable across clips but let two concepts collide.
    """
    ordered = sorted(set(concepts))
    return {c: OVERLAY_PALETTE[i % len(OVERLAY_PALETTE)] for i, c in enumerate(ordered)}


def _draw_label(draw, text: str, box: list[float], color, size: tuple[int, int]) -> None:
    """TEXT on a filled background of COLOR above BOX (inside it near the top edge), kept
    inside the frame of SIZE (width, height)."""
    x0, y0 = float(box[0]), float(box[1])
    left, top, right, bottom = draw.textbbox((0, 0), text)
    w, h = right - left + 2 * LABEL_PAD, bottom - top + 2 * LABEL_PAD
    x = min(max(0.0, x0), max(0.0, size[0] - w))
    y = y0 - h if y0 - h >= 0 else y0
    y = min(max(0.0, y), max(0.0, size[1] - h))
    draw.rectangle([x, y, x + w - 1, y + h - 1], fill=color)
    # Black on light colours, white on dark (ITU-R BT.601 luma).
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luma > 140 else (255, 255, 255)
    draw.text((x + LABEL_PAD - left, y + LABEL_PAD - top), text, fill=ink)


def overlay_frames(index: ConceptIndex, clip_id: str, concepts: list[str] | None = None):
    """(T, H, W, 3) uint8 frames of CLIP_ID with masks, boxes and labels drawn, and the clip row."""
    from PIL import Image, ImageDraw
    from pycocotools import mask as mask_utils

    from vidlake.operators.decode import decode_clip

    rows = index.clips([clip_id]).to_pylist()
    if not rows:
        raise UsageError(f"no clip {clip_id!r} in this index (clip ids are in query output)")
    clip = rows[0]
    spec = clip_spec(clip)
    # The store holds Lance's option names; the video is read through fsspec, which names
    # them its own way (s3fs: key, secret, endpoint_url...).
    frames = decode_clip(
        spec,
        storage_options=fsspec_options(spec.video_uri, index.store.storage_options),
        max_side=max(clip["width"], clip["height"]),
    )
    masklets = index.masklets([clip_id], concepts).to_pylist()
    if concepts:
        missing = sorted(set(concepts) - {m["concept"] for m in masklets})
        if missing:
            present = sorted({m["concept"] for m in index.masklets([clip_id]).to_pylist()})
            raise UsageError(
                f"clip {clip_id} has no objects of {', '.join(map(repr, missing))}; "
                f"its concepts: {', '.join(present) or 'none'}"
            )
    colors = concept_colors(m["concept"] for m in masklets)
    out = frames.astype(np.float32)
    labels: list[list[tuple[list[float], str, tuple[int, int, int]]]] = [[] for _ in frames]
    for m in masklets:
        color = np.array(colors[m["concept"]], np.float32)
        for fi, box, score, rle in zip(
            m["frame_idx"], m["boxes"], m["scores"], m["masks"], strict=True
        ):
            mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"]}).astype(bool)
            if mask.shape != frames.shape[1:3]:
                mask = np.asarray(
                    Image.fromarray(mask).resize(
                        (frames.shape[2], frames.shape[1]), Image.Resampling.NEAREST
                    )
                )
            out[fi][mask] = (1 - MASK_ALPHA) * out[fi][mask] + MASK_ALPHA * color
            labels[fi].append((box, f"{m['concept']} {score:.2f}", colors[m["concept"]]))
    drawn = []
    for frame, frame_labels in zip(out.astype(np.uint8), labels, strict=True):
        image = Image.fromarray(frame)
        draw = ImageDraw.Draw(image)
        for box, _, color in frame_labels:  # boxes first: no box is drawn over a label
            x0, y0, x1, y1 = (float(v) for v in box)
            draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=color, width=2)
        for box, text, color in frame_labels:
            _draw_label(draw, text, box, color, image.size)
        drawn.append(np.asarray(image))
    return np.stack(drawn), clip


def write_preview(
    index: ConceptIndex, clip_id: str, out: OutPath, concepts: list[str] | None = None
) -> Path | str:
    """Writes CLIP_ID's overlay preview to OUT (.gif, .mp4 or .png by its suffix); gives OUT.

    OUT is a local path or a URI (s3://bucket/key.gif), written with the index's storage
    options.
    """
    out = os.fspath(out) if is_remote(out) else Path(out)
    name = PurePosixPath(os.fspath(out)).name
    if PurePosixPath(name).suffix.lower() not in PREVIEW_FORMATS:
        raise UsageError(f"--out must end in {', '.join(PREVIEW_FORMATS)}, got {name!r}")
    options = index.store.storage_options
    prepare_output(out, options)
    frames, clip = overlay_frames(index, clip_id, concepts)
    fps = float(clip["sampled_fps"]) or 1.0
    with local_output(out, options) as local, writing(out):
        _write_frames(frames, local, fps)
    return out


def _write_frames(frames: np.ndarray, out: Path, fps: float) -> None:
    suffix = out.suffix.lower()
    if suffix == ".gif":
        from PIL import Image

        # An adaptive palette per frame, undithered: overlay colours stay flat and close.
        images = [
            Image.fromarray(f).quantize(
                colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
            )
            for f in frames
        ]
        images[0].save(
            out, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0
        )
    elif suffix == ".png":
        from PIL import Image

        Image.fromarray(contact_sheet(frames)).save(out)
    else:
        _write_mp4(frames, out, fps)


def contact_sheet(frames: np.ndarray, columns: int = SHEET_COLUMNS) -> np.ndarray:
    """(rows*H, columns*W, 3) uint8: the frames (T, H, W, 3) in a grid, row by row."""
    t, h, w, _ = frames.shape
    cols = min(columns, t)
    rows = -(-t // cols)
    sheet = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = frame
    return sheet


def _write_mp4(frames: np.ndarray, out: Path, fps: float) -> None:
    import av

    t, h, w, _ = frames.shape
    # yuv420p needs even sides: pad one row/column of black where needed.
    padded = np.zeros((t, h + h % 2, w + w % 2, 3), np.uint8)
    padded[:, :h, :w] = frames
    with av.open(str(out), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = padded.shape[2], padded.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for frame in padded:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
