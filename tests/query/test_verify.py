"""Query-time verification on a local Ray: the exact phrase on candidate clips, then a lookup."""

from __future__ import annotations

import pickle

from query_truth import truth_clips

from vidlake.query.engine import ConceptIndex


def test_verify_adds_hits_that_the_next_query_finds_by_lookup(ray_local, index_copy):
    engine = ConceptIndex.open(index_copy.uri)
    version = engine.version
    assert not engine.is_indexed("green triangle")
    candidates = engine.candidates("green triangle")
    candidate_clips = set(
        engine.candidate_clips(candidates, limit=None).column("clip_id").to_pylist()
    )
    result = engine.verify("green triangle", candidates=candidates, max_clips=1000)
    assert result.model_id == "synthetic:color"
    assert result.n_clips_checked == len(candidate_clips)
    expected = truth_clips(index_copy, engine, ("green triangle",)) & candidate_clips
    assert expected and result.n_clips_found == len(expected)

    again = ConceptIndex.open(index_copy.uri)
    assert again.is_indexed("green triangle")
    assert again.verified() == {"green triangle": len(candidate_clips)}
    hits = again.search("green triangle", limit=None)
    assert set(hits.column("clip_id").to_pylist()) == expected
    # The masks are real: a masklet per verified clip, with one RLE per present frame.
    masklets = again.masklets(sorted(expected), ["green triangle"]).to_pylist()
    assert len(masklets) == len(expected)
    assert all(len(m["masks"]) == len(m["frame_idx"]) > 0 for m in masklets)
    # Each verified masklet is a track of its own (unstitched), with the masklet's times.
    tracks = again.search("green triangle", min_duration=0, limit=None).to_pylist()
    assert sorted((t["track_id"], t["start_s"], t["end_s"]) for t in tracks) == sorted(
        (m["track_id"], m["first_s"], m["last_s"]) for m in masklets
    )
    # The vocabulary (what index jobs compare) is untouched; as-of the old version, nothing.
    assert "green triangle" not in again.vocabulary()
    assert ConceptIndex.open(index_copy.uri, as_of=version).search("green triangle").num_rows == 0
    # Verifying again checks no clip twice and adds no duplicate rows.
    again.verify("green triangle", candidates=candidates, max_clips=1000)
    assert again.search("green triangle", limit=None).num_rows == len(expected)


def test_a_failed_clip_leaves_the_phrase_unverified_until_a_retry_checks_it(index_copy):
    from vidlake.query.verify import VerifyResult, commit_verified

    engine = ConceptIndex.open(index_copy.uri)
    failed = {"video_id": "v", "clip_index": 0, "error": "video not found: /moved.mp4"}
    result = commit_verified(
        engine.store, "green triangle", [failed], VerifyResult("green triangle", "synthetic:color")
    )
    assert result.failures == [("v#0", "video not found: /moved.mp4")]
    assert not result.recorded
    again = ConceptIndex.open(index_copy.uri)
    assert not again.is_indexed("green triangle") and again.verified() == {}
    # A commit that checked no clip records nothing either.
    none = commit_verified(
        again.store, "green triangle", [], VerifyResult("green triangle", "synthetic:color")
    )
    assert none.n_clips_checked == 0 and not none.recorded
    assert not ConceptIndex.open(index_copy.uri).is_indexed("green triangle")
    # The retry checks the clip that failed; with no failure the phrase is recorded.
    checked = {**failed, "error": "", "fragments": pickle.dumps({}), "n_masklets": 0, "n_hits": 0}
    retry = commit_verified(
        again.store, "green triangle", [checked], VerifyResult("green triangle", "synthetic:color")
    )
    assert retry.recorded
    assert ConceptIndex.open(index_copy.uri).is_indexed("green triangle")
