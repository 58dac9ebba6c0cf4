"""A vocabulary that grows: a job adding concepts segments only those on indexed videos.

One index of the synthetic corpus's first two videos with two concepts is grown by a job
with a third concept and a third video; a reference index built whole with all three is
what the grown one must equal (the colour segmenter's masklets are exact).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter

import lance
import pytest

import vidlake
from vidlake.pipeline.index_job import run_index
from vidlake.store.tables import IndexStore

TWO = ("red square", "blue circle")
THREE = (*TWO, "green triangle")
OTHER_MODEL = "vidlake.synthetic.segmenter:ColorSegmenter"  # the same segmenter, another id
MASKLET_KEYS = ["masklet_id", "clip_id", "video_id", "track_id", "object_id", "concept", "score"]


def masklets(index: str) -> list[dict]:
    rows = lance.dataset(f"{index}/masklets.lance").to_table(columns=MASKLET_KEYS).to_pylist()
    return sorted(rows, key=lambda r: r["masklet_id"])


def clip_sets(index: str, concept: str) -> set[tuple[str, float]]:
    hits = vidlake.open(index).search(concept, limit=None)
    uris, starts = hits.column("video_uri").to_pylist(), hits.column("start_s").to_pylist()
    return set(zip(uris, starts, strict=True))


def tracks_per_video(rows: list[dict], concept: str) -> Counter:
    """video_id -> number of distinct tracks of CONCEPT."""
    return Counter(
        v for v, _ in {(r["video_id"], r["track_id"]) for r in rows if r["concept"] == concept}
    )


@pytest.fixture(scope="module")
def indexes(ray_local, synthetic_corpus, synthetic_config, tmp_path_factory):
    """{"base", "grown", "reference"}: index URIs, and the grow job's summary under "summary".

    base: videos 0-1 with TWO; grown: base then a job with THREE over videos 0-2; reference:
    videos 0-2 with THREE in one job."""
    folder = tmp_path_factory.mktemp("vocabulary")
    base, grown, reference = (str(folder / n) for n in ("base", "grown", "reference"))
    run_index(synthetic_config(synthetic_corpus[:2], base, TWO))
    shutil.copytree(base, grown)
    summary = run_index(synthetic_config(synthetic_corpus, grown, THREE))
    run_index(synthetic_config(synthetic_corpus, reference, THREE))
    return {"base": base, "grown": grown, "reference": reference, "summary": summary}


def test_a_new_concept_is_segmented_only_on_indexed_videos_and_equals_a_whole_index(indexes):
    summary = indexes["summary"]
    assert (summary.n_indexed, summary.n_grown, summary.n_skipped) == (1, 2, 0)
    assert summary.segmented_concepts == ["green triangle"]
    before, after, whole = (masklets(indexes[k]) for k in ("base", "grown", "reference"))
    # The earlier concepts' rows on the indexed videos are untouched: same ids, same tracks.
    old_videos = {r["video_id"] for r in before}
    kept = [r for r in after if r["video_id"] in old_videos and r["concept"] in TWO]
    assert kept == before
    # The new concept's rows: the clips, tracks and scores a whole index finds.
    for concept in THREE:
        assert clip_sets(indexes["grown"], concept) == clip_sets(indexes["reference"], concept)
        assert tracks_per_video(after, concept) == tracks_per_video(whole, concept)
    assert len(after) == len(whole)
    assert len({r["masklet_id"] for r in after}) == len(after)
    # Track ids of the new concept are new ids of their video, never an earlier concept's.
    green = {r["track_id"] for r in after if r["concept"] == "green triangle"}
    assert green and not green & {r["track_id"] for r in after if r["concept"] != "green triangle"}
    counts = IndexStore.open(indexes["grown"]).counts()
    assert counts["clips"] == IndexStore.open(indexes["reference"]).counts()["clips"]
    vocab = IndexStore.open(indexes["grown"]).videos(["vocabulary"]).column("vocabulary")
    assert all(sorted(v) == sorted(THREE) for v in vocab.to_pylist())


def test_runs_record_the_concepts_segmented_on_indexed_videos(indexes):
    runs = lance.dataset(f"{indexes['grown']}/runs.lance").to_table().to_pylist()
    runs.sort(key=lambda r: r["started_at"])
    assert [r["segmented_concepts"] for r in runs] == [[], ["green triangle"]]


def test_a_crash_before_the_video_row_hides_the_new_concept_and_a_rerun_redoes_it(
    indexes, synthetic_corpus, synthetic_config, tmp_path, monkeypatch
):
    index = str(tmp_path / "idx")
    shutil.copytree(indexes["base"], index)
    config = synthetic_config(synthetic_corpus[:2], index, THREE)
    upsert = IndexStore.upsert_videos

    shows_green = synthetic_corpus[1].uri  # video b: its green triangles are committed

    def die_at_the_commit_marker(self, rows):
        if any(r["uri"] == shows_green and "green triangle" in r["vocabulary"] for r in rows):
            raise RuntimeError("killed before the video rows")
        upsert(self, rows)

    monkeypatch.setattr(IndexStore, "upsert_videos", die_at_the_commit_marker)
    with pytest.raises(RuntimeError, match="killed"):
        run_index(config)
    monkeypatch.setattr(IndexStore, "upsert_videos", upsert)
    # The new concept's masklets and hits are in the tables, but no reader sees them.
    assert any(r["concept"] == "green triangle" for r in masklets(index))
    assert clip_sets(index, "green triangle") == set()
    assert (
        vidlake.open(index)
        .masklets([r["clip_id"] for r in masklets(index)], ["green triangle"])
        .num_rows
        == 0
    )
    for concept in TWO:
        assert clip_sets(index, concept) == clip_sets(indexes["base"], concept)

    # Video a may have been committed before b died: the rerun redoes what was not.
    vocabularies = IndexStore.open(index).videos(["vocabulary"]).column("vocabulary")
    lacking = [v for v in vocabularies.to_pylist() if "green triangle" not in v]
    assert lacking
    again = run_index(config)
    assert (again.n_grown, again.segmented_concepts) == (len(lacking), ["green triangle"])
    grown = [
        r
        for r in masklets(indexes["grown"])
        if r["video_id"] in {x["video_id"] for x in masklets(index)}
    ]
    assert masklets(index) == grown  # exactly once, with the ids an uninterrupted job gives


def test_a_smaller_vocabulary_changes_nothing_unless_pruned(
    indexes, synthetic_corpus, synthetic_config, tmp_path
):
    index = str(tmp_path / "idx")
    shutil.copytree(indexes["grown"], index)
    config = synthetic_config(synthetic_corpus, index, ("red square",))
    before = masklets(index)
    summary = run_index(config)
    assert (summary.n_indexed, summary.n_grown, summary.n_skipped) == (0, 0, 3)
    assert summary.n_clips == 0 and masklets(index) == before
    assert clip_sets(index, "blue circle") == clip_sets(indexes["reference"], "blue circle")

    pruned = run_index(dataclasses.replace(config, prune_concepts=True))
    assert (pruned.n_indexed, pruned.n_concepts_pruned) == (0, 3)
    assert {r["concept"] for r in masklets(index)} == {"red square"}
    assert clip_sets(index, "red square") == clip_sets(indexes["reference"], "red square")
    assert vidlake.open(index).vocabulary() == ["red square"]


def test_another_model_reindexes_its_videos_and_the_partial_migration_shows(
    indexes, synthetic_corpus, synthetic_config, tmp_path
):
    index = str(tmp_path / "idx")
    shutil.copytree(indexes["grown"], index)
    config = synthetic_config(synthetic_corpus[:1], index, THREE)
    summary = run_index(dataclasses.replace(config, model=OTHER_MODEL))
    assert (summary.n_indexed, summary.n_grown) == (1, 0)
    engine = vidlake.open(index)
    assert engine.info().videos_by_model == {"synthetic:color": 2, OTHER_MODEL: 1}
    hits = engine.search("red square", limit=None)
    models = engine.hit_models(hits)
    assert set(models) == {"synthetic:color", OTHER_MODEL} and sum(models.values()) == hits.num_rows
    assert clip_sets(index, "red square") == clip_sets(indexes["reference"], "red square")

    from typer.testing import CliRunner

    from vidlake.jobs.cli import _register_commands, app

    _register_commands()
    runner = CliRunner()
    info = runner.invoke(app, ["info", "--index", index])
    assert f"models: synthetic:color (2 videos), {OTHER_MODEL} (1 video); a change" in info.stdout
    runs = runner.invoke(app, ["runs", "--index", index])
    assert f"indexed videos per model: synthetic:color: 2 videos, {OTHER_MODEL}: 1 video" in (
        runs.stdout
    )
    query = runner.invoke(app, ["query", "--index", index, "red square"])
    assert "these hits mix 2 models: synthetic:color (" in query.stdout, query.stdout


def test_an_exemplar_prompt_added_later_is_segmented_alone(
    indexes, synthetic_corpus, synthetic_config, tmp_path
):
    from vidlake.model.prompts import parse_exemplars

    index = str(tmp_path / "idx")
    shutil.copytree(indexes["grown"], index)
    b = synthetic_corpus[1]
    mask = b.mask("green triangle", 10)  # video b shows the green triangle on frame 10
    ys, xs = mask.nonzero()
    box = f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}"
    prompts = parse_exemplars([f"{b.uri}:10:{box}"], names=["that triangle"])
    config = synthetic_config(synthetic_corpus, index, THREE)
    summary = run_index(dataclasses.replace(config, prompts=prompts))
    assert (summary.n_grown, summary.segmented_concepts) == (3, ["that triangle"])
    rows = masklets(index)
    assert [r for r in rows if r["concept"] != "that triangle"] == masklets(indexes["grown"])
    assert clip_sets(index, "that triangle") == clip_sets(indexes["reference"], "green triangle")
    assert len({r["masklet_id"] for r in rows}) == len(rows)
