"""`vidlake demo`: sample videos, a tiny SAM 3, an index and a query, all offline."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from vidlake.errors import UsageError

DEMO_CONCEPTS = ("red square", "blue circle", "green triangle")


def run_demo(out_dir: Path, console: Console) -> None:
    """Writes sample videos and a tiny model under OUT_DIR, indexes them and prints a query.

    OUT_DIR may exist: the demo writes only its videos/, tiny-sam3/ and index/ folders in it,
    and a rerun reuses them. A folder it cannot create or write is a one-line UsageError.
    """
    import vidlake
    from vidlake.model.tiny import build_tiny_sam3, make_folder
    from vidlake.synthetic.corpus import write_corpus

    out_dir = make_folder(Path(out_dir))
    videos_dir = make_folder(out_dir / "videos")
    try:
        videos = write_corpus(videos_dir)
    except OSError as exc:  # PyAV's errors are OSErrors too
        raise UsageError(
            f"cannot write the sample videos into {videos_dir}: {exc.strerror or exc}"
        ) from exc
    console.print(f"wrote {len(videos)} sample videos to {out_dir / 'videos'}", markup=False)
    model_dir = build_tiny_sam3(out_dir / "tiny-sam3")
    console.print(
        f"wrote a tiny random SAM 3 to {model_dir}: its detections are random; "
        "real results need the facebook/sam3 checkpoint (see README)",
        markup=False,
    )
    index_uri = str(out_dir / "index")
    summary = vidlake.index(
        [str(out_dir / "videos")], index_uri, list(DEMO_CONCEPTS), model=str(model_dir)
    )
    console.print(
        f"indexed {summary.n_indexed} videos: {summary.n_clips} clips, "
        f"{summary.n_masklets} masklets ({summary.frames_per_s:.1f} frames/s)",
        markup=False,
    )
    hits = vidlake.open(index_uri).search(DEMO_CONCEPTS[0], limit=10).to_pylist()
    console.print(f"query {DEMO_CONCEPTS[0]!r}: {len(hits)} clips", markup=False)
    for h in hits:
        console.print(
            f"  {Path(h['video_uri']).name}  {h['start_s']:.1f}-{h['end_s']:.1f} s  "
            f"objects {h['n_objects']}  best score {h['max_score']:.3f}",
            markup=False,
        )
    console.print(f"try: vidlake query --index {index_uri} {DEMO_CONCEPTS[1]!r}", markup=False)
