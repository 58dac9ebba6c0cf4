"""The index's write protocol on real Lance tables: fragments are invisible until committed,
orphans of a killed job are removed, and a newer schema is refused."""

from __future__ import annotations

import lance
import pyarrow as pa
import pytest

from vidlake.errors import IndexNotFoundError, VidlakeError
from vidlake.store import schema
from vidlake.store.tables import IndexStore, table_uri, write_fragments
from vidlake.synthetic.records import clip_result, indexed_row


def test_clip_tables_hold_one_hit_per_concept():
    tables = schema.clip_tables(clip_result("v1", 0), [b"crop"])
    hit = tables["concept_hits"].to_pylist()[0]
    assert hit["n_objects"] == 1 and hit["max_score"] == pytest.approx(0.8)
    assert hit["max_presence"] == pytest.approx(0.9)
    assert (hit["start_s"], hit["end_s"]) == (0.0, 0.5)
    assert tables["masklets"].column("boxes").to_pylist()[0][1] == [3, 2, 7, 5]


def test_fragments_are_invisible_until_committed_and_orphans_are_deleted(tmp_path):
    store = IndexStore.create(str(tmp_path / "idx"))
    done = write_fragments(store.uri, schema.clip_tables(clip_result("done", 0)))
    killed = write_fragments(store.uri, schema.clip_tables(clip_result("killed", 0)))
    assert store.counts()["clips"] == 0  # written, not committed
    for table in ("clips", "masklets", "concept_hits"):
        store.commit_fragments(table, [done[table], killed[table]])
    store.upsert_videos([indexed_row("done")])  # "killed" never got its commit marker
    assert store.counts()["clips"] == 2
    assert store.delete_orphans() == 1
    assert store.dataset("clips").to_table().column("video_id").to_pylist() == ["done"]
    assert store.counts()["masklets"] == 1 and store.counts()["concept_hits"] == 1


def test_upsert_replaces_the_video_row(tmp_path):
    store = IndexStore.create(str(tmp_path / "idx"))
    store.upsert_videos([indexed_row("v")])
    failed = indexed_row("v") | {"status": schema.STATUS_FAILED, "error": "boom"}
    store.upsert_videos([failed])
    rows = store.videos().to_pylist()
    assert len(rows) == 1 and rows[0]["status"] == "failed"


def test_tables_use_lances_current_format(tmp_path):
    store = IndexStore.create(str(tmp_path / "idx"))
    for name in schema.TABLES:
        assert store.dataset(name).data_storage_version != "0.1"  # not the legacy v1 format


def test_not_an_index_and_newer_schema_are_refused(tmp_path):
    with pytest.raises(IndexNotFoundError, match=r"not a vidlake index \(no such folder\)"):
        IndexStore.open(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexNotFoundError, match=r"not a vidlake index \(no videos table\)"):
        IndexStore.open(str(tmp_path / "empty"))
    store = IndexStore.create(str(tmp_path / "idx"))
    newer = schema.VIDEOS.with_metadata({schema.SCHEMA_VERSION_KEY: b"99"})
    lance.write_dataset(newer.empty_table(), table_uri(store.uri, "videos"), mode="overwrite")
    with pytest.raises(VidlakeError, match="newer"):
        IndexStore.open(store.uri)
    plain = pa.table({"x": [1]})
    lance.write_dataset(plain, table_uri(store.uri, "videos"), mode="overwrite")
    with pytest.raises(IndexNotFoundError):
        IndexStore.open(store.uri)


def test_an_index_uri_with_one_slash_is_refused_not_made_a_local_folder(tmp_path, monkeypatch):
    from vidlake.errors import UsageError

    monkeypatch.chdir(tmp_path)
    for make in (IndexStore.create, IndexStore.open):
        with pytest.raises(UsageError, match=r"one slash after 's3:': write s3://bucket/idx"):
            make("s3:/bucket/idx")
    assert not list(tmp_path.iterdir())
    # The way out the message names: a local folder whose name has a colon.
    assert IndexStore.create("./s3:/bucket/idx").uri == str(tmp_path / "s3:" / "bucket" / "idx")


def test_an_index_from_before_the_added_columns_gains_them_empty(tmp_path):
    from vidlake.pipeline.plan import vocabulary_keys

    added = {"vocabulary_keys", "pending_concepts", "not_videos", "segmented_concepts"}
    uri = str(tmp_path / "idx")
    row = indexed_row("old")
    for name, full in schema.TABLES.items():
        older = pa.schema([f for f in full if f.name not in added], metadata=full.metadata)
        rows = [{k: v for k, v in row.items() if k in older.names}] if name == "videos" else []
        lance.write_dataset(pa.Table.from_pylist(rows, schema=older), table_uri(uri, name))
    store = IndexStore.create(uri)
    assert store.dataset("videos").schema == schema.TABLES["videos"]
    assert store.dataset("runs").schema == schema.TABLES["runs"]
    (old,) = store.videos().to_pylist()
    assert old["vocabulary_keys"] is None and old["pending_concepts"] is None
    assert vocabulary_keys(old) == ["dog"]  # text concepts: the names are the keys
    store.upsert_videos([indexed_row("new")])
    assert store.counts()["videos"] == 2
