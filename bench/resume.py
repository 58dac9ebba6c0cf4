"""Work redone after a killed index job: a real `vidlake index` SIGKILLed mid-run, then rerun.

Runs the job once uninterrupted (the reference), then, for each kill point, starts it again
on a fresh index, SIGKILLs the driver and its embedded Ray when that many videos are
committed (again on a fresh index, up to 3 times, if the kill came only once every video
was committed), reruns it to completion and reports:

- clips the rerun segmented: exactly those of videos the killed run had not committed;
- clips the killed run segmented and wrote but never committed: rows of `clips` data files no
  table version references (orphans, removed by `vidlake compact --delete-unverified`). Clips
  still inside a segment actor or a write batch at the kill are not counted: at most one
  write batch (WRITE_CLIPS_PER_BATCH clips) per write task plus one clip per actor;
- work redone beyond an uninterrupted run: orphaned clips over the corpus's clips (target
  <= 5%), and the wall time of the killed run plus the rerun over the uninterrupted one.

By default it uses the ground-truth segmenter (`synthetic:color`): the job is then bound by
the driver's commits, not the model, and written-but-uncommitted work piles up: the worst
case. `--model tiny` uses the tiny random SAM 3 (bound by the model, as real jobs are).

    .venv/bin/python bench/resume.py                      # 24 videos, kills at 25% and 50%
    .venv/bin/python bench/resume.py --model tiny --videos 24
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VIDLAKE = str(Path(sys.executable).parent / "vidlake")
ARGS = ["--concepts", "red square,blue circle,green triangle,yellow star", "--clip-seconds",
        "2", "--fps", "3", "--overlap", "0.5", "--max-side", "112"]  # fmt: skip
MODEL = "synthetic:color"


def index_cmd(corpus: Path, index: Path, model: str) -> list[str]:
    return [VIDLAKE, "index", str(corpus), "--index", str(index), "--model", model, *ARGS]


def make_corpus(folder: Path, n_videos: int) -> None:
    """N_VIDEOS videos: copies of the synthetic corpus under other names."""
    from vidlake.synthetic.corpus import write_corpus

    originals = write_corpus(folder / "originals")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_videos):
        src = Path(originals[i % len(originals)].uri)
        shutil.copy(src, folder / f"{i:03d}_{src.name}")
    shutil.rmtree(folder / "originals")


def committed_videos(index: Path) -> int:
    import lance

    try:
        return lance.dataset(str(index / "videos.lance")).count_rows(filter="status = 'indexed'")
    except (ValueError, OSError):
        return 0


def orphaned_clip_rows(index: Path) -> int:
    """Rows in `clips` data files that no version of the table references."""
    import lance
    from lance.file import LanceFileReader

    table = index / "clips.lance"
    ds = lance.dataset(str(table))
    referenced = set()
    for version in ds.versions():
        old = lance.dataset(str(table), version=version["version"])
        referenced |= {df.path for frag in old.get_fragments() for df in frag.data_files()}
    rows = 0
    for path in (table / "data").glob("*.lance"):
        if path.name not in referenced and f"data/{path.name}" not in referenced:
            rows += LanceFileReader(str(path)).num_rows()
    return rows


def clips_done(stdout: str) -> int:
    """The clip count of a job's summary line ("...; N clips, ...")."""
    for line in stdout.splitlines():
        if line.startswith("indexed ") and " clips, " in line:
            return int(line.split("; ", 1)[1].split(" clips", 1)[0])
    raise RuntimeError(f"no summary line in: {stdout[-500:]}")


def timed_run(corpus: Path, index: Path, model: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    cmd = index_cmd(corpus, index, model)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"index job failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0, proc.stdout


def killed_run(corpus: Path, index: Path, model: str, kill_after: int) -> tuple[float, int]:
    """Runs the job and SIGKILLs it once KILL_AFTER videos are committed: (seconds, committed)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        index_cmd(corpus, index, model),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    while committed_videos(index) < kill_after:
        if proc.poll() is not None:
            raise RuntimeError("the job ended before the kill point")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return time.perf_counter() - t0, committed_videos(index)


def killed_mid_run(
    corpus: Path, index: Path, model: str, kill_after: int, n_videos: int, attempts: int = 3
) -> tuple[float, int, int]:
    """`killed_run` on a fresh INDEX, again (up to ATTEMPTS times) while the kill came only
    after every video was committed: the committer groups the videos that finish while a
    slow commit's pause runs (commits.COMMIT_SHARE), so on a loaded machine one commit can
    take all the videos left, and such a kill leaves nothing to redo or measure.
    (seconds, committed, attempts made)."""
    for attempt in range(1, attempts + 1):
        shutil.rmtree(index, ignore_errors=True)
        seconds, committed = killed_run(corpus, index, model, kill_after)
        if committed < n_videos or kill_after >= n_videos:  # a kill asked for at the end
            break
        print(f"kill after {kill_after} videos came when all {n_videos} were committed "
              f"(attempt {attempt} of {attempts})")  # fmt: skip
    return seconds, committed, attempt


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--kill-at", type=float, nargs="+", default=[0.25, 0.5],
                        help="kill when this share of the videos is committed")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--model", default=MODEL, help="a --model spec, or 'tiny'")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="vidlake-resume-"))
    model = args.model
    if model == "tiny":
        from vidlake.model.tiny import build_tiny_sam3

        model = str(build_tiny_sam3(work / "tiny_sam3", seed=0))
    corpus = work / "corpus"
    if not corpus.exists():
        make_corpus(corpus, args.videos)

    ref_s, ref_out = timed_run(corpus, work / "reference", model)
    total_clips = clips_done(ref_out)
    results = []
    for share in args.kill_at:
        index = work / f"killed_{share:g}"
        kill_after = max(1, round(share * args.videos))
        killed_s, committed, attempts = killed_mid_run(
            corpus, index, model, kill_after, args.videos
        )
        orphans = orphaned_clip_rows(index)
        rerun_s, rerun_out = timed_run(corpus, index, model)
        results.append(
            {
                "kill_at_videos": kill_after,
                "committed_at_kill": committed,
                "kill_attempts": attempts,
                "rerun_clips": clips_done(rerun_out),
                "orphaned_clips": orphans,
                "redone_share": orphans / total_clips,
                "wall_ratio": (killed_s + rerun_s) / ref_s,
            }
        )

    print(
        f"\n{platform.machine()}, {os.cpu_count()} cores; model {args.model}; "
        f"{args.videos} videos, {total_clips} clips; uninterrupted run {ref_s:.1f} s"
    )
    print(f"{'kill after':>10} {'committed':>9} {'rerun clips':>11} {'orphaned':>8} "
          f"{'redone':>7} {'wall (killed+rerun)/clean':>26}")  # fmt: skip
    for r in results:
        print(
            f"{r['kill_at_videos']:>10} {r['committed_at_kill']:>9} {r['rerun_clips']:>11} "
            f"{r['orphaned_clips']:>8} {r['redone_share']:>7.1%} {r['wall_ratio']:>26.2f}"
        )
    print("\nreproduce: .venv/bin/python bench/resume.py " + " ".join(argv or sys.argv[1:]))
    return results


if __name__ == "__main__":
    main()
