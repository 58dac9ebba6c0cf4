"""Where a SAM 3 clip's time goes: Python functions (cProfile) and device kernels (torch.profiler).

Same model and clip as bench/sam3_gpu.py (full size on CUDA, tiny on CPU; detection
thresholds calibrated the same way). Prints the transformers/vidlake functions by cumulative
time, the ops by self device time and by self CPU time, the share of wall time kernels ran,
and the clip's frames/s with the weights kept fp32 under autocast against weights cast to
bf16.

    .venv/bin/python bench/sam3_profile.py --frames 16 --concepts 4
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sam3_gpu import (  # noqa: E402 - the sibling benchmark's builders
    CONCEPT_WORDS,
    build_segmenter,
    calibrate_detections,
    synthetic_clip,
)


def timed_clip(segmenter, frames, concepts) -> float:
    """Seconds for one clip, device work included."""
    import torch

    cuda = segmenter.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    segmenter.segment(frames, concepts)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def python_profile(segmenter, frames, concepts, top: int) -> str:
    profile = cProfile.Profile()
    profile.enable()
    timed_clip(segmenter, frames, concepts)
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out).sort_stats("cumulative")
    stats.print_stats(r"sam3|vidlake|functional|nms|torch/_tensor", top)
    return out.getvalue()


def kernel_profile(segmenter, frames, concepts, top: int) -> str:
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = segmenter.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        segmenter.segment(frames, concepts)
        if cuda:
            torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    averages = prof.key_averages()
    lines = []
    if cuda:
        device_us = sum(e.self_device_time_total for e in averages)
        lines.append(
            f"kernels ran {device_us / 1e6:.2f} s of {wall:.2f} s wall under the profiler "
            f"({device_us / 1e6 / wall:.0%}); launches: "
            f"{sum(e.count for e in averages if e.key == 'cudaLaunchKernel')}; "
            f"syncs: {sum(e.count for e in averages if 'Synchronize' in e.key)}; "
            f"device->host copies: {sum(e.count for e in averages if 'DtoH' in e.key)}"
        )
        lines.append(averages.table(sort_by="self_device_time_total", row_limit=top))
    lines.append(averages.table(sort_by="self_cpu_time_total", row_limit=top))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--concepts", type=int, default=4)
    parser.add_argument("--objects", type=int, default=16)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    device = "cuda" if cuda else "cpu"
    side = 128 if tiny else 1008
    frames = synthetic_clip(args.frames, side * 3 // 4, side)
    concepts = CONCEPT_WORDS[: args.concepts]
    with tempfile.TemporaryDirectory() as tmp:
        segmenter = build_segmenter(tiny, device, False, args.objects, args.workdir or Path(tmp))
        threshold = calibrate_detections(segmenter, frames[:1], concepts)
        segmenter.segment(frames[:2], concepts)  # warm-up
        fp32_s = timed_clip(segmenter, frames, concepts)
        fps = args.frames / fp32_s
        print(f"clip of {args.frames} frames, {args.concepts} concepts: {fp32_s:.2f} s "
              f"({fps:.2f} frames/s), threshold {threshold:.4f}", flush=True)  # fmt: skip
        print(python_profile(segmenter, frames, concepts, args.top), flush=True)
        print(kernel_profile(segmenter, frames, concepts, args.top), flush=True)
        if cuda:  # weights in bf16: no per-op casts of fp32 weights under autocast
            segmenter.model.to(torch.bfloat16)
            try:
                segmenter.segment(frames[:2], concepts)
                bf16_s = timed_clip(segmenter, frames, concepts)
            except (RuntimeError, TypeError, ValueError) as exc:
                print(f"weights bf16: failed: {str(exc)[:300]}")
                return
            print(f"weights fp32 + autocast: {args.frames / fp32_s:.2f} frames/s; "
                  f"weights bf16: {args.frames / bf16_s:.2f} frames/s")  # fmt: skip


if __name__ == "__main__":
    main()
