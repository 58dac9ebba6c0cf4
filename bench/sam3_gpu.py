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
(4 concepts; the job's own number of segment actors, 3 per GPU on CUDA and 1 on CPU, or
--pipeline-actors) and reports the share of the job's wall time the actors spent in the model
(the job summary's "model busy"), the job's frames/s against the model alone and, on CUDA, the
share of the job's wall time the GPU was busy (NVML, sampled every 20 ms over the whole
`run_index` call and over its segment phase, first clip in to last out, plus a 10-second
timeline). With the full-size model the videos are 1280x720 at 24 frames/s (--pipeline-size,
--pipeline-seconds) and the actors load a copy of the model whose detection thresholds are
calibrated on the videos' frames (random weights pass nothing at the saved 0.5 and 0.7).
--pipeline-alone K then times the segment stage alone in this process on the job's first K
clips (decoded beforehand) and prints the job's frames/s over it: with --pipeline-actors 1
and K at least the job's clips, the index job's efficiency against the model alone
(bench/pipeline.py's first row, on a GPU). As there, Ray is started before the job's clock.

    .venv/bin/python bench/sam3_gpu.py --pipeline 8  # + an index run of 8 videos
    python3 bench/sam3_gpu.py --frames 16 --concepts 4 --repeats 1 --pipeline 6 \
        --pipeline-batch on      # on a GPU: bench/gpu_pipeline.sh
    bash bench/gpu_pipeline.sh run 2 --pipeline-actors 1 --pipeline-alone 4   # efficiency
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
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
    # transformers' per-object and per-concept passes, the "upstream loops" rows (the index job
    # batches them by default with CUDA; --compare-batched times the batched passes)
    segmenter = Sam3Segmenter(
        str(folder), device=device, compile=compile, batch_objects=False, batch_concepts=False
    )
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
        self._times: list[float] = []  # epoch seconds of each sample (time.time())
        self._stop = None

    def __enter__(self):
        import threading

        self._samples = []
        self._times = []
        if self._handle is not None:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self._samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
            self._times.append(time.time())

    def share_between(self, start: float, end: float) -> float | None:
        """Mean utilisation of the samples taken between two epoch times, 0..1; None without."""
        n = min(len(self._times), len(self._samples))  # the poller may be mid-append
        pairs = zip(self._times[:n], self._samples[:n], strict=True)
        inside = [u for t, u in pairs if start <= t <= end]
        return sum(inside) / len(inside) / 100 if inside else None

    def timeline(self, start: float, end: float, step: float = 10.0) -> list[float | None]:
        """Mean utilisation (0..1, None where no sample) of each STEP seconds from START to END."""
        n = max(1, int(np.ceil((end - start) / step)))
        return [self.share_between(start + i * step, min(end, start + (i + 1) * step))
                for i in range(n)]  # fmt: skip

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()

    @property
    def sampling(self) -> bool:
        """Whether NVML answers (samples are taken while on)."""
        return self._handle is not None

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
    parser.add_argument(
        "--pipeline-actors", type=int, default=None, metavar="K",
        help="segment actors of the index run (default: the job's own, 3 per GPU, 1 on CPU)",
    )  # fmt: skip
    parser.add_argument(
        "--pipeline-batch", choices=("default", "on", "off"), default="default",
        help="the index run's --batch-objects and --batch-concepts (default: the job's own)",
    )  # fmt: skip
    parser.add_argument(
        "--pipeline-clip-seconds", type=float, default=None,
        help="the index run's --clip-seconds (default: 4 with the tiny model, else the job's)",
    )  # fmt: skip
    parser.add_argument(
        "--pipeline-size", default=None, metavar="WxH",
        help="the index run's videos, WxH at 24 frames/s (default: 1280x720 with the full-size "
        "model; with the tiny one the synthetic corpus, 160x120)",
    )  # fmt: skip
    parser.add_argument(
        "--pipeline-seconds", type=float, default=16.0, help="length of each --pipeline-size video"
    )
    parser.add_argument(
        "--pipeline-alone", type=int, default=0, metavar="K",
        help="then time the segment stage alone in this process on the index run's first K "
        "clips, decoded as the job decodes them: the job's frames/s over it (issue 7's "
        "efficiency with --pipeline-actors 1; like for like with K >= the run's clips)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.pipeline_alone and not args.pipeline:
        parser.error("--pipeline-alone times the clips of the --pipeline run: give --pipeline N")
    if args.pipeline_alone < 0:
        parser.error(f"--pipeline-alone must be a number of clips >= 0, got {args.pipeline_alone}")

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
        prepared = None
        if args.pipeline:  # its videos and model while this process's model is loaded
            prepared = prepare_pipeline(segmenter, tiny, args, Path(tmp))
        shared = []
        if args.shared:
            folder = segmenter.model_id
            del segmenter
            if cuda:
                torch.cuda.empty_cache()
            shared = shared_device_rows(folder, device, args, frames, busy)
        if args.pipeline:
            segmenter = None
            if cuda:
                torch.cuda.empty_cache()
            pipeline = pipeline_run(prepared, device, args, busy, Path(tmp))
            if args.pipeline_alone:
                config = pipeline_config(prepared, device, args, Path(tmp))
                pipeline["alone"] = segment_alone(config, args.pipeline_alone, busy)

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
        print(pipeline_lines(pipeline))
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    if args.json:
        out = {"device": name, "rows": rows, "shared": shared, "pipeline": pipeline}
        args.json.write_text(json.dumps(out))
    return rows


def share_text(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


def pipeline_lines(p: dict) -> str:
    """The index run's figures, as printed."""
    from vidlake.errors import counted

    model_fps = p["n_frames"] / p["model_s"] if p["model_s"] else 0.0
    lines = [
        f"pipeline: {p['n_videos']} videos ({p['video_size']}), {p['n_clips']} clips of "
        f"{p['clip_seconds']:g} s, {p['n_frames']} frames in {p['wall_s']:.1f} s"
        + (f" (Ray started before, in {p['ray_start_s']:.1f} s)" if "ray_start_s" in p else "")
        + ": "
        f"{p['frames_per_s']:.2f} frames/s; in the model {model_fps:.2f} frames/s per actor; "
        f"{counted(p['n_actors'], 'segment actor')}, "
        f"batched passes {'on' if p['batched'] else 'off'}, "
        f"{p['objects_per_clip']:.1f} objects per clip",
        f"pipeline: model busy {p['model_busy']:.0%} of the wall time per actor "
        f"({p['segment_phase_busy']:.0%} from the first clip in to the last out); "
        f"GPU busy {share_text(p['gpu_busy'])} of the wall time "
        f"({share_text(p['gpu_busy_segment'])} from the first clip in, "
        f"{p['first_clip_s']:.1f} s after the start, to the last out, "
        f"{p['after_last_clip_s']:.1f} s before the end)",
    ]
    if p["gpu_timeline"]:
        shares = " ".join(share_text(x) for x in p["gpu_timeline"])
        lines.append(f"pipeline: GPU busy per {TIMELINE_S:g} s from the job's start: {shares}")
    if p.get("alone"):
        a = p["alone"]
        lines.append(
            f"pipeline: the segment stage alone in this process on the job's first "
            f"{a['n_clips']} clips ({a['n_frames']} frames, decoded beforehand): "
            f"{a['frames_per_s']:.2f} frames/s, GPU busy {share_text(a['gpu_busy'])}; the job's "
            f"frames/s over it: {p['frames_per_s'] / a['frames_per_s']:.3f} with "
            f"{counted(p['n_actors'], 'segment actor')}"
        )
    return "\n".join(lines)


TIMELINE_S = 10.0
PIPELINE_FPS = 24  # frames/s of the --pipeline-size videos (the model samples --fps, 6)


def prepare_pipeline(segmenter, tiny: bool, args, workdir: Path) -> dict:
    """The index run's videos, and the model its actors load.

    With the full-size model that is a copy (links, but for config.json) whose detection
    thresholds are calibrated on the videos' frames, decoded as the job decodes them: saved
    as transformers' defaults (0.5 and 0.7) random weights pass nothing, and the run would
    time the detector alone. The tiny model's saved thresholds already pass its detections.
    """
    from vidlake.config import IndexConfig

    size = args.pipeline_size or (None if tiny else "1280x720")
    videos, distinct = pipeline_videos(args.pipeline, workdir / "videos", size,
                                       args.pipeline_seconds)  # fmt: skip
    model, threshold = segmenter.model_id, None
    if not tiny:
        max_side = IndexConfig.__dataclass_fields__["max_side"].default
        concepts = CONCEPT_WORDS[:4]
        threshold = max(calibrate_detections(segmenter, frame[None], concepts)
                        for frame in sample_frames(distinct, max_side))  # fmt: skip
        model = str(thresholded_copy(Path(model), workdir / "pipeline-model", threshold))
    return {"videos": videos, "model": model, "threshold": threshold, "tiny": tiny,
            "video_size": size or "corpus 160x120"}  # fmt: skip


def pipeline_videos(n: int, folder: Path, size: str | None, seconds: float):
    """(N video paths, the distinct ones among them). SIZE None: the synthetic corpus's videos
    in turn. SIZE "WxH": up to 3 distinct videos of moving squares, H.264 at PIPELINE_FPS
    (keyframes every 2 s, as the corpus), copied under other names up to N (each copy is
    another video to the job)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    if size is None:
        from vidlake.synthetic.corpus import default_specs, write_video

        specs = default_specs()
        paths = [write_video(specs[i % len(specs)], folder / f"v{i:03d}.mp4").uri
                 for i in range(n)]  # fmt: skip
        return paths, paths[: len(specs)]
    width, height = (int(x) for x in size.lower().split("x"))
    paths = [str(folder / f"v{i:03d}.mp4") for i in range(n)]
    distinct = paths[:3]
    for k, path in enumerate(distinct):
        write_squares_video(Path(path), width, height, seconds, seed=k)
    for i in range(len(distinct), n):
        shutil.copyfile(distinct[i % len(distinct)], paths[i])
    return paths, distinct


def write_squares_video(path: Path, width: int, height: int, seconds: float, seed: int) -> None:
    """Moving coloured squares on grey, H.264 yuv420p at PIPELINE_FPS, deterministic."""
    import av

    rng = np.random.default_rng(seed)
    side = max(8, height // 6)
    n = 6
    colours = rng.integers(60, 255, size=(n, 3), dtype=np.uint8)
    start = rng.uniform(0, 1, size=(n, 2)) * (width - side, height - side)
    speed = rng.uniform(-4, 4, size=(n, 2)) * height / 120  # pixels per frame
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=PIPELINE_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast", "g": str(2 * PIPELINE_FPS),
                          "bf": "2"}  # fmt: skip
        for t in range(max(1, round(seconds * PIPELINE_FPS))):
            frame = np.full((height, width, 3), 48, np.uint8)
            for k in range(n):  # bouncing off the edges
                x, y = (start[k] + speed[k] * t) % (2 * np.array([width - side, height - side]))
                x = int(x if x <= width - side else 2 * (width - side) - x)
                y = int(y if y <= height - side else 2 * (height - side) - y)
                frame[y : y + side, x : x + side] = colours[k]
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def sample_frames(paths: list[str], max_side: int | None) -> list[np.ndarray]:
    """The first and the middle frame of each video, resized as the job's decoder does."""
    import av

    from vidlake.operators.decode import _resize_frame

    frames = []
    for path in paths:
        with av.open(path) as container:
            middle = container.streams.video[0].frames // 2
            for i, frame in enumerate(container.decode(video=0)):
                if i in (0, middle):
                    frames.append(_resize_frame(frame.to_ndarray(format="rgb24"), max_side))
                if i >= middle:
                    break
    return frames


def thresholded_copy(folder: Path, dest: Path, threshold: float) -> Path:
    """DEST: FOLDER's files linked, its config.json with both detection thresholds set."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        if item.name != "config.json" and not (dest / item.name).exists():
            (dest / item.name).symlink_to(item.resolve())
    config = json.loads((folder / "config.json").read_text())
    config["score_threshold_detection"] = config["new_det_thresh"] = threshold
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    return dest


def job_batching(asked: str, device: str) -> bool:
    """Whether the index run's actors batch their passes: as asked, else the job's default
    (IndexConfig's, decided per device by Sam3Segmenter)."""
    from vidlake.config import IndexConfig
    from vidlake.model.sam3 import batched

    if asked != "default":
        return asked == "on"
    return batched(IndexConfig.__dataclass_fields__["batch_objects"].default, device)


@contextlib.contextmanager
def progress_lines(busy: GpuBusy, start: float):
    """While on, prints the GPU's utilisation every TIMELINE_S seconds (with NVML only): a run
    cut short by a time limit still leaves its timeline in the log."""
    import threading

    stop = threading.Event()

    def report() -> None:
        while not stop.wait(TIMELINE_S):
            now = time.time()
            share = busy.share_between(now - TIMELINE_S, now)
            print(f"pipeline: {now - start:4.0f} s, GPU busy {share_text(share)} over the "
                  f"last {TIMELINE_S:g} s", flush=True)  # fmt: skip

    thread = threading.Thread(target=report, daemon=True)
    if busy.sampling:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()


def pipeline_config(prepared: dict, device: str, args, workdir: Path):
    """The IndexConfig of the index run (and of the segment stage timed alone)."""
    from vidlake.config import IndexConfig

    options = {}
    if args.pipeline_batch != "default":
        on = args.pipeline_batch == "on"
        options = {"batch_objects": on, "batch_concepts": on}
    default_clip = IndexConfig.__dataclass_fields__["clip_seconds"].default
    clip_seconds = args.pipeline_clip_seconds or (4.0 if prepared["tiny"] else default_clip)
    return IndexConfig(
        sources=tuple(prepared["videos"]),
        index_uri=str(workdir / "index"),
        concepts=tuple(CONCEPT_WORDS[:4]),
        model=prepared["model"],
        clip_seconds=clip_seconds,
        fps=6.0,
        overlap_s=1.0,
        num_actors=args.pipeline_actors,
        device=device,
        max_objects=args.objects,
        **options,
    )


def pipeline_run(prepared: dict, device: str, args, busy: GpuBusy, workdir: Path) -> dict:
    """Indexes the prepared videos with the prepared model through run_index: what the job
    reports, and the GPU's utilisation over the call (NVML samples; None without a GPU)."""
    from vidlake.pipeline.index_job import init_ray, run_index

    config = pipeline_config(prepared, device, args, workdir)
    clip_seconds = config.clip_seconds
    # Ray is started before the clock, as bench/pipeline.py times the job ("Ray already up");
    # its start is reported apart. (Before 2026-11-26's eighth session the wall included it.)
    t0 = time.time()
    init_ray(None)
    ray_start_s = time.time() - t0
    print(f"pipeline: Ray started in {ray_start_s:.1f} s; indexing {len(config.sources)} videos "
          f"({prepared['video_size']}) with {prepared['model']}", flush=True)  # fmt: skip
    start = time.time()
    with busy, progress_lines(busy, start):
        summary = run_index(config)
    end = time.time()
    if summary.n_failed:
        raise RuntimeError(f"pipeline run failed: {summary.failures}")
    span = summary.segment_span_s
    first, last = summary.model_first_start, summary.model_last_end
    return {
        "n_videos": summary.n_indexed,
        "n_clips": summary.n_clips,
        "n_frames": summary.n_frames,
        "n_masklets": summary.n_masklets,
        "objects_per_clip": summary.n_masklets / summary.n_clips if summary.n_clips else 0.0,
        "n_actors": summary.n_actors,
        "batched": job_batching(args.pipeline_batch, device),
        "clip_seconds": clip_seconds,
        "video_size": prepared["video_size"],
        "threshold": prepared["threshold"],
        "ray_start_s": ray_start_s,
        "wall_s": summary.wall_s,
        "frames_per_s": summary.frames_per_s,
        "model_s": summary.model_s,
        "model_busy": summary.model_busy,
        "segment_phase_busy": summary.model_s / (span * max(1, summary.n_actors)) if span else 0.0,
        "first_clip_s": first - start if first else 0.0,
        "after_last_clip_s": end - last if last else 0.0,
        "gpu_busy": busy.share_between(start, end),
        "gpu_busy_segment": busy.share_between(first, last) if span else None,
        "gpu_timeline": busy.timeline(start, end, TIMELINE_S) if busy.sampling else [],
    }


def segment_alone(config, n_clips: int, busy: GpuBusy) -> dict:
    """The segment stage alone in this process, as a segment actor runs it (same model,
    concepts, object cap and passes), on the first N_CLIPS clips of CONFIG's videos, planned
    and decoded as the job does it: bench/pipeline.py's baseline (`clip_rows`,
    `segment_alone`), with the GPU's busy share over the timed loop. The model is loaded
    before the clock, and its first clip (cold) is timed, as in the job. Issue 7's baseline:
    the job's frames/s over this, with one actor, is what the pipeline costs. Like for like
    with N_CLIPS at least the job's clips (all of them are timed then)."""
    from vidlake.pipeline import stages

    baseline = pipeline_bench()
    rows = baseline.clip_rows(
        list(config.sources), config.clip_seconds, config.fps, config.overlap_s
    )[:n_clips]
    stage = stages.SegmentStage(
        config.model, config.concepts, device=config.device, max_objects=config.max_objects,
        batch_objects=config.batch_objects, batch_concepts=config.batch_concepts,
    )  # fmt: skip
    seconds, n_frames, outputs = baseline.segment_alone(rows, stage, config.max_side, timed=busy)
    errors = [o["error"] for o in outputs if o.get("error")]
    if errors:
        raise RuntimeError(f"the segment stage alone failed: {errors[0]}")
    return {"n_clips": len(outputs), "n_frames": n_frames, "seconds": seconds,
            "frames_per_s": n_frames / seconds, "gpu_busy": busy.share}  # fmt: skip


def pipeline_bench():
    """bench/pipeline.py (a sibling script, not a package) loaded by path, under the name its
    siblings and the bench tests use for it."""
    name = "vidlake_bench_pipeline"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("pipeline.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


if __name__ == "__main__":
    main()
