"""Every stage of the index job measured against its limit, side by side in one run.

Each row is a ratio of what vidlake does over the fastest plain way to do the same work on the
same inputs, on this machine, in this run:

1. efficiency: `vidlake index` end to end (frames/s, Ray already up) over the segment stage
   alone on pre-decoded frames in this process (same model, same frames, same torch threads
   as the actor gets). Target >= 0.9.
2. decode: the decode operator (sampling at --fps, resizing to the model side) over a plain
   decord loop doing the same, and its PyAV fallback over a plain PyAV loop. Target >= 0.95.
3. masks: `encode_rles` over `pycocotools.mask.encode` alone on the same masks (>= 0.95), and
   RLE bytes stored per masklet-frame over the raw (bit-packed) bitmap.
4. writes: the write stage (fragments per clip, one commit per video per table) over
   `lance.write_dataset` of the same Arrow batches (>= 0.9); fragments a run leaves.
   commits: the driver's commit of one finished video (fragments, stitched track ids, commit
   marker: `VideoCommitter`), its cost at the end of a long job over at its start.
5. scaling: 2 segment actors and a 2-node `ray.cluster_utils.Cluster` over 1 actor.
6. memory: peak private memory (RSS less shared pages) of the driver and each actor for a
   corpus 10x larger (fresh processes, see bench/memory.py): must not grow.

Run (writes bench/RESULTS.md's pipeline section unless --no-results):

    .venv/bin/python bench/pipeline.py                 # full sizes, about 10 min on 2 CPUs
    .venv/bin/python bench/pipeline.py --size smoke --no-results   # what CI runs

It runs the tiny SAM 3 on CPU. On a GPU machine, the full-size architecture's counterpart of
row 1 (the index job over the segment stage alone), and the share of the job's wall time the
GPU is busy, come from `bench/sam3_gpu.py --pipeline N [--pipeline-actors 1
--pipeline-alone K]`, run there by bench/gpu_pipeline.sh, which also carries the wheels that
machine lacks.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import math
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BENCH_DIR = Path(__file__).resolve().parent
CONCEPTS = ("red square", "blue circle", "person")


def _load_memory_module():
    """bench/memory.py (a sibling script, not a package) loaded by path."""
    name = "vidlake_bench_memory"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / "memory.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Size:
    """How much work each section does; "smoke" runs in CI, "full" gives the recorded figures."""

    n_videos: int  # corpus of the efficiency/scaling runs
    video_s: float  # seconds per corpus video (160x120 at 12 fps)
    fps: float  # frames sampled per second for the model
    clip_s: float
    decode_s: float  # seconds of the 640x360 24 fps video the decode section reads
    decode_fps: float  # --fps of the decode section (the index default, 6)
    mask_frames: int  # frames of ground-truth masks encoded
    memory_videos: int  # the 1x corpus of the memory section (10x is ten times more)
    commit_videos: int  # videos committed one by one in the commits section
    plateau_scales: tuple[int, ...]  # two larger corpora for the task workers' memory, or ()
    repeats: int  # best-of for the short in-process timings


SIZES = {
    "smoke": Size(
        n_videos=1,
        video_s=4.0,
        fps=2.0,
        clip_s=2.0,
        decode_s=3.0,
        decode_fps=6.0,
        mask_frames=6,
        memory_videos=1,
        commit_videos=12,
        plateau_scales=(),
        repeats=1,
    ),
    "medium": Size(
        n_videos=2,
        video_s=20.0,
        fps=2.0,
        clip_s=10.0,
        decode_s=20.0,
        decode_fps=6.0,
        mask_frames=60,
        memory_videos=1,
        commit_videos=100,
        plateau_scales=(),
        repeats=2,
    ),
    "full": Size(
        n_videos=6,
        video_s=20.0,
        fps=3.0,
        clip_s=10.0,
        decode_s=60.0,
        decode_fps=6.0,
        mask_frames=120,
        memory_videos=2,
        commit_videos=300,
        plateau_scales=(30, 100),
        repeats=3,
    ),
}


@dataclass
class Row:
    """One figure: value and baseline in `unit`, ratio = value / baseline (higher is better
    unless the target says otherwise)."""

    section: str
    name: str
    value: float
    baseline: float
    unit: str
    target: str = ""
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    @property
    def verdict(self) -> str:
        if not self.target:
            return "-"
        op, bound = self.target.split()
        ok = self.ratio >= float(bound) if op == ">=" else self.ratio <= float(bound)
        return "met" if ok else "MISSED"


def timed(fn: Callable[[], object], repeats: int = 1) -> tuple[float, object]:
    """Best wall seconds of fn over repeats, and its last result."""
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# ---- inputs ---------------------------------------------------------------------------------


def write_inputs(workdir: Path, size: Size) -> dict:
    """The corpus (160x120), the decode video (640x360, 24 fps) and the tiny SAM 3."""
    from vidlake.model.tiny import build_tiny_sam3
    from vidlake.synthetic.corpus import ShapeSpec, VideoSpec, write_video

    videos = []
    for i in range(size.n_videos):
        spec = VideoSpec(
            name=f"v{i:03d}",
            duration_s=size.video_s,
            shapes=(
                ShapeSpec("red square", (30.0 + i, 40.0), (3.0, 0.5), 30),
                ShapeSpec("blue circle", (120.0, 80.0 - i), (-3.0, 0.0), 32),
            ),
        )
        videos.append(write_video(spec, workdir / "corpus" / f"{spec.name}.mp4"))
    decode_video = write_video(
        VideoSpec(
            name="decode",
            duration_s=size.decode_s,
            width=640,
            height=360,
            fps=24.0,
            shapes=(
                ShapeSpec("red square", (60.0, 90.0), (20.0, 2.0), 90),
                ShapeSpec("blue circle", (500.0, 200.0), (-15.0, 3.0), 110),
                ShapeSpec("green triangle", (300.0, 300.0), (5.0, -8.0), 100),
            ),
        ),
        workdir / "decode.mp4",
    )
    model = str(build_tiny_sam3(workdir / "tiny_sam3"))
    return {"videos": videos, "decode_video": decode_video, "model": model}


def overlap_for(clip_s: float) -> float:
    """The clips' overlap in this bench's index runs: 1 s for clips of 5 s or more, else none."""
    return 1.0 if clip_s >= 5 else 0.0


def clip_rows(
    uris: list[str], clip_s: float, fps: float, overlap_s: float | None = None
) -> list[dict]:
    """The pipeline's clip rows (stages.spec_to_row) of these videos, as the driver plans them
    (OVERLAP_S: the index run's, by default this bench's `overlap_for`)."""
    from vidlake.operators.clips import plan_clips
    from vidlake.operators.probe import probe_video
    from vidlake.pipeline import stages
    from vidlake.records import stable_id

    overlap = overlap_for(clip_s) if overlap_s is None else overlap_s
    rows = []
    for uri in uris:
        info = probe_video(uri)
        video_id = stable_id("video", uri)
        for spec in plan_clips(video_id, info, clip_seconds=clip_s, fps=fps, overlap_s=overlap):
            rows.append(stages.spec_to_row(spec))
    return rows


# ---- 1. efficiency + 5. scaling -------------------------------------------------------------


def segment_alone(
    rows: list[dict], stage, max_side: int | None, timed=None
) -> tuple[float, int, list[dict]]:
    """Seconds STAGE (a stages.SegmentStage, its model loaded) takes on ROWS' frames in this
    process, frames, outputs: the frames are decoded before the clock starts, and torch gets
    one thread, what Ray gives a segment actor (OMP_NUM_THREADS from its CPUs). TIMED is
    entered around the timed loop alone (bench/sam3_gpu.py: its GPU-busy sampler)."""
    import torch

    from vidlake.pipeline import stages

    decoded = [stages.decode_row(r, max_side=max_side) for r in rows]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with timed or contextlib.nullcontext():
            t0 = time.perf_counter()
            outputs = [stage(r) for r in decoded]
            seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    n_frames = sum(int(o["n_frames"]) for o in outputs)
    return seconds, n_frames, outputs


def index_run(uris: list[str], index_uri: str, model: str, size: Size, max_side: int, actors: int):
    """`run_index` on the Ray this process is connected to: (frames/s, summary)."""
    from vidlake.config import IndexConfig
    from vidlake.pipeline.index_job import init_ray, run_index

    init_ray(None)  # Ray Data settings of the job; Ray itself is already up
    config = IndexConfig(
        sources=tuple(uris),
        index_uri=index_uri,
        concepts=CONCEPTS,
        model=model,
        clip_seconds=size.clip_s,
        fps=size.fps,
        overlap_s=overlap_for(size.clip_s),
        max_side=max_side,
        num_actors=actors,
        device="cpu",
    )
    t0, epoch0 = time.perf_counter(), time.time()
    summary = run_index(config)
    wall = time.perf_counter() - t0
    # Before the first clip enters the model, and after the last one leaves it.
    summary.startup_s = summary.model_first_start - epoch0
    summary.tail_s = epoch0 + wall - summary.model_last_end
    if summary.n_failed:
        raise RuntimeError(f"index run failed: {summary.failures}")
    # The segment phase: first clip into the model to the last out of it (Ray start, probing,
    # model load, the last commits and the index refresh excluded).
    span = summary.segment_span_s
    summary.steady_fps = summary.n_frames / span if span > 0 else float("nan")
    return summary.n_frames / wall, summary


def local_ray(num_cpus: int) -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # address="local": our own Ray, never a cluster another process left running on the machine.
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR")


def bench_efficiency_and_scaling(
    inputs: dict, size: Size, workdir: Path, max_side: int, scaling: bool
):
    import ray
    from ray.cluster_utils import Cluster

    from vidlake.pipeline.stages import SegmentStage

    uris = [v.uri for v in inputs["videos"]]
    rows = clip_rows(uris, size.clip_s, size.fps)
    model = inputs["model"]
    stage = SegmentStage(model, CONCEPTS, device="cpu")
    seg_s, n_frames, outputs = segment_alone(rows, stage, max_side)
    seg_fps = n_frames / seg_s

    ncpu = os.cpu_count() or 1
    local_ray(ncpu)
    e2e_fps, summary = index_run(uris, str(workdir / "idx_1"), model, size, max_side, actors=1)
    out = [
        Row(
            "1 efficiency",
            "index e2e / segment stage alone",
            e2e_fps,
            seg_fps,
            "frames/s",
            ">= 0.9",
            f"{summary.n_frames} frames, {summary.n_clips} clips, {len(uris)} videos; 1 actor;"
            " includes actor start and model load",
        ),
        Row(
            "1 efficiency",
            "segment phase of the job / segment stage alone",
            summary.steady_fps,
            seg_fps,
            "frames/s",
            ">= 0.9",
            "first clip into the model to the last out (startup and final commit excluded)",
        ),
        Row(
            "1 efficiency",
            "model busy / job wall time x actors",
            summary.model_s,
            summary.wall_s * summary.n_actors,
            "s",
            "",
            f"wall {summary.wall_s:.1f} s: the rest is Ray start, probe, model load, commits",
        ),
        Row(
            "1 efficiency",
            "job start to the first clip in the model / job wall time",
            summary.startup_s,
            summary.wall_s,
            "s",
            "",
            "Ray Data starting the actor, then the actor importing torch + transformers and "
            f"loading the model; after the last clip: {summary.tail_s:.2f} s",
        ),
        Row(
            "1 efficiency",
            "driver commits / job wall time",
            summary.commit_s,
            summary.wall_s,
            "s",
            "",
            f"{summary.n_commits} commits for {summary.n_indexed} videos (the driver's serial "
            "step, paced to <= 0.2)",
        ),
    ]
    if not scaling:
        ray.shutdown()
        return out, rows, outputs, str(workdir / "idx_1")

    e2e2_fps, s2 = index_run(uris, str(workdir / "idx_2"), model, size, max_side, actors=2)
    ray.shutdown()
    # Two simulated nodes sharing this machine's cores.
    per_node = max(1, ncpu // 2)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": per_node, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=per_node)
    try:
        ray.init(address=cluster.address, logging_level="ERROR")
        cl_fps, sc = index_run(uris, str(workdir / "idx_c"), model, size, max_side, actors=2)
    finally:
        ray.shutdown()
        cluster.shutdown()
    out += [
        Row(
            "5 scaling",
            "2 segment actors / 1 actor",
            e2e2_fps,
            e2e_fps,
            "frames/s",
            "",
            f"{ncpu} CPUs; ideal 2.0",
        ),
        Row(
            "5 scaling",
            "2 actors / 1 actor, segment phase",
            s2.steady_fps,
            summary.steady_fps,
            "frames/s",
            "",
            "first clip into a model to the last out",
        ),
        Row(
            "5 scaling",
            "2-node Cluster, 2 actors / 1 actor local",
            cl_fps,
            e2e_fps,
            "frames/s",
            "",
            f"{per_node} CPU per node",
        ),
        Row(
            "5 scaling",
            "2-node Cluster / 1 actor, segment phase",
            sc.steady_fps,
            summary.steady_fps,
            "frames/s",
            "",
            "first clip into a model to the last out",
        ),
    ]
    return out, rows, outputs, str(workdir / "idx_1")


# ---- 2. decode ------------------------------------------------------------------------------


def _pil_resize(frames: np.ndarray, max_side: int) -> np.ndarray:
    """The same bilinear PIL resize the operator does, written out for the plain loops."""
    from PIL import Image

    _, h, w, _ = frames.shape
    scale = max_side / max(h, w)
    if scale >= 1:
        return frames
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames])


def plain_decord(path: str, rows: list[dict], max_side: int) -> int:
    import decord

    reader = decord.VideoReader(path, num_threads=1)
    n = 0
    for r in rows:
        frames = reader.get_batch(r["frame_indices"].tolist()).asnumpy()
        n += len(_pil_resize(frames, max_side))
    return n


def plain_pyav(path: str, rows: list[dict], max_side: int) -> int:
    """One sequential decode of the file, keeping the wanted frames of each clip."""
    import av

    wanted = defaultdict(int)
    for r in rows:
        for i in r["frame_indices"].tolist():
            wanted[i] += 1
    last = max(wanted)
    n = 0
    with av.open(path) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                rgb = frame.to_ndarray(format="rgb24")[None]
                n += len(_pil_resize(rgb, max_side)) * wanted[index]
            if index >= last:
                break
    return n


def pipeline_decode(rows: list[dict], max_side: int, backend: str) -> int:
    """The pipeline's decode tasks: runs of DECODE_CLIPS_PER_TASK clips, one decoder per run."""
    from vidlake.operators.decode import ClipDecoder
    from vidlake.pipeline.index_job import DECODE_CLIPS_PER_TASK
    from vidlake.pipeline.stages import row_to_spec

    n = 0
    for start in range(0, len(rows), DECODE_CLIPS_PER_TASK):
        run = rows[start : start + DECODE_CLIPS_PER_TASK]
        with ClipDecoder(run[0]["video_uri"], max_side=max_side, backend=backend) as decoder:
            n += sum(len(decoder.decode(row_to_spec(r))) for r in run)
    return n


def clip_at_a_time(rows: list[dict], max_side: int, backend: str) -> int:
    """decode_clip per clip (a reader opened per clip): what the pipeline did before runs."""
    from vidlake.operators.decode import decode_clip
    from vidlake.pipeline.stages import row_to_spec

    return sum(len(decode_clip(row_to_spec(r), max_side=max_side, backend=backend)) for r in rows)


def bench_decode(inputs: dict, size: Size, max_side: int) -> list[Row]:
    from vidlake.pipeline.index_job import DECODE_CLIPS_PER_TASK

    path = inputs["decode_video"].uri
    rows = clip_rows([path], 10.0, size.decode_fps)
    total = sum(len(r["frame_indices"]) for r in rows)
    rep = size.repeats
    t_op, n_op = timed(lambda: pipeline_decode(rows, max_side, "decord"), rep)
    t_dec, n_dec = timed(lambda: plain_decord(path, rows, max_side), rep)
    t_one, n_one = timed(lambda: clip_at_a_time(rows, max_side, "decord"), rep)
    t_av_op, n_av_op = timed(lambda: pipeline_decode(rows, max_side, "pyav"), rep)
    t_av, n_av = timed(lambda: plain_pyav(path, rows, max_side), rep)
    t_av_one, n_av_one = timed(lambda: clip_at_a_time(rows, max_side, "pyav"), rep)
    counts = (n_op, n_dec, n_one, n_av_op, n_av, n_av_one)
    assert all(n == total for n in counts), counts
    note = (
        f"640x360 24 fps -> {max_side} px, {len(rows)} clips at {size.decode_fps:g} fps, "
        f"{DECODE_CLIPS_PER_TASK} clips per decode task"
    )
    return [
        Row("2 decode", "decode tasks (decord) / plain decord", total / t_op, total / t_dec,
            "frames/s", ">= 0.95", note),
        Row("2 decode", "a reader per clip (decord) / plain decord", total / t_one,
            total / t_dec, "frames/s", "", "before: decode_clip per clip"),
        Row("2 decode", "decode tasks (PyAV fallback) / plain PyAV", total / t_av_op,
            total / t_av, "frames/s", ">= 0.95", "plain loop: one sequential pass"),
        Row("2 decode", "a reader per clip (PyAV) / plain PyAV", total / t_av_one,
            total / t_av, "frames/s", "", "before: a keyframe seek per clip"),
    ]  # fmt: skip


# ---- 3. masks -------------------------------------------------------------------------------


def bench_masks(inputs: dict, size: Size, e2e_index: str) -> list[Row]:
    from pycocotools import mask as mask_utils

    from vidlake.operators.encode import encode_rles
    from vidlake.store.tables import IndexStore

    video = inputs["decode_video"]
    step = max(1, video.n_frames // size.mask_frames)
    per_frame = []  # (N, H, W) bool per frame, N objects, as the segmenter hands them over
    for f in range(0, video.n_frames, step)[: size.mask_frames]:
        per_frame.append(np.stack([video.mask(c, f) for c in video.concepts]))
    fortran = [np.asfortranarray(np.moveaxis(m.astype(np.uint8), 0, -1)) for m in per_frame]
    n_masks = sum(len(m) for m in per_frame)
    reps = max(3, size.repeats)
    t_op, rles = timed(lambda: [encode_rles(m) for m in per_frame], reps)
    t_coco, _ = timed(lambda: [mask_utils.encode(m) for m in fortran], reps)
    # Before: astype(uint8) copy, then the transposing copy.
    t_view, _ = timed(
        lambda: [mask_utils.encode(np.asfortranarray(np.moveaxis(m.astype(np.uint8), 0, -1)))
                 for m in per_frame],
        reps,
    )  # fmt: skip
    h, w = per_frame[0].shape[1:]
    rle_bytes = statistics.fmean(len(r["counts"]) + 8 for frame in rles for r in frame)
    bitmap_bytes = h * w / 8

    # What the e2e run stored: the tiny SAM 3's masks (random weights: blobby, noisy).
    masklets = IndexStore.open(e2e_index).dataset("masklets").to_table(columns=["masks"])
    stored = [m for row in masklets.column("masks").to_pylist() for m in row]
    sh, sw = stored[0]["size"]
    stored_bytes = statistics.fmean(len(m["counts"]) + 8 for m in stored)
    return [
        Row("3 masks", "encode_rles / pycocotools.mask.encode", n_masks / t_op, n_masks / t_coco,
            "masks/s", ">= 0.95", f"{n_masks} masks {w}x{h}, {len(per_frame[0])} per call"),
        Row("3 masks", "before: astype copy + transposing copy / encode", n_masks / t_view,
            n_masks / t_coco, "masks/s", "", "what encode_rles did"),
        Row("3 masks", "RLE bytes per masklet-frame / packed bitmap", rle_bytes, bitmap_bytes,
            "bytes", "<= 1", f"ground-truth shapes {w}x{h}"),
        Row("3 masks", "stored RLE bytes / packed bitmap (tiny SAM 3)", stored_bytes,
            sh * sw / 8, "bytes", "<= 1", f"{len(stored)} masklet-frames {sw}x{sh} in Lance"),
    ]  # fmt: skip


# ---- 4. writes ------------------------------------------------------------------------------


def _tables_by_video(outputs: list[dict]) -> dict[str, list[dict]]:
    by_video: dict[str, list[dict]] = defaultdict(list)
    for o in outputs:
        by_video[o["video_id"]].append(pickle.loads(o["tables"]))
    return by_video


def write_stage(uri: str, by_video: dict[str, list[dict]], clips_per_batch: int) -> None:
    """What write tasks + the driver do: a fragment per video per batch of clips (stages.
    write_batch, WRITE_CLIPS_PER_BATCH clips), then one commit per table per video."""
    import pyarrow as pa

    from vidlake.store.tables import PER_VIDEO_TABLES, IndexStore, write_fragments

    store = IndexStore.create(uri)
    for clips in by_video.values():
        written = []
        for start in range(0, len(clips), clips_per_batch):
            part = clips[start : start + clips_per_batch]
            merged = {t: pa.concat_tables([c[t] for c in part]) for t in PER_VIDEO_TABLES}
            written.append(write_fragments(store.uri, merged))
        for table in PER_VIDEO_TABLES:
            store.commit_fragments(table, [w[table] for w in written if table in w])


def write_direct(uri: str, by_video: dict[str, list[dict]], clips_per_batch: int = 0) -> None:
    """The same batches written with one lance.write_dataset per table; clips_per_batch > 0:
    one per table per batch of a video's clips, the granularity the write stage works at."""
    import lance
    import pyarrow as pa

    from vidlake.store.schema import TABLES
    from vidlake.store.tables import DATA_STORAGE_VERSION, PER_VIDEO_TABLES, IndexStore, table_uri

    store = IndexStore.create(uri)
    if clips_per_batch:
        groups = [
            clips[start : start + clips_per_batch]
            for clips in by_video.values()
            for start in range(0, len(clips), clips_per_batch)
        ]
    else:
        groups = [[c for clips in by_video.values() for c in clips]]
    for group in groups:
        for table in PER_VIDEO_TABLES:
            lance.write_dataset(
                pa.RecordBatchReader.from_batches(
                    TABLES[table], iter([b for c in group for b in c[table].to_batches()])
                ),
                table_uri(store.uri, table),
                mode="append",
                data_storage_version=DATA_STORAGE_VERSION,
            )


def fragment_stats(index_uri: str, table: str) -> tuple[int, float]:
    """(fragments, mean data bytes per fragment) of one table of an index."""
    from vidlake.store.tables import IndexStore

    frags = IndexStore.open(index_uri).dataset(table).get_fragments()
    sizes = [sum(f.file_size_bytes or 0 for f in frag.data_files()) for frag in frags]
    return len(frags), (statistics.fmean(sizes) if sizes else 0.0)


HEAVY_ROWS = 9  # the writes section's heavy run: each clip's rows this many times


def bench_writes(outputs: list[dict], size: Size, workdir: Path, e2e_index: str) -> list[Row]:
    import pyarrow as pa

    from vidlake.pipeline.index_job import WRITE_CLIPS_PER_BATCH
    from vidlake.store.tables import COMPACT_FRAGMENTS_OVER, IndexStore

    by_video = _tables_by_video(outputs)
    nbytes = sum(t.nbytes for clips in by_video.values() for c in clips for t in c.values())
    mb = nbytes / 1e6
    runs = iter(range(1000))

    def fresh() -> str:
        return str(workdir / "writes" / f"w{next(runs)}")

    rep = size.repeats
    t_stage, _ = timed(lambda: write_stage(fresh(), by_video, WRITE_CLIPS_PER_BATCH), rep)
    t_direct, _ = timed(lambda: write_direct(fresh(), by_video), rep)
    t_clip, _ = timed(lambda: write_stage(fresh(), by_video, 1), rep)
    t_batch, _ = timed(lambda: write_direct(fresh(), by_video, WRITE_CLIPS_PER_BATCH), rep)
    n_clips = sum(len(c) for c in by_video.values())
    # The same clips with every table's rows repeated (9x the mask bytes: what 1008 px masks
    # weigh against the tiny model's 112 px): does the stage's extra time grow with bytes?
    heavy = {
        v: [{t: pa.concat_tables([tab] * HEAVY_ROWS) for t, tab in c.items()} for c in clips]
        for v, clips in by_video.items()
    }
    t_stage_heavy, _ = timed(lambda: write_stage(fresh(), heavy, WRITE_CLIPS_PER_BATCH), rep)
    t_batch_heavy, _ = timed(lambda: write_direct(fresh(), heavy, WRITE_CLIPS_PER_BATCH), rep)
    rows = [
        Row("4 writes", "write stage / lance.write_dataset", mb / t_stage, mb / t_direct, "MB/s",
            ">= 0.9", f"{n_clips} clips, {len(by_video)} videos, {mb:.2f} MB Arrow; "
            f"{WRITE_CLIPS_PER_BATCH} clips per batch, a commit per video"),
        Row("4 writes", "a fragment per clip / write_dataset", mb / t_clip, mb / t_direct,
            "MB/s", "", "before: write per clip"),
        Row("4 writes", "write stage / a write_dataset per write batch", mb / t_stage,
            mb / t_batch, "MB/s", "", "what the split into fragments (tasks) and commits "
            "(driver) costs over Lance's own append at the stage's granularity"),
        Row("4 writes", f"write stage s over write_dataset per batch, {HEAVY_ROWS}x / 1x the bytes",
            t_stage_heavy - t_batch_heavy, t_stage - t_batch, "s", "", f"{mb * HEAVY_ROWS:.1f} "
            f"vs {mb:.2f} MB; ~1: a cost per Lance call (a fragment write and a commit per "
            "table per batch against one write_dataset), not per byte"),
        Row("4 writes", f"write stage / write_dataset per batch, {HEAVY_ROWS}x the bytes",
            mb * HEAVY_ROWS / t_stage_heavy, mb * HEAVY_ROWS / t_batch_heavy, "MB/s", "",
            "each table's rows repeated: the mask bytes of 1008 px masks"),
    ]  # fmt: skip

    # Fragments the e2e run left, and what compacting them gives.
    compacted = str(workdir / "compacted")
    shutil.copytree(e2e_index, compacted)
    IndexStore.open(compacted).dataset("masklets").optimize.compact_files()
    for table in ("masklets", "clips"):
        n, mean_bytes = fragment_stats(e2e_index, table)
        n_c, mean_c = fragment_stats(compacted, table) if table == "masklets" else (n, mean_bytes)
        triggered = "compacted" if n <= 1 < n_clips else "not compacted"
        rows.append(
            Row("4 writes", f"{table} fragments left by a run / compaction threshold", n,
                COMPACT_FRAGMENTS_OVER, "fragments", "",
                f"{triggered} (threshold > {COMPACT_FRAGMENTS_OVER})")
        )  # fmt: skip
        if table == "masklets":
            rows.append(
                Row("4 writes", "masklets bytes per fragment / after compaction", mean_bytes,
                    mean_c, "bytes", "", f"{n} -> {n_c} fragments")
            )  # fmt: skip
    return rows


def commit_costs(
    uri: str, n_videos: int, key_indexes: bool = True, storage_options: dict | None = None
) -> list[float]:
    """Seconds of each commit of N_VIDEOS videos committed one by one, as the driver does on
    local disk (8 masklets per video, 4 of them with stitched track ids). key_indexes=False:
    what commits cost before the job kept its key indexes current."""
    from vidlake.pipeline.commits import VideoCommitter
    from vidlake.store import schema
    from vidlake.store.tables import IndexStore, write_fragments
    from vidlake.synthetic.records import clip_result, indexed_row

    store = IndexStore.create(uri, storage_options)
    if not key_indexes:
        store.update_key_indexes = lambda: None
    committer = VideoCommitter(store)
    costs = []
    for i in range(n_videos):
        vid = f"video{i:06d}"
        tables = schema.clip_tables(clip_result(vid, 0, n_objects=8), [b"crop"] * 8)
        written = write_fragments(store.uri, tables, store.storage_options)
        ids = tables["masklets"].column("masklet_id").to_pylist()[:4]
        committer.add(
            indexed_row(vid),
            {table: [blob] for table, blob in written.items()},
            {m: f"track-{m}" for m in ids},
        )
        start = time.perf_counter()
        committer.commit()
        costs.append(time.perf_counter() - start)
    return costs


def bench_commits(size: Size, workdir: Path) -> list[Row]:
    n = size.commit_videos
    k = max(1, n // 10)
    rows = []
    for key_indexes, label in ((True, ""), (False, "before: no key indexes; ")):
        costs = commit_costs(str(workdir / f"commits-{key_indexes}"), n, key_indexes)
        first, last = statistics.fmean(costs[:k]), statistics.fmean(costs[-k:])
        rows.append(
            Row("4 writes", f"{label}commit s per video, last {k} / first {k} of {n}",
                last, first, "s", "", f"{sum(costs):.1f} s for {n} videos committed one by one")
        )  # fmt: skip
    s3 = s3_commit_costs(max(4, n // 15))
    if s3:
        local = statistics.median(commit_costs(str(workdir / "commits-local"), len(s3)))
        rows.append(
            Row("4 writes", "commit s per video, S3 endpoint / local disk", statistics.median(s3),
                local, "s", "", f"moto server on 127.0.0.1, {len(s3)} videos: why commits "
                "are paced (VideoCommitter groups videos when a commit is slow)")
        )  # fmt: skip
    return rows


def s3_commit_costs(n_videos: int) -> list[float]:
    """`commit_costs` on an S3 endpoint (a moto server on loopback); [] without moto."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        return []
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    options = {"endpoint": endpoint, "region": "us-east-1", "key": "bench", "secret": "bench"}
    try:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket="vidlake-bench")
        return commit_costs("s3://vidlake-bench/idx", n_videos, storage_options=options)
    finally:
        server.stop()


# ---- 6. memory ------------------------------------------------------------------------------


def corpus_copies(base: list[str], scale: int, folder: Path) -> list[str]:
    """SCALE copies of the BASE videos in FOLDER under new names: new video ids, same work."""
    folder.mkdir(parents=True, exist_ok=True)
    uris = []
    for k in range(scale):
        for uri in base:
            dst = folder / f"{Path(uri).stem}_{k}.mp4"
            shutil.copyfile(uri, dst)
            uris.append(str(dst))
    return uris


def bench_memory(inputs: dict, size: Size, workdir: Path, max_side: int) -> list[Row]:
    memory = _load_memory_module()
    base = [v.uri for v in inputs["videos"][: size.memory_videos]]

    def peak(scale: int, model: str) -> object:
        folder = workdir / f"memory_{scale}x_{model.replace(':', '_').split('/')[-1]}"
        uris = corpus_copies(base, scale, folder)
        return memory.index_peak_memory(uris, str(folder / "idx"), model, CONCEPTS, size.fps,
                                        max_side)  # fmt: skip

    small, large = peak(1, inputs["model"]), peak(10, inputs["model"])
    note = f"{small.frames} vs {large.frames} frames"
    mib = 1024 * 1024
    rows = [
        Row("6 memory", "driver peak private memory, 10x / 1x corpus", large.driver / mib,
            small.driver / mib, "MiB", "<= 1.1", note),
        Row("6 memory", "segment actor peak private memory, 10x / 1x", max(large.actors) / mib,
            max(small.actors) / mib, "MiB", "<= 1.1", f"{len(large.actors)} actor(s)"),
        Row("6 memory", "task workers peak private memory, 10x / 1x", large.task_workers / mib,
            small.task_workers / mib, "MiB", "<= 1.1", "decode/probe/write tasks"),
    ]  # fmt: skip
    if size.plateau_scales:
        # Task workers only: the colour segmenter (no model to load) keeps larger corpora quick.
        lo, hi = (peak(scale, "synthetic:color") for scale in size.plateau_scales)
        rows.append(
            Row("6 memory", f"task workers peak private memory, {size.plateau_scales[1]}x / "
                f"{size.plateau_scales[0]}x (colour segmenter)", hi.task_workers / mib,
                lo.task_workers / mib, "MiB", "", f"{lo.frames} vs {hi.frames} frames: ~1 "
                "once a worker's memory has warmed up: a plateau, not growth with the corpus")
        )  # fmt: skip
    return rows


# ---- report ---------------------------------------------------------------------------------


def print_table(rows: list[Row], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("section", "measure", "value", "baseline", "unit", "ratio", "target", "", "note"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.section,
            r.name,
            f"{r.value:.4g}",
            f"{r.baseline:.4g}",
            r.unit,
            f"{r.ratio:.3f}",
            r.target,
            r.verdict,
            r.note,
        )
    Console(width=200).print(table)


def render_markdown(rows: list[Row], args: argparse.Namespace, wall_s: float) -> str:
    memory = _load_memory_module()
    load, ncpu = os.getloadavg()[0], os.cpu_count() or 1
    busy = ": other jobs shared the machine, so absolute figures carry noise" if load > ncpu else ""
    lines = [
        f"### Index job stages vs their limits (`--size {args.size}`)",
        "",
        f"Machine: {memory.machine_name()}; tiny random SAM 3 on CPU (fp32, 1 torch thread per"
        f" actor); synthetic 160x120 videos. One run, {wall_s:.0f} s, load average at the end"
        f" {load:.1f} on {ncpu} CPUs{busy}; ratios are measured side by side.",
        "",
        "| section | measure | value | baseline | unit | ratio | target | | note |",
        "|---|---|---:|---:|---|---:|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.section} | {r.name} | {r.value:.4g} | {r.baseline:.4g} | {r.unit} | "
            f"{r.ratio:.3f} | {r.target} | {r.verdict} | {r.note} |"
        )
    lines += ["", f"Reproduce: `{memory.reproduce_command()}`", ""]
    return "\n".join(lines)


SECTIONS = ("efficiency", "decode", "masks", "writes", "commits", "scaling", "memory")


def run(size_name: str, workdir: Path, sections: tuple[str, ...] = SECTIONS) -> list[Row]:
    """Runs the benchmark at a size; returns its rows (every section needs the 1-actor run)."""
    from vidlake.model.tiny import TINY_IMAGE_SIZE

    size = SIZES[size_name]
    max_side = TINY_IMAGE_SIZE  # the model's input side: decode no larger than the model needs
    inputs = write_inputs(workdir, size)
    rows: list[Row] = []
    outputs, e2e_index = None, None
    if {"efficiency", "masks", "writes", "scaling"} & set(sections):
        eff, _, outputs, e2e_index = bench_efficiency_and_scaling(
            inputs, size, workdir, max_side, scaling="scaling" in sections
        )
        rows += eff
    if "decode" in sections:
        rows += bench_decode(inputs, size, max_side)
    if "masks" in sections:
        rows += bench_masks(inputs, size, e2e_index)
    if "writes" in sections:
        rows += bench_writes(outputs, size, workdir, e2e_index)
    if "commits" in sections:
        rows += bench_commits(size, workdir)
    if "memory" in sections:
        rows += bench_memory(inputs, size, workdir, max_side)
    return sorted(rows, key=lambda r: r.section)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated of {','.join(SECTIONS)}"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep inputs and indexes here")
    parser.add_argument("--no-results", action="store_true", help="do not edit RESULTS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sections = tuple(s.strip() for s in args.only.split(",") if s.strip())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vidlake-bench-") as tmp:
        rows = run(args.size, args.workdir or Path(tmp), sections)
    wall = time.perf_counter() - t0
    print_table(rows, f"vidlake index job, --size {args.size} ({wall:.0f} s)")
    memory = _load_memory_module()
    print(f"reproduce: {memory.reproduce_command()}")
    if not args.no_results:
        memory.write_results_block("bench/pipeline.py", render_markdown(rows, args, wall))
    return rows


if __name__ == "__main__":
    main()
