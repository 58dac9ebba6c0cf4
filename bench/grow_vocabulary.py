"""Model time of adding one concept to an indexed archive, over re-indexing it whole.

Indexes the synthetic corpus with 4 concepts, then runs the job again with a 5th: a growing
vocabulary segments only the new concept on the videos already indexed. A fresh index of
the same videos with all 5 concepts is the alternative (what every new concept cost before).
The figure is the model time (seconds the segment actors spent in the segmenter, the
summary's `model_s`) of the adding job over that of the whole job; target <= 0.5. Wall times
are printed too (they include Ray's start and the index refresh, the same for both).

The model is the tiny random SAM 3 (`vidlake model tiny`, CPU) unless --model names another:
the same code path as SAM 3, with its per-frame backbone pass shared by every concept and a
detector and tracker pass per concept, so the ratio measures what adding a concept skips.
On a GPU, pass --model facebook/sam3 --device cuda.

    PYTHONPATH=src python bench/grow_vocabulary.py                   # 3 videos, tiny SAM 3
    PYTHONPATH=src python bench/grow_vocabulary.py --videos 6 --fps 4
"""

from __future__ import annotations

import argparse
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

CONCEPTS = ("red square", "blue circle", "green triangle", "yellow star")
ADDED = "purple hexagon"


def run(sources: list[str], index: str, concepts: tuple[str, ...], args) -> tuple[float, float]:
    """(model seconds, wall seconds) of one index job."""
    from vidlake.config import IndexConfig
    from vidlake.pipeline.index_job import run_index

    config = IndexConfig(
        sources=tuple(sources),
        index_uri=index,
        concepts=concepts,
        model=args.model,
        clip_seconds=args.clip_seconds,
        fps=args.fps,
        overlap_s=0.5,
        max_side=args.max_side,
        device=args.device,
    )
    start = time.perf_counter()
    summary = run_index(config)
    wall = time.perf_counter() - start
    if summary.n_failed:
        raise SystemExit(f"{summary.n_failed} videos failed: {summary.failures[:1]}")
    print(
        f"  {len(concepts)} concepts ({summary.n_indexed} indexed, {summary.n_grown} grown): "
        f"model {summary.model_s:.1f} s, wall {wall:.1f} s, {summary.n_masklets} masklets",
        flush=True,
    )
    return summary.model_s, wall


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=3, help="synthetic videos (8 s each)")
    parser.add_argument("--model", default="tiny", help="'tiny' (built here) or a model spec")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fps", type=float, default=3.0)
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--max-side", type=int, default=112)
    parser.add_argument("--repeat", type=int, default=2, help="tries of each job (best kept)")
    args = parser.parse_args(argv)

    import ray

    from vidlake.synthetic.corpus import default_specs, write_video

    work = Path(tempfile.mkdtemp(prefix="vidlake-grow-"))
    if args.model == "tiny":
        from vidlake.model.tiny import build_tiny_sam3

        args.model = str(build_tiny_sam3(work / "tiny-sam3", seed=0))
    specs = default_specs(seed=0)
    sources = []
    for i in range(args.videos):
        spec = specs[i % len(specs)]
        sources.append(write_video(spec, work / "videos" / f"{i:03d}_{spec.name}.mp4").uri)
    ray.init(address="local", include_dashboard=False)  # started before either clock
    try:
        return _measure(sources, work, args, argv)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def _measure(sources: list[str], work: Path, args, argv: list[str] | None) -> float:
    print(f"{len(sources)} videos, model {args.model} on {args.device}; {platform.processor()}")
    print("index with 4 concepts:")
    run(sources, str(work / "base"), CONCEPTS, args)
    added, whole = [], []
    for r in range(args.repeat):  # alternated, so that a busy spell of the machine hits both
        shutil.copytree(work / "base", work / f"grown{r}")
        print(f"add {ADDED!r} (a 5th concept), try {r + 1}:")
        added.append(run(sources, str(work / f"grown{r}"), (*CONCEPTS, ADDED), args))
        print(f"re-index whole with 5 concepts, try {r + 1}:")
        whole.append(run(sources, str(work / f"whole{r}"), (*CONCEPTS, ADDED), args))
    (added_s, added_wall), (whole_s, whole_wall) = min(added), min(whole)
    ratio = added_s / whole_s
    print(
        f"adding 1 concept to a 4-concept index / re-indexing it whole (best of "
        f"{args.repeat}): model time {added_s:.1f} / {whole_s:.1f} s = {ratio:.2f} "
        f"(target <= 0.5), wall {added_wall / whole_wall:.2f}"
    )
    command = shlex.join([sys.executable, *sys.argv]) if argv is None else str(argv)
    print(f"command: PYTHONPATH=src {command}")
    return ratio


if __name__ == "__main__":
    main()
