"""Result sets as COCO RLE JSON (one image per sampled frame) or YouTube-VIS JSON (one video
per clip), from the masks stored in `masklets`; the rows every export is written from
(`export_rows`) and where exports are written (`--out`, a path or a URI). The folder formats
(YOLO, CVAT, MOTS) are in `export_datasets`.

COCO bboxes are [x, y, width, height] in pixels of the indexed frames; RLE counts are the
compressed strings pycocotools writes (column-major, as stored). Image and video file names
are virtual (`<video file>-<video id>/<clip index>/<frame>.jpg`, unique per video); each
record also carries the video URI, clip id and timestamps that locate the frame in the source.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import posixpath
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa

from vidlake.errors import UsageError, VidlakeError
from vidlake.query.engine import ConceptIndex
from vidlake.store.object_store import fsspec_options, preflight, protocol

FORMATS = ("coco", "ytvis")

OutPath = str | os.PathLike


def is_remote(out: OutPath) -> bool:
    """Whether OUT is a URI of another filesystem (s3://...) rather than a local path."""
    return protocol(os.fspath(out)) not in ("file", "local")


def out_filesystem(out: str, storage_options: dict | None):
    """(fsspec filesystem, path) of the URI OUT, opened with STORAGE_OPTIONS (Lance names)."""
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(out, **fsspec_options(out, storage_options))
    except (ImportError, ValueError) as exc:  # an unknown protocol, or its package missing
        raise UsageError(f"cannot write --out {out}: {exc}") from exc


def checked_filesystem(out: str, storage_options: dict | None):
    """(fsspec filesystem, path) of the URI OUT once its bucket answers; a UsageError naming
    --out OUT when it does not."""
    try:
        # One list request with short timeouts: an unreachable endpoint, rejected credentials
        # or a missing bucket is one line, not botocore's retries and traceback.
        preflight(out, (), storage_options)
    except VidlakeError as exc:
        raise UsageError(f"--out {exc}") from exc
    return out_filesystem(out, storage_options)


@contextlib.contextmanager
def writing(out: OutPath) -> Iterator[None]:
    """Turns an OSError raised in the block into a one-line UsageError naming --out OUT."""
    try:
        yield
    except OSError as exc:  # PyAV's and fsspec's file errors are OSErrors too
        raise UsageError(f"cannot write --out {out}: {exc.strerror or exc}") from exc


def prepare_output(out: OutPath, storage_options: dict | None = None) -> None:
    """Checks that OUT can be written as a file, making its folder; a UsageError says why not.

    OUT is a local path or a URI (s3://bucket/key), written through fsspec with
    STORAGE_OPTIONS (the index's, Lance names). Called before the work, so a mistyped --out
    costs no query or decoding.
    """
    if is_remote(out):
        fs, path = checked_filesystem(os.fspath(out), storage_options)
        with writing(out):
            is_dir = fs.isdir(path)
        if is_dir:
            raise UsageError(f"--out {out} is a folder; name a file in it")
        return
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; name a file in it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder of --out {out}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def local_output(out: OutPath, storage_options: dict | None = None) -> Iterator[Path]:
    """A local file to write OUT's content to: OUT itself, or for a URI a temporary file that
    is uploaded to it when the block ends (writers such as PyAV's need a real file)."""
    if not is_remote(out):
        yield Path(out)
        return
    uri = os.fspath(out)
    with tempfile.TemporaryDirectory(prefix="vidlake-out-") as folder:
        local = Path(folder) / posixpath.basename(uri)
        yield local
        fs, path = out_filesystem(uri, storage_options)
        with writing(uri):
            fs.put_file(str(local), path)


def write_json(data: dict, out: OutPath, storage_options: dict | None = None) -> None:
    """Writes DATA to OUT (a path or a URI, see prepare_output) as JSON; a UsageError when
    OUT cannot be written."""
    with local_output(out, storage_options) as local, writing(out):
        local.write_text(json.dumps(data))


def rle_json(rle: dict) -> dict:
    """A stored COCO RLE as JSON holds it: size [h, w] and the compressed counts as str."""
    counts = rle["counts"]
    return {
        "size": [int(s) for s in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def _xywh(box: list[float]) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _area(rle: dict) -> float:
    from pycocotools import mask as mask_utils

    return float(mask_utils.area({"size": rle["size"], "counts": rle["counts"]}))


def frame_name(clip: dict, frame_index: int) -> str:
    """`<video file>-<video id>/<clip index>/<frame>.jpg`: the id keeps apart two videos of one
    file name in different folders, which COCO tools would otherwise merge into one image."""
    stem = posixpath.basename(clip["video_uri"])
    return f"{stem}-{clip['video_id']}/{clip['clip_index']:05d}/{frame_index:08d}.jpg"


def sequence_name(clip: dict) -> str:
    """`<video file>-<video id>-<clip index>`: a clip's folder in the folder formats, unique
    per clip as `frame_name`'s folders are (the clip index keeps a video's clips apart)."""
    stem = posixpath.basename(clip["video_uri"])
    return f"{stem}-{clip['video_id']}-{clip['clip_index']:05d}"


@dataclass(frozen=True)
class ExportRows:
    """What every export format is written from.

    clip_ids: the hit clips in result order; clips: their `clips` rows by id; masklets: their
    `masklets` rows of the exported concepts, by clip (result order), concept, object id;
    categories: {concept: id}, 1-based in the concepts' sorted order (COCO's category ids).
    """

    clip_ids: list[str]
    clips: dict[str, dict]
    masklets: list[dict]
    categories: dict[str, int]

    def masklets_of(self, clip_id: str) -> list[dict]:
        """The masklets of one clip, in `masklets`' order."""
        return self._by_clip.get(clip_id, [])

    @functools.cached_property
    def _by_clip(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for m in self.masklets:
            out.setdefault(m["clip_id"], []).append(m)
        return out


def export_rows(
    index: ConceptIndex, hits: pa.Table, concepts: Sequence[str] | None = None
) -> ExportRows:
    """The rows to export for HITS (rows of `search`). CONCEPTS are the exported categories
    (default: those of HITS): given, an empty result still names them."""
    found = hits.column("concept").to_pylist()
    names = sorted(set(concepts if concepts is not None else found) | set(found))
    clip_ids = list(dict.fromkeys(hits.column("clip_id").to_pylist()))
    clips = {r["clip_id"]: r for r in index.clips(clip_ids).to_pylist()}
    masklets = index.masklets(clip_ids, names).to_pylist() if clip_ids else []
    order = {c: i for i, c in enumerate(clip_ids)}
    masklets.sort(key=lambda m: (order[m["clip_id"]], m["concept"], m["object_id"]))
    return ExportRows(clip_ids, clips, masklets, {c: i + 1 for i, c in enumerate(names)})


def export_hits(
    index: ConceptIndex,
    hits: pa.Table,
    fmt: Literal["coco", "ytvis"] = "coco",
    concepts: Sequence[str] | None = None,
) -> dict:
    """The masks of HITS (rows of `search`) as a COCO or YouTube-VIS dataset dict; CONCEPTS
    as in `export_rows`."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rows = export_rows(index, hits, concepts)
    categories = [
        {"id": i, "name": c, "supercategory": "object"} for c, i in rows.categories.items()
    ]
    if fmt == "coco":
        return _coco(rows.clips, rows.clip_ids, rows.masklets, rows.categories, categories)
    return _ytvis(rows.clips, rows.clip_ids, rows.masklets, rows.categories, categories)


def _coco(clips, clip_ids, masklets, category, categories) -> dict:
    images, image_id = [], {}
    for clip_id in clip_ids:
        clip = clips[clip_id]
        for i, (frame, t) in enumerate(
            zip(clip["frame_indices"], clip["frame_times_s"], strict=True)
        ):
            image_id[(clip_id, i)] = len(images) + 1
            images.append(
                {
                    "id": len(images) + 1,
                    "file_name": frame_name(clip, frame),
                    "width": clip["width"],
                    "height": clip["height"],
                    "video_uri": clip["video_uri"],
                    "clip_id": clip_id,
                    "frame_index": frame,
                    "time_s": t,
                }
            )
    annotations = []
    for m in masklets:
        for fi, box, score, rle in zip(
            m["frame_idx"], m["boxes"], m["scores"], m["masks"], strict=True
        ):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id[(m["clip_id"], fi)],
                    "category_id": category[m["concept"]],
                    "segmentation": rle_json(rle),
                    "area": _area(rle),
                    "bbox": _xywh(box),
                    "iscrowd": 0,
                    "score": float(score),
                    "track_id": m["track_id"],
                    "masklet_id": m["masklet_id"],
                }
            )
    return {
        "info": {"description": "vidlake export", "format": "coco"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def _ytvis(clips, clip_ids, masklets, category, categories) -> dict:
    videos, video_id = [], {}
    for clip_id in clip_ids:
        clip = clips[clip_id]
        video_id[clip_id] = len(videos) + 1
        videos.append(
            {
                "id": len(videos) + 1,
                "width": clip["width"],
                "height": clip["height"],
                "length": clip["n_frames"],
                "file_names": [frame_name(clip, f) for f in clip["frame_indices"]],
                "video_uri": clip["video_uri"],
                "clip_id": clip_id,
                "frame_times_s": clip["frame_times_s"],
            }
        )
    annotations = []
    for m in masklets:
        clip = clips[m["clip_id"]]
        n = clip["n_frames"]
        segs, boxes, areas = [None] * n, [None] * n, [None] * n
        for fi, box, rle in zip(m["frame_idx"], m["boxes"], m["masks"], strict=True):
            segs[fi], boxes[fi], areas[fi] = rle_json(rle), _xywh(box), _area(rle)
        annotations.append(
            {
                "id": len(annotations) + 1,
                "video_id": video_id[m["clip_id"]],
                "category_id": category[m["concept"]],
                "segmentations": segs,
                "bboxes": boxes,
                "areas": areas,
                "iscrowd": 0,
                "width": clip["width"],
                "height": clip["height"],
                "length": 1,
                "score": float(m["score"]),
                "track_id": m["track_id"],
            }
        )
    return {
        "info": {"description": "vidlake export", "format": "youtube-vis"},
        "videos": videos,
        "annotations": annotations,
        "categories": categories,
    }
