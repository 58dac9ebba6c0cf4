"""Query-time verification: the segmenter, prompted with the exact phrase, on candidate clips.

A small Ray Data plan over the index job's stages (decode on CPU tasks, segment on an actor
pool with one GPU per actor where the cluster has GPUs, write fragments on tasks); the driver
commits the new masklets and concept_hits as one Append each and records the phrase in
`concepts` as verified. `videos.vocabulary` is left alone: changing it would make the next
index job redo every video.
"""

from __future__ import annotations

import logging
import pickle
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from vidlake.errors import UsageError
from vidlake.records import stable_id
from vidlake.store.schema import STATUS_INDEXED, masklet_summaries, track_table
from vidlake.store.tables import IndexStore, write_fragments

log = logging.getLogger(__name__)

VERIFIED_TABLES = ("masklets", "tracks", "concept_hits")


@dataclass
class VerifyResult:
    """What verification did: clips checked, clips where the phrase was found, failures.

    `recorded`: whether the phrase is now recorded as verified (a lookup for later queries);
    not when a clip failed on a phrase never recorded before, so a later verification retries.
    """

    phrase: str
    model_id: str
    n_clips_checked: int = 0
    n_clips_found: int = 0
    n_masklets: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (clip_id, error)
    recorded: bool = False


def _sql_list(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def clip_rows(store: IndexStore, clip_ids: list[str], skip_concept: str | None = None) -> list:
    """Rows for the Ray plan (stages.spec_to_row's columns, plus clip_id and max_side).

    Clips already holding hits of SKIP_CONCEPT are left out, so verifying twice adds no
    duplicates. max_side is the clip's stored frame size, so masks match the indexed frames.
    """
    ids = sorted(set(clip_ids))
    if not ids:
        return []
    committed = set(store.indexed_video_ids().to_pylist())
    done: set[str] = set()
    rows = []
    for start in range(0, len(ids), 1000):
        chunk = _sql_list(ids[start : start + 1000])
        if skip_concept is not None:
            hits = store.dataset("concept_hits").to_table(
                columns=["clip_id"],
                filter=f"concept = '{skip_concept.replace(chr(39), chr(39) * 2)}'"
                f" AND clip_id IN ({chunk})",
            )
            done.update(hits.column("clip_id").to_pylist())
        clips = store.dataset("clips").to_table(
            columns=[
                "clip_id",
                "video_id",
                "video_uri",
                "clip_index",
                "start_s",
                "end_s",
                "sampled_fps",
                "frame_indices",
                "frame_times_s",
                "width",
                "height",
            ],  # fmt: skip
            filter=f"clip_id IN ({chunk})",
        )
        for r in clips.to_pylist():
            if r["video_id"] not in committed or r["clip_id"] in done:
                continue
            rows.append(
                {
                    "clip_id": r["clip_id"],
                    "video_id": r["video_id"],
                    "video_uri": r["video_uri"],
                    "clip_index": r["clip_index"],
                    "start_s": r["start_s"],
                    "end_s": r["end_s"],
                    "sampled_fps": r["sampled_fps"],
                    "frame_indices": r["frame_indices"],
                    "times_s": r["frame_times_s"],
                    "max_side": max(int(r["width"] or 0), int(r["height"] or 0)),
                }
            )
    return rows


def recorded_model(store: IndexStore, video_ids: list[str]) -> str:
    """The model most of these videos were indexed with (videos.model_id)."""
    if not video_ids:
        raise UsageError("no candidate clips to verify on")
    videos = store.dataset("videos").to_table(
        columns=["video_id", "model_id"], filter=f"status = '{STATUS_INDEXED}'"
    )
    videos = videos.filter(pc.is_in(videos.column("video_id"), value_set=pa.array(video_ids)))
    models = Counter(m for m in videos.column("model_id").to_pylist() if m)
    if not models:
        raise UsageError("the candidate clips' videos record no model; pass --model")
    return models.most_common(1)[0][0]


def decode_stage(row: dict[str, Any], storage_options: dict | None = None) -> dict[str, Any]:
    """stages.decode_row at the clip's stored frame size."""
    from vidlake.pipeline import stages

    return stages.decode_row(row, storage_options=storage_options, max_side=row["max_side"] or None)


def write_verified(
    row: dict[str, Any], index_uri: str, storage_options: dict | None = None
) -> dict[str, Any]:
    """Writes a verified clip's masklets and concept_hits as uncommitted fragments.

    The clip's `clips` row exists already, so it is not written again; masklet and track ids
    get the phrase in them, since the segmenter numbers objects per session and would reuse
    the ids of the masklets the index job stored for the same clip.
    """
    out = {k: row[k] for k in ("video_id", "clip_index", "error")} | {"fatal": row.get("fatal", "")}
    if row["error"]:
        return {**out, "fragments": b"", "n_masklets": 0, "n_hits": 0}
    tables = pickle.loads(row["tables"])
    masklets = tables["masklets"]
    if masklets.num_rows:
        ids = [
            stable_id("masklet", clip, "verified", concept, obj)
            for clip, concept, obj in zip(
                masklets.column("clip_id").to_pylist(),
                masklets.column("concept").to_pylist(),
                masklets.column("object_id").to_pylist(),
                strict=True,
            )
        ]
        tracks = [
            stable_id("track", v, m)
            for v, m in zip(masklets.column("video_id").to_pylist(), ids, strict=True)
        ]
        masklets = masklets.set_column(
            masklets.schema.get_field_index("masklet_id"), "masklet_id", pa.array(ids)
        )
        masklets = masklets.set_column(
            masklets.schema.get_field_index("track_id"), "track_id", pa.array(tracks)
        )
    # Each verified masklet is a track of its own (verification sees single clips, unstitched).
    tracks = track_table(masklet_summaries(masklets, tables["clips"]))
    written = {"masklets": masklets, "tracks": tracks, "concept_hits": tables["concept_hits"]}
    fragments = write_fragments(index_uri, written, storage_options)
    return {
        **out,
        "fragments": pickle.dumps(fragments),
        "n_masklets": masklets.num_rows,
        "n_hits": tables["concept_hits"].num_rows,
    }


def verify_phrase(
    store: IndexStore,
    phrase: str,
    clip_ids: list[str],
    *,
    model: str | None = None,
    device: str = "auto",
    address: str | None = None,
    num_actors: int | None = None,
) -> VerifyResult:
    """Segments CLIP_IDS with PHRASE and commits what is found; see the module docstring."""
    import ray
    from ray.data import ActorPoolStrategy

    from vidlake.model import check_model
    from vidlake.pipeline import stages
    from vidlake.pipeline.index_job import init_ray, stream_rows

    store.ensure_tracks()  # an index older than the tracks table gets it before new rows
    rows = clip_rows(store, clip_ids, skip_concept=phrase)
    if model is None:
        model = recorded_model(store, sorted({r["video_id"] for r in rows} or set(clip_ids)))
    check_model(model)
    result = VerifyResult(phrase=phrase, model_id=model)
    opts = store.storage_options
    if rows:
        # None: an embedded Ray, even where another cluster is running on this machine.
        init_ray(address)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        resources = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 0.5}
        ds = (
            ray.data.from_items(rows, override_num_blocks=len(rows))
            .map(decode_stage, fn_kwargs={"storage_options": opts}, num_cpus=1)
            .map(
                stages.SegmentStage,
                fn_constructor_kwargs={
                    "model": model,
                    "concepts": (phrase,),
                    "device": device,
                    "load_errors_as_rows": True,
                },
                compute=ActorPoolStrategy(min_size=1, max_size=num_actors or max(1, gpus)),
                **resources,
            )
            .map(
                write_verified,
                fn_kwargs={"index_uri": store.uri, "storage_options": opts},
                num_cpus=0.25,
            )
        )
        written = stream_rows(ds)
    else:
        written = iter(())
    return commit_verified(store, phrase, written, result)


def commit_verified(
    store: IndexStore, phrase: str, written: Iterable[dict], result: VerifyResult
) -> VerifyResult:
    """Commits the fragments of verified clips (rows of `write_verified`) and records PHRASE.

    Masklets land first and concept_hits last: hits are what lookups find. The phrase is
    recorded as verified once every candidate clip was checked, even when no clip shows it, so
    the next query knows it was checked. When a clip failed (its video moved away, say), the
    hits found are committed but the phrase is not recorded: it stays a non-indexed phrase, and
    the next verification checks the failed clips (and those where nothing was found) again.
    A phrase recorded before stays recorded, with its counts updated. With no clip checked
    (every candidate already verified, or none given) nothing is recorded.
    """
    from vidlake.query.indexes import is_recorded, record_verified

    pending: dict[str, list[bytes]] = {t: [] for t in VERIFIED_TABLES}
    for row in written:
        result.n_clips_checked += 1
        if row["error"]:
            result.failures.append((f"{row['video_id']}#{row['clip_index']}", row["error"]))
            continue
        result.n_masklets += int(row["n_masklets"])
        result.n_clips_found += int(row["n_hits"] > 0)
        for table, blob in pickle.loads(row["fragments"]).items():
            pending[table].append(blob)
    for table in VERIFIED_TABLES:
        store.commit_fragments(table, pending[table])
    if result.n_masklets:
        for table in VERIFIED_TABLES:
            store.dataset(table).optimize.optimize_indices()
    recorded_before = is_recorded(store, phrase)
    if not result.n_clips_checked:
        # Nothing was looked at: recording the phrase would make it a lookup with no hits and
        # hide the nearest concepts' clips, which are what a later verification checks.
        result.recorded = recorded_before
        return result
    if result.failures and not recorded_before:
        log.info(
            "%r not recorded as verified: %d of %d clips failed",
            phrase,
            len(result.failures),
            result.n_clips_checked,
        )
        return result
    n_clips = committed_clips_with(store, phrase)
    record_verified(
        store,
        phrase,
        n_clips=n_clips,
        n_clips_checked=result.n_clips_checked,
        model_id=result.model_id,
        # Hits not found now came from an attempt that had failures and was not recorded.
        n_clips_unrecorded=n_clips - result.n_clips_found,
    )
    result.recorded = True
    log.info(
        "verified %r with %s on %d clips: found in %d",
        phrase,
        result.model_id,
        result.n_clips_checked,
        result.n_clips_found,
    )
    return result


def committed_clips_with(store: IndexStore, phrase: str) -> int:
    """Clips with a committed hit of PHRASE (an index lookup, not a scan)."""
    hits = store.dataset("concept_hits").to_table(
        columns=["video_id"], filter=f"concept = '{phrase.replace(chr(39), chr(39) * 2)}'"
    )
    committed = store.indexed_video_ids()
    return int(pc.sum(pc.is_in(hits.column("video_id"), value_set=committed)).as_py() or 0)
