"""`vidlake index`, `vidlake model tiny`, `vidlake model convert` and `vidlake demo`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from vidlake.config import DEFAULT_MODEL
from vidlake.errors import UsageError, counted
from vidlake.jobs.cli import (
    IndexOpt,
    StorageOpt,
    app,
    err,
    failure_line,
    model_app,
    out,
    parse_storage_options,
)


def _progress_reporter(progress: Progress):
    tasks: dict[str, int] = {}
    videos_left = True

    def report(phase: str, done: int, total: int) -> None:
        # The clips' total is 0 until the first clip is in, then an estimate until every video
        # has started (which the videos' count bounds from above): shown as "~".
        nonlocal videos_left
        if phase == "videos":
            videos_left = done < total
            if not videos_left and "segment" in tasks:  # every clip is in: the total is exact
                progress.update(tasks["segment"], approx="")
        if phase not in tasks:
            label = {"videos": "videos done", "segment": "clips segmented"}.get(phase, phase)
            tasks[phase] = progress.add_task(label, total=total or None, approx="")
        approx = "~" if phase == "segment" and videos_left else ""
        progress.update(tasks[phase], completed=done, total=total or None, approx=approx)

    return report


class _DoneOfTotal(ProgressColumn):
    """ "12/40", "12/~40" while the total is an estimate, "12/?" while it is unknown."""

    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else f"{task.fields.get('approx', '')}{task.total:.0f}"
        return Text(f"{task.completed:.0f}/{total}", style="progress.download")


def _progress_columns() -> tuple[ProgressColumn, ...]:
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        _DoneOfTotal(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )


@contextlib.contextmanager
def _interruptible():
    """Ctrl-C: one line saying what is kept, exit 130 (the shell's code for SIGINT)."""
    try:
        yield
    except KeyboardInterrupt:
        import ray

        ray.shutdown()  # now, not in interpreter teardown, where it prints finalizer errors
        err.print(
            "interrupted: the videos finished so far are in the index (`vidlake runs` shows "
            "the run); rerun the same command to index the rest",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(130) from None


def _batched(flag: bool, exact: bool) -> bool | None:
    """A --batch-* flag with --exact: True (asked for), False (--exact), None (by device)."""
    if flag and exact:
        raise UsageError("--exact cannot go with --batch-objects or --batch-concepts")
    return True if flag else (False if exact else None)


@app.command()
def index(
    sources: Annotated[list[str], typer.Argument(help="Video files, folders, globs or manifests.")],
    index_uri: IndexOpt,
    concepts: Annotated[
        str, typer.Option("--concepts", "-c", help="Comma-separated noun phrases.")
    ] = "",
    model: Annotated[
        str, typer.Option(help="SAM 3 checkpoint: hub id, local folder or s3:// URI.")
    ] = DEFAULT_MODEL,
    clip_seconds: Annotated[float, typer.Option(help="Clip length in seconds.")] = 10.0,
    fps: Annotated[float, typer.Option(help="Frames per second sampled for the model.")] = 6.0,
    overlap: Annotated[float, typer.Option(help="Seconds shared by consecutive clips.")] = 1.0,
    max_side: Annotated[
        int, typer.Option(help="Decode frames with the longer side at most this (0: native).")
    ] = 1008,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address; default: an embedded local Ray.")
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(help="Segment actors (default: --actors-per-gpu per GPU, or 1 without)."),
    ] = None,
    actors_per_gpu: Annotated[
        int,
        typer.Option(
            help="Segment actors sharing each GPU, each with its own model copy (~3.4 GiB): "
            "one alone leaves the GPU idle while Python launches SAM 3's per-object kernels."
        ),
    ] = 3,
    batch_objects: Annotated[
        bool,
        typer.Option(
            "--batch-objects",
            help="SAM 3: track alike objects in one batched pass per frame instead of one pass "
            "per object, also on CPU (the default with CUDA; masks equal to float rounding).",
        ),
    ] = False,
    batch_concepts: Annotated[
        bool,
        typer.Option(
            "--batch-concepts",
            help="SAM 3: run the detector once per frame for all concepts instead of once per "
            "concept, also on CPU (the default with CUDA; equal to float rounding).",
        ),
    ] = False,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="SAM 3: one pass per object and per concept as transformers runs them, also "
            "with CUDA (2.3x slower there; bit for bit the reference on CPU).",
        ),
    ] = False,
    device: Annotated[
        str,
        typer.Option(
            help="auto, cpu or cuda. cuda on a Ray cluster without GPUs up yet still asks for "
            "them (an autoscaler adds GPU nodes)."
        ),
    ] = "auto",
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete indexed videos these sources no longer list.")
    ] = False,
    prune_concepts: Annotated[
        bool,
        typer.Option(
            "--prune-concepts",
            help="Delete from indexed videos the concepts (and exemplar prompts) not in this "
            "run's vocabulary; without it a smaller vocabulary deletes nothing.",
        ),
    ] = False,
    storage_option: StorageOpt = None,
    exemplar: Annotated[
        list[str] | None,
        typer.Option(
            help="Exemplar box VIDEO:FRAME:x0,y0,x1,y1[:neg] in source pixels (repeatable); "
            "boxes on one VIDEO:FRAME form one prompt, searched for in every clip."
        ),
    ] = None,
    exemplar_name: Annotated[
        list[str] | None,
        typer.Option(help="Name of each exemplar prompt, in order (default exemplar-N)."),
    ] = None,
    exemplar_text: Annotated[
        list[str] | None,
        typer.Option(help="Phrase to combine with each exemplar prompt's boxes, in order."),
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(help="JSON prompt file: [{name, text, video, frame, boxes, negative_boxes}]."),
    ] = None,
    max_objects: Annotated[
        int | None,
        typer.Option(help="Keep at most this many objects per clip (highest scores)."),
    ] = None,
) -> None:
    """Index videos: find, segment and track every concept in every clip."""
    import vidlake
    from vidlake.model.prompts import load_prompt_file, parse_exemplars

    named = parse_exemplars(exemplar or [], exemplar_name or [], exemplar_text or [])
    if prompts is not None:
        named += load_prompt_file(prompts)

    with (
        Progress(
            *_progress_columns(),
            console=err,
            # Off a terminal Rich cannot redraw: a transient display only leaves a blank line.
            disable=not err.is_terminal,
            transient=True,
        ) as progress,
        _interruptible(),
    ):
        summary = vidlake.index(
            sources, index_uri, concepts, model=model, clip_seconds=clip_seconds, fps=fps,
            overlap=overlap, max_side=max_side, address=address, actors=actors,
            actors_per_gpu=actors_per_gpu, batch_objects=_batched(batch_objects, exact),
            batch_concepts=_batched(batch_concepts, exact), device=device,
            storage_options=parse_storage_options(storage_option), prune=prune,
            prune_concepts=prune_concepts, prompts=named,
            max_objects=max_objects, progress=_progress_reporter(progress),
        )  # fmt: skip
    for uri, error in summary.failures:
        err.print(failure_line(uri, error), soft_wrap=True)
    out.print(
        f"indexed {counted(summary.n_indexed, 'video')}, failed {summary.n_failed}, "
        f"skipped {summary.n_skipped} already indexed"
        + (f", pruned {summary.n_pruned}" if summary.n_pruned else "")
        + "".join(f"; {part}" for part in summary_notes(summary))
        + f"; {counted(summary.n_clips, 'clip')}, {counted(summary.n_masklets, 'masklet')}, "
        f"{counted(summary.n_frames, 'frame')} in {summary.wall_s:.1f} s "
        f"({summary.frames_per_s:.1f} frames/s"
        + (f", model busy {summary.model_busy:.0%} of the time" if summary.model_s else "")
        + ")",
        highlight=False,
    )
    raise typer.Exit(1 if summary.n_failed else 0)


def summary_notes(summary) -> list[str]:
    """The summary line's parts about the vocabulary and what was not a video, if any."""
    from vidlake.operators.probe import not_videos_note

    notes = []
    if summary.segmented_concepts:
        concepts = ", ".join(summary.segmented_concepts)
        notes.append(
            f"added {concepts} to {counted(summary.n_grown, 'indexed video')} "
            "(only those concepts segmented)"
        )
    if summary.n_concepts_pruned:
        notes.append(f"pruned concepts from {counted(summary.n_concepts_pruned, 'video')}")
    if summary.n_failed_unchanged:
        notes.append(
            f"{summary.n_failed_unchanged} unchanged since they failed, not retried "
            "(`vidlake info` has their errors)"
        )
    if summary.not_videos:
        notes.append(not_videos_note(summary.not_videos))
    return notes


# The `index` options a command that adds a concept must repeat when the last run set them:
# other clip settings or another model would redo every video instead of adding one concept.
@model_app.command("tiny")
def model_tiny(
    out_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder to write the tiny model into: new, empty, or holding a tiny model "
            "(rewritten); any other folder is refused."
        ),
    ],
    seed: Annotated[int, typer.Option(help="Random seed of the weights.")] = 0,
) -> None:
    """Write a tiny random SAM 3 for tests and offline demos (its detections are random)."""
    from vidlake.model.tiny import build_tiny_sam3

    path = build_tiny_sam3(out_dir, seed=seed)
    out.print(f"wrote a tiny random SAM 3 to {path} (use --model {path})", markup=False)


@model_app.command("convert")
def model_convert(
    checkpoint: Annotated[
        Path, typer.Argument(help="Meta's SAM 3 checkpoint (sam3.pt from facebook/sam3).")
    ],
    out_dir: Annotated[
        Path,
        typer.Argument(help="Folder to write the transformers model into: new or empty."),
    ],
    bpe: Annotated[
        Path | None,
        typer.Option(
            help="CLIP's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz); default: the copy "
            "open_clip_torch or Meta's sam3 ships."
        ),
    ] = None,
) -> None:
    """Convert Meta's SAM 3 checkpoint into a folder --model loads (transformers' format)."""
    from vidlake.model.convert import convert_sam3

    path = convert_sam3(checkpoint, out_dir, bpe_path=bpe)
    out.print(f"converted {checkpoint} into {path} (use --model {path})", markup=False)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Argument(help="Working folder for the demo.")] = Path(
        "vidlake-demo"
    ),
) -> None:
    """Run the whole path offline: sample videos, a tiny SAM 3, an index, a query."""
    from vidlake.jobs.demo import run_demo

    run_demo(out_dir, out)
