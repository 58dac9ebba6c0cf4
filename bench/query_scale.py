"""Query latency at archive scale: vidlake's indexed lookups vs DuckDB scanning the same rows.

Generates a synthetic index (no model): videos of 10 clips, masklets spread over the clips,
concepts drawn from a long-tailed distribution (p ∝ 1 / (rank + 10)), concept_hits grouped from
the masklets exactly as the index job groups them; builds the query indexes with
`refresh_indexes`; exports concept_hits and videos to Parquet; then times, in one run:

- lookup: `search(concept)` (a random concept, uniform over the vocabulary)
- filtered: `search(concept, min_score=0.5, between=(0, 300))`
- co-occurrence: `search(a, with_concepts=b)` for two concepts drawn from the 100 most common
  (so that the pair shares clips)
- then/within: `search(a, then=b, within=5)`, a and b from the 100 most common
- min-duration: `search(c, min_duration=2)`; region: `search(c, region=(0.5, 0.5, 1, 1))`
- stats: `stats(c)` (screen time, first/last, tracks, most at once per video)
- the same questions as DuckDB SQL over the Parquet files (a full scan each time).

Tracks: one per masklet (the generator does not stitch: a track is 1-3 sampled frames at
1 fps), with a box centre per frame near a random point and a random mask area per frame.

    .venv/bin/python bench/query_scale.py                # 1M clips, 10M masklets, 5,000 concepts
    .venv/bin/python bench/query_scale.py --small        # seconds; what the test runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vidlake.query.engine import ConceptIndex
from vidlake.query.indexes import refresh_indexes
from vidlake.store.schema import STATUS_INDEXED, TABLES
from vidlake.store.tables import DATA_STORAGE_VERSION, IndexStore, table_uri

CLIPS_PER_VIDEO = 10
CLIP_S = 10.0
WITHIN_S = 5.0
MIN_DURATION_S = 2.0
BATCH = 1_000_000

ADJECTIVES = (
    "red blue green yellow black white brown grey orange purple pink golden silver wooden "
    "metal plastic glass striped spotted small large tall short old new broken open closed "
    "wet dry shiny dusty parked moving running sitting standing flying floating burning "
    "folded empty full round square long narrow wide bright dark"
).split()
NOUNS = (
    "umbrella person dog cat car bus truck bicycle motorcycle boat train plane bird horse cow "
    "sheep bottle cup chair table sofa bed laptop phone book clock vase scissors bag backpack "
    "suitcase kite ball skateboard surfboard tennis racket bench tree flower door window sign "
    "lamp fence bridge tower road river mountain beach tent helmet jacket hat shoe glove "
    "banana apple orange pizza cake sandwich carrot broccoli bowl knife fork spoon oven sink "
    "fridge toilet television remote keyboard mouse camera drone robot ladder bucket barrel "
    "crate pallet forklift crane tractor excavator container flag balloon guitar piano drum "
    "statue fountain"
).split()


def concept_names(n: int) -> list[str]:
    names = [f"{a} {b}" for b in NOUNS for a in ADJECTIVES]
    names += [f"object kind {i}" for i in range(max(0, n - len(names)))]
    return names[:n]


def _ids(prefix: str, ints: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(
        pa.scalar(prefix),
        pc.utf8_lpad(pc.cast(pa.array(ints), pa.string()), width=12, padding="0"),
        "",
    )


def _lists(values: np.ndarray, lengths: np.ndarray, type_: pa.DataType) -> pa.Array:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type_))


def generate(uri: str, n_clips: int, n_masklets: int, n_concepts: int, seed: int = 0) -> dict:
    """Writes the synthetic index's tables under URI; returns what it wrote."""
    rng = np.random.default_rng(seed)
    store = IndexStore.create(uri)
    names = np.array(concept_names(n_concepts), dtype=object)
    n_videos = max(1, n_clips // CLIPS_PER_VIDEO)

    def write(table: str, data: pa.Table) -> None:
        lance.write_dataset(
            data,
            table_uri(store.uri, table),
            mode="append",
            data_storage_version=DATA_STORAGE_VERSION,
            max_rows_per_file=BATCH * 4,
        )

    video_ids = _ids("v", np.arange(n_videos))
    uris = pc.binary_join_element_wise(
        pa.scalar("s3://archive/cam"),
        pc.cast(pa.array(np.arange(n_videos) % 50), pa.string()),
        pa.scalar("/video"),
        pc.utf8_lpad(pc.cast(pa.array(np.arange(n_videos)), pa.string()), width=7, padding="0"),
        pa.scalar(".mp4"),
        "",
    )
    videos = {
        "video_id": video_ids,
        "uri": uris,
        "fingerprint": video_ids,
        "size_bytes": pa.array(np.full(n_videos, 10_000_000)),
        "duration_s": pa.array(np.full(n_videos, CLIP_S * CLIPS_PER_VIDEO)),
        "fps": pa.array(np.full(n_videos, 30.0)),
        "n_frames": pa.array(np.full(n_videos, 3000)),
        "width": pa.array(np.full(n_videos, 1280, np.int32)),
        "height": pa.array(np.full(n_videos, 720, np.int32)),
        "codec": pa.array(["h264"] * n_videos),
        "status": pa.array([STATUS_INDEXED] * n_videos),
        "error": pa.array([""] * n_videos),
        "model_id": pa.array(["facebook/sam3"] * n_videos),
        # The vocabulary is the whole concept list on every video: stored once, shared.
        "vocabulary": pa.ListArray.from_arrays(
            pa.array(np.zeros(n_videos + 1, np.int32)), pa.array([], pa.string())
        ),
        "vocabulary_hash": pa.array(["bench"] * n_videos),
        "n_clips": pa.array(np.full(n_videos, CLIPS_PER_VIDEO, np.int32)),
        "n_masklets": pa.array(np.zeros(n_videos, np.int32)),
        "run_id": pa.array(["bench"] * n_videos),
        "indexed_at": pa.array(np.full(n_videos, 0, "datetime64[us]")).cast(
            TABLES["videos"].field("indexed_at").type
        ),
        "vocabulary_keys": pa.nulls(n_videos, pa.list_(pa.string())),
        "pending_concepts": pa.nulls(n_videos, pa.list_(pa.string())),
    }
    videos_table = pa.table(videos, schema=TABLES["videos"])
    # One video carries the vocabulary, so `vocabulary()` and the concepts table know it.
    vocab = pa.array([list(names)], pa.list_(pa.string()))
    videos_table = videos_table.set_column(
        videos_table.schema.get_field_index("vocabulary"),
        "vocabulary",
        pa.concat_arrays([vocab, videos_table.column("vocabulary").combine_chunks()[1:]]),
    )

    # Masklets: clip of each, concept of each (long tail), 1-3 sampled frames of 10.
    p = 1.0 / (np.arange(n_concepts) + 10.0)
    p /= p.sum()
    n_hits = 0
    for start in range(0, n_clips, BATCH // 10):
        clips = np.arange(start, min(n_clips, start + BATCH // 10))
        share = int(round(n_masklets * len(clips) / n_clips))
        m_clip = np.sort(rng.choice(clips, size=share))
        m_concept = rng.choice(n_concepts, size=share, p=p)
        m_score = rng.uniform(0.3, 1.0, size=share).astype(np.float32)
        m_first = rng.integers(0, 8, size=share)
        m_len = rng.integers(1, 4, size=share)
        video = m_clip // CLIPS_PER_VIDEO
        clip_start = (m_clip % CLIPS_PER_VIDEO) * CLIP_S
        frames = np.concatenate([np.arange(f, f + n) for f, n in zip(m_first, m_len, strict=True)])
        clip_ids = _ids("c", m_clip)
        masklets = pa.table(
            {
                "masklet_id": _ids("m", np.arange(share) + start * 10),
                "clip_id": clip_ids,
                "video_id": _ids("v", video),
                "track_id": _ids("t", np.arange(share) + start * 10),
                "object_id": pa.array(np.zeros(share, np.int32)),
                "concept": pa.array(names[m_concept], pa.string()),
                "score": pa.array(m_score),
                "presence": pa.array(m_score),
                "first_s": pa.array(clip_start + m_first),
                "last_s": pa.array(clip_start + m_first + m_len - 1),
                "frame_idx": _lists(frames, m_len, pa.int32()),
                "boxes": pa.array([[]] * share, TABLES["masklets"].field("boxes").type),
                "scores": _lists(np.repeat(m_score, m_len), m_len, pa.float32()),
                "masks": pa.array([[]] * share, TABLES["masklets"].field("masks").type),
                "thumbnail": pa.array([b""] * share, pa.binary()),
            },
            schema=TABLES["masklets"],
        )
        write("masklets", masklets)
        write("tracks", _tracks(rng, masklets, uris, m_clip, clip_start + m_first, m_len))
        # concept_hits: one row per (clip, concept), as schema.clip_tables groups them.
        hits = (
            pa.table(
                {
                    "clip": m_clip,
                    "concept_i": m_concept,
                    "score": m_score,
                    "first_s": clip_start + m_first,
                    "last_s": clip_start + m_first + m_len - 1,
                }
            )
            .group_by(["clip", "concept_i"])
            .aggregate(
                [("score", "max"), ("score", "count"), ("first_s", "min"), ("last_s", "max")]
            )
        )
        h_clip = hits.column("clip").to_numpy()
        h_video = h_clip // CLIPS_PER_VIDEO
        h_start = (h_clip % CLIPS_PER_VIDEO) * CLIP_S
        hits_table = pa.table(
            {
                "concept": pa.array(names[hits.column("concept_i").to_numpy()], pa.string()),
                "clip_id": _ids("c", h_clip),
                "video_id": _ids("v", h_video),
                "video_uri": pc.take(uris, pa.array(h_video)),
                "n_objects": hits.column("score_count").cast(pa.int32()),
                "max_score": hits.column("score_max"),
                "max_presence": hits.column("score_max"),
                "start_s": hits.column("first_s_min"),
                "end_s": hits.column("last_s_max"),
                "clip_start_s": pa.array(h_start),
                "clip_end_s": pa.array(h_start + CLIP_S),
            },
            schema=TABLES["concept_hits"],
        )
        write("concept_hits", hits_table)
        n_hits += hits_table.num_rows
        clip_rows = pa.table(
            {
                "clip_id": _ids("c", clips),
                "video_id": _ids("v", clips // CLIPS_PER_VIDEO),
                "video_uri": pc.take(uris, pa.array(clips // CLIPS_PER_VIDEO)),
                "clip_index": pa.array((clips % CLIPS_PER_VIDEO).astype(np.int32)),
                "start_s": pa.array((clips % CLIPS_PER_VIDEO) * CLIP_S),
                "end_s": pa.array((clips % CLIPS_PER_VIDEO) * CLIP_S + CLIP_S),
                "sampled_fps": pa.array(np.ones(len(clips))),
                "n_frames": pa.array(np.full(len(clips), 10, np.int32)),
                "width": pa.array(np.full(len(clips), 1280, np.int32)),
                "height": pa.array(np.full(len(clips), 720, np.int32)),
                "frame_indices": pa.array([[]] * len(clips), pa.list_(pa.int64())),
                "frame_times_s": pa.array([[]] * len(clips), pa.list_(pa.float64())),
                "thumbnail": pa.array([b""] * len(clips), pa.binary()),
                "max_objects": pa.nulls(len(clips), pa.int32()),
                "at_object_cap": pa.array(np.zeros(len(clips), bool)),
            },
            schema=TABLES["clips"],
        )
        write("clips", clip_rows)
        print(f"  generated clips {clips[-1] + 1:,}/{n_clips:,}", flush=True)
    # The videos rows last: they are the commit markers.
    write("videos", videos_table)
    return {"videos": n_videos, "clips": n_clips, "masklets": n_masklets, "concept_hits": n_hits}


def _tracks(rng, masklets: pa.Table, uris: pa.Array, m_clip, first_s, m_len) -> pa.Table:
    """The `tracks` rows of MASKLETS, one track each (as `track_table` makes them)."""
    n = masklets.num_rows
    offsets = np.concatenate([[0], np.cumsum(m_len)])
    starts = offsets[:-1]
    times = np.repeat(first_s, m_len) + (np.arange(offsets[-1]) - np.repeat(starts, m_len))
    cx0, cy0 = rng.uniform(0.02, 0.98, n), rng.uniform(0.02, 0.98, n)
    jitter = rng.uniform(-0.02, 0.02, (2, offsets[-1]))
    cx = np.clip(np.repeat(cx0, m_len) + jitter[0], 0, 1).astype(np.float32)
    cy = np.clip(np.repeat(cy0, m_len) + jitter[1], 0, 1).astype(np.float32)
    area = rng.uniform(0.001, 0.3, offsets[-1]).astype(np.float32)
    end_s = first_s + m_len - 1

    def lists(values, type_):
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, type_))

    return pa.table(
        {
            "track_id": masklets.column("track_id"),
            "video_id": masklets.column("video_id"),
            "video_uri": pc.take(uris, pa.array(m_clip // CLIPS_PER_VIDEO)),
            "concept": masklets.column("concept"),
            "start_s": pa.array(first_s.astype(np.float64)),
            "end_s": pa.array(end_s.astype(np.float64)),
            "duration_s": pa.array((end_s - first_s).astype(np.float64)),
            "n_masklets": pa.array(np.ones(n, np.int32)),
            "n_frames": pa.array(m_len.astype(np.int32)),
            "max_score": masklets.column("score"),
            "max_presence": masklets.column("presence"),
            "max_area": pa.array(np.maximum.reduceat(area, starts)),
            "centre_x_min": pa.array(np.minimum.reduceat(cx, starts)),
            "centre_x_max": pa.array(np.maximum.reduceat(cx, starts)),
            "centre_y_min": pa.array(np.minimum.reduceat(cy, starts)),
            "centre_y_max": pa.array(np.maximum.reduceat(cy, starts)),
            "frame_times_s": lists(times.astype(np.float64), pa.float64()),
            "centres_x": lists(cx, pa.float32()),
            "centres_y": lists(cy, pa.float32()),
            "areas": lists(area, pa.float32()),
        },
        schema=TABLES["tracks"],
    )


def percentiles(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    p99 = s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]
    return statistics.median(s) * 1000, p99 * 1000


def timed(fn, args_list) -> tuple[list[float], list[int]]:
    times, sizes = [], []
    for args in args_list:
        t0 = time.perf_counter()
        n = fn(*args)
        times.append(time.perf_counter() - t0)
        sizes.append(n)
    return times, sizes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/vidlake-bench-query")
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--masklets", type=int, default=10_000_000)
    parser.add_argument("--concepts", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--small",
        action="store_true",
        help="Defaults of 20k clips, 200k masklets, 500 concepts, 30 queries.",
    )
    parser.add_argument("--reuse", action="store_true", help="Reuse an index already at --out.")
    parser.add_argument("--json", dest="json_out", help="Also write the results here.")
    if "--small" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(clips=20_000, masklets=200_000, concepts=500, queries=30)
    args = parser.parse_args(argv)
    out = Path(args.out)
    uri = str(out / "index")
    rng = np.random.default_rng(1)

    t0 = time.perf_counter()
    if not (args.reuse and (out / "index" / "videos.lance").exists()):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        print(f"generating {args.clips:,} clips, {args.masklets:,} masklets", flush=True)
        generate(uri, args.clips, args.masklets, args.concepts)
        gen_s = time.perf_counter() - t0
        # Parquet in arrival order, before vidlake clusters its table: what a scan sees.
        store = IndexStore.open(uri)
        for table in ("concept_hits", "videos", "tracks"):
            pq.write_table(store.dataset(table).to_table(), out / f"{table}.parquet")
        t1 = time.perf_counter()
        refresh_indexes(store)
        index_s = time.perf_counter() - t1
    else:
        gen_s = index_s = 0.0
    store = IndexStore.open(uri)
    counts = store.counts()

    engine = ConceptIndex.open(uri)
    t1 = time.perf_counter()
    engine.committed_video_ids()
    open_s = time.perf_counter() - t1
    names = concept_names(args.concepts)
    common = names[:100]
    singles = [(names[i],) for i in rng.integers(0, len(names), args.queries)]
    pairs = [tuple(rng.choice(common, 2, replace=False)) for _ in range(args.queries)]

    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads TO {os.cpu_count() or 1}")
    hits_pq = str(out / "concept_hits.parquet")
    videos_pq = str(out / "videos.parquet")
    # The same question: committed videos only, best score first.
    base = (
        f"FROM read_parquet('{hits_pq}') h WHERE h.video_id IN "
        f"(SELECT video_id FROM read_parquet('{videos_pq}') WHERE status = 'indexed')"
    )

    def lance_lookup(c):
        return engine.search(c, limit=None).num_rows

    def lance_filtered(c):
        return engine.search(c, min_score=0.5, between=(0, 300), limit=None).num_rows

    def lance_cooc(a, b):
        return engine.search(a, with_concepts=b, limit=None).num_rows

    region = (0.5, 0.5, 1.0, 1.0)

    def lance_then(a, b):
        return engine.search(a, then=b, within=WITHIN_S, limit=None).num_rows

    def lance_duration(c):
        return engine.search(c, min_duration=MIN_DURATION_S, limit=None).num_rows

    def lance_region(c):
        return engine.search(c, region=region, limit=None).num_rows

    def lance_stats(c):
        return engine.stats(c).videos.num_rows

    tracks_pq = str(out / "tracks.parquet")
    committed = (
        f"video_id IN (SELECT video_id FROM read_parquet('{videos_pq}') WHERE status = 'indexed')"
    )

    def duck_then(a, b):
        q = (
            f"SELECT a.track_id, b.track_id FROM read_parquet('{tracks_pq}') a "
            f"JOIN read_parquet('{tracks_pq}') b ON a.video_id = b.video_id "
            f"WHERE a.concept = ? AND b.concept = ? AND a.{committed} "
            f"AND b.start_s - a.start_s BETWEEN 0 AND {WITHIN_S} AND a.track_id <> b.track_id"
        )
        return len(con.execute(q, [a, b]).fetchall())

    def duck_duration(c):
        q = (
            f"SELECT track_id, start_s, end_s FROM read_parquet('{tracks_pq}') "
            f"WHERE concept = ? AND duration_s >= {MIN_DURATION_S} AND {committed}"
        )
        return len(con.execute(q, [c]).fetchall())

    def duck_region(c):
        x0, y0, x1, y1 = region
        q = (
            f"SELECT track_id FROM read_parquet('{tracks_pq}') WHERE concept = ? AND {committed} "
            "AND list_bool_or(list_transform(generate_series(1, len(centres_x)), lambda "
            f"i: centres_x[i] BETWEEN {x0} AND {x1} AND centres_y[i] BETWEEN {y0} AND {y1}))"
        )
        return len(con.execute(q, [c]).fetchall())

    def duck_stats(c):
        q = f"""
            WITH t AS (
                SELECT * FROM read_parquet('{tracks_pq}') WHERE concept = $1 AND {committed}
            ), spans AS (
                SELECT video_id, start_s, end_s, max(end_s) OVER (
                    PARTITION BY video_id ORDER BY start_s, end_s
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach FROM t
            ), per_video AS (
                SELECT video_id, min(start_s) AS first_s, max(end_s) AS last_s, count(*) AS n,
                    sum(greatest(0, end_s - greatest(start_s, coalesce(reach, start_s))))
                        AS screen_s
                FROM spans GROUP BY video_id
            ), at_once AS (
                SELECT video_id, max(n) AS most FROM (
                    SELECT video_id, f, count(*) AS n
                    FROM (SELECT video_id, unnest(frame_times_s) AS f FROM t) GROUP BY ALL
                ) GROUP BY video_id
            )
            SELECT * FROM per_video JOIN at_once USING (video_id)
        """
        return len(con.execute(q, [c]).fetchall())

    def duck_lookup(c):
        q = f"SELECT clip_id, max_score {base} AND h.concept = ? ORDER BY max_score DESC"
        return len(con.execute(q, [c]).fetchall())

    def duck_filtered(c):
        q = (
            f"SELECT clip_id, max_score {base} AND h.concept = ? AND h.max_score >= 0.5 "
            "AND h.start_s <= 300 AND h.end_s >= 0 ORDER BY max_score DESC"
        )
        return len(con.execute(q, [c]).fetchall())

    def duck_cooc(a, b):
        q = (
            f"SELECT h.clip_id, h.max_score {base} AND h.concept = ? AND h.clip_id IN "
            f"(SELECT clip_id FROM read_parquet('{hits_pq}') WHERE concept = ?) "
            "ORDER BY h.max_score DESC"
        )
        return len(con.execute(q, [a, b]).fetchall())

    # Warm both (file metadata, page cache) before timing.
    for fn, qs in (
        (lance_lookup, singles[:3]),
        (duck_lookup, singles[:3]),
        (lance_cooc, pairs[:3]),
        (duck_cooc, pairs[:3]),
    ):
        timed(fn, qs)
    results = {}
    kinds = (
        ("concept lookup", lance_lookup, duck_lookup, singles),
        ("filtered lookup", lance_filtered, duck_filtered, singles),
        ("co-occurrence", lance_cooc, duck_cooc, pairs),
        ("then within 5 s", lance_then, duck_then, pairs),
        ("min duration 2 s", lance_duration, duck_duration, singles),
        ("region", lance_region, duck_region, singles),
        ("stats", lance_stats, duck_stats, singles),
    )
    for _, lance_fn, duck_fn, qs in kinds[3:]:  # warm the track queries too
        timed(lance_fn, qs[:3])
        timed(duck_fn, qs[:3])
    for name, lance_fn, duck_fn, qs in kinds:
        lt, ln = timed(lance_fn, qs)
        dt, dn = timed(duck_fn, qs)
        if ln != dn:
            raise SystemExit(f"{name}: vidlake and DuckDB disagree on row counts")
        lp50, lp99 = percentiles(lt)
        dp50, dp99 = percentiles(dt)
        results[name] = {
            "vidlake_p50_ms": round(lp50, 2),
            "vidlake_p99_ms": round(lp99, 2),
            "duckdb_p50_ms": round(dp50, 2),
            "duckdb_p99_ms": round(dp99, 2),
            "speedup_p50": round(dp50 / lp50, 1),
            "median_rows": int(statistics.median(ln)),
        }
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rows": counts,
        "concepts": args.concepts,
        "queries_per_kind": args.queries,
        "generate_s": round(gen_s, 1),
        "refresh_indexes_s": round(index_s, 1),
        "open_s": round(open_s, 3),
        "results": results,
    }
    print(f"\n{report['command']}\n{report['machine']}; rows {counts}")
    print(f"generate {gen_s:.0f} s, refresh_indexes {index_s:.0f} s, open {open_s * 1000:.0f} ms")
    header = f"{'query':<17} {'vidlake p50':>11} {'p99':>8} {'DuckDB p50':>11} {'p99':>8} {'x':>6}"
    print(header)
    for name, r in results.items():
        print(
            f"{name:<17} {r['vidlake_p50_ms']:>9.1f}ms {r['vidlake_p99_ms']:>6.1f}ms "
            f"{r['duckdb_p50_ms']:>9.1f}ms {r['duckdb_p99_ms']:>6.1f}ms {r['speedup_p50']:>5.1f}x"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
