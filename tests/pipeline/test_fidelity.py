"""Fidelity: what the index job stores for a clip is exactly what transformers' SAM 3 gives when
driven the documented way on that clip (tiny random model, fixed seed, clips over 2 actors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from vidlake.config import IndexConfig
from vidlake.operators.decode import decode_clip
from vidlake.pipeline.index_job import run_index
from vidlake.store.schema import clip_spec
from vidlake.store.tables import IndexStore

CONCEPTS = ("red square", "blue circle", "person")


def reference_masklets(model_dir, frames: np.ndarray, concepts) -> dict:
    """{(concept, object_id): {frame: (box, mask)}} from Sam3VideoModel used as documented:
    init a session on the clip, add the text prompts, propagate, post-process every frame."""
    model, processor = _reference_model(model_dir)
    # The segment actor runs torch on one thread (Ray sets OMP_NUM_THREADS from its CPUs); the
    # same thread count gives the same float summation order, hence mask pixels that agree at
    # the 0-logit threshold too, not only boxes within 1e-4.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        session = processor.init_video_session(
            video=list(frames), inference_device="cpu", dtype=torch.float32
        )
        session = processor.add_text_prompt(session, list(concepts))
        out = {}
        for output in model.propagate_in_video_iterator(session):
            processed = processor.postprocess_outputs(session, output)
            for i, object_id in enumerate(processed["object_ids"].tolist()):
                concept = session.prompts[session.obj_id_to_prompt_id[object_id]]
                out.setdefault((concept, object_id), {})[int(output.frame_idx)] = (
                    processed["boxes"][i].float().numpy(),
                    processed["masks"][i].numpy().astype(bool),
                )
    finally:
        torch.set_num_threads(threads)
    return out


_MODELS: dict = {}


def _reference_model(model_dir):
    """The checkpoint's model and processor, loaded once for all clips."""
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    if model_dir not in _MODELS:
        model = Sam3VideoModel.from_pretrained(model_dir).eval()
        _MODELS[model_dir] = (model, Sam3VideoProcessor.from_pretrained(model_dir))
    return _MODELS[model_dir]


def _index(synthetic_corpus, model_dir, folder, **options) -> IndexConfig:
    config = IndexConfig(
        sources=tuple(v.uri for v in synthetic_corpus),
        index_uri=str(folder / "idx"),
        concepts=CONCEPTS,
        model=str(model_dir),
        clip_seconds=2.0,
        fps=2.0,
        overlap_s=0.5,
        max_side=None,
        num_actors=2,
        device="cpu",
        **options,
    )
    summary = run_index(config)
    assert summary.n_failed == 0 and summary.n_indexed == len(synthetic_corpus)
    return config


@pytest.fixture(scope="module")
def indexed(ray_local, synthetic_corpus, tiny_sam3_dir, tmp_path_factory):
    return _index(synthetic_corpus, tiny_sam3_dir, tmp_path_factory.mktemp("fidelity"))


def _stored_and_expected(config: IndexConfig, model_dir):
    """(clip_id, stored {(concept, object_id): masklet row}, reference masklets) per clip."""
    store = IndexStore.open(config.index_uri)
    clips = store.dataset("clips").to_table().to_pylist()
    masklets = store.dataset("masklets").to_table().to_pylist()
    assert len(clips) >= 8 and len({c["video_id"] for c in clips}) == 3
    by_clip: dict[str, list] = {}
    for m in masklets:
        by_clip.setdefault(m["clip_id"], []).append(m)
    for clip in clips:
        spec = clip_spec(clip)
        if clip["clip_id"] not in _REFERENCE:  # the same clip ids in every index of the corpus
            frames = decode_clip(spec, max_side=None)
            _REFERENCE[clip["clip_id"]] = reference_masklets(str(model_dir), frames, CONCEPTS)
        stored = {(m["concept"], m["object_id"]): m for m in by_clip.get(clip["clip_id"], [])}
        yield clip["clip_id"], stored, _REFERENCE[clip["clip_id"]]


_REFERENCE: dict[str, dict] = {}


def test_stored_masklets_equal_the_reference_for_every_clip(indexed, tiny_sam3_dir):
    compared_frames = 0
    concepts_seen = set()
    for clip_id, stored, expected in _stored_and_expected(indexed, tiny_sam3_dir):
        assert set(stored) == set(expected), clip_id
        for key, m in stored.items():
            concepts_seen.add(key[0])
            assert list(m["frame_idx"]) == sorted(expected[key])
            for fi, box, rle in zip(m["frame_idx"], m["boxes"], m["masks"], strict=True):
                ref_box, ref_mask = expected[key][fi]
                np.testing.assert_allclose(box, ref_box, atol=1e-4)
                got = mask_utils.decode({"size": rle["size"], "counts": rle["counts"]})
                assert np.array_equal(got.astype(bool), ref_mask), (key, fi)
                compared_frames += 1
    assert concepts_seen == set(CONCEPTS)
    assert compared_frames > 50


def test_objects_and_concepts_batched_give_the_reference_tracks(
    ray_local, synthetic_corpus, tiny_sam3_dir, tmp_path
):
    # --batch-objects --batch-concepts: the same objects on the same frames; masks and boxes
    # equal to float rounding (batched matrix products sum in another order), not bit for bit.
    config = _index(
        synthetic_corpus, tiny_sam3_dir, tmp_path, batch_objects=True, batch_concepts=True
    )
    compared_frames = 0
    for clip_id, stored, expected in _stored_and_expected(config, tiny_sam3_dir):
        assert set(stored) == set(expected), clip_id
        for key, m in stored.items():
            assert list(m["frame_idx"]) == sorted(expected[key])
            for fi, box, rle in zip(m["frame_idx"], m["boxes"], m["masks"], strict=True):
                ref_box, ref_mask = expected[key][fi]
                np.testing.assert_allclose(box, ref_box, atol=1.0)
                got = mask_utils.decode({"size": rle["size"], "counts": rle["counts"]}) > 0
                assert (got != ref_mask).mean() <= 0.001, (key, fi)
                compared_frames += 1
    assert compared_frames > 50
