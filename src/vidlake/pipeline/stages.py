"""Adapters between Ray Data rows and the operators: the only place rows become records.

Each function here is what one Ray Data stage runs; the work itself is in operators/ and
model/. Per-clip failures travel as data (an `error` column) so one bad video never fails the job.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from vidlake.errors import VidlakeError, one_line
from vidlake.records import ClipResult, ClipSpec, VideoInfo
from vidlake.store.object_store import fsspec_options

log = logging.getLogger(__name__)

_EMPTY_FRAMES = np.zeros((0, 1, 1, 3), dtype=np.uint8)


def spec_to_row(spec: ClipSpec) -> dict[str, Any]:
    return {
        "video_id": spec.video_id,
        "video_uri": spec.video_uri,
        "clip_index": spec.clip_index,
        "start_s": spec.start_s,
        "end_s": spec.end_s,
        "sampled_fps": spec.sampled_fps,
        "frame_indices": np.asarray(spec.frame_indices, dtype=np.int64),
        "times_s": np.asarray(spec.times_s, dtype=np.float64),
    }


def row_to_spec(row: dict[str, Any]) -> ClipSpec:
    return ClipSpec(
        video_id=str(row["video_id"]),
        video_uri=str(row["video_uri"]),
        clip_index=int(row["clip_index"]),
        start_s=float(row["start_s"]),
        end_s=float(row["end_s"]),
        sampled_fps=float(row["sampled_fps"]),
        frame_indices=np.asarray(row["frame_indices"], dtype=np.int64),
        times_s=np.asarray(row["times_s"], dtype=np.float64),
    )


def probe_row(row: dict[str, Any], storage_options: dict | None = None) -> dict[str, Any]:
    """Probes one video: the row gains `info` (pickled VideoInfo) or `error`."""
    from vidlake.operators.probe import probe_video

    try:
        info = probe_video(row["uri"], storage_options=fsspec_options(row["uri"], storage_options))
    except VidlakeError as exc:
        return {**row, "info": b"", "error": str(exc)}
    return {**row, "info": pickle.dumps(info), "error": ""}


def load_info(blob: bytes) -> VideoInfo:
    return pickle.loads(blob)


def probe_and_plan(
    row: dict[str, Any],
    storage_options: dict | None = None,
    *,
    clip_seconds: float,
    fps: float,
    overlap_s: float,
    clips_per_task: int,
) -> Iterator[dict[str, Any]]:
    """Probes one video and plans its clips: its decode tasks come out.

    A decode task is a run of up to CLIPS_PER_TASK consecutive clips (decoded with one opened
    reader: short runs keep decode parallel within a long video). Each carries the video's
    probe `info` and `video_n_clips`, so that the driver knows when all of a video's clips are
    in. A video that cannot be probed or planned comes out as one task with its `error` (and
    video_n_clips 1): it flows through the later stages as one failed clip. Probing inside the
    stream lets the segment actors start (and load the model) while the corpus is still being
    probed.
    """
    from vidlake.operators.clips import plan_clips

    base = {"video_id": row["video_id"], "video_uri": row["uri"], **_video_fields(row)}
    probed = probe_row(row, storage_options)
    error = probed["error"]
    clips: list[dict[str, Any]] = []
    if not error:
        try:
            specs = plan_clips(
                row["video_id"],
                load_info(probed["info"]),
                clip_seconds=clip_seconds,
                fps=fps,
                overlap_s=overlap_s,
            )
            clips = [spec_to_row(spec) for spec in specs]
        except VidlakeError as exc:
            error = str(exc)
    if error or not clips:
        failed = spec_to_row(_failed_spec(row["video_id"], row["uri"]))
        yield {
            **base,
            "clips": pickle.dumps([failed]),
            "info": probed["info"] if not error else b"",
            "video_n_clips": 1,
            "error": error or f"no clips to index in {row['uri']}",
        }
        return
    for start in range(0, len(clips), clips_per_task):
        yield {
            **base,
            "clips": pickle.dumps(clips[start : start + clips_per_task]),
            "info": probed["info"],
            "video_n_clips": len(clips),
            "error": "",
        }


# What a video's row carries to each of its clips: which concepts to segment (JSON list; ""
# for the whole vocabulary) and where object ids start (a video gaining concepts, see
# vidlake.pipeline.plan).
_VIDEO_FIELDS = ("segment_concepts", "object_offset")


def _video_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {"segment_concepts": row.get("segment_concepts") or "",
            "object_offset": int(row.get("object_offset") or 0)}  # fmt: skip


def _failed_spec(video_id: str, uri: str) -> ClipSpec:
    """The placeholder clip a video that cannot be probed flows through the stages as."""
    empty = np.zeros(0)
    return ClipSpec(video_id, uri, 0, 0.0, 0.0, 0.0, empty.astype(np.int64), empty)


def decode_rows(
    row: dict[str, Any], storage_options: dict | None = None, max_side: int | None = None
) -> Iterator[dict[str, Any]]:
    """Decodes a run of consecutive clips of one video with one opened reader.

    The row holds `clips`, pickled clip rows of one video; one row per clip comes out, with
    `frames` (T, H, W, 3) uint8 or an `error`. Opening a reader per clip would re-read the
    container (for remote files decord fetches the whole object) once per clip.
    """
    from vidlake.operators.decode import ClipDecoder

    # What the task carries for the driver (probe_and_plan), passed on with every clip.
    video = {k: row[k] for k in ("info", "video_n_clips", *_VIDEO_FIELDS) if k in row}
    clips = [{**clip, **video} for clip in pickle.loads(row["clips"])]
    if row.get("error"):  # the video could not be probed or planned
        for clip in clips:
            yield {**clip, "frames": _EMPTY_FRAMES, "error": row["error"]}
        return
    uri = clips[0]["video_uri"]
    try:
        decoder = ClipDecoder(uri, fsspec_options(uri, storage_options), max_side)
    except VidlakeError as exc:
        for clip in clips:
            yield {**clip, "frames": _EMPTY_FRAMES, "error": str(exc)}
        return
    with decoder:
        for clip in clips:
            try:
                frames = decoder.decode(row_to_spec(clip))
            except VidlakeError as exc:
                yield {**clip, "frames": _EMPTY_FRAMES, "error": str(exc)}
                continue
            yield {**clip, "frames": frames, "error": ""}


def decode_row(
    row: dict[str, Any], storage_options: dict | None = None, max_side: int | None = None
) -> dict[str, Any]:
    """Decodes one clip row (see decode_rows): the row gains `frames` or an `error`."""
    return next(decode_rows({"clips": pickle.dumps([row])}, storage_options, max_side))


class SegmentStage:
    """The segment actor: loads the segmenter once, then segments one clip per call.

    prompts: named exemplar/text prompts; their reference frames are decoded here, once per
    actor, and applied to every clip. max_objects: at most that many objects per clip, the
    highest scores kept (by the segmenter when it takes the argument, which also bounds its
    memory, else here).

    load_errors_as_rows: in a Ray Data job, a segmenter that cannot load (weights that do not
    deserialize, a plug-in that raises, no GPU memory) does not raise here: raised in the
    constructor, Ray prints the actor's traceback, retries it, and ends the job with a
    100-line ActorDiedError. Instead every clip comes out with the message as its `fatal`,
    and `stream_rows` ends the job with it in one line.
    """

    def __init__(
        self,
        model: str,
        concepts: tuple[str, ...],
        device: str = "auto",
        prompts: tuple = (),
        max_objects: int | None = None,
        storage_options: dict | None = None,
        batch_objects: bool | None = None,
        batch_concepts: bool | None = None,
        load_errors_as_rows: bool = False,
    ):
        from vidlake.model import load_segmenter
        from vidlake.model.prompts import with_reference_frames
        from vidlake.model.segmenter import accepts
        from vidlake.pipeline.metrics import SegmentMetrics  # imports Ray: here, in the actor

        self.load_error = ""
        self.metrics = SegmentMetrics()
        # SAM 3 only (IndexConfig checks), so passed only when set (None: SAM 3's default)
        batching = {"batch_objects": batch_objects, "batch_concepts": batch_concepts}
        options = {k: v for k, v in batching.items() if v is not None}
        try:
            self.segmenter = load_segmenter(model, device=device, **options)
        except Exception as exc:  # whatever a checkpoint or plug-in raises; see the docstring
            if not load_errors_as_rows:
                raise
            self.load_error = load_failure(model, exc)
            self.metrics.failed_load()
            return
        self.concepts = list(concepts)
        self.prompts = with_reference_frames(prompts, storage_options)
        self.max_objects = max_objects
        self.segment_kwargs: dict[str, Any] = {}
        if self.prompts:
            if not accepts(self.segmenter, "prompts"):
                raise VidlakeError(f"segmenter {model} does not support exemplar prompts")
            self.segment_kwargs["prompts"] = self.prompts
        if max_objects is not None and accepts(self.segmenter, "max_objects"):
            self.segment_kwargs["max_objects"] = max_objects

    def _prompts_for(self, segment_concepts: str) -> tuple[list[str], dict[str, Any]]:
        """(concepts, segment keyword arguments) for a row's SEGMENT_CONCEPTS (a JSON list of
        vocabulary names; "" for all): the text concepts and the exemplar prompts it names."""
        if not segment_concepts:
            return self.concepts, self.segment_kwargs
        wanted = set(json.loads(segment_concepts))
        kwargs = dict(self.segment_kwargs)
        if "prompts" in kwargs:
            kwargs["prompts"] = [p for p in self.prompts if p.name in wanted]
        return [c for c in self.concepts if c in wanted], kwargs

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        from vidlake.model.segmenter import cap_masklets, segment_with_presence
        from vidlake.operators.thumbnail import crop_thumbnail, jpeg_thumbnail
        from vidlake.store.schema import clip_tables

        base = {
            **{k: row[k] for k in ("video_id", "video_uri", "clip_index")},
            "info": row.get("info", b""),
            "video_n_clips": row.get("video_n_clips", 0),
            "model_start": 0.0,
            "model_s": 0.0,
            "fatal": self.load_error,
            **_video_fields(row),
        }
        if self.load_error:
            return {**base, "tables": b"", "n_frames": 0, "error": self.load_error}
        if row["error"]:
            self.metrics.failed_decode()
            return {**base, "tables": b"", "n_frames": 0, "error": row["error"]}
        frames = np.asarray(row["frames"])
        spec = row_to_spec(row)
        concepts, kwargs = self._prompts_for(base["segment_concepts"])
        # Wall time in the model (its outputs are host arrays, so GPU work is finished): what
        # the job's summary reports as the share of time the model was busy.
        base["model_start"] = time.time()
        try:
            masklets, presence = segment_with_presence(self.segmenter, frames, concepts, **kwargs)
        except (RuntimeError, ValueError) as exc:
            # A model failure on one clip (e.g. out of GPU memory) fails its video, not the job.
            log.warning("segmenting %s clip %d failed: %s", spec.video_uri, spec.clip_index, exc)
            self.metrics.failed_segment()
            return {**base, "tables": b"", "n_frames": 0, "error": f"segmentation failed: {exc}"}
        finally:
            base["model_s"] = time.time() - base["model_start"]
        self.metrics.segmented(base["model_s"], len(frames))
        masklets = cap_masklets(masklets, self.max_objects)[0]
        if base["object_offset"]:  # ids after the video's existing objects (plan.VideoPlan)
            masklets = [
                dataclasses.replace(m, object_id=int(m.object_id) + base["object_offset"])
                for m in masklets
            ]
        result = ClipResult(
            max_objects=self.max_objects,
            spec=spec,
            height=int(frames.shape[1]),
            width=int(frames.shape[2]),
            masklets=masklets,
            thumbnail=jpeg_thumbnail(frames[len(frames) // 2]),
            presence=presence,
        )
        thumbs = []
        for m in masklets:
            best = int(np.argmax(m.scores)) if len(m.scores) else 0
            thumbs.append(
                crop_thumbnail(frames[int(m.frame_idx[best])], m.boxes[best])
                if len(m.frame_idx)
                else b""
            )
        tables = clip_tables(result, thumbs)
        return {
            **base,
            "tables": pickle.dumps(tables),
            "n_frames": int(len(frames)),
            "error": "",
        }


def load_failure(model: str, exc: BaseException) -> str:
    """One line saying why the segmenter MODEL could not be loaded."""
    if isinstance(exc, VidlakeError):
        return str(exc)
    text = one_line(exc) if str(exc).strip() else "no message"
    return f"cannot load the segmenter {model}: {type(exc).__name__}: {text}"


_PASSED_TO_DRIVER = (
    "fatal",
    "video_id",
    "video_uri",
    "clip_index",
    "n_frames",
    "error",
    "model_start",
    "model_s",
    "info",
    "video_n_clips",
)


def write_batch(
    batch: pa.Table, index_uri: str, overlap_s: float, storage_options: dict | None = None
) -> pa.Table:
    """Writes a batch of segmented clips as uncommitted Lance fragments, one per video per table.

    The driver commits a video's fragments once all its clips are in, so a fragment holds rows
    of one video only; batching clips keeps fragments (and per-write overhead) few. Each row
    comes out with its clip's boundary (masks on its overlap frames) for stitching; the
    fragments ride on the first row of each video's group.
    """
    from vidlake.store.schema import masklet_summaries
    from vidlake.store.tables import write_fragments

    rows = batch.to_pylist()
    groups: dict[str, list[tuple[dict, dict]]] = {}
    out = []
    for row in rows:
        base = {k: row[k] for k in _PASSED_TO_DRIVER}
        if row["error"]:
            out.append({**base, "fragments": b"", "boundary": b"", "summary": b"", "n_masklets": 0})
            continue
        tables = pickle.loads(row["tables"])
        result = {
            **base,
            "fragments": pickle.dumps({}),
            "boundary": pickle.dumps(_boundary(tables, overlap_s)),
            # Per-masklet times, centres and areas: the driver makes the `tracks` rows of them.
            "summary": pickle.dumps(masklet_summaries(tables["masklets"], tables["clips"])),
            "n_masklets": tables["masklets"].num_rows,
        }
        if row.get("segment_concepts"):  # a video gaining concepts has its clips rows already
            tables = {**tables, "clips": tables["clips"].slice(0, 0)}
        out.append(result)
        groups.setdefault(row["video_id"], []).append((result, tables))
    for members in groups.values():
        merged = {
            name: pa.concat_tables([tables[name] for _, tables in members])
            for name in members[0][1]
        }
        members[0][0]["fragments"] = pickle.dumps(
            write_fragments(index_uri, merged, storage_options)
        )
    return pa.Table.from_pylist(out, schema=WRITE_OUTPUT)


WRITE_OUTPUT = pa.schema(
    [
        ("fatal", pa.string()),
        ("video_id", pa.string()),
        ("video_uri", pa.string()),
        ("clip_index", pa.int64()),
        ("n_frames", pa.int64()),
        ("error", pa.string()),
        ("fragments", pa.binary()),
        ("boundary", pa.binary()),
        ("summary", pa.binary()),
        ("n_masklets", pa.int64()),
        ("model_start", pa.float64()),
        ("model_s", pa.float64()),
        ("info", pa.binary()),
        ("video_n_clips", pa.int64()),
    ]
)


def _boundary(tables: dict[str, pa.Table], overlap_s: float):
    from vidlake.operators.stitch import clip_boundary

    clip = tables["clips"].to_pylist()[0]
    return clip_boundary(
        clip_index=clip["clip_index"],
        start_s=clip["start_s"],
        end_s=clip["end_s"],
        overlap_s=overlap_s,
        frame_indices=np.asarray(clip["frame_indices"]),
        times_s=np.asarray(clip["frame_times_s"]),
        masklets=tables["masklets"]
        .select(["masklet_id", "concept", "frame_idx", "masks"])
        .to_pylist(),
    )
