"""Time and track queries over a real index of the synthetic corpus: the exact videos, tracks
and times each returns, against the shapes' ground truth."""

from __future__ import annotations

import shutil
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest
from query_truth import truth_tracks

from vidlake.errors import UsageError
from vidlake.query.engine import ConceptIndex
from vidlake.query.indexes import refresh_indexes
from vidlake.store.schema import STATUS_INDEXED, TABLES, track_table
from vidlake.store.tables import IndexStore, table_uri


@pytest.fixture(scope="module")
def engine(query_index):
    return ConceptIndex.open(query_index.uri)


def _name(uri: str) -> str:
    return Path(uri).stem


def _key(row: dict) -> tuple:
    return (_name(row["video_uri"]), round(row["start_s"], 6), round(row["end_s"], 6))


def _truth_key(track: dict) -> tuple:
    return (_name(track["video"]), round(track["start_s"], 6), round(track["end_s"], 6))


def test_tracks_are_stitched_across_clips_with_exact_times(engine, query_index):
    for concept in ("red square", "blue circle"):
        truth = truth_tracks(query_index, engine, concept)
        found = engine.search(concept, min_duration=0, limit=None).to_pylist()
        assert sorted(_key(r) for r in found) == sorted(_truth_key(t) for t in truth)
        for r in found:
            assert r["duration_s"] == pytest.approx(r["end_s"] - r["start_s"])
    # e_twice: the square leaves and comes back, two tracks; the second spans two clips.
    twice = [
        _key(r) for r in engine.search("red square", min_duration=0, videos="*e_twice*").to_pylist()
    ]
    assert sorted(twice) == [("e_twice", 0.0, 1.25), ("e_twice", 3.5, 4.75)]


def test_min_duration_gives_exactly_the_long_tracks(engine, query_index):
    truth = truth_tracks(query_index, engine, "red square")
    for seconds in (0.5, 1.0, 3.75, 4.0):
        found = engine.search("red square", min_duration=seconds, limit=None).to_pylist()
        expected = {_truth_key(t) for t in truth if t["end_s"] - t["start_s"] >= seconds}
        assert {_key(r) for r in found} == expected
    assert {
        _name(r["video_uri"]) for r in engine.search("red square", min_duration=1.0).to_pylist()
    } == {
        "a_red_first_half",
        "c_all_four",
        "e_twice",
    }


def _centre(video, shape_concept: str, frame: int) -> tuple[float, float]:
    mask = video.mask(shape_concept, frame)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    cx = (cols[0] + cols[-1] + 1) / 2 / video.width
    cy = (rows[0] + rows[-1] + 1) / 2 / video.height
    return cx, cy


def test_region_and_min_area_match_the_drawn_shapes(engine, query_index):
    region = (0.5, 0.5, 1.0, 1.0)
    found = engine.search("red square", region=region, limit=None).to_pylist()
    expected = set()
    for t in truth_tracks(query_index, engine, "red square"):
        video = query_index.videos[t["video"]]
        centres = [_centre(video, "red square", f) for f, _ in t["frames"]]
        if any(0.5 <= x <= 1 and 0.5 <= y <= 1 for x, y in centres):
            expected.add(_truth_key(t))
    assert {_key(r) for r in found} == expected
    assert {k[0] for k in expected} == {"e_twice"}  # the only square in the bottom right
    # A string region as the HTTP API and CLI take it.
    assert engine.search("red square", region="0.5,0.5,1,1", limit=None).num_rows == len(found)

    for area in (0.02, 0.05):
        found = engine.search("red square", min_area=area, limit=None).to_pylist()
        expected = set()
        for t in truth_tracks(query_index, engine, "red square"):
            video = query_index.videos[t["video"]]
            largest = max(video.mask("red square", f).sum() for f, _ in t["frames"])
            if largest / (video.width * video.height) >= area:
                expected.add(_truth_key(t))
        assert {_key(r) for r in found} == expected
    # Sizes 36 and 34 cover 0.068 and 0.060 of the frame, 30 and 24: 0.047 and 0.030.
    assert {_key(r)[0] for r in engine.search("red square", min_area=0.05).to_pylist()} == {
        "a_red_first_half",
        "c_all_four",
    }


def test_then_within_pairs_tracks_per_video(engine, query_index):
    reds = truth_tracks(query_index, engine, "red square")
    blues = truth_tracks(query_index, engine, "blue circle")
    for within in (0.0, 0.5, 1.0, 3.0):
        found = engine.search("red square", then="blue circle", within=within, limit=None)
        got = {
            (_name(r["video_uri"]), tuple(r["starts_s"]), tuple(r["ends_s"]))
            for r in found.to_pylist()
        }
        expected = {
            (_name(a["video"]), (a["start_s"], b["start_s"]), (a["end_s"], b["end_s"]))
            for a in reds
            for b in blues
            if a["video"] == b["video"] and 0 <= b["start_s"] - a["start_s"] <= within
        }
        assert got == expected, within
        for r in found.to_pylist():
            assert r["concepts"] == ["red square", "blue circle"]
            assert r["start_s"] == r["starts_s"][0]
    # d_apart: the circle comes 1 s after the square; e_twice: 2 s after the first square.
    names = {
        _name(r["video_uri"])
        for r in engine.search("red square", then="blue circle", within=1.0).to_pylist()
    }
    assert "d_apart" in names and "e_twice" not in names
    names = {
        _name(r["video_uri"])
        for r in engine.search("red square", then="blue circle", within=2.0).to_pylist()
    }
    assert "e_twice" in names


def test_then_sequence_of_three(engine):
    # e_twice: square at 0, circle at 2, square again at 3.5; the same square never twice.
    found = engine.search(
        "red square", then=["blue circle", "red square"], within=2.0, limit=None
    ).to_pylist()
    assert [(_name(r["video_uri"]), r["starts_s"]) for r in found] == [("e_twice", [0.0, 2.0, 3.5])]
    assert len(set(found[0]["track_ids"])) == 3
    assert not engine.search("red square", then=["blue circle", "red square"], within=1.0).num_rows


def test_same_frame_count_over_the_whole_video(engine, query_index):
    found = engine.search("red square", same_frame=True, order_by="time", limit=None).to_pylist()
    truth = truth_tracks(query_index, engine, "red square")
    expected = {}
    for t in truth:
        expected.setdefault(_name(t["video"]), set()).update(time for _, time in t["frames"])
    assert {_name(r["video_uri"]): set(r["times_s"]) for r in found} == expected
    for r in found:
        assert r["n_objects"] == 1  # the colour segmenter finds one object per concept
        assert r["start_s"] == min(r["times_s"]) and r["end_s"] == max(r["times_s"])
    assert not engine.search("red square", same_frame=True, min_count=2).num_rows


def test_stats_screen_time_per_video(engine, query_index):
    stats = engine.stats("red square")
    truth = truth_tracks(query_index, engine, "red square")
    per_video = {}
    for t in truth:
        v = per_video.setdefault(_name(t["video"]), {"time": 0.0, "tracks": 0, "first": 99.0})
        v["time"] += t["end_s"] - t["start_s"]
        v["tracks"] += 1
        v["first"] = min(v["first"], t["start_s"])
    rows = {_name(r["video_uri"]): r for r in stats.videos.to_pylist()}
    assert set(rows) == set(per_video)
    for name, v in per_video.items():
        assert rows[name]["screen_time_s"] == pytest.approx(v["time"])
        assert rows[name]["n_tracks"] == v["tracks"]
        assert rows[name]["first_s"] == v["first"]
        assert rows[name]["max_at_once"] == 1
    assert rows["e_twice"]["screen_time_s"] == pytest.approx(2.5)
    assert rows["e_twice"]["last_s"] == 4.75
    assert stats.n_videos == len(per_video)
    assert stats.n_tracks == len(truth)
    assert stats.screen_time_s == pytest.approx(sum(v["time"] for v in per_video.values()))
    assert stats.to_dict()["totals"]["tracks"] == len(truth)


def test_sql_sees_committed_rows_of_every_table(engine, query_index):
    n = engine.sql("SELECT count(*) AS n FROM tracks WHERE concept = 'red square'")
    assert n.column("n").to_pylist() == [len(truth_tracks(query_index, engine, "red square"))]
    joined = engine.sql(
        "SELECT v.uri, count(*) AS n FROM tracks t JOIN videos v USING (video_id) "
        "WHERE t.concept = 'blue circle' GROUP BY v.uri ORDER BY v.uri"
    ).to_pylist()
    blues = truth_tracks(query_index, engine, "blue circle")
    assert {r["uri"]: r["n"] for r in joined} == {
        u: sum(t["video"] == u for t in blues) for u in {t["video"] for t in blues}
    }
    for table in TABLES:
        engine.sql(f"SELECT * FROM {table} LIMIT 1")
    with pytest.raises(UsageError, match="^sql: "):
        engine.sql("SELECT * FROM nonsense")


def test_bad_track_options_name_the_option(engine):
    cases = [
        ({"within": 2.0}, "within needs then"),
        ({"then": "blue circle"}, "then needs within"),
        ({"min_duration": -1.0}, "min_duration must be >= 0"),
        ({"region": (0.5, 0.5, 1.5, 1.0)}, "region 0.5,0.5,1.5,1 is outside the frame"),
        ({"region": "0.1,0.2,0.3"}, "region must be x0,y0,x1,y1"),
        ({"min_area": 2.0}, "min_area must be from 0 to 1"),
        ({"then": "green dragon", "within": 1.0}, "then 'green dragon' is not an indexed"),
        ({"with_concepts": "blue circle", "min_duration": 1.0}, "with_concepts finds clips"),
    ]
    for kwargs, message in cases:
        with pytest.raises(UsageError, match=message):
            engine.search("red square", **kwargs)


def test_index_without_tracks_table_says_reindex_and_reindex_builds_it(
    query_index, engine, tmp_path
):
    copy = tmp_path / "old"
    shutil.copytree(query_index.uri, copy)
    shutil.rmtree(copy / "tracks.lance")
    old = ConceptIndex.open(str(copy))
    assert old.search("red square").num_rows  # clip lookups work as before
    with pytest.raises(UsageError, match=r"has no tracks table .*run `vidlake reindex"):
        old.search("red square", min_duration=1.0)
    store = IndexStore.open(str(copy))
    refresh_indexes(store)  # what `vidlake reindex` runs: builds it from the masklets
    migrated = ConceptIndex.open(str(copy)).search("red square", min_duration=0, limit=None)
    fresh = engine.search("red square", min_duration=0, limit=None)
    assert sorted(map(_key, migrated.to_pylist())) == sorted(map(_key, fresh.to_pylist()))


def test_frames_count_reaches_n_on_the_exact_frames(tmp_path):
    """Two and three objects at once, from tracks rows written by hand."""
    store = IndexStore.create(str(tmp_path / "idx"))

    def summary(track, video, times, concept="person"):
        return {
            "masklet_id": track,
            "video_id": video,
            "video_uri": f"/v/{video}.mp4",
            "track_id": track,
            "first_s": times[0],
            "last_s": times[-1],
            "concept": concept,
            "score": 0.9,
            "presence": 0.9,
            "frame_times_s": times,
            "centres_x": [0.5] * len(times),
            "centres_y": [0.5] * len(times),
            "areas": [0.1] * len(times),
        }

    from vidlake.store.schema import MASKLET_SUMMARY

    rows = [
        summary("t1", "v1", [0.0, 0.5, 1.0, 1.5]),
        summary("t2", "v1", [0.5, 1.0]),
        summary("t3", "v1", [1.0, 1.5, 2.0]),
        summary("t4", "v2", [0.0, 0.5]),
        summary("t5", "v2", [1.0, 1.5]),
        summary("t6", "v3", [0.0, 0.5]),  # v3 is not committed: never seen
        summary("t7", "v3", [0.0, 0.5]),
    ]
    store.append_rows("tracks", track_table(pa.Table.from_pylist(rows, schema=MASKLET_SUMMARY)))
    videos = [{"video_id": v, "uri": f"/v/{v}.mp4", "status": STATUS_INDEXED} for v in ("v1", "v2")]
    lance.write_dataset(
        pa.Table.from_pylist(videos, schema=TABLES["videos"]),
        table_uri(store.uri, "videos"),
        mode="append",
    )
    refresh_indexes(store)
    engine = ConceptIndex(store)
    engine.is_indexed = lambda phrase: True  # no vocabulary rows in this hand-made index
    two = engine.search("person", same_frame=True, min_count=2, limit=None).to_pylist()
    assert [(r["video_id"], r["n_objects"], r["times_s"]) for r in two] == [
        ("v1", 3, [0.5, 1.0, 1.5])
    ]
    three = engine.search("person", same_frame=True, min_count=3, limit=None).to_pylist()
    assert [(r["video_id"], r["times_s"]) for r in three] == [("v1", [1.0])]
    stats = {r["video_id"]: r for r in engine.stats("person").videos.to_pylist()}
    assert set(stats) == {"v1", "v2"}
    assert stats["v1"]["screen_time_s"] == 2.0 and stats["v1"]["max_at_once"] == 3
    assert stats["v2"]["screen_time_s"] == 1.0 and stats["v2"]["max_at_once"] == 1
    assert [r["n"] for r in engine.sql("SELECT count(*) AS n FROM tracks").to_pylist()] == [5]
    # A track of the phrase starting 0 to 0.5 s after another's start (t4 -> t5 is 1 s).
    pairs = engine.search("person", then="person", within=0.5, limit=None).to_pylist()
    assert sorted((r["track_ids"][0], r["track_ids"][1]) for r in pairs) == [
        ("t1", "t2"),
        ("t2", "t3"),
    ]
    assert [
        r["track_ids"]
        for r in engine.search("person", then="person", within=1.0).to_pylist()
        if r["video_id"] == "v2"
    ] == [["t4", "t5"]]
