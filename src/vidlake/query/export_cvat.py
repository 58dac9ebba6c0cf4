"""Result sets as CVAT for video 1.1 XML
(https://docs.cvat.ai/docs/dataset_management/formats/format-cvat/), one task per hit clip:

    <video>-<id>-<clip>/annotations.xml       <annotations><version>1.1</version><meta>...
    <video>-<id>-<clip>/images/frame_000000.jpg   the clip's sampled frames, frame 0 first
    <video>-<id>-<clip>/frames.csv            frame, source_frame, time_s in the source video

the layout of CVAT's own "export task dataset" with images: create a task from images/ and
upload annotations.xml as "CVAT 1.1". Each object of the clip is a `<track>` with one
`<polygon>` keyframe per frame it is seen in, and an `outside="1"` keyframe where it leaves
(CVAT interpolates between keyframes, so every frame of ours is one). An object in several
parts gets one track per part, the tracks sharing a group_id (CVAT's grouping of shapes of
one object); holes are not represented.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vidlake.query.engine import ConceptIndex
from vidlake.query.export import ExportRows, sequence_name
from vidlake.query.export_frames import clip_frames, save_frames, write_frames_csv
from vidlake.query.polygons import mask_polygons

CVAT_VERSION = "1.1"
SOURCE = "auto"  # CVAT's name for shapes a model made (others: manual, semi-auto, file)


def cvat_points(polygon: np.ndarray) -> str:
    """CVAT's `points`: `x1,y1;x2,y2;...` in pixels (2 decimals)."""
    return ";".join(f"{x:.2f},{y:.2f}" for x, y in polygon.tolist())


def _text(parent: ET.Element, tag: str, text: object) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = str(text)
    return child


def _meta(root: ET.Element, clip: dict, name: str, concepts: list[str]) -> None:
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    n = clip["n_frames"]
    for tag, value in (
        ("id", 1),
        ("name", name),
        ("size", n),
        ("mode", "interpolation"),
        ("overlap", 0),
        ("start_frame", 0),
        ("stop_frame", n - 1),
        ("frame_filter", ""),
    ):
        _text(task, tag, value)
    labels = ET.SubElement(task, "labels")
    for concept in concepts:
        label = ET.SubElement(labels, "label")
        _text(label, "name", concept)
        _text(label, "type", "polygon")
        ET.SubElement(label, "attributes")
    size = ET.SubElement(task, "original_size")
    _text(size, "width", clip["width"])
    _text(size, "height", clip["height"])
    _text(task, "source", clip["video_uri"])
    _text(root.find("meta"), "dumped", datetime.now(timezone.utc).isoformat())


def _polygon(track: ET.Element, frame: int, points: np.ndarray, outside: bool) -> None:
    ET.SubElement(
        track,
        "polygon",
        frame=str(frame),
        outside="1" if outside else "0",
        occluded="0",
        keyframe="1",
        points=cvat_points(points),
        z_order="0",
    )


def _tracks(root: ET.Element, masklets: list[dict], n_frames: int) -> int:
    """Adds a track per object part of MASKLETS (one clip's); gives the object-frames added."""
    track_id, written = 0, 0
    for group, m in enumerate(masklets, start=1):
        parts = {fi: mask_polygons(rle) for fi, rle in zip(m["frame_idx"], m["masks"], strict=True)}
        written += len(parts)
        n_parts = max((len(p) for p in parts.values()), default=0)
        for k in range(n_parts):
            track = ET.SubElement(root, "track", id=str(track_id), label=m["concept"])
            track.set("source", SOURCE)
            if n_parts > 1:
                track.set("group_id", str(group))
            track_id += 1
            last = None  # the part's last polygon while it is in view
            for fi in range(n_frames):
                polygons = parts.get(fi, [])
                if k < len(polygons):
                    last = polygons[k]
                    _polygon(track, fi, last, outside=False)
                elif last is not None:
                    _polygon(track, fi, last, outside=True)  # it left: CVAT keeps its points
                    last = None
    return written


def cvat_xml(clip: dict, masklets: list[dict], concepts: list[str]) -> tuple[ET.Element, int]:
    """(<annotations> of CLIP's task, object-frames in it): MASKLETS (the clip's) as tracks,
    CONCEPTS as the task's labels."""
    root = ET.Element("annotations")
    _text(root, "version", CVAT_VERSION)
    _meta(root, clip, sequence_name(clip), concepts)
    written = _tracks(root, masklets, clip["n_frames"])
    ET.indent(root)
    return root, written


def write_cvat(index: ConceptIndex, rows: ExportRows, folder: Path) -> int:
    """Writes ROWS as one CVAT for video 1.1 task per clip into FOLDER; gives the number of
    object masks (object-frames) written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for clip_id in rows.clip_ids:
        clip = rows.clips[clip_id]
        task = folder / sequence_name(clip)
        masklets = rows.masklets_of(clip_id)
        root, n = cvat_xml(clip, masklets, list(rows.categories))
        written += n
        task.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(task / "annotations.xml", encoding="utf-8", xml_declaration=True)
        paths = [task / "images" / f"frame_{i:06d}.jpg" for i in range(clip["n_frames"])]
        save_frames(clip_frames(index, clip), paths)
        write_frames_csv(task / "frames.csv", clip)
    return written
