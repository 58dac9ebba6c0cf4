"""Result sets as MOTS (https://www.vision.rwth-aachen.de/page/mots; MOTChallenge's MOTS20
layout), one sequence per hit clip:

    <video>-<id>-<clip>/gt/gt.txt       time_frame id class_id img_height img_width rle
    <video>-<id>-<clip>/seqinfo.ini     [Sequence] name, imDir, frameRate, seqLength, ...
    <video>-<id>-<clip>/img1/000001.jpg the clip's sampled frames (time_frame 1 first)
    <video>-<id>-<clip>/frames.csv      frame, source_frame, time_s in the source video
    seqmaps/vidlake.txt                 the sequences (MOTChallenge's seqmap: `name` first)
    classes.txt                         class_id name, one line each

Frames are 1-based as MOTChallenge numbers them. Object ids are class_id * 1000 + instance,
the instance 1-based per class within the sequence; class ids are the concepts' 1-based order,
skipping 10, which MOTS reserves for ignore regions. RLE is COCO's compressed string. MOTS
masks never overlap: where two objects claim a pixel, the higher-scoring one keeps it (the
format's tools reject overlapping masks), and an object left with no pixel in a frame has no
line there.
"""

from __future__ import annotations

import logging
from itertools import count
from pathlib import Path

import numpy as np

from vidlake.errors import VidlakeError, counted
from vidlake.query.engine import ConceptIndex
from vidlake.query.export import ExportRows, sequence_name
from vidlake.query.export_frames import clip_frames, save_frames, write_frames_csv

logger = logging.getLogger(__name__)

IGNORE_CLASS = 10  # MOTS's class id of ignore regions
MAX_INSTANCES = 999  # ids are class_id * 1000 + instance
SEQMAP = "vidlake"


def mots_class_ids(concepts: list[str]) -> dict[str, int]:
    """{concept: MOTS class id}: 1, 2, ... in CONCEPTS' order, skipping IGNORE_CLASS."""
    ids = (i for i in count(1) if i != IGNORE_CLASS)
    return {c: next(ids) for c in concepts}


def _lines(clip: dict, masklets: list[dict], class_ids: dict[str, int]) -> tuple[list[str], int]:
    """gt.txt lines of one clip, by frame and id, with overlaps given to the higher score; and
    how many object-frames were left out, their whole mask under higher-scoring objects."""
    from pycocotools import mask as mask_utils

    instances: dict[str, int] = {}
    per_frame: dict[int, list[tuple[float, int, dict]]] = {}
    for m in masklets:
        class_id = class_ids[m["concept"]]
        instance = instances[m["concept"]] = instances.get(m["concept"], 0) + 1
        if instance > MAX_INSTANCES:
            raise VidlakeError(
                f"clip {clip['clip_id']} has over {MAX_INSTANCES} objects of "
                f"{m['concept']!r}, more than MOTS ids hold"
            )
        object_id = class_id * 1000 + instance
        for fi, score, rle in zip(m["frame_idx"], m["scores"], m["masks"], strict=True):
            per_frame.setdefault(fi, []).append((float(score), object_id, rle))
    lines, covered = [], 0
    for fi in sorted(per_frame):
        taken = None
        owned: list[tuple[int, str, tuple[int, int]]] = []
        for _, object_id, rle in sorted(per_frame[fi], key=lambda e: (-e[0], e[1])):
            mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"]})
            if taken is None:
                taken = np.zeros_like(mask)
            visible = bool(mask.any())
            mask = mask & (1 - taken)
            if not mask.any():
                covered += visible  # an object not in view has no line anyway
                continue
            taken |= mask
            encoded = mask_utils.encode(np.asfortranarray(mask))
            owned.append((object_id, encoded["counts"].decode("ascii"), tuple(encoded["size"])))
        for object_id, counts, (h, w) in sorted(owned):
            lines.append(f"{fi + 1} {object_id} {object_id // 1000} {h} {w} {counts}")
    return lines, covered


def _seqinfo(clip: dict, name: str) -> str:
    fps = float(clip["sampled_fps"])
    return (
        "[Sequence]\n"
        f"name={name}\n"
        "imDir=img1\n"
        f"frameRate={fps:g}\n"
        f"seqLength={clip['n_frames']}\n"
        f"imWidth={clip['width']}\n"
        f"imHeight={clip['height']}\n"
        "imExt=.jpg\n"
    )


def write_mots(index: ConceptIndex, rows: ExportRows, folder: Path) -> int:
    """Writes ROWS as one MOTS sequence per clip into FOLDER; gives the number of gt.txt lines
    (object-frames) written."""
    class_ids = mots_class_ids(list(rows.categories))
    (folder / "seqmaps").mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text("".join(f"{i} {c}\n" for c, i in class_ids.items()))
    names, written, covered = [], 0, 0
    for clip_id in rows.clip_ids:
        clip = rows.clips[clip_id]
        name = sequence_name(clip)
        names.append(name)
        seq = folder / name
        (seq / "gt").mkdir(parents=True, exist_ok=True)
        masklets = rows.masklets_of(clip_id)
        lines, left_out = _lines(clip, masklets, class_ids)
        covered += left_out
        (seq / "gt" / "gt.txt").write_text("".join(line + "\n" for line in lines))
        written += len(lines)
        (seq / "seqinfo.ini").write_text(_seqinfo(clip, name))
        paths = [seq / "img1" / f"{i + 1:06d}.jpg" for i in range(clip["n_frames"])]
        save_frames(clip_frames(index, clip), paths)
        write_frames_csv(seq / "frames.csv", clip, first=1)
    (folder / "seqmaps" / f"{SEQMAP}.txt").write_text("name\n" + "".join(n + "\n" for n in names))
    if covered:
        # MOTS gives each pixel to one object: say what that costs, never drop it silently.
        logger.warning(
            "%s left out of the MOTS dataset: each mask wholly under higher-scoring objects "
            "(MOTS allows one object per pixel)",
            counted(covered, "object-frame"),
        )
    return written
