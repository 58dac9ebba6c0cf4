"""The index job's Prometheus metrics, recorded through Ray's metrics API (`ray.util.metrics`).

Each Ray node's metrics agent exports what its processes record, in Prometheus text on the
node's metrics export port (8080 on KubeRay pods; `ray.nodes()[i]["MetricsExportPort"]` on a
local Ray), with Ray's `ray_` prefix and a counter's `_total` suffix: `vidlake_index_videos`
here is `ray_vidlake_index_videos_total` there. cluster/README.md has the scrape settings and
cluster/grafana-vidlake.json a dashboard over them.

Two recorders, one per kind of process:

- `JobMetrics`, on the driver, which sees every video finish and every commit: videos done
  (by status), clips and frames committed, commit latency, the segment actors of the run, the
  videos still to do.
- `SegmentMetrics`, in each segment actor (the model's process): clips and frames through the
  model, its busy seconds and seconds per clip, and clips that failed before or in it (by
  stage). These move as the model works, not when a write batch reaches the driver. The
  segment stage is also what query-time verification runs (`vidlake query --verify`, the
  server's segmenter), so model time there is counted too.

Labels stay few and bounded (no run, video or concept ids): one series per status or stage.
Outside a Ray worker (a plain `SegmentStage` in a test) recording is a no-op, as Ray makes it.
"""

from __future__ import annotations

import threading

from ray.util.metrics import Counter, Gauge, Histogram

from vidlake.store.schema import STATUS_FAILED

# Ray's metrics agent drops a gauge's value once its process has not reported it for two
# report intervals (2 s at least; ray._private.telemetry.open_telemetry_metric_recorder), and a
# process reports a gauge only when it is set: the driver sets its gauges again this often.
GAUGE_REFRESH_S = 1.0
# Seconds one clip spends in the model: tens of ms (synthetic, tiny) to a minute (a 10 s clip
# of a crowded scene on a small GPU).
MODEL_SECONDS_BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80]
# Seconds one commit takes: ~20-50 ms locally, 0.15-0.3 s on object storage (commits.py).
COMMIT_SECONDS_BOUNDARIES = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

# What a failed clip's error came from, as SegmentStage sees it (the `stage` label).
STAGE_DECODE = "decode"  # probe, plan or decode (the row arrived with its error)
STAGE_SEGMENT = "segment"  # the model raised on the clip
STAGE_LOAD = "load"  # the segmenter could not be loaded


class JobMetrics:
    """The driver's metrics of the index job (see the module docstring for the names)."""

    def __init__(self) -> None:
        self.videos = Counter(
            "vidlake_index_videos",
            description="Videos the index job finished, by status: indexed, failed, grown "
            "(an indexed video that gained concepts).",
            tag_keys=("status",),
        )
        self.clips = Counter(
            "vidlake_index_clips", description="Clips of the videos the index job indexed."
        )
        self.frames = Counter(
            "vidlake_index_frames",
            description="Sampled frames of the clips the index job indexed.",
        )
        self.commit_seconds = Histogram(
            "vidlake_index_commit_seconds",
            description="Seconds one commit of finished videos took (the driver's Lance "
            "transactions, videos rows last); its _sum is Ray's estimate from the buckets.",
            boundaries=COMMIT_SECONDS_BOUNDARIES,
        )
        self.actors = Gauge(
            "vidlake_index_segment_actors",
            description="Segment actors (model copies) of the running index job; 0 between runs.",
        )
        self.videos_remaining = Gauge(
            "vidlake_index_videos_remaining",
            description="Videos the running index job has yet to finish; 0 between runs.",
        )

        self._gauges = {"actors": 0, "remaining": 0}
        self._stop = threading.Event()
        self._reporter: threading.Thread | None = None

    def start(self, n_actors: int, n_videos: int) -> None:
        """The run starts: its gauges are reported every GAUGE_REFRESH_S until `finish`."""
        self._gauges = {"actors": n_actors, "remaining": n_videos}
        self._set_gauges()
        self._stop.clear()
        self._reporter = threading.Thread(
            target=self._keep_reporting, name="vidlake-job-metrics", daemon=True
        )
        self._reporter.start()

    def _keep_reporting(self) -> None:
        while not self._stop.wait(GAUGE_REFRESH_S):
            self._set_gauges()

    def _set_gauges(self) -> None:
        self.actors.set(self._gauges["actors"])
        self.videos_remaining.set(self._gauges["remaining"])

    def video_done(self, status: str, n_clips: int, n_frames: int, remaining: int) -> None:
        """A video finished with STATUS; N_CLIPS and N_FRAMES: what it added to the index."""
        self.videos.inc(1, tags={"status": status})
        if n_clips:
            self.clips.inc(n_clips)
        if n_frames:
            self.frames.inc(n_frames)
        self._gauges["remaining"] = remaining
        self.videos_remaining.set(remaining)

    def videos_failed(self, n: int) -> None:
        """N videos failed before reaching the stream (sources that could not be listed)."""
        if n:
            self.videos.inc(n, tags={"status": STATUS_FAILED})

    def committed(self, seconds: float) -> None:
        self.commit_seconds.observe(seconds)

    def finish(self) -> None:
        """The run is over: its gauges go to 0 (then out of the agent's export)."""
        self._stop.set()
        if self._reporter is not None:
            self._reporter.join()
            self._reporter = None
        self._gauges = {"actors": 0, "remaining": 0}
        self._set_gauges()


class SegmentMetrics:
    """A segment actor's metrics of the model's work (see the module docstring)."""

    def __init__(self) -> None:
        # Ray exports a histogram's _sum from its bucket midpoints (an estimate): the exact
        # busy time is a counter of its own.
        self.model_seconds = Counter(
            "vidlake_segment_model_seconds",
            description="Seconds the model spent on clips, summed (its busy time).",
        )
        self.clip_seconds = Histogram(
            "vidlake_segment_clip_seconds",
            description="Seconds one clip spent in the model (every concept, every frame); its "
            "_count is the clips segmented.",
            boundaries=MODEL_SECONDS_BOUNDARIES,
        )
        self.frames = Counter(
            "vidlake_segment_frames", description="Sampled frames the model segmented."
        )
        self.failures = Counter(
            "vidlake_segment_clip_failures",
            description="Clips that failed, by stage: decode (probe, plan or decode), segment "
            "(the model raised), load (the segmenter could not be loaded).",
            tag_keys=("stage",),
        )

    def segmented(self, seconds: float, n_frames: int) -> None:
        self.clip_seconds.observe(seconds)
        if seconds > 0:  # Ray's Counter.inc takes only positive values
            self.model_seconds.inc(seconds)
        if n_frames:  # Ray's Counter.inc takes only positive values
            self.frames.inc(n_frames)

    def failed_decode(self) -> None:
        """A clip arrived with an error: its video could not be probed, planned or decoded."""
        self.failures.inc(1, tags={"stage": STAGE_DECODE})

    def failed_segment(self) -> None:
        """The model raised on a clip."""
        self.failures.inc(1, tags={"stage": STAGE_SEGMENT})

    def failed_load(self) -> None:
        """The segmenter could not be loaded (counted once per actor)."""
        self.failures.inc(1, tags={"stage": STAGE_LOAD})
