"""The query-side indexes: built or refreshed at the end of each index job and by `reindex`.

- `concept_hits.concept`: a BITMAP scalar index (a concept lookup reads only its rows), plus the
  clip_id/masklet_id BTREEs that `IndexStore.build_indexes` makes.
- `tracks.concept`: a BITMAP too, the table clustered by concept like concept_hits (time and
  track queries read one concept's tracks). An index older than the table gets it first
  (`IndexStore.ensure_tracks`, from its masklets).
- `concepts`: one row per indexed concept (the vocabulary, and phrases verified at query time)
  with its clip count and all-MiniLM-L6-v2 text embedding; a full-text (INVERTED) index on the
  name and a vector index on the embedding find the neighbours of a phrase nobody indexed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidlake.store.schema import (
    CONCEPT_SOURCE_VERIFIED,
    CONCEPT_SOURCE_VOCABULARY,
    CONCEPTS,
    STATUS_INDEXED,
    now_utc,
)
from vidlake.store.tables import DATA_STORAGE_VERSION, IndexStore, table_uri

log = logging.getLogger(__name__)

# HNSW over IVF partitions: exact enough for thousands of names, and builds on a table of one row.
VECTOR_INDEX = "IVF_HNSW_SQ"
ROWS_PER_PARTITION = 4096
CLUSTERED_ROWS_PER_FILE = 1 << 26  # one file, so a clustered table is a single fragment


def refresh_indexes(store: IndexStore) -> None:
    """Builds every index queries use, covering all committed rows; works on an empty index."""
    store.ensure_tracks()
    cluster_concept_hits(store)
    cluster_by_concept(store, "tracks", ("video_id", "start_s"))
    store.build_indexes()
    refresh_concepts(store)


def cluster_concept_hits(store: IndexStore) -> bool:
    """Rewrites `concept_hits` sorted by concept (see `cluster_by_concept`)."""
    return cluster_by_concept(store, "concept_hits", ("clip_id",))


def cluster_by_concept(store: IndexStore, name: str, then: tuple[str, ...]) -> bool:
    """Rewrites table NAME sorted by concept, then THEN (one Lance Rewrite); False if already
    sorted by concept.

    The bitmap index finds a concept's rows in microseconds, but reading rows scattered over
    the table costs a page decode per row and column (~80 ms for 400 rows of 10M); clustered,
    they are one contiguous read (~3 ms). Jobs append per video, so each refresh re-sorts.
    It is a compaction-style Rewrite: appends committed meanwhile stay; a concurrent delete
    of the same rows makes the commit fail rather than lose it.
    """
    from lance.fragment import write_fragments

    ds = store.dataset(name)
    fragments = ds.get_fragments()
    if not fragments:
        return False
    if len(fragments) == 1:
        concepts = ds.to_table(columns=["concept"]).column("concept").combine_chunks()
        if len(concepts) < 2 or pc.all(pc.less_equal(concepts[:-1], concepts[1:])).as_py():
            return False
    table = ds.to_table().sort_by([("concept", "ascending"), *((c, "ascending") for c in then)])
    new = write_fragments(
        table,
        ds.uri,
        schema=ds.schema,
        max_rows_per_file=CLUSTERED_ROWS_PER_FILE,
        data_storage_version=DATA_STORAGE_VERSION,
        storage_options=store.storage_options,
    )
    group = lance.LanceOperation.RewriteGroup(
        old_fragments=[f.metadata for f in fragments], new_fragments=new
    )
    lance.LanceDataset.commit(
        ds.uri,
        lance.LanceOperation.Rewrite([group], []),
        read_version=ds.version,
        storage_options=store.storage_options,
    )
    log.info("clustered %s by concept: %d rows", name, table.num_rows)
    return True


def concepts_dataset(store: IndexStore) -> lance.LanceDataset:
    """The `concepts` table, created empty if the index predates it."""
    try:
        return store.dataset("concepts")
    except (ValueError, OSError, FileNotFoundError):
        return lance.write_dataset(
            CONCEPTS.empty_table(),
            table_uri(store.uri, "concepts"),
            mode="create",
            data_storage_version=DATA_STORAGE_VERSION,
            storage_options=store.storage_options,
        )


def concept_clip_counts(store: IndexStore) -> dict[str, int]:
    """{concept: clips with a hit} over videos with an `indexed` row."""
    hits = store.dataset("concept_hits").to_table(columns=["concept", "video_id"])
    if hits.num_rows == 0:
        return {}
    hits = hits.filter(pc.is_in(hits.column("video_id"), value_set=store.indexed_video_ids()))
    grouped = hits.group_by("concept").aggregate([("concept", "count")])
    return dict(
        zip(
            grouped.column("concept").to_pylist(),
            grouped.column("concept_count").to_pylist(),
            strict=True,
        )
    )


def indexed_vocabulary(store: IndexStore) -> dict[str, str]:
    """{concept: model_id} of every concept some indexed video was indexed with."""
    videos = store.dataset("videos").to_table(
        columns=["vocabulary", "model_id"], filter=f"status = '{STATUS_INDEXED}'"
    )
    out: dict[str, str] = {}
    for vocab, model in zip(
        videos.column("vocabulary").to_pylist(), videos.column("model_id").to_pylist(), strict=True
    ):
        for concept in vocab or []:
            out.setdefault(concept, model or "")
    return out


def needs_embeddings(store: IndexStore, concepts: list[str]) -> bool:
    """Whether some of CONCEPTS have no embedding in the `concepts` table yet."""
    ds = concepts_dataset(store)
    known = set(ds.to_table(columns=["concept"]).column("concept").to_pylist())
    return any(c not in known for c in concepts)


def refresh_concepts(store: IndexStore, encoder=None) -> int:
    """Rewrites `concepts` from the vocabulary, clip counts and verified phrases; returns rows.

    Embeddings already in the table are kept, so only new concepts load the text encoder.
    """
    ds = concepts_dataset(store)
    old = {r["concept"]: r for r in ds.to_table().to_pylist()}
    vocabulary = indexed_vocabulary(store)
    counts = concept_clip_counts(store)
    rows = []
    for concept, model in sorted(vocabulary.items()):
        prev = old.get(concept)
        rows.append(
            {
                "concept": concept,
                "embedding": prev["embedding"] if prev else None,
                "n_clips": counts.get(concept, 0),
                "source": CONCEPT_SOURCE_VOCABULARY,
                "model_id": model,
                "n_clips_checked": None,
                "updated_at": now_utc(),
            }
        )
    for concept, prev in sorted(old.items()):
        if concept not in vocabulary and prev["source"] == CONCEPT_SOURCE_VERIFIED:
            rows.append({**prev, "n_clips": counts.get(concept, 0)})
    _fill_embeddings(rows, encoder)
    if not rows and not old:
        return 0
    ds = lance.write_dataset(
        pa.Table.from_pylist(rows, schema=CONCEPTS),
        table_uri(store.uri, "concepts"),
        mode="overwrite",
        data_storage_version=DATA_STORAGE_VERSION,
        storage_options=store.storage_options,
    )
    _index_concepts(ds)
    log.info("concepts table: %d concepts", len(rows))
    return len(rows)


def is_recorded(store: IndexStore, concept: str) -> bool:
    """Whether CONCEPT has a row in `concepts` (indexed, or verified at query time)."""
    return concepts_dataset(store).count_rows(filter=f"concept = {_sql_str(concept)}") > 0


def record_verified(
    store: IndexStore,
    concept: str,
    *,
    n_clips: int,
    n_clips_checked: int,
    model_id: str,
    n_clips_unrecorded: int = 0,
) -> None:
    """Adds (or updates) a phrase verified at query time, so the next query is a lookup.

    N_CLIPS_CHECKED adds to the clips checked before. N_CLIPS_UNRECORDED: clips holding hits
    from an earlier attempt that was not recorded (some clips failed); they count as checked
    when the phrase is first recorded.
    """
    ds = concepts_dataset(store)
    prev = ds.to_table(filter=f"concept = {_sql_str(concept)}").to_pylist()
    before = (prev[0]["n_clips_checked"] or 0) if prev else n_clips_unrecorded
    checked = n_clips_checked + before
    row = {
        "concept": concept,
        "embedding": None,
        "n_clips": n_clips,
        "source": prev[0]["source"] if prev else CONCEPT_SOURCE_VERIFIED,
        "model_id": model_id,
        "n_clips_checked": checked,
        "updated_at": now_utc(),
    }
    _fill_embeddings([row])
    table = pa.Table.from_pylist([row], schema=CONCEPTS)
    ds.merge_insert("concept").when_matched_update_all().when_not_matched_insert_all().execute(
        table
    )
    _index_concepts(concepts_dataset(store))


def _fill_embeddings(rows: list[dict], encoder=None) -> None:
    missing = [r for r in rows if r["embedding"] is None]
    if not missing:
        return
    if encoder is None:
        from vidlake.query.text import text_encoder

        encoder = text_encoder()
    vectors = encoder.encode([r["concept"] for r in missing])
    for row, vec in zip(missing, vectors, strict=True):
        row["embedding"] = np.asarray(vec, np.float32).tolist()


def _index_concepts(ds: lance.LanceDataset) -> None:
    n = ds.count_rows()
    if n == 0:
        return
    ds.create_scalar_index("concept", "INVERTED", replace=True)
    ds.create_index(
        "embedding",
        VECTOR_INDEX,
        metric="cosine",
        num_partitions=max(1, n // ROWS_PER_PARTITION),
        replace=True,
    )


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    return ", ".join(_sql_str(v) for v in values)
