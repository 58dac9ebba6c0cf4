"""Query-time verification for the server: a loaded segmenter on candidate clips, then a commit.

`vidlake.query.verify.verify_phrase` runs a Ray Data plan that loads the model in its own actor
pool for each call: right for a batch command, wrong for a server, which keeps the model loaded
between requests. Here the model work is a `ClipSegmenter` (loaded once; in `vidlake serve` it
is the SAM 3 Serve deployment, on a GPU where there is one) and the commit is `commit_verified`,
run by the API process, one verification at a time. Both reuse verify.py's stages (candidate
rows, decode at the stored size, fragments with phrase-specific masklet ids) and its commit
order, so what the server adds to an index is what `vidlake query --verify` adds.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from vidlake.query.verify import (
    VerifyResult,
    clip_rows,
    commit_verified,
    decode_stage,
    write_verified,
)
from vidlake.store.object_store import lance_options
from vidlake.store.tables import IndexStore

log = logging.getLogger(__name__)

CLIPS_PER_CALL = 4  # clips per segmenter call: small, so autoscaling can spread the work


class ClipSegmenter:
    """A segmenter loaded once that prompts clips with a phrase and writes what it finds.

    segment(phrase, rows) takes verify.py's candidate rows (`clip_rows`) and gives, per row,
    `write_verified`'s output: the clip's new masklets and concept_hits written as uncommitted
    fragments of the index at INDEX_URI, or its error. Nothing is visible until
    `commit_verified` commits the fragments.
    """

    def __init__(
        self,
        model: str,
        index_uri: str,
        storage_options: dict | None = None,
        device: str = "auto",
    ):
        from vidlake.pipeline.stages import SegmentStage

        self.model_id = model
        self.index_uri = index_uri
        # Resolved as IndexStore resolves them (aliases, AWS variables, allow_http for an
        # http:// endpoint): the fragments are written by Lance, which takes no aliases and
        # refuses plain http without allow_http. Decoding converts them for fsspec itself.
        self.storage_options = lance_options(storage_options) or None
        # The index job's segment stage, loaded without concepts: each call copies it with the
        # request's phrase (the copy shares the loaded model).
        self._stage = SegmentStage(model, concepts=(), device=device)

    def segment(self, phrase: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        stage = copy.copy(self._stage)
        stage.concepts = [phrase]
        out = []
        for row in rows:
            decoded = decode_stage(row, storage_options=self.storage_options)
            segmented = stage(decoded)
            out.append(write_verified(segmented, self.index_uri, self.storage_options))
        return out


class Verifier(Protocol):
    """What the API needs to verify a phrase: the model's name and a way to segment rows.

    segment_batches(phrase, batches) segments every batch of rows (in parallel where it can)
    and returns the written rows of all of them.
    """

    model_id: str

    def segment_batches(
        self, phrase: str, batches: list[list[dict[str, Any]]]
    ) -> list[dict[str, Any]]: ...


class LocalVerifier:
    """A Verifier that segments in this process (tests, and servers without Ray Serve)."""

    def __init__(self, segmenter: ClipSegmenter):
        self.segmenter = segmenter
        self.model_id = segmenter.model_id

    def segment_batches(self, phrase: str, batches: list[list[dict]]) -> list[dict]:
        return [row for batch in batches for row in self.segmenter.segment(phrase, batch)]


class HandleVerifier:
    """A Verifier that sends batches to the segmenter's Ray Serve deployment, all at once."""

    def __init__(self, handle: Any, model_id: str):
        self.handle = handle
        self.model_id = model_id

    def segment_batches(self, phrase: str, batches: list[list[dict]]) -> list[dict]:
        # Called from a request thread, never from the replica's event loop: .result() blocks.
        responses = [self.handle.segment.remote(phrase, batch) for batch in batches]
        return [row for response in responses for row in response.result()]


def verify_clips(
    store: IndexStore,
    phrase: str,
    clip_ids: Sequence[str],
    verifier: Verifier,
) -> VerifyResult:
    """Segments CLIP_IDS with PHRASE through VERIFIER and commits what it finds.

    Clips of uncommitted videos, and clips already verified for PHRASE, are skipped
    (verify.clip_rows), so verifying twice adds nothing. The phrase is recorded as verified
    (indexes.record_verified) even when no clip shows it, but not while a clip fails (see
    verify.commit_verified): the next query knows whether it was checked.
    """
    rows = clip_rows(store, list(clip_ids), skip_concept=phrase)
    result = VerifyResult(phrase=phrase, model_id=verifier.model_id)
    batches = [rows[i : i + CLIPS_PER_CALL] for i in range(0, len(rows), CLIPS_PER_CALL)]
    written = verifier.segment_batches(phrase, batches) if batches else []
    return commit_verified(store, phrase, written, result)
