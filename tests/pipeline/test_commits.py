"""The driver's commits of finished videos on real Lance tables: grouped when commits are slow,
each video all or nothing, stitched track ids applied, and the key indexes kept current so a
commit's cost does not grow with what the job has written."""

from __future__ import annotations

from vidlake.pipeline import commits
from vidlake.pipeline.commits import VideoCommitter
from vidlake.store import schema
from vidlake.store.tables import IndexStore, write_fragments
from vidlake.synthetic.records import clip_result, indexed_row


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def queue_video(store: IndexStore, committer: VideoCommitter, video_id: str) -> str:
    """Writes one clip's fragments and queues the video; returns its masklet's id."""
    tables = schema.clip_tables(clip_result(video_id, 0), [b"crop"])
    masklet_id = tables["masklets"].column("masklet_id")[0].as_py()
    blobs = write_fragments(store.uri, tables)
    committer.add(
        indexed_row(video_id),
        {table: [blob] for table, blob in blobs.items()},
        {masklet_id: f"track-of-{video_id}"},
    )
    return masklet_id


def committed(store: IndexStore) -> dict[str, str]:
    """masklet_id -> track_id of the committed masklets of indexed videos."""
    indexed = set(store.indexed_video_ids().to_pylist())
    rows = store.dataset("masklets").to_table(columns=["video_id", "masklet_id", "track_id"])
    return {r["masklet_id"]: r["track_id"] for r in rows.to_pylist() if r["video_id"] in indexed}


def test_slow_commits_group_the_videos_that_finish_meanwhile(tmp_path):
    store = IndexStore.create(str(tmp_path / "idx"))
    clock = FakeClock()
    upsert = store.upsert_videos

    def slow_upsert(rows):  # an object store where a commit takes 1 s
        clock.t += 1.0
        upsert(rows)

    store.upsert_videos = slow_upsert
    committer = VideoCommitter(store, max_share=0.2, clock=clock)

    queue_video(store, committer, "v0")
    assert committer.due()
    committer.maybe_commit()  # 1 s: the next commit waits 4 s
    assert committer.n_commits == 1 and committer.commit_s == 1.0
    ids = [queue_video(store, committer, f"v{i}") for i in range(1, 4)]
    clock.t += 3.9
    committer.maybe_commit()
    assert committer.pending == 3 and not committed(store).keys() & set(ids)
    clock.t += 0.1
    committer.maybe_commit()  # one commit for the three videos
    assert committer.n_commits == 2 and committer.pending == 0
    tracks = committed(store)
    assert {tracks[m] for m in ids} == {"track-of-v1", "track-of-v2", "track-of-v3"}
    assert len(tracks) == 4


def test_fast_commits_commit_each_video_as_it_finishes(tmp_path):
    store = IndexStore.create(str(tmp_path / "idx"))
    committer = VideoCommitter(store)  # real clock: local commits take milliseconds
    for i in range(3):
        queue_video(store, committer, f"v{i}")
        committer.commit()
        assert len(committed(store)) == i + 1
    assert committer.n_commits == 3 and committer.pending == 0
    committer.commit()  # nothing queued: no empty commit
    assert committer.n_commits == 3


def test_key_indexes_follow_the_written_fragments(tmp_path, monkeypatch):
    monkeypatch.setattr(commits, "FRAGMENTS_PER_INDEX_UPDATE", 3)
    store = IndexStore.create(str(tmp_path / "idx"))
    committer = VideoCommitter(store)
    for i in range(7):
        queue_video(store, committer, f"v{i}")
        committer.commit()
        masklets = store.dataset("masklets")
        stats = masklets.stats.index_stats("masklet_id_idx")
        # created at the first commit, then brought up to date every third fragment
        assert stats["num_unindexed_fragments"] == i % 3, i
        assert store.dataset("videos").stats.index_stats("video_id_idx")["num_indexed_rows"]
    tracks = committed(store)
    assert sorted(tracks.values()) == sorted(f"track-of-v{i}" for i in range(7))


def test_tracks_rows_are_committed_before_the_video_row(tmp_path):
    """A video's `tracks` rows land in the same commit, before its commit marker: a crash
    between the two leaves tracks that no query sees (no `indexed` row) and a job deletes."""
    store = IndexStore.create(str(tmp_path / "idx"))
    tables = schema.clip_tables(clip_result("v0", 0), [b"crop"])
    clips = tables["clips"]
    summaries = schema.masklet_summaries(tables["masklets"], clips)
    track_rows = schema.track_table(summaries)
    assert track_rows.num_rows == tables["masklets"].num_rows
    order = []
    for name in ("append_rows", "upsert_videos"):
        real = getattr(store, name)

        def spy(*args, _real=real, _name=name):
            order.append(_name if _name == "upsert_videos" else args[0])
            return _real(*args)

        setattr(store, name, spy)
    committer = VideoCommitter(store)
    blobs = write_fragments(store.uri, tables)
    committer.add(indexed_row("v0"), {t: [b] for t, b in blobs.items()}, {}, track_rows)
    committer.commit()
    assert order == ["tracks", "upsert_videos"]
    stored = store.dataset("tracks").to_table().to_pylist()
    masklet = tables["masklets"].to_pylist()[0]
    times = clips.column("frame_times_s")[0].as_py()
    assert {r["track_id"] for r in stored} == set(tables["masklets"].column("track_id").to_pylist())
    first = next(r for r in stored if r["track_id"] == masklet["track_id"])
    assert first["frame_times_s"] == [times[i] for i in masklet["frame_idx"]]
    assert (first["start_s"], first["end_s"]) == (masklet["first_s"], masklet["last_s"])
    store.delete_orphans()  # v0 is committed: its tracks stay
    assert store.dataset("tracks").count_rows() == track_rows.num_rows
    store.delete_videos(["v0"])
    assert store.dataset("tracks").count_rows() == 0
