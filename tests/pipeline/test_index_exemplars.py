"""Exemplar prompts through the index job: an exemplar box on a shape of one video finds that
shape in every clip of every video (ground-truth colour segmenter), and SAM 3's masklets for an
exemplar are stored under the prompt's name (tiny model)."""

from __future__ import annotations

import vidlake
from vidlake.config import IndexConfig
from vidlake.model.prompts import parse_exemplars
from vidlake.pipeline.index_job import run_index
from vidlake.store.tables import IndexStore


def shape_box(video, concept: str, frame: int) -> str:
    """x0,y0,x1,y1 around the concept's drawn pixels at frame, a few pixels of margin."""
    mask = video.mask(concept, frame)
    ys = mask.any(axis=1).nonzero()[0]
    xs = mask.any(axis=0).nonzero()[0]
    return f"{max(xs[0] - 2, 0)},{max(ys[0] - 2, 0)},{xs[-1] + 3},{ys[-1] + 3}"


def test_an_exemplar_on_a_shape_retrieves_that_shape_in_every_clip(
    ray_local, synthetic_corpus, tmp_path
):
    a, b, c = synthetic_corpus
    # The green triangle of video b, boxed on frame 10: video c shows a triangle too, video a none.
    prompts = parse_exemplars(
        [f"{b.uri}:10:{shape_box(b, 'green triangle', 10)}"], names=["that triangle"]
    )
    config = IndexConfig(
        sources=(a.uri, b.uri, c.uri),
        index_uri=str(tmp_path / "idx"),
        concepts=(),
        model="synthetic:color",
        clip_seconds=2.0,
        fps=2.0,
        overlap_s=0.0,
        max_side=None,
        prompts=prompts,
    )
    summary = run_index(config)
    assert summary.n_failed == 0

    store = IndexStore.open(config.index_uri)
    clips = store.dataset("clips").to_table().to_pylist()
    by_uri = {v.uri: v for v in synthetic_corpus}
    expected = {
        cl["clip_id"]
        for cl in clips
        if any(
            by_uri[cl["video_uri"]].mask("green triangle", f).sum() > 50
            for f in cl["frame_indices"]
        )
    }
    assert {cl["video_uri"] for cl in clips if cl["clip_id"] in expected} == {b.uri, c.uri}
    hits = vidlake.open(config.index_uri).search("that triangle", limit=None)
    assert set(hits.column("clip_id").to_pylist()) == expected
    masklets = store.dataset("masklets").to_table().to_pylist()
    assert masklets and {m["concept"] for m in masklets} == {"that triangle"}


def test_tiny_sam3_exemplar_masklets_are_stored_under_the_prompts_name(
    ray_local, synthetic_corpus, tiny_sam3_dir, tmp_path
):
    video = synthetic_corpus[2]
    prompts = parse_exemplars(
        [f"{video.uri}:0:{shape_box(video, 'red square', 0)}", f"{video.uri}:0:90,60,150,110:neg"],
        names=["red thing"],
    )
    config = IndexConfig(
        sources=(video.uri,),
        index_uri=str(tmp_path / "idx"),
        concepts=("person",),
        model=str(tiny_sam3_dir),
        clip_seconds=2.0,
        fps=2.0,
        overlap_s=0.0,
        max_side=None,
        device="cpu",
        prompts=prompts,
        max_objects=3,
    )
    summary = run_index(config)
    assert summary.n_failed == 0
    store = IndexStore.open(config.index_uri)
    masklets = store.dataset("masklets").to_table(columns=["clip_id", "concept"]).to_pylist()
    assert "red thing" in {m["concept"] for m in masklets}
    assert {m["concept"] for m in masklets} <= {"person", "red thing"}
    per_clip: dict[str, int] = {}
    for m in masklets:
        per_clip[m["clip_id"]] = per_clip.get(m["clip_id"], 0) + 1
    assert max(per_clip.values()) <= 3
    # The cap is recorded with each clip, and which clips reached it.
    clips = store.dataset("clips").to_table(columns=["clip_id", "max_objects", "at_object_cap"])
    for c in clips.to_pylist():
        assert c["max_objects"] == 3
        assert c["at_object_cap"] == (per_clip.get(c["clip_id"], 0) == 3)
    assert any(c["at_object_cap"] for c in clips.to_pylist())  # the random model finds plenty
    hits = vidlake.open(config.index_uri).search("red thing", limit=None)
    assert hits.num_rows >= 1
