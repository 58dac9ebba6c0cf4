"""Fidelity of vidlake's SAM 3 to Meta's own predictor (package `sam3`), clip by clip.

Builds a small Meta SAM 3 video model with Meta's own constructors and random weights
calibrated so that decisions happen (bench/meta_reference.py), converts its state dict with
`vidlake.model.convert`, and runs both on the same synthetic clips with the same text prompts at
Meta's settings: Meta one session per prompt (its predictor takes one text prompt), vidlake's
`Sam3Segmenter.segment` every prompt in one session, as the index job loads it: with
`meta_parity` (--no-parity: without it) and NMS and hole filling by `vidlake.model.quality`.
CPU, fp32.

    .venv/bin/python bench/fidelity_meta.py                       # 3 clips of 20 frames
    .venv/bin/python bench/fidelity_meta.py --clips 1 --frames 10 --no-parity

Prints per clip: objects on each side, objects matched (greedily by mean mask IoU over common
frames), their mean and lowest IoU, frames where only one side has a matched object, objects
unmatched on each side; then how often Meta decided (detections over 0.5 and 0.7, NMS, new
objects, hotstart, reconditioning, occlusion suppression), the seconds, and the command.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from meta_reference import run_fidelity, synthetic_clip  # noqa: E402


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3, help="Synthetic clips (seeds 0..N-1).")
    parser.add_argument("--frames", type=int, default=20, help="Frames per clip.")
    parser.add_argument(
        "--prompts", default="red square,green box", help="Comma-separated text prompts."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights.")
    parser.add_argument(
        "--no-parity",
        action="store_true",
        help="Without meta_parity (transformers' port as it is).",
    )
    args = parser.parse_args(argv)

    quiet()
    import torch

    prompts = [p.strip() for p in args.prompts.split(",") if p.strip()]
    clips = [synthetic_clip(seed, args.frames) for seed in range(args.clips)]
    with tempfile.TemporaryDirectory() as tmp:
        run = run_fidelity(
            clips, prompts, Path(tmp) / "model", seed=args.seed, parity=not args.no_parity
        )
    print(
        f"Meta's sam3 vs vidlake, small model (112 px, width 128), random weights (seed "
        f"{args.seed}), {len(prompts)} prompts, {args.frames} frames per clip, CPU fp32 "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
        f"meta_parity {'off' if args.no_parity else 'on'}"
    )
    for seed, report in enumerate(run.reports):
        print(f"clip {seed}: {report.line()}")
    matched = sum(len(r.matched) for r in run.reports)
    total = sum(r.n_reference for r in run.reports)
    ious = [m[2] for r in run.reports for m in r.matched]
    mean = sum(ious) / len(ious) if ious else float("nan")
    print(f"all clips: {matched} of {total} Meta objects matched, mean IoU {mean:.4f}")
    print(f"Meta's decisions: {run.events.line()}")
    print(f"seconds: Meta {run.meta_s:.1f}, vidlake {run.vidlake_s:.1f}")
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    return run


def quiet() -> None:
    """Only the report on the terminal: no progress bars (Meta's tqdm, transformers' loading
    bars), no "CUDA is not available" warning per autocast decorator, no INFO lines."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message="CUDA is not available")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    import sam3.model.sam3_video_inference as video_inference
    import sam3.model_builder  # noqa: F401  (imports every module, each with its INFO logger)

    video_inference.tqdm = lambda iterable, *args, **kwargs: iterable  # its bar per session
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("sam3"):
            logging.getLogger(name).setLevel(logging.WARNING)


if __name__ == "__main__":
    main()
