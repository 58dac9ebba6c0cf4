"""SAM 3 throughput per device: frames/s at 1, 4 and 16 concepts, peak GPU memory per clip.

On CUDA it builds the full-size SAM 3 architecture (`Sam3VideoConfig()` defaults) with random
weights, so no checkpoint is needed for timing, and runs the forward passes under bf16 autocast
(optionally with the vision encoder under torch.compile). On CPU (or with --tiny) it runs the
tiny random model, so CI can smoke it. Random weights detect arbitrary objects; the detection
thresholds are lowered and the object cap set so that every clip tracks `--objects` objects,
which is what the tracker's cost depends on.

    .venv/bin/python bench/sam3_gpu.py                 # full size on CUDA, tiny on CPU
    .venv/bin/python bench/sam3_gpu.py --tiny --frames 4 --concepts 1,4

It prints a table (frames/s, ratio to 1 concept, peak GPU memory per clip) and the command.
With --pipeline N it then indexes N synthetic videos with the same model through `run_index`
(one segment actor, 4 concepts) and reports the share of the job's wall time the actor spent
in the model (the job summary's "model busy"; on CUDA, the GPU-busy share the pipeline
achieves) and the job's frames/s against the model alone.

    .venv/bin/python bench/sam3_gpu.py --pipeline 8  # + an index run of 8 videos
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONCEPT_WORDS = (
    "person car dog cat bird horse cow truck bus bike boat chair table cup bottle phone "
    "tree house road sky water ball box umbrella"
).split()


def build_segmenter(tiny: bool, device: str, compile: bool, objects: int, workdir: Path):
    """A Sam3Segmenter on random weights: full-size architecture, or the tiny test model."""
    import torch

    from vidlake.model.sam3 import Sam3Segmenter
    from vidlake.model.tiny import build_tiny_sam3

    if tiny:
        folder = build_tiny_sam3(workdir / "tiny", seed=0)
    else:
        from transformers import Sam3VideoConfig, Sam3VideoModel

        folder = workdir / "full"
        config = Sam3VideoConfig()
        config.score_threshold_detection = 0.0
        config.new_det_thresh = 0.0
        config.hotstart_delay = 0
        torch.manual_seed(0)
        model = Sam3VideoModel(config)
        model.save_pretrained(folder)
        _save_full_processor(folder)
        del model
    segmenter = Sam3Segmenter(str(folder), device=device, compile=compile)
    segmenter.model.max_num_objects = objects
    return segmenter


def _save_full_processor(folder: Path) -> None:
    """The processor of the full-size model: 1008 px frames, the tiny tokenizer (random text
    weights make any vocabulary equivalent for timing; the text context stays 32 tokens)."""
    from transformers import Sam3ImageProcessor, Sam3VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    from vidlake.model.tiny import build_tiny_tokenizer

    size = {"height": 1008, "width": 1008}
    Sam3VideoProcessor(
        image_processor=Sam3ImageProcessor(size=size, mask_size={"height": 288, "width": 288}),
        video_processor=Sam2VideoVideoProcessor(size=size),
        tokenizer=build_tiny_tokenizer(folder),
        target_size=1008,
    ).save_pretrained(folder)


def synthetic_clip(n_frames: int, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8: moving coloured squares on grey, deterministic."""
    frames = np.full((n_frames, height, width, 3), 48, np.uint8)
    for t in range(n_frames):
        for k, colour in enumerate([(230, 40, 40), (40, 80, 240), (40, 200, 60)]):
            y = (20 + 40 * k + 3 * t) % (height - 40)
            x = (10 + 60 * k + 5 * t) % (width - 40)
            frames[t, y : y + 36, x : x + 36] = colour
    return frames


def measure(segmenter, frames: np.ndarray, n_concepts: int, repeats: int) -> dict:
    """Best-of-repeats frames/s and peak GPU memory (bytes, 0 on CPU) for one clip."""
    import torch

    concepts = CONCEPT_WORDS[:n_concepts]
    cuda = segmenter.device.startswith("cuda")
    segmenter.segment(frames[:2], concepts)  # warm-up: kernels, compile, allocator
    best = float("inf")
    peak = 0
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        segmenter.segment(frames, concepts)
        if cuda:
            torch.cuda.synchronize()
            peak = max(peak, torch.cuda.max_memory_allocated())
        best = min(best, time.perf_counter() - t0)
    return {"concepts": n_concepts, "fps": len(frames) / best, "seconds": best, "peak": peak}


def device_name(device: str) -> str:
    import os

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    mem = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores{mem})"


def main(argv: list[str] | None = None) -> list[dict]:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model (default without CUDA)")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip")
    parser.add_argument("--concepts", default="1,4,16", help="concept counts to time")
    parser.add_argument("--objects", type=int, default=16, help="objects tracked per clip")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile the vision encoder")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument(
        "--pipeline", type=int, default=0, metavar="N", help="then index N synthetic videos"
    )
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    device = "cuda" if cuda else "cpu"
    n_frames = args.frames or (8 if tiny else 30)
    side = 128 if tiny else 1008
    frames = synthetic_clip(n_frames, side * 3 // 4, side)
    pipeline = None
    with tempfile.TemporaryDirectory() as tmp:
        segmenter = build_segmenter(tiny, device, args.compile, args.objects, Path(tmp))
        rows = [measure(segmenter, frames, int(n), args.repeats) for n in args.concepts.split(",")]
        if args.pipeline:
            folder = segmenter.model_id
            del segmenter
            if cuda:
                torch.cuda.empty_cache()
            pipeline = pipeline_run(folder, args.pipeline, device, args.objects, Path(tmp))

    model = "tiny random SAM 3" if tiny else "full-size SAM 3 (random weights)"
    precision = "bf16 autocast" if device == "cuda" else "fp32"
    print(f"device: {device_name(device)}; model: {model}; {precision}"
          f"{'; torch.compile' if args.compile else ''}")  # fmt: skip
    print(f"clip: {n_frames} frames of {frames.shape[2]}x{frames.shape[1]}, "
          f"up to {args.objects} objects")  # fmt: skip
    print(f"{'concepts':>8} {'frames/s':>9} {'vs 1':>6} {'s/clip':>7} {'peak GPU MiB':>13}")
    base = rows[0]["fps"]
    for r in rows:
        print(
            f"{r['concepts']:>8} {r['fps']:>9.2f} {r['fps'] / base:>6.2f} {r['seconds']:>7.2f} "
            f"{r['peak'] / 2**20:>13.0f}"
        )
    if pipeline:
        model_fps = pipeline["n_frames"] / pipeline["model_s"]
        print(
            f"pipeline: {pipeline['n_videos']} videos, {pipeline['n_clips']} clips, "
            f"{pipeline['n_frames']} frames in {pipeline['wall_s']:.1f} s: "
            f"{pipeline['frames_per_s']:.2f} frames/s; in the model {model_fps:.2f} frames/s; "
            f"model busy {pipeline['model_busy']:.0%} of the wall time "
            f"({pipeline['segment_phase_busy']:.0%} from the first clip in to the last out)"
        )
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    if args.json:
        out = {"device": device_name(device), "rows": rows, "pipeline": pipeline}
        args.json.write_text(json.dumps(out))
    return rows


def pipeline_run(model: str, n_videos: int, device: str, objects: int, workdir: Path) -> dict:
    """Indexes N_VIDEOS synthetic videos with MODEL through run_index: what the job reports."""
    from vidlake.config import IndexConfig
    from vidlake.pipeline.index_job import run_index
    from vidlake.synthetic.corpus import default_specs, write_video

    specs = default_specs()
    videos = [
        write_video(specs[i % len(specs)], workdir / "videos" / f"v{i:03d}.mp4").uri
        for i in range(n_videos)
    ]
    config = IndexConfig(
        sources=tuple(videos),
        index_uri=str(workdir / "index"),
        concepts=tuple(CONCEPT_WORDS[:4]),
        model=model,
        clip_seconds=4.0,
        fps=6.0,
        overlap_s=1.0,
        num_actors=1,
        device=device,
        max_objects=objects,
    )
    summary = run_index(config)
    if summary.n_failed:
        raise RuntimeError(f"pipeline run failed: {summary.failures}")
    span = summary.segment_span_s
    return {
        "n_videos": summary.n_indexed,
        "n_clips": summary.n_clips,
        "n_frames": summary.n_frames,
        "wall_s": summary.wall_s,
        "frames_per_s": summary.frames_per_s,
        "model_s": summary.model_s,
        "model_busy": summary.model_busy,
        "segment_phase_busy": summary.model_s / span if span else 0.0,
    }


if __name__ == "__main__":
    main()
