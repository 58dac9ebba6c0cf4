"""Peak memory of an index job: the driver's and each Ray worker's, for a short and a long video.

A 1-hour video must index with the driver's and every actor's peak memory independent of its
length. This writes a 1-minute and a 30-minute synthetic video (160x120 at 6 fps, so the long
file takes seconds to write), indexes each in a fresh process (its own local Ray, so no other
run's memory is counted) with the tiny random SAM 3, and samples the RSS of the driver and of
every process under it (raylet, GCS, Ray workers) in a thread. Run:

    .venv/bin/python bench/memory.py                  # 1 min vs 30 min, writes bench/RESULTS.md
    .venv/bin/python bench/memory.py --short-s 5 --long-s 30 --no-results   # a quick check

`bench/pipeline.py` uses `index_peak_memory` for its 1x vs 10x corpus comparison.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "RESULTS.md"
SECTION = "<!-- section: pipeline (bench/pipeline.py) -->"
MIB = 1024 * 1024

# Under 10%: a 30x longer video must not move any process's peak more than that.
TARGET_GROWTH = 0.10


@dataclass
class PeakMemory:
    """Peak RSS (bytes) of one index run, per role.

    actors: peak RSS of each segment actor process; task_workers: the largest peak among the
    other Ray workers (probe/decode/write tasks); ray_system: the largest among raylet, GCS and
    Ray's agents. RSS counts the object-store pages a worker has mapped (frames it read
    zero-copy), so a worker holding more frames shows it.
    """

    driver: int = 0
    actors: list[int] = field(default_factory=list)
    task_workers: int = 0
    ray_system: int = 0
    frames: int = 0
    clips: int = 0
    wall_s: float = 0.0


class ProcessTreeSampler:
    """Samples the memory of a process and all its descendants every `interval_s` in a thread.

    metric "private" (default): RSS less shared pages (see `sample`); "rss": plain RSS.
    """

    def __init__(
        self, root_pid: int | None = None, interval_s: float = 0.1, metric: str = "private"
    ) -> None:
        self.root = psutil.Process(root_pid or os.getpid())
        self.metric = metric
        self.interval_s = interval_s
        self.peaks: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> ProcessTreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        for proc in procs:
            try:
                mem = proc.memory_info()
                # Private memory: RSS less shared pages. RSS also counts every page of Ray's
                # object store (shared memory, bounded by its configured size) that a worker
                # has mapped to read blocks zero-copy, which grows with how many blocks it has
                # read, not with what it holds; and the shared libraries every worker maps.
                rss = mem.rss if self.metric == "rss" else mem.rss - getattr(mem, "shared", 0)
                name = " ".join(proc.cmdline())[:120] or proc.name()
            except psutil.Error:
                continue
            # A Ray worker starts as default_worker.py, then retitles itself to what it runs
            # (ray::IDLE, ray::MapWorker(Map(SegmentStage))...): keep the most telling title.
            known = self.names.get(proc.pid, "")
            if "SegmentStage" not in known and not (known.startswith("ray::") and "IDLE" in name):
                self.names[proc.pid] = name
            self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), rss)

    def summary(self) -> PeakMemory:
        """The peaks by role (see PeakMemory)."""
        out = PeakMemory(driver=self.peaks.get(self.root.pid, 0))
        for pid, peak in self.peaks.items():
            if pid == self.root.pid:
                continue
            name = self.names.get(pid, "")
            if "SegmentStage" in name:
                out.actors.append(peak)
            elif name.startswith("ray::") or "default_worker.py" in name:
                out.task_workers = max(out.task_workers, peak)
            else:
                out.ray_system = max(out.ray_system, peak)
        out.actors.sort(reverse=True)
        return out


def run_one(
    sources: list[str],
    index_uri: str,
    model: str,
    concepts: tuple[str, ...],
    fps: float,
    max_side: int | None,
    num_actors: int = 1,
    num_cpus: int = 2,
    metric: str = "private",
) -> PeakMemory:
    """Indexes sources in this process on a fresh local Ray and returns the peaks sampled."""
    import ray

    from vidlake.config import IndexConfig
    from vidlake.pipeline.index_job import init_ray, run_index

    with ProcessTreeSampler(metric=metric) as sampler:
        # address="local": a new Ray of our own, never one another process left running here.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR")
        init_ray(None)  # Ray is up: only the job's own Ray Data settings
        config = IndexConfig(
            sources=tuple(sources),
            index_uri=index_uri,
            concepts=concepts,
            model=model,
            fps=fps,
            max_side=max_side,
            num_actors=num_actors,
            device="cpu",
        )
        t0 = time.perf_counter()
        summary = run_index(config)
        wall = time.perf_counter() - t0
        sampler.sample()
        ray.shutdown()
    peaks = sampler.summary()
    peaks.frames, peaks.clips, peaks.wall_s = summary.n_frames, summary.n_clips, wall
    if summary.n_failed:
        raise RuntimeError(f"index run failed on some videos: {summary.failures}")
    return peaks


def index_peak_memory(
    sources: list[str],
    index_uri: str,
    model: str,
    concepts: tuple[str, ...],
    fps: float,
    max_side: int | None,
    num_actors: int = 1,
    metric: str = "private",
) -> PeakMemory:
    """`run_one` in a fresh Python process, so earlier work in this one does not count."""
    args = {
        "metric": metric,
        "sources": sources,
        "index_uri": index_uri,
        "model": model,
        "concepts": list(concepts),
        "fps": fps,
        "max_side": max_side,
        "num_actors": num_actors,
    }
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--run-one", json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return PeakMemory(**result)


def write_long_video(path: Path, duration_s: float, fps: float = 6.0):
    """A 160x120 synthetic video of duration_s with two shapes bouncing across it all along."""
    from vidlake.synthetic.corpus import ShapeSpec, VideoSpec, write_video

    # Slow drifts that stay on screen for the whole video: velocity x duration stays small.
    speed = min(4.0, 60.0 / max(duration_s, 1.0))
    spec = VideoSpec(
        name=path.stem,
        duration_s=duration_s,
        fps=fps,
        shapes=(
            ShapeSpec("red square", (40.0, 40.0), (speed, 0.0), 30),
            ShapeSpec("blue circle", (110.0, 80.0), (-speed, 0.0), 30),
        ),
    )
    return write_video(spec, path)


@dataclass
class MemoryRow:
    """One row of the memory table: a role's peak for the short and the long video."""

    role: str
    short_mib: float
    long_mib: float

    @property
    def growth(self) -> float:
        return self.long_mib / self.short_mib - 1.0


def compare(short: PeakMemory, long: PeakMemory) -> list[MemoryRow]:
    """Rows driver, segment actor (largest), task workers, ray system: short vs long peaks."""
    return [
        MemoryRow("driver", short.driver / MIB, long.driver / MIB),
        MemoryRow(
            "segment actor (largest)",
            max(short.actors, default=0) / MIB,
            max(long.actors, default=0) / MIB,
        ),
        MemoryRow("task workers (largest)", short.task_workers / MIB, long.task_workers / MIB),
        MemoryRow("raylet/GCS (largest)", short.ray_system / MIB, long.ray_system / MIB),
    ]


def run_benchmark(
    short_s: float, long_s: float, fps: float, workdir: Path, metric: str = "private"
) -> tuple[list[MemoryRow], PeakMemory, PeakMemory]:
    """Writes the two videos and the tiny model, indexes each video, returns the comparison."""
    from vidlake.model.tiny import TINY_IMAGE_SIZE, build_tiny_sam3

    model = str(build_tiny_sam3(workdir / "tiny_sam3"))
    peaks = []
    for label, seconds in (("short", short_s), ("long", long_s)):
        t0 = time.perf_counter()
        video = write_long_video(workdir / f"{label}.mp4", seconds)
        log.info("wrote %s (%.0f s) in %.1f s", video.uri, seconds, time.perf_counter() - t0)
        peaks.append(
            index_peak_memory(
                [video.uri],
                str(workdir / f"index_{label}"),
                model,
                ("red square", "blue circle"),
                fps=fps,
                max_side=TINY_IMAGE_SIZE,
                metric=metric,
            )
        )
    return compare(*peaks), peaks[0], peaks[1]


def render_markdown(
    rows: list[MemoryRow], short: PeakMemory, long: PeakMemory, args: argparse.Namespace
) -> str:
    what = "private memory" if args.metric == "private" else "RSS"
    lines = [
        f"### Peak memory vs video length ({args.short_s:g} s vs {args.long_s:g} s video)",
        "",
        f"Machine: {machine_name()}. Tiny random SAM 3 on CPU, 1 segment actor, 160x120 video at"
        f" 6 fps sampled at {args.fps:g} fps in 10 s clips; {short.clips} vs {long.clips} clips,"
        f" {short.frames} vs {long.frames} frames. Target: every peak grows < 10%. Measured:"
        + (
            " private memory (RSS less shared pages: Ray's object store, which workers map to"
            " read blocks zero-copy, and shared libraries)."
            if args.metric == "private"
            else " RSS (including the object-store pages a worker has mapped)."
        ),
        "",
        f"| process | short video peak {what} (MiB) | long video peak {what} (MiB) | growth "
        "| target |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        met = "met" if r.growth < TARGET_GROWTH else "**missed**"
        lines.append(
            f"| {r.role} | {r.short_mib:.0f} | {r.long_mib:.0f} | {r.growth:+.1%} | {met} |"
        )
    lines += ["", f"Reproduce: `{reproduce_command()}`", ""]
    return "\n".join(lines)


def machine_name() -> str:
    import platform

    mem = psutil.virtual_memory().total / 1024**3
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {mem:.0f} GiB RAM, no GPU"


def reproduce_command() -> str:
    argv = " ".join(sys.argv[1:])
    return f".venv/bin/python bench/{Path(sys.argv[0]).name}" + (f" {argv}" if argv else "")


def write_results_block(name: str, markdown: str, results: Path = RESULTS) -> None:
    """Replaces this benchmark's block inside the pipeline section of RESULTS (or adds it).

    Blocks are fenced by `<!-- NAME begin -->`/`<!-- NAME end -->` lines; text outside the
    pipeline section (up to the next section marker) is never touched.
    """
    text = results.read_text()
    begin, end = f"<!-- {name} begin -->", f"<!-- {name} end -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}\n"
    start = text.index(SECTION) + len(SECTION)
    nxt = text.find("<!-- section:", start)
    nxt = len(text) if nxt < 0 else nxt
    section = text[start:nxt]
    if begin in section and end in section:
        a = section.index(begin)
        b = section.index(end) + len(end)
        section = section[:a] + block.rstrip("\n") + section[b:]
    else:
        section = section.rstrip("\n") + "\n\n" + block + "\n"
    results.write_text(text[:start] + section + text[nxt:])


def main(argv: list[str] | None = None) -> list[MemoryRow]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short-s", type=float, default=60.0, help="short video, seconds")
    parser.add_argument("--long-s", type=float, default=1800.0, help="long video, seconds")
    parser.add_argument("--fps", type=float, default=1.0, help="frames sampled per second")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here")
    parser.add_argument("--no-results", action="store_true", help="do not edit RESULTS.md")
    parser.add_argument(
        "--metric",
        choices=("private", "rss"),
        default="private",
        help="private: RSS less shared pages (Ray's object store, libraries); rss: plain RSS",
    )
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    if args.run_one:
        kw = json.loads(args.run_one)
        kw["concepts"] = tuple(kw["concepts"])
        print(json.dumps(asdict(run_one(**kw))))
        return []

    with tempfile.TemporaryDirectory(prefix="vidlake-memory-") as tmp:
        workdir = args.workdir or Path(tmp)
        rows, short, long = run_benchmark(args.short_s, args.long_s, args.fps, workdir, args.metric)
    from rich.console import Console
    from rich.table import Table

    what = "private memory" if args.metric == "private" else "RSS"
    table = Table(title=f"peak {what}, {args.short_s:g} s vs {args.long_s:g} s video")
    for col in ("process", "short (MiB)", "long (MiB)", "growth", "target < 10%"):
        table.add_column(col)
    for r in rows:
        ok = "met" if r.growth < TARGET_GROWTH else "MISSED"
        table.add_row(r.role, f"{r.short_mib:.0f}", f"{r.long_mib:.0f}", f"{r.growth:+.1%}", ok)
    Console().print(table)
    print(f"frames {short.frames} vs {long.frames}; wall {short.wall_s:.0f} vs {long.wall_s:.0f} s")
    print(f"reproduce: {reproduce_command()}")
    if not args.no_results:
        write_results_block("bench/memory.py", render_markdown(rows, short, long, args))
    return rows


if __name__ == "__main__":
    main()
