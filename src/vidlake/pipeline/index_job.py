"""The index job's Ray Data plan: list, skip indexed, probe, plan clips, decode, segment, write.

```
sources ─list─▶ to do ─probe (tasks)─▶ clips ─decode (CPU tasks)─▶ segment (actor pool,
GPU when present) ─write fragments (tasks)─▶ driver commits each finished video, video row last
```
The driver only handles small rows (fragment metadata), so its memory does not grow with
the corpus; frames live in Ray's object store between decode and segment.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading
import time
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from vidlake.config import IndexConfig, option_name
from vidlake.errors import EmptySourceError, UsageError, VidlakeError, one_line
from vidlake.operators.stitch import stitch_tracks
from vidlake.pipeline import stages
from vidlake.pipeline.commits import VideoCommitter
from vidlake.pipeline.metrics import JobMetrics
from vidlake.pipeline.plan import (  # noqa: F401  (CLIP_SETTINGS, clip_settings: re-exported)
    CLIP_SETTINGS,
    TodoPlan,
    clip_settings,
    grown_row,
    mark_pending,
    prune_concepts,
    recover_pending,
    select_todo,
    without_concepts,
)
from vidlake.records import VideoInfo, VideoSource, stable_id
from vidlake.store import schema
from vidlake.store.object_store import fsspec_options, lance_options, preflight
from vidlake.store.tables import IndexStore

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger(__name__)

DECODE_CLIPS_PER_TASK = 4
# Clips per write task (one fragment per video per table per batch). Larger batches write
# fewer, larger fragments, but a job killed mid-run redoes the clips of every batch not yet
# written and committed: with 16, a 24-video job killed halfway redid 17-21% more work than
# an uninterrupted run (bench/resume.py); writes are far from the critical path either way.
WRITE_CLIPS_PER_BATCH = 4
ProgressFn = Callable[[str, int, int], None]  # (phase, done, total); total 0: not known yet


@dataclass
class RunSummary:
    """What an index job did; `failures` lists (uri, error) of failed videos."""

    run_id: str
    n_indexed: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    n_pruned: int = 0
    n_clips: int = 0
    n_masklets: int = 0
    n_frames: int = 0
    wall_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    n_actors: int = 0
    model_s: float = 0.0  # seconds the segment actors spent in the model, summed
    model_first_start: float = 0.0  # epoch seconds the first clip entered the model
    model_last_end: float = 0.0  # ... and the last one left it
    n_commits: int = 0  # commits of finished videos (several videos each when commits are slow)
    commit_s: float = 0.0  # seconds the driver spent committing them
    # The model's decision settings (SAM 3: thresholds, NMS, hotstart, hole area), recorded
    # with the run's arguments; quality_off: the quality steps they turn off, in words.
    model_settings: dict = field(default_factory=dict)
    quality_off: list[str] = field(default_factory=list)
    not_videos: dict[str, int] = field(default_factory=dict)  # files skipped, by extension
    n_failed_unchanged: int = 0  # videos that failed to probe before, unchanged: not retried
    n_grown: int = 0  # indexed videos that gained concepts
    segmented_concepts: list[str] = field(default_factory=list)  # ... those concepts
    n_concepts_pruned: int = 0  # videos that lost concepts (--prune-concepts)

    @property
    def frames_per_s(self) -> float:
        return self.n_frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def model_busy(self) -> float:
        """Share of the job's wall time the segment actors spent in the model (0..1)."""
        slots = self.wall_s * max(1, self.n_actors)
        return min(1.0, self.model_s / slots) if slots > 0 else 0.0

    @property
    def segment_span_s(self) -> float:
        """Seconds from the first clip entering the model to the last leaving it."""
        return max(0.0, self.model_last_end - self.model_first_start)

    def add_model_time(self, start: float, seconds: float) -> None:
        if seconds <= 0:
            return
        self.model_s += seconds
        if not self.model_first_start or start < self.model_first_start:
            self.model_first_start = start
        self.model_last_end = max(self.model_last_end, start + seconds)


def list_sources(
    config: IndexConfig, not_videos: Counter[str] | None = None
) -> tuple[list[VideoSource], list[tuple[VideoSource, str]]]:
    """The videos under every source, and those that could not be listed (with why); the
    files folders hold that are not videos are counted into NOT_VIDEOS by extension.

    A source that does not exist or names no video (an empty folder, a glob matching nothing),
    or a manifest's line naming no file, is a failed video and the job goes on; but a job
    where no source lists a video is a usage error, and so is `--prune` with a source that
    cannot be listed or lists nothing: pruning could otherwise delete the videos of a folder
    that is only unmounted (an empty mount point) or misspelt. A malformed URI ("s3:/bucket")
    is a usage error whatever the other sources.
    """
    from vidlake.operators.probe import list_videos

    found: dict[str, VideoSource] = {}
    missing: list[tuple[VideoSource, str]] = []
    unlisted: list[tuple[str, str]] = []
    for source in config.sources:
        try:
            videos = list_videos(
                source,
                storage_options=fsspec_options(source, config.storage_options) or None,
                missing=missing,
                not_videos=not_videos,
            )
        except EmptySourceError as exc:  # nothing to index there: as a missing source
            unlisted.append((source, str(exc)))
            continue
        except UsageError:
            raise
        except VidlakeError as exc:
            unlisted.append((source, str(exc)))
            continue
        for v in videos:
            found.setdefault(v.uri, v)
    if unlisted and config.prune:
        source, why = unlisted[0]
        raise UsageError(
            f"{option_name('prune')} needs every source listed, and {source} cannot be ({why}); "
            "nothing was pruned or indexed"
        )
    if unlisted and not found and not missing:
        raise UsageError(unlisted[0][1])
    missing += [(unlisted_source(s), why) for s, why in unlisted]
    return list(found.values()), missing


def unlisted_source(source: str) -> VideoSource:
    """The placeholder a source that cannot be listed is recorded as (a failed video)."""
    return VideoSource(uri=source, size=0, version="missing")


def init_ray(address: str | None) -> None:
    """Connects to ADDRESS, or starts an embedded local Ray sized to this machine; either way,
    or with a Ray the caller started, applies the job's Ray Data settings."""
    import ray

    if ray.is_initialized():
        quiet_ray_data()
        return
    # Ray tells that a cluster uses token authentication, its default, on every connection.
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        lambda record: not record.getMessage().startswith("Token authentication is enabled")
    )
    if address:
        check_address(address)
        try:
            with warnings.catch_warnings():
                # Said once, as the UsageError below, rather than also as a UserWarning.
                warnings.filterwarnings("ignore", message="Ray Client connection timed out")
                ray.init(address=address, logging_level=logging.WARNING)
        except ConnectionError as exc:  # "auto" with no cluster on this machine, among others
            raise UsageError(f"--address {address}: cannot connect ({one_line(exc)})") from None
    else:
        with warnings.catch_warnings():
            # pylance warns on every fork; Ray starts its processes by fork+exec, which is safe.
            warnings.filterwarnings("ignore", message="lance is not fork-safe")
            ray.init(
                # "local": always a new embedded Ray; without it ray.init joins any cluster
                # that `ray start` left running on this machine (and refuses num_cpus there).
                address="local",
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
    quiet_ray_data()


def quiet_ray_data() -> None:
    """Keeps Ray Data's console output to what a vidlake user can act on."""
    from ray.data import DataContext

    # Progress and the summary are the CLI's; Ray Data's per-dataset INFO lines are noise there,
    # and so is its warning that its progress bars are off.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    # Advice to the pipeline's author, not its user: on a GPU the write tasks (1008 px masks)
    # pass Ray Data's "consider setting memory=" mark (0.6 GiB for a 0.25-CPU task), a
    # 14-line warning repeated every 30 s of the job (its other detectors stay on); and
    # segment actors with both CPUs and GPUs are "experimental". bench/RESULTS.md measures
    # the job's memory instead.
    ctx = DataContext.get_current()
    ctx.issue_detectors_config.high_memory_detector_config.detection_time_interval_s = -1
    logging.getLogger("ray.data._internal.execution.operators.map_operator").addFilter(
        _drop_cpu_gpu_notice
    )
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def _drop_cpu_gpu_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Specifying both num_cpus and num_gpus")


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """UsageError unless the Ray cluster at ADDRESS ("host:port" or "ray://host:port") answers
    a TCP connection within TIMEOUT_S. Ray itself retries an unreachable address for minutes,
    printing a C++ warning every 40 s. "auto" and other forms are left to Ray."""
    import socket

    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host or "/" in target:
        return
    host = host.strip("[]")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = (exc.strerror or str(exc) or type(exc).__name__).lower()
        raise UsageError(
            f"--address {address}: no Ray cluster answers there ({reason}); start its head "
            "(`ray start --head`) or check the address"
        ) from None


def _cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def segment_actor_resources(
    gpus: int, actors_per_gpu: int, want_gpus: bool = False
) -> tuple[dict, int]:
    """(Ray resources of one segment actor, default number of actors) for a cluster of GPUS.

    With GPUs (or WANT_GPUS, `--device cuda`, on a cluster whose autoscaler has yet to add
    them): ACTORS_PER_GPU actors per GPU, each a fraction of one, so one actor's Python
    overhead overlaps another's kernels on the same GPU. Without: one actor on half a CPU (a
    whole one starves the decode tasks of a 2-core machine).
    """
    if gpus or want_gpus:
        # Rounded down so that ACTORS_PER_GPU fractions never add up to more than one GPU.
        share = int(10_000 / actors_per_gpu) / 10_000
        return {"num_gpus": share, "num_cpus": 1}, max(1, gpus) * actors_per_gpu
    return {"num_cpus": 0.5}, 1


def run_index(config: IndexConfig, progress: ProgressFn | None = None) -> RunSummary:
    """Indexes every video of config.sources into config.index_uri; returns what it did.

    Per-video failures are rows (status failed), never exceptions; a VidlakeError here means
    the job itself cannot run (bad index URI, bad model, bad options).
    """
    progress = progress or (lambda phase, done, total: None)
    started = schema.now_utc()
    t0 = time.perf_counter()
    run_id = uuid.uuid4().hex[:16]
    summary = RunSummary(run_id=run_id)
    # Options and AWS variables resolved once, here; workers get the result with their tasks.
    opts = lance_options(config.storage_options) or None

    from vidlake.model import check_model, check_prompts
    from vidlake.model.checkpoint import quality_steps_off

    # Endpoint, credentials and buckets of the index, the sources and an s3:// checkpoint.
    preflight(config.index_uri, (*config.sources, config.model), opts)
    # A bad --model or prompt is a usage error before any work starts.
    summary.model_settings = check_model(config.model)
    summary.quality_off = quality_steps_off(summary.model_settings)
    for step in summary.quality_off:
        log.warning("the checkpoint %s turns off SAM 3's %s", config.model, step)
    if config.address is None and config.device.startswith("cuda"):
        from vidlake.model.sam3 import resolve_device

        resolve_device(config.device)  # this machine's embedded Ray has only its own GPUs
    check_prompts(config)
    if config.address:
        check_address(config.address)  # before the index is created
    not_videos: Counter[str] = Counter()
    sources, missing = list_sources(config, not_videos)
    summary.not_videos = dict(sorted(not_videos.items()))
    store = IndexStore.create(config.index_uri, opts)
    now_missing = {s.uri for s, _ in missing}
    store.delete_failed(
        unlisted_source(s) for s in config.sources if s not in now_missing
    )  # sources that failed to list before and list videos now
    # Vocabulary changes a killed job left uncommitted on these videos are undone first.
    recover_pending(store, [s.video_id for s in sources])
    plan = select_todo(store, sources, config)
    todo = plan.todo
    summary.n_skipped = len(plan.skipped)
    summary.n_failed_unchanged = len(plan.failed_unchanged)
    summary.segmented_concepts = plan.segmented_concepts
    summary.n_concepts_pruned = len(plan.pruned)
    # Rows of videos this job is about to (re)do: changed ones, and those a killed job left
    # without their commit marker. Only this job's videos: a concurrent job's in-flight rows
    # look the same and must stay.
    store.delete_videos(plan.stale)
    store.delete_orphans(only=[s.video_id for s in todo])
    if config.prune:
        listed = {s.video_id for s in sources} | {s.video_id for s, _ in missing}
        summary.n_pruned = store.prune_videos(keep=listed)
    # Concepts added to or pruned from indexed videos: pending (hidden) until committed.
    mark_pending(store, plan)
    prune_concepts(store, plan)

    def failed_row(src: VideoSource, info: VideoInfo | None, error: str) -> dict:
        summary.n_failed += 1
        summary.failures.append((src.uri, error))
        return schema.video_row(
            src,
            info,
            status=schema.STATUS_FAILED,
            error=error,
            model_id=config.model,
            vocabulary=list(config.vocabulary),
            vocabulary_key=config.vocabulary_key(),
            run_id=run_id,
        )

    store.upsert_videos([failed_row(src, None, err) for src, err in missing])

    preloads: list[threading.Thread] = []
    if todo or plan.adding:
        from vidlake.query.indexes import needs_embeddings

        on_first_clip = None
        if needs_embeddings(store, list(config.vocabulary)):
            # The index refresh at the end embeds new concepts: load the text encoder in the
            # background once the first clip is back, not after the last one; not sooner, as
            # on a small machine its loading slowed the segment actors' start (2.8 s of 8).
            from vidlake.query.text import preload_text_encoder

            def on_first_clip() -> None:
                preloads.append(preload_text_encoder())

        init_ray(config.address)
        metrics = JobMetrics()  # after Ray is up: what is recorded before is dropped
        metrics.videos_failed(len(missing))
        try:
            _segment_and_commit(
                config, store, plan, summary, failed_row, progress, metrics, on_first_clip
            )
        except KeyboardInterrupt:
            # Ctrl-C: the videos finished so far are committed (_segment_and_commit); the run
            # is recorded as interrupted, so `vidlake runs` shows it and what it did.
            summary.wall_s = time.perf_counter() - t0
            store.append_run(_run_row(config, summary, started, status=STATUS_INTERRUPTED))
            raise

    store.compact_if_fragmented()
    from vidlake.query.indexes import refresh_indexes

    refresh_indexes(store)
    # The refresh may not have needed the encoder (a concurrent job embedded the concepts
    # first); a load still running as the process exits can make Ray's core worker end the
    # process with status 1, so it is finished here.
    for thread in preloads:
        thread.join()
    summary.wall_s = time.perf_counter() - t0
    store.append_run(_run_row(config, summary, started))
    return summary


def stream_rows(ds: ray.data.Dataset) -> Iterator[dict]:
    """The rows of DS, each block as soon as it is produced.

    `Dataset.iter_rows` prefetches one block: it hands over a block only once the next one is
    ready, so the driver saw each write batch one batch late (the first video of the bench
    corpus committed 10 s after its fragments were written) and the last block's rows waited
    for the end of the stream.

    A row with a `fatal` message (a segment actor that could not load its model,
    `SegmentStage`) ends the stream with it as a VidlakeError.
    """
    for block in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
        for row in block.to_pylist():
            if row.get("fatal"):
                raise VidlakeError(row["fatal"])
            yield row


def decode_plan(
    config: IndexConfig,
    todo: list[VideoSource],
    storage_options: dict | None,
    plan: TodoPlan | None = None,
) -> ray.data.Dataset:
    """The stream's first stages: probe each video, plan its clips, decode them in tasks of
    DECODE_CLIPS_PER_TASK clips; rows of decoded clips (or their errors) come out.

    TODO's videos get the whole vocabulary; PLAN's videos that gain concepts (plan.adding)
    come after them, each row naming its concepts (`segment_concepts`, JSON; "" for all) and
    where its object ids start (`object_offset`)."""

    import ray

    videos = [
        {"uri": s.uri, "video_id": s.video_id, "segment_concepts": "", "object_offset": 0}
        for s in todo
    ]
    for vid, grow in (plan.adding if plan else {}).items():
        videos.append(
            {
                "uri": grow.source.uri,
                "video_id": vid,
                "segment_concepts": json.dumps(grow.added),
                "object_offset": grow.object_offset,
            }
        )
    return (
        ray.data.from_items(videos, override_num_blocks=max(1, len(videos)))
        .flat_map(
            stages.probe_and_plan,
            fn_kwargs={
                "storage_options": storage_options,
                "clip_seconds": config.clip_seconds,
                "fps": config.fps,
                "overlap_s": config.overlap_s,
                "clips_per_task": DECODE_CLIPS_PER_TASK,
            },
            num_cpus=0.25,
        )
        # One block per decode task. Ray Data packs a task's output rows into blocks of up to
        # 128 MiB, so all of a video's decode tasks (a few KiB each) left its probe as one
        # block: one task then decoded the whole video, holding every frame in its output
        # block (its worker's memory grew with the video's length) and nothing reached the
        # segment actors until the whole video was decoded.
        .repartition(target_num_rows_per_block=1)
        .flat_map(
            stages.decode_rows,
            fn_kwargs={"storage_options": storage_options, "max_side": config.max_side},
            # One core per decode task; resources unlike the actor's also keep Ray Data from
            # fusing decode into the segment actor, where the model would wait on it.
            num_cpus=1,
        )
    )


def _segment_and_commit(
    config,
    store,
    plan: TodoPlan,
    summary,
    failed_row,
    progress,
    metrics: JobMetrics,
    on_first_clip=None,
) -> None:
    """Streams videos through probe → decode → segment → write, queueing each video for the
    `VideoCommitter` when all its clips are in; calls ON_FIRST_CLIP when the first clip is back.

    Probing is the stream's first stage, so segment actors start and load the model while the
    corpus is probed, and the first clips reach the model before the last video is probed.
    """
    from ray.data import ActorPoolStrategy

    opts = store.storage_options
    gpus = _cluster_gpus()
    # A GPU-less cluster with --device cuda is one an autoscaler will give GPUs: ask for them
    # (a CPU-sized actor would never trigger a GPU node, and Ray would hide its GPU anyway).
    segment_resources, default_actors = segment_actor_resources(
        gpus, config.actors_per_gpu, want_gpus=config.device.startswith("cuda")
    )
    n_actors = config.num_actors or default_actors
    summary.n_actors = n_actors
    # On GPUs the default pool fits the cluster as it is: start it whole, so that every GPU
    # loads its models at once instead of one actor at a time as the queue grows. An explicit
    # --actors may count on GPUs an autoscaler has yet to add: start one and grow.
    min_actors = n_actors if gpus and config.num_actors is None else 1
    ds = (
        decode_plan(config, plan.todo, opts, plan)
        .map(
            stages.SegmentStage,
            fn_constructor_kwargs={
                "model": config.model,
                "concepts": config.concepts,
                "device": config.device,
                "prompts": config.prompts,
                "max_objects": config.max_objects,
                "storage_options": opts,
                "batch_objects": config.batch_objects,
                "batch_concepts": config.batch_concepts,
                "load_errors_as_rows": True,
            },
            compute=ActorPoolStrategy(min_size=min_actors, max_size=n_actors),
            **segment_resources,
        )
        .map_batches(
            stages.write_batch,
            batch_size=WRITE_CLIPS_PER_BATCH,
            batch_format="pyarrow",
            fn_kwargs={
                "index_uri": store.uri,
                "overlap_s": config.overlap_s,
                "storage_options": opts,
            },
            num_cpus=0.25,
        )
    )
    committer = VideoCommitter(store, on_commit=metrics.committed)
    metrics.start(n_actors, len(plan.todo) + len(plan.adding))
    try:
        _consume(ds, config, summary, committer, failed_row, progress, plan, metrics, on_first_clip)
    finally:  # after Ctrl-C too: the videos whose clips are all in keep their work
        committer.commit()
        summary.n_commits, summary.commit_s = committer.n_commits, committer.commit_s
        metrics.finish()


def _consume(
    ds, config, summary, committer, failed_row, progress, plan, metrics, on_first_clip
) -> None:
    """Reads the stream's rows, queueing each video for COMMITTER once all its clips are in."""
    by_id = {s.video_id: s for s in plan.todo}
    by_id.update({vid: grow.source for vid, grow in plan.adding.items()})
    todo = list(by_id.values())
    arrived: dict[str, list[dict]] = defaultdict(list)
    clips_done = videos_done = 0
    clip_total = ClipTotal(len(todo))
    progress("videos", 0, len(todo))
    progress("segment", 0, 0)
    for row in stream_rows(ds):
        if on_first_clip is not None:
            on_first_clip()
            on_first_clip = None
        vid = row["video_id"]
        arrived[vid].append(row)
        summary.add_model_time(row["model_start"], row["model_s"])
        clips_done += 1
        clip_total.see(vid, row["video_n_clips"])
        progress("segment", clips_done, clip_total.total())
        if len(arrived[vid]) == row["video_n_clips"]:
            rows = arrived.pop(vid)
            status = _queue_video(config, summary, committer, failed_row, by_id[vid], rows, plan)
            videos_done += 1
            done = status != schema.STATUS_FAILED
            metrics.video_done(
                status,
                n_clips=len(rows) if done else 0,
                n_frames=sum(int(r["n_frames"]) for r in rows) if done else 0,
                remaining=len(todo) - videos_done,
            )
            progress("videos", videos_done, len(todo))
        committer.maybe_commit()


class ClipTotal:
    """The job's clip count for progress: exact once a clip of every video is in, before that
    the clips of the videos seen so far plus their mean for each video not seen yet.

    A video's clip count is planned when it is probed, in the stream, and reaches the driver
    with its first clip; probing every video up front would hold back the first clips.
    """

    def __init__(self, n_videos: int):
        self.n_videos = n_videos
        self.clips_of: dict[str, int] = {}

    def see(self, video_id: str, n_clips: int) -> None:
        self.clips_of.setdefault(video_id, int(n_clips))

    def total(self) -> int:
        """The estimate; 0 before any clip is in."""
        if not self.clips_of:
            return 0
        seen = sum(self.clips_of.values())
        unseen = max(0, self.n_videos - len(self.clips_of))
        return seen + round(unseen * seen / len(self.clips_of))


def _queue_video(
    config, summary, committer, failed_row, src: VideoSource, rows: list[dict], plan: TodoPlan
) -> str:
    """Queues a video whose clips are all in: its stitched rows, or its failed row; returns
    what became of it: STATUS_INDEXED, STATUS_FAILED or STATUS_GROWN.

    A video that gains concepts (plan.adding) gets the row that commits them; if one of its
    clips failed, it keeps what it had (its row as before, nothing pending) and the failure
    is reported, not recorded as a failed video: its indexed concepts are still good."""
    info = stages.load_info(rows[-1]["info"]) if rows[-1]["info"] else None
    errors = sorted({r["error"] for r in rows if r["error"]})
    vid = src.video_id
    grow = plan.adding.get(vid)
    pruned = plan.pruned.get(vid, [])
    if errors and grow is not None:
        summary.n_failed += 1
        summary.failures.append((src.uri, f"adding {', '.join(grow.added)}: {errors[0]}"))
        committer.add(without_concepts(grow.row, [*pruned, *grow.added]))
        return schema.STATUS_FAILED
    if errors:
        committer.add(failed_row(src, info, errors[0]))
        return schema.STATUS_FAILED
    n_masklets = sum(int(r["n_masklets"]) for r in rows)
    # Stitched among the new masklets only: tracks never join masklets of two concepts.
    tracks = stitch_tracks(vid, [pickle.loads(r["boundary"]) for r in rows])
    fragments: dict[str, list[bytes]] = defaultdict(list)
    for r in rows:
        for table, blob in pickle.loads(r["fragments"]).items():
            fragments[table].append(blob)
    if grow is not None:
        video_row = grown_row(grow, pruned, summary.run_id, n_masklets)
        summary.n_grown += 1
    else:
        video_row = schema.video_row(
            src,
            info,
            status=schema.STATUS_INDEXED,
            error="",
            model_id=config.model,
            vocabulary=list(config.vocabulary),
            vocabulary_key=config.vocabulary_key(),
            run_id=summary.run_id,
            n_clips=len(rows),
            n_masklets=n_masklets,
        )
        summary.n_indexed += 1
    summaries = pa.concat_tables(
        [pickle.loads(r["summary"]) for r in rows if r["summary"]]
        or [schema.MASKLET_SUMMARY.empty_table()]
    )
    if summaries.num_rows:
        ids = summaries.column("masklet_id").to_pylist()
        summaries = summaries.set_column(
            summaries.schema.get_field_index("track_id"),
            "track_id",
            pa.array([tracks.get(m, stable_id("track", vid, m)) for m in ids], pa.string()),
        )
    committer.add(
        video_row,
        fragments,
        {m: t for m, t in tracks.items() if t != stable_id("track", vid, m)},
        schema.track_table(summaries),
    )
    summary.n_clips += len(rows)
    summary.n_masklets += n_masklets
    summary.n_frames += sum(int(r["n_frames"]) for r in rows)
    return STATUS_GROWN if grow is not None else schema.STATUS_INDEXED


STATUS_GROWN = "grown"  # an indexed video that gained concepts (a metric's status, not a row's)
STATUS_INTERRUPTED = "interrupted"


def _run_row(config: IndexConfig, summary: RunSummary, started, status: str = "") -> dict:

    import lance
    import ray

    from vidlake import __version__

    versions = {"vidlake": __version__, "ray": ray.__version__, "lance": lance.__version__}
    return {
        "run_id": summary.run_id,
        "started_at": started,
        "finished_at": schema.now_utc(),
        "status": status or ("completed_with_failures" if summary.n_failed else "completed"),
        "arguments": json.dumps(
            {**json.loads(config.to_json()), "model_settings": summary.model_settings}
        ),
        "versions": json.dumps(versions),
        "n_videos_indexed": summary.n_indexed,
        "n_videos_failed": summary.n_failed,
        "n_videos_skipped": summary.n_skipped,
        "n_clips": summary.n_clips,
        "n_masklets": summary.n_masklets,
        "n_frames": summary.n_frames,
        "frames_per_s": summary.frames_per_s,
        "wall_s": summary.wall_s,
        "not_videos": json.dumps(summary.not_videos, sort_keys=True),
        "segmented_concepts": list(summary.segmented_concepts),
    }
