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
    elif (workdir / "full" / "config.json").exists():
        folder = workdir / "full"  # saved by an earlier run with the same --workdir
    else:
        from transformers import Sam3VideoConfig, Sam3VideoModel

        folder = workdir / "full"
        config = Sam3VideoConfig()
        config.hotstart_delay = 0  # detection thresholds: calibrate_detections, per run
        torch.manual_seed(0)
        with torch.device(device):  # random init where it runs: minutes faster on a GPU
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


class GpuBusy:
    """Samples the GPU's utilisation (NVML: the share of time a kernel was running) while on.

    The driver averages over its own sample period (1/6 s to 1 s), so a window of a few
    seconds reads within a few points. None where NVML is missing (CPU, no nvidia-ml-py).
    """

    def __init__(self, device: str) -> None:
        self._handle = None
        if device.startswith("cuda"):
            try:
                import pynvml

                pynvml.nvmlInit()
                index = int(device.split(":")[1]) if ":" in device else 0
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                self._nvml = pynvml
            except Exception as exc:  # noqa: BLE001 - a benchmark without NVML reports None
                print(f"(no GPU utilisation: {exc})")
        self._samples: list[int] = []
        self._stop = None

    def __enter__(self):
        import threading

        self._samples = []
        if self._handle is not None:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self._samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()

    @property
    def share(self) -> float | None:
        """Mean utilisation over the window, 0..1; None without samples."""
        return sum(self._samples) / len(self._samples) / 100 if self._samples else None


DETECTIONS_PER_CONCEPT = 4


def calibrate_detections(segmenter, frame: np.ndarray, concepts: list[str]) -> float:
    """Sets the detection thresholds so that about DETECTIONS_PER_CONCEPT detections per concept
    pass on FRAME; returns the threshold.

    Random weights score all of the detector's queries alike (about 0.25): a threshold of 0
    passes every query of every concept, and the detector's mask NMS over 200 x 200 masks then
    needs tens of GB, nothing like a real checkpoint, which passes a few per concept present.
    """
    import torch

    model = segmenter.model
    probs: list[torch.Tensor] = []

    def record(module, args, kwargs, output) -> None:
        scores = output.pred_logits.sigmoid() * output.presence_logits.sigmoid()
        probs.append(scores.float().flatten().cpu())

    model.score_threshold_detection = model.new_det_thresh = 2.0  # nothing passes: just record
    hook = model.detector_model.register_forward_hook(record, with_kwargs=True)
    try:
        segmenter.segment(frame, concepts)
    finally:
        hook.remove()
    ranked = torch.cat(probs).sort(descending=True).values
    threshold = float(ranked[min(DETECTIONS_PER_CONCEPT * len(concepts), len(ranked) - 1)])
    model.score_threshold_detection = model.new_det_thresh = threshold
    return threshold


def measure(
    segmenter, frames: np.ndarray, n_concepts: int, repeats: int, busy: GpuBusy, label: str = ""
) -> dict:
    """Best-of-repeats frames/s of one clip, its peak GPU memory above the weights (bytes, 0 on
    CPU), the most tracker state the session held (bytes of per-frame outputs, any device),
    the share of the clip's time spent draining outputs (post-processing, mask encoding),
    and the GPU's utilisation over all repeats."""
    import torch

    state = StateMeter(segmenter)
    concepts = CONCEPT_WORDS[:n_concepts]
    cuda = segmenter.device.startswith("cuda")
    calibrate_detections(segmenter, frames[:1], concepts)
    segmenter.segment(frames[:2], concepts)  # warm-up: kernels, compile, allocator
    best = float("inf")
    peak = 0
    weights = torch.cuda.memory_allocated() if cuda else 0
    drain_start, total_start = segmenter.drain_s, time.perf_counter()
    with busy:
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            with state:
                masklets = segmenter.segment(frames, concepts)
            if cuda:
                torch.cuda.synchronize()
                peak = max(peak, torch.cuda.max_memory_allocated() - weights)
            best = min(best, time.perf_counter() - t0)
    total = time.perf_counter() - total_start
    return {
        "concepts": n_concepts,
        "frames": len(frames),
        "label": label or ("device RLE" if segmenter.device_rle else "host RLE"),
        "objects": len(masklets),
        "fps": len(frames) / best,
        "seconds": best,
        "peak": peak,
        "state": state.peak,
        "weights": weights,
        "drain_share": (segmenter.drain_s - drain_start) / total,
        "gpu_busy": busy.share,
    }


class StateMeter:
    """While on, the most bytes of per-frame tracker outputs (memory features, masks, pointers)
    the segmenter's session held after any frame: what grows with a clip's length."""

    def __init__(self, segmenter) -> None:
        self.segmenter = segmenter
        self.peak = 0

    def __enter__(self):
        drain = self.segmenter._drain_frame

        def drain_and_weigh(session, output, tracks):
            held = 0
            for outputs in session.output_dict_per_obj.values():
                for per_frame in outputs.values():
                    for frame_out in per_frame.values():
                        for value in frame_out.values():
                            if hasattr(value, "element_size"):
                                held += value.numel() * value.element_size()
            self.peak = max(self.peak, held)
            return drain(session, output, tracks)

        self.segmenter._drain_frame = drain_and_weigh
        return self

    def __exit__(self, *exc) -> None:
        del self.segmenter._drain_frame  # the class's method again


def variant_rows(segmenter, frames, args, busy: GpuBusy, on_row) -> list[dict]:
    """The table's rows, each passed to ON_ROW as it is measured: each concept count, then at
    4 concepts objects batched through the tracker, the host-RLE path (on CUDA) and longer
    clips (GPU memory against clip length)."""
    rows: list[dict] = []

    def add(row: dict) -> None:
        rows.append(row)
        on_row(rows)

    for n in args.concepts.split(","):
        add(measure(segmenter, frames, int(n), args.repeats, busy))
    if args.compare_batched:
        from vidlake.model.batched_detector import batched_detection
        from vidlake.model.batched_tracker import batched_tracking

        with batched_tracking(segmenter.model):
            add(measure(segmenter, frames, 4, args.repeats, busy, "objects"))
        with batched_detection(segmenter.model):
            add(measure(segmenter, frames, 4, args.repeats, busy, "concepts"))
            with batched_tracking(segmenter.model):
                add(measure(segmenter, frames, 4, args.repeats, busy, "both"))
    if args.compare_host_rle and segmenter.device_rle:
        segmenter.device_rle = False
        add(measure(segmenter, frames, 4, args.repeats, busy, "host RLE"))
        segmenter.device_rle = True
    for n_frames in args.long_frames:
        long_clip = synthetic_clip(n_frames, frames.shape[1], frames.shape[2])
        add(measure(segmenter, long_clip, 4, 1, busy))
        if args.compare_keep_all:
            segmenter.forget_old_frames = False
            add(measure(segmenter, long_clip, 4, 1, busy, "all frames"))
            segmenter.forget_old_frames = True
    return rows


def row_line(row: dict, base_fps: float) -> str:
    busy = "n/a" if row["gpu_busy"] is None else f"{row['gpu_busy']:.0%}"
    return (
        f"{row['concepts']:>8} {row['frames']:>6} {row['label']:>10} {row['fps']:>9.2f} "
        f"{row['fps'] / base_fps:>6.2f} {row['seconds']:>7.2f} {row['peak'] / 2**20:>9.0f} "
        f"{row['state'] / 2**20:>9.1f} {row['drain_share']:>6.0%} {busy:>9} {row['objects']:>7}"
    )


ROW_HEADER = (
    f"{'concepts':>8} {'frames':>6} {'variant':>10} {'frames/s':>9} {'vs 1':>6} {'s/clip':>7} "
    f"{'clip MiB':>9} {'state MiB':>9} {'drain':>6} {'GPU busy':>9} {'objects':>7}"
)


def base_fps(rows: list[dict]) -> float:
    """frames/s of the first 1-concept row (the 'vs 1' column's base), else of the first row."""
    return next((r["fps"] for r in rows if r["concepts"] == 1), rows[0]["fps"])


def shared_device_rows(folder: str, device: str, args, frames, busy: GpuBusy) -> list[dict]:
    """Aggregate frames/s and GPU utilisation with K processes sharing the device (K segment
    actors per GPU), 4 concepts, each process running --shared-clips clips.

    transformers' tracker runs every object through its own forward pass (a Python loop of
    small kernels), so one process leaves the GPU idle while it launches them; K processes
    overlap one's launching with another's kernels. The processes start their clips together
    (a barrier after loading and warming up) and the aggregate is all frames over the time
    from the first start to the last end.
    """
    import multiprocessing as mp

    rows = []
    spawn = mp.get_context("spawn")  # CUDA does not survive fork
    for k in args.shared:
        barrier = spawn.Barrier(k + 1)
        results = spawn.Queue()
        workers = [
            spawn.Process(
                target=_shared_worker,
                args=(
                    folder,
                    device,
                    args.objects,
                    frames,
                    args.shared_clips,
                    k,
                    barrier,
                    results,
                    args.shared_batched,
                ),
            )
            for _ in range(k)
        ]
        for w in workers:
            w.start()
        barrier.wait(timeout=600)
        with busy:
            spans = [results.get(timeout=1200) for _ in workers]
        for w in workers:
            w.join()
        wall = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
        n_frames = sum(n for _, _, n in spans)
        rows.append({"processes": k, "fps": n_frames / wall, "seconds": wall,
                     "gpu_busy": busy.share, "batched": args.shared_batched})  # fmt: skip
        share = "n/a" if busy.share is None else f"{busy.share:.0%}"
        print(f"{k} processes sharing the device: {n_frames / wall:.2f} frames/s, "
              f"GPU busy {share}", flush=True)  # fmt: skip
    return rows


def _shared_worker(folder, device, objects, frames, n_clips, k, barrier, results, batched) -> None:
    import os

    import torch
    from transformers.utils import logging as hf_logging

    from vidlake.model.sam3 import Sam3Segmenter

    hf_logging.disable_progress_bar()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // k))  # K processes share the cores

    concepts = CONCEPT_WORDS[:4]
    segmenter = Sam3Segmenter(folder, device=device, batch_objects=batched, batch_concepts=batched)
    segmenter.model.max_num_objects = objects
    calibrate_detections(segmenter, frames[:1], concepts)
    segmenter.segment(frames[:2], concepts)  # warm-up
    barrier.wait(timeout=600)
    start = time.time()
    for _ in range(n_clips):
        segmenter.segment(frames, concepts)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    results.put((start, time.time(), n_clips * len(frames)))


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


def int_list(value: str) -> list[int]:
    """ "16,64" -> [16, 64] (an argparse type)."""
    return [int(x) for x in value.split(",") if x]


def main(argv: list[str] | None = None) -> list[dict]:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model (default without CUDA)")
    parser.add_argument("--full", action="store_true", help="full-size model even on CPU (slow)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the built model here and reuse it"
    )
    parser.add_argument(
        "--compare-host-rle", action="store_true",
        help="on CUDA, also time 4 concepts with masks encoded on the host (pycocotools)",
    )  # fmt: skip
    parser.add_argument(
        "--long-frames", type=int_list, default=[],
        help="also time 4 concepts on clips of these lengths (GPU memory against clip length)",
    )  # fmt: skip
    parser.add_argument(
        "--compare-batched", action="store_true",
        help="also time 4 concepts batched: objects through the tracker (--batch-objects), "
        "concepts through the detector (--batch-concepts), both",
    )  # fmt: skip
    parser.add_argument(
        "--compare-keep-all", action="store_true",
        help="with --long-frames, also time those clips keeping every frame's tracker outputs",
    )  # fmt: skip
    parser.add_argument(
        "--shared", type=int_list, default=[],
        help="then run 4 concepts in K processes sharing the device, for each K listed",
    )  # fmt: skip
    parser.add_argument("--shared-clips", type=int, default=2, help="clips per process")
    parser.add_argument(
        "--shared-batched",
        action="store_true",
        help="the --shared processes batch objects and concepts (--batch-objects --batch-concepts)",
    )
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

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the table, not load bars, in a device call's log tail
    cuda = torch.cuda.is_available()
    tiny = args.tiny or not (cuda or args.full)
    device = "cuda" if cuda else "cpu"
    n_frames = args.frames or (8 if tiny else 30)
    side = 128 if tiny else 1008
    frames = synthetic_clip(n_frames, side * 3 // 4, side)
    pipeline = None
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        t0 = time.perf_counter()
        segmenter = build_segmenter(tiny, device, args.compile, args.objects, workdir)
        print(f"model built and loaded in {time.perf_counter() - t0:.1f} s", flush=True)
        name = device_name(device)

        def on_row(rows: list[dict]) -> None:  # as measured: a killed run keeps its rows
            print(row_line(rows[-1], base_fps(rows)), flush=True)
            if args.json:
                args.json.write_text(json.dumps({"device": name, "rows": rows}))

        print(ROW_HEADER, flush=True)
        busy = GpuBusy(device)
        rows = variant_rows(segmenter, frames, args, busy, on_row)
        shared = []
        if args.shared:
            folder = segmenter.model_id
            del segmenter
            if cuda:
                torch.cuda.empty_cache()
            shared = shared_device_rows(folder, device, args, frames, busy)
        if args.pipeline:
            folder = folder if args.shared else segmenter.model_id
            segmenter = None
            if cuda:
                torch.cuda.empty_cache()
            pipeline = pipeline_run(folder, args.pipeline, device, args.objects, Path(tmp))

    model = "tiny random SAM 3" if tiny else "full-size SAM 3 (random weights)"
    precision = "bf16 autocast" if device == "cuda" else "fp32"
    print(f"device: {device_name(device)}; model: {model}; {precision}"
          f"{'; torch.compile' if args.compile else ''}")  # fmt: skip
    print(f"clip: {n_frames} frames of {frames.shape[2]}x{frames.shape[1]}, "
          f"up to {args.objects} objects")  # fmt: skip
    resident = rows[0]["weights"] / 2**20
    print(
        f"resident on the GPU between clips (weights): {resident:.0f} MiB; 'clip MiB' is the "
        "peak above that; 'state MiB' the most per-frame tracker outputs the session held; 'drain' "
        "the share of the time spent post-processing and encoding masks"
    )
    print(ROW_HEADER)
    for r in rows:
        print(row_line(r, base_fps(rows)))
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
        out = {"device": name, "rows": rows, "shared": shared, "pipeline": pipeline}
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
