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
Not measured yet: the share of wall time the GPU is busy during a pipeline run (needs a GPU
machine and a hook in the index job's segment stage).
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
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    device = "cuda" if cuda else "cpu"
    n_frames = args.frames or (8 if tiny else 30)
    side = 128 if tiny else 1008
    frames = synthetic_clip(n_frames, side * 3 // 4, side)
    with tempfile.TemporaryDirectory() as tmp:
        segmenter = build_segmenter(tiny, device, args.compile, args.objects, Path(tmp))
        rows = [measure(segmenter, frames, int(n), args.repeats) for n in args.concepts.split(",")]

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
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    if args.json:
        args.json.write_text(json.dumps({"device": device_name(device), "rows": rows}))
    return rows


if __name__ == "__main__":
    main()
