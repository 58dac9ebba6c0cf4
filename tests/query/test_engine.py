"""Concept search over a real index of the synthetic corpus: exact outcomes against ground truth."""

from __future__ import annotations

import lance
import numpy as np
import pytest
from query_truth import truth_clips, visible

from vidlake.errors import IndexNotFoundError, UsageError, VidlakeError
from vidlake.query.engine import ConceptIndex, Query
from vidlake.query.indexes import refresh_indexes
from vidlake.store.tables import IndexStore


@pytest.fixture(scope="module")
def engine(query_index):
    return ConceptIndex.open(query_index.uri)


def test_lookup_returns_exactly_the_clips_showing_the_concept(engine, query_index):
    hits = engine.search("Red  Square", limit=None)
    assert set(hits.column("clip_id").to_pylist()) == truth_clips(
        query_index, engine, ("red square",)
    )
    assert hits.num_rows == len(set(hits.column("clip_id").to_pylist()))


def test_co_occurrence_same_clip_and_same_frame(engine, query_index):
    both = ("red square", "blue circle")
    same_clip = engine.search("red square", with_concepts="blue circle", limit=None)
    expected = truth_clips(query_index, engine, both)
    assert set(same_clip.column("clip_id").to_pylist()) == expected
    same_frame = engine.search(
        "red square", with_concepts=["blue circle"], same_frame=True, limit=None
    )
    expected_frame = truth_clips(query_index, engine, both, same_frame=True)
    assert set(same_frame.column("clip_id").to_pylist()) == expected_frame
    # d_apart shows both shapes in one clip, never in one frame: the two answers differ there.
    apart = {c for c in expected - expected_frame}
    assert apart and all("d_apart" in u for u in _uris(engine, apart))


def _uris(engine, clip_ids):
    return engine.clips(sorted(clip_ids)).column("video_uri").to_pylist()


def test_between_video_and_min_count_filter_exactly(engine, query_index):
    all_hits = engine.search("blue circle", limit=None).to_pylist()
    hits = engine.search("blue circle", between=(2.0, 3.0), limit=None).to_pylist()
    expected = {h["clip_id"] for h in all_hits if h["start_s"] <= 3.0 and h["end_s"] >= 2.0}
    assert {h["clip_id"] for h in hits} == expected
    assert 0 < len(expected) < len(all_hits)
    # Ground truth: each returned clip shows the circle at a sampled time inside the range.
    clips = {c["clip_id"]: c for c in engine.clips(sorted(expected)).to_pylist()}
    for clip_id in expected:
        clip = clips[clip_id]
        video = query_index.videos[clip["video_uri"]]
        times = [
            t
            for f, t in zip(clip["frame_indices"], clip["frame_times_s"], strict=True)
            if visible(video, "blue circle", f)
        ]
        assert min(times) <= 3.0 and max(times) >= 2.0

    only_c = engine.search("blue circle", videos="*c_all_four*", limit=None)
    assert set(only_c.column("video_uri").to_pylist()) == {
        u for u in query_index.videos if u.endswith("c_all_four.mp4")
    }
    assert only_c.num_rows == sum(h["video_uri"].endswith("c_all_four.mp4") for h in all_hits)
    # The colour segmenter finds one object per concept per clip.
    assert engine.search("blue circle", min_count=1, limit=None).num_rows == len(all_hits)
    assert engine.search("blue circle", min_count=2, limit=None).num_rows == 0


def test_order_by_time_and_limit(engine):
    by_time = engine.search("blue circle", order_by="time", limit=None).to_pylist()
    keys = [(h["video_uri"], h["start_s"]) for h in by_time]
    assert keys == sorted(keys)
    assert engine.search("blue circle", limit=2).num_rows == 2


def test_unindexed_phrase_gives_nearest_concepts_as_candidates(engine):
    assert not engine.is_indexed("crimson square")
    assert engine.search("crimson square").num_rows == 0
    candidates = engine.candidates("crimson square")
    assert candidates[0].concept == "red square"
    assert candidates[0].text_match and candidates[0].n_clips > 0
    clips = engine.candidate_clips(candidates[:1], limit=None)
    assert set(clips.column("clip_id").to_pylist()) == set(
        engine.search("red square", limit=None).column("clip_id").to_pylist()
    )


def test_an_index_version_without_concepts_has_no_candidates_and_loads_no_encoder(
    query_index, monkeypatch
):
    import vidlake.query.text as text

    def no_encoder():
        raise AssertionError("the text encoder was loaded (~7 s) with nothing to compare")

    monkeypatch.setattr(text, "text_encoder", no_encoder)
    first = ConceptIndex.open(query_index.uri, as_of=1)  # the videos table's first version
    assert first.vocabulary() == []
    assert first.candidates("red square") == []


@pytest.mark.parametrize("phrase", ["", "   ", "?!.", "--"])
def test_phrase_without_words_is_a_usage_error(engine, phrase):
    with pytest.raises(UsageError):
        engine.search(phrase)


def test_bad_filters_are_usage_errors(engine):
    with pytest.raises(UsageError, match="after"):
        engine.search("red square", between=(3.0, 1.0))
    with pytest.raises(UsageError, match="within needs then"):
        engine.search("red square", within=1.0)
    with pytest.raises(UsageError):
        engine.search("red square", min_count=0)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((None,), {}, "phrase must be a string, got None"),
        ((123,), {}, "phrase must be a string, got 123"),
        ((), {"between": 5}, "between must be (start_s, end_s), got 5"),
        ((), {"between": (1,)}, "between must be (start_s, end_s), got (1,)"),
        ((), {"between": ("a", 2)}, "between must be a number, got 'a'"),
        ((), {"between": (5, 1)}, "between start 5.0 is after end 1.0"),
        ((), {"limit": "5"}, "limit must be a whole number, got '5'"),
        ((), {"limit": 2.5}, "limit must be a whole number, got 2.5"),
        ((), {"limit": 0}, "limit must be >= 1, got 0"),
        ((), {"min_count": 1.5}, "min_count must be a whole number, got 1.5"),
        ((), {"min_score": "a"}, "min_score must be a number, got 'a'"),
        ((), {"min_score": float("nan")}, "min_score must be a finite number, got nan"),
        ((), {"min_presence": True}, "min_presence must be a number, got True"),
        ((), {"min_score": 1.5}, "min_score must be between 0 and 1"),
        ((), {"videos": [1]}, "videos must be a string or a list of strings, got [1]"),
        ((), {"with_concepts": [None]}, "with_concepts must be a string or a list of strings"),
        ((), {"with_concepts": 7}, "with_concepts must be a string or a list of strings, got 7"),
        ((), {"same_frame": "yes"}, "same_frame must be True or False, got 'yes'"),
        ((), {"within": 1.0}, "within needs then, the phrase that follows"),
        ((), {"then": "blue circle", "within": -1}, "within must be >= 0 seconds, got -1"),
        ((), {"min_duration": "long"}, "min_duration must be a number, got 'long'"),
        ((), {"region": (0, 0, 1)}, "region must be (x0, y0, x1, y1) from 0 to 1"),
        ((), {"order_by": None}, "order_by must be one of score, time, got None"),
    ],
)
def test_search_arguments_are_checked_by_name(engine, args, kwargs, message):
    """The Python API's errors name its own arguments (not CLI flags), never a raw TypeError."""
    with pytest.raises(UsageError) as info:
        engine.search(*(args or ("red square",)), **kwargs)
    assert message in str(info.value)
    assert "--" not in str(info.value)


def test_not_an_index_and_newer_schema_are_refused(tmp_path, query_index, index_copy):
    with pytest.raises(IndexNotFoundError):
        ConceptIndex.open(str(tmp_path / "nothing"))
    ds = lance.dataset(f"{index_copy.uri}/videos.lance")
    table = ds.to_table()
    newer = table.replace_schema_metadata({b"vidlake.schema_version": b"999"})
    lance.write_dataset(newer, ds.uri, mode="overwrite")
    with pytest.raises(VidlakeError, match="newer"):
        ConceptIndex.open(index_copy.uri)


def test_refresh_indexes_on_an_empty_index(tmp_path):
    store = IndexStore.create(str(tmp_path / "empty"))
    refresh_indexes(store)
    engine = ConceptIndex.open(store.uri)
    assert engine.search("red square").num_rows == 0
    assert engine.info().counts["concepts"] == 0


def test_as_of_reads_the_index_as_it_was(index_copy):
    engine = ConceptIndex.open(index_copy.uri)
    latest = engine.info()
    assert latest.version == lance.dataset(f"{index_copy.uri}/videos.lance").version
    # Version 1 is the empty videos table: nothing was committed yet.
    assert ConceptIndex.open(index_copy.uri, as_of=1).search("red square").num_rows == 0
    with pytest.raises(UsageError):
        ConceptIndex.open(index_copy.uri, as_of=latest.version + 5)
    # Rows deleted after version V are still there as of V.
    before = engine.search("red square", limit=None).num_rows
    IndexStore.open(index_copy.uri).dataset("concept_hits").delete("concept = 'red square'")
    assert ConceptIndex.open(index_copy.uri).search("red square").num_rows == 0
    pinned = ConceptIndex.open(index_copy.uri, as_of=latest.version)
    assert pinned.search("red square", limit=None).num_rows == before


def test_info_counts_vocabulary_and_version(engine):
    info = engine.info()
    assert info.vocabulary["red square"] == engine.search("red square", limit=None).num_rows
    assert info.vocabulary["purple hexagon"] == 0
    assert info.counts["concepts"] == 3
    assert np.all([v >= 1 for v in info.versions.values()])


def test_candidates_get_every_filter_a_phrase_gets(engine):
    def ids(table) -> set[str]:
        return set(table.column("clip_id").to_pylist())

    filters = dict(videos="*c_all_four*", between=(0.0, 3.0), with_concepts="blue circle")
    clips = engine.candidate_clips(["red square"], limit=None, **filters)
    assert ids(clips) == ids(engine.search("red square", limit=None, **filters))
    assert 0 < clips.num_rows < engine.candidate_clips(["red square"], limit=None).num_rows
    assert engine.candidate_clips(["red square"], limit=None, min_count=2).num_rows == 0
    same_frame = engine.candidate_clips(
        ["red square"], limit=None, with_concepts="blue circle", same_frame=True
    )
    expected = engine.search("red square", with_concepts="blue circle", same_frame=True)
    assert ids(same_frame) == ids(expected)
    # "score": the nearest candidate's clips first; "time": by video, then start, then cut.
    both = ["red square", "blue circle"]
    by_time = engine.candidate_clips(both, limit=None, order_by="time").to_pylist()
    keys = [(r["video_uri"], r["start_s"]) for r in by_time]
    assert keys == sorted(keys) and {r["concept"] for r in by_time} == set(both)
    first = engine.candidate_clips(both, limit=3, order_by="time").to_pylist()
    assert first == by_time[:3]


def test_a_with_phrase_nobody_indexed_is_an_error_naming_it(engine):
    with pytest.raises(UsageError) as info:
        engine.search("red square", with_concepts="crimson circle")
    message = str(info.value)
    assert message.startswith("with_concepts 'crimson circle' is not an indexed concept (nearest: ")
    assert "blue circle" in message
    with pytest.raises(UsageError, match="with_concepts 'crimson circle'"):
        engine.candidate_clips(["red square"], with_concepts="crimson circle")
    # Indexed with no hits ("purple hexagon") is an answer, not an error.
    assert engine.search("red square", with_concepts="purple hexagon").num_rows == 0


def test_query_names_its_arguments_as_the_caller_does():
    flags = {"min_score": "--min-score", "limit": "--limit", "order_by": "--order"}
    flags |= {"min_count": "--min-count", "between": "--between"}
    for kwargs, message in [
        ({"min_score": 2}, "--min-score must be between 0 and 1 (scores are), got 2.0"),
        ({"limit": 0}, "--limit must be >= 1, got 0"),
        ({"order_by": "foo"}, "--order must be one of score, time, got 'foo'"),
        ({"min_count": 0}, "--min-count must be >= 1, got 0"),
        ({"between": (5, 2)}, "--between start 5.0 is after end 2.0"),
        ({"min_presence": 2}, "min_presence must be between 0 and 1"),  # not renamed
    ]:
        with pytest.raises(UsageError) as info:
            Query(phrase="red square", names=flags, **kwargs)
        assert str(info.value).startswith(message), str(info.value)
