"""What an index job does to each listed video: skip it, (re)index it whole, or segment only the
concepts it lacks; and how a video's vocabulary changes safely.

A video is redone whole when it is new, changed (fingerprint), on another model or clip
settings, or failed after probing (a decode or model failure may be transient). A video whose
probe failed (not a video, empty, no video stream) is not retried until the file changes. An
indexed video whose vocabulary lacks some of the job's entries gets only those segmented
(`VideoPlan.added`); its other rows stay as they are. With `--prune-concepts`, entries the job
does not name are deleted from it; otherwise a smaller vocabulary changes nothing.

Crash safety: a video's row is the commit marker of its concepts too. Before a job writes
rows of a concept to (or deletes them from) an indexed video, it lists the concept in the
row's `pending_concepts`; readers hide a video's rows of its pending concepts, and the row
that ends the change clears them. A job that dies in between leaves them pending: the next job
over that video first deletes their rows and drops them from the vocabulary
(`recover_pending`), then plans as usual, so it redoes exactly what was not committed and no
row is duplicated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from vidlake.config import IndexConfig
from vidlake.records import VideoSource
from vidlake.store import schema
from vidlake.store.tables import IndexStore

# The options that decide what a video's clips and masklets are, besides model and vocabulary.
CLIP_SETTINGS = ("clip_seconds", "fps", "overlap_s", "max_side", "max_objects")


def clip_settings(config: IndexConfig | dict) -> tuple:
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key)
    return tuple(get(key) for key in CLIP_SETTINGS)


@dataclass
class VideoPlan:
    """An indexed video that gains concepts: ADDED names are segmented on its clips, starting
    object ids at OBJECT_OFFSET; ROW is its `videos` row as it was."""

    source: VideoSource
    added: list[str]
    added_keys: list[str]
    object_offset: int
    row: dict


@dataclass
class TodoPlan:
    """select_todo's answer. todo: videos indexed whole; stale: ids whose old rows go first;
    adding: video_id -> VideoPlan; skipped: nothing to do; failed_unchanged: probe failures
    of files that have not changed (not retried); pruned: video_id -> concept names deleted."""

    todo: list[VideoSource] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    adding: dict[str, VideoPlan] = field(default_factory=dict)
    skipped: list[VideoSource] = field(default_factory=list)
    failed_unchanged: list[VideoSource] = field(default_factory=list)
    pruned: dict[str, list[str]] = field(default_factory=dict)

    @property
    def segmented_concepts(self) -> list[str]:
        """Concepts segmented on videos indexed before (runs.segmented_concepts)."""
        return sorted({c for plan in self.adding.values() for c in plan.added})


def _run_settings(store: IndexStore, run_ids: set[str]) -> dict[str, tuple]:
    """run_id -> the clip settings its job ran with, from the `runs` table."""
    if not run_ids:
        return {}
    runs = store.dataset("runs").to_table(columns=["run_id", "arguments"]).to_pylist()
    return {
        r["run_id"]: clip_settings(json.loads(r["arguments"]))
        for r in runs
        if r["run_id"] in run_ids
    }


def vocabulary_keys(row: dict) -> list[str] | None:
    """The keys of a video row's vocabulary entries (parallel to `vocabulary`); for a row
    written before they were recorded, its names when they are all it was hashed from (text
    concepts only), else None (an exemplar prompt's definition is not known)."""
    if row.get("vocabulary_keys") is not None:
        return list(row["vocabulary_keys"])
    names = list(row.get("vocabulary") or [])
    return names if row.get("vocabulary_hash") == schema.vocabulary_hash(names) else None


def _probe_failed(row: dict) -> bool:
    """A failed row whose video could not be probed (no stream information recorded), of a
    file that exists: a property of the file, which a rerun would only fail again."""
    return row["status"] == schema.STATUS_FAILED and row["duration_s"] is None


def select_todo(store: IndexStore, sources: list[VideoSource], config: IndexConfig) -> TodoPlan:
    """What to do to each of SOURCES (see the module docstring)."""
    vocab_hash = schema.vocabulary_hash(config.vocabulary_key())
    columns = [
        "video_id", "fingerprint", "status", "model_id", "vocabulary", "vocabulary_hash",
        "vocabulary_keys", "run_id", "duration_s",
    ]  # fmt: skip
    existing = {r["video_id"]: r for r in store.videos(columns=columns).to_pylist()}
    settings = _run_settings(store, {r["run_id"] for r in existing.values()})
    wanted_settings = clip_settings(config)
    wanted = dict(zip(config.vocabulary_key(), config.vocabulary, strict=True))  # key -> name
    plan = TodoPlan()
    adding: list[tuple[VideoSource, list[str], list[str]]] = []
    for src in sources:
        old = existing.get(src.video_id)
        same_file = old is not None and old["fingerprint"] == src.fingerprint
        if same_file and _probe_failed(old) and src.version != "missing":
            plan.failed_unchanged.append(src)
            continue
        if not (
            same_file
            and old["status"] == schema.STATUS_INDEXED
            and old["model_id"] == config.model
            # A run killed before its runs row left no settings: its videos are kept.
            and settings.get(old["run_id"], wanted_settings) == wanted_settings
        ):
            if old is not None:
                plan.stale.append(src.video_id)
            plan.todo.append(src)
            continue
        keys = vocabulary_keys(old)
        if keys is None:  # an older row with exemplar prompts: only the whole hash compares
            if old["vocabulary_hash"] == vocab_hash:
                plan.skipped.append(src)
            else:
                plan.stale.append(src.video_id)
                plan.todo.append(src)
            continue
        names = dict(zip(keys, old["vocabulary"] or [], strict=False))  # key -> name
        added = [k for k in wanted if k not in names]
        if config.prune_concepts:
            removed = [names[k] for k in names if k not in wanted]
            # A prompt redefined under its old name is replaced (added), not pruned.
            removed = [n for n in removed if n not in {wanted[k] for k in added}]
            if removed:
                plan.pruned[src.video_id] = removed
        if added:
            adding.append((src, [wanted[k] for k in added], added))
        else:
            plan.skipped.append(src)
    if adding:
        offsets = store.next_object_ids(src.video_id for src, _, _ in adding)
        rows = {r["video_id"]: r for r in store.video_rows(src.video_id for src, _, _ in adding)}
        for src, names, keys in adding:
            plan.adding[src.video_id] = VideoPlan(
                src, names, keys, offsets[src.video_id], rows[src.video_id]
            )
    return plan


def recover_pending(store: IndexStore, video_ids: list[str]) -> int:
    """Finishes the vocabulary changes a killed job left on these videos: rows of their
    pending concepts are deleted and the concepts dropped from the vocabulary (a later plan
    adds them again if the job wants them). Returns how many videos had any."""
    ids = set(video_ids)
    pending = store.dataset("videos").to_table(
        filter=f"status = '{schema.STATUS_INDEXED}' AND array_length(pending_concepts) > 0"
    )
    rows = [r for r in pending.to_pylist() if r["video_id"] in ids]
    if not rows:
        return 0
    store.delete_concepts({r["video_id"]: list(r["pending_concepts"]) for r in rows})
    store.upsert_videos([without_concepts(r, r["pending_concepts"]) for r in rows])
    return len(rows)


def without_concepts(row: dict, names: list[str]) -> dict:
    """ROW with NAMES dropped from its vocabulary (and keys), and nothing pending."""
    keys = vocabulary_keys(row) or list(row["vocabulary"] or [])
    kept = [(n, k) for n, k in zip(row["vocabulary"] or [], keys, strict=False) if n not in names]
    return {
        **row,
        "vocabulary": [n for n, _ in kept],
        "vocabulary_keys": [k for _, k in kept],
        "vocabulary_hash": schema.vocabulary_hash([k for _, k in kept]),
        "pending_concepts": [],
    }


def mark_pending(store: IndexStore, plan: TodoPlan) -> None:
    """Lists the concepts the job is about to add to or prune from indexed videos as pending
    (hidden from readers until the video's next row), then deletes the rows they may already
    have: verified at query time, or left by a killed job."""
    pending = {vid: list(p.added) for vid, p in plan.adding.items()}
    for vid, names in plan.pruned.items():
        pending[vid] = [*pending.get(vid, []), *names]
    if not pending:
        return
    rows = store.video_rows(pending)
    store.upsert_videos([{**r, "pending_concepts": pending[r["video_id"]]} for r in rows])
    store.delete_concepts(pending)


def prune_concepts(store: IndexStore, plan: TodoPlan) -> None:
    """Commits the pruned vocabularies of videos that gain nothing (rows deleted already by
    `mark_pending`); a video that also gains concepts gets its row when they are committed."""
    only = [vid for vid in plan.pruned if vid not in plan.adding]
    rows = store.video_rows(only)
    store.upsert_videos([without_concepts(r, plan.pruned[r["video_id"]]) for r in rows])


def grown_row(plan: VideoPlan, pruned: list[str], run_id: str, n_masklets: int) -> dict:
    """The `videos` row that commits the concepts added to an indexed video (and its prune)."""
    row = without_concepts(plan.row, [*pruned, *plan.added])
    keys = [*row["vocabulary_keys"], *plan.added_keys]
    return {
        **row,
        "vocabulary": [*row["vocabulary"], *plan.added],
        "vocabulary_keys": keys,
        "vocabulary_hash": schema.vocabulary_hash(keys),
        "n_masklets": int(row["n_masklets"] or 0) + n_masklets,
        "run_id": run_id,
        "indexed_at": schema.now_utc(),
        "pending_concepts": [],
    }
