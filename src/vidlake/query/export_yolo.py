"""Result sets as an Ultralytics YOLO segmentation dataset
(https://docs.ultralytics.com/datasets/segment/):

    data.yaml                    names: {0: concept, ...}; train and val: images
    images/<video>-<id>/<clip>/<frame>.jpg   every sampled frame of every hit clip
    labels/<video>-<id>/<clip>/<frame>.txt   one line per polygon: class x1 y1 x2 y2 ...

Class indices are 0-based in the concepts' sorted order; coordinates are normalised by the
frame's width and height (6 decimals). A frame without objects gets an empty label file (a
background image). An object in several parts is one line per part (`polygons`), as
Ultralytics reads separate polygons of one class; holes are not represented.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from vidlake.query.engine import ConceptIndex
from vidlake.query.export import ExportRows, frame_name
from vidlake.query.export_frames import clip_frames, save_frames
from vidlake.query.polygons import mask_polygons


def yolo_line(class_index: int, polygon: np.ndarray, size: tuple[int, int]) -> str:
    """`class x1 y1 x2 y2 ...` for POLYGON (K, 2) pixel x, y in a frame of SIZE (h, w)."""
    h, w = size
    coords = " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in polygon.tolist())
    return f"{class_index} {coords}"


def data_yaml(names: list[str]) -> str:
    """data.yaml for NAMES (class index = position). No `path`: Ultralytics then resolves
    images/ against this file's folder, wherever the dataset is moved."""
    import yaml

    data = {"train": "images", "val": "images", "nc": len(names), "names": dict(enumerate(names))}
    return "# vidlake export (YOLO segmentation)\n" + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True
    )


def yolo_labels(clip: dict, masklets: list[dict], categories: dict[str, int]) -> list[str]:
    """The label file's text of each sampled frame of CLIP (n_frames of them) from MASKLETS
    (the clip's); class index = category id - 1."""
    lines: list[list[str]] = [[] for _ in range(clip["n_frames"])]
    for m in masklets:
        class_index = categories[m["concept"]] - 1
        for fi, rle in zip(m["frame_idx"], m["masks"], strict=True):
            size = (int(rle["size"][0]), int(rle["size"][1]))
            for polygon in mask_polygons(rle):
                lines[fi].append(yolo_line(class_index, polygon, size))
    return ["".join(line + "\n" for line in frame_lines) for frame_lines in lines]


def write_yolo(index: ConceptIndex, rows: ExportRows, folder: Path) -> int:
    """Writes ROWS as a YOLO segmentation dataset into FOLDER; gives the number of object
    masks (object-frames) written."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    (folder / "data.yaml").write_text(data_yaml(list(rows.categories)))  # sorted by id
    written = 0
    for clip_id in rows.clip_ids:
        clip = rows.clips[clip_id]
        masklets = rows.masklets_of(clip_id)
        written += sum(len(m["frame_idx"]) for m in masklets)
        names = [PurePosixPath(frame_name(clip, f)) for f in clip["frame_indices"]]
        save_frames(clip_frames(index, clip), [folder / "images" / n for n in names])
        for name, text in zip(names, yolo_labels(clip, masklets, rows.categories), strict=True):
            label = folder / "labels" / name.with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text)
    return written
