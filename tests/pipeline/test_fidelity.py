"""Fidelity: what the index job stores for a clip is exactly what transformers' SAM 3 gives when
driven the documented way on that clip (tiny random model, fixed seed, clips over 2 actors),
with SAM 3's NMS, hole filling and sprinkle removal done by Meta's own CPU algorithms (package
sam3) where transformers would call its hub kernel."""

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


def reference_masklets(model_dir, frames: np.ndarray, concepts, postprocessing) -> dict:
    """{(concept, object_id): {frame: (box, mask)}} from Sam3VideoModel used as documented:
    init a session on the clip, add the text prompts, propagate, post-process every frame."""
    model, processor = _reference_model(model_dir)
    # The segment actor runs torch on one thread (Ray sets OMP_NUM_THREADS from its CPUs); the
    # same thread count gives the same float summation order, hence mask pixels that agree at
    # the 0-logit threshold too, not only boxes within 1e-4.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with postprocessing():
            out = _propagate(model, processor, frames, concepts)
    finally:
        torch.set_num_threads(threads)
    return out


def _propagate(model, processor, frames: np.ndarray, concepts) -> dict:
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


def _stored_and_expected(config: IndexConfig, model_dir, postprocessing):
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
            _REFERENCE[clip["clip_id"]] = reference_masklets(
                str(model_dir), frames, CONCEPTS, postprocessing
            )
        stored = {(m["concept"], m["object_id"]): m for m in by_clip.get(clip["clip_id"], [])}
        yield clip["clip_id"], stored, _REFERENCE[clip["clip_id"]]


_REFERENCE: dict[str, dict] = {}


def test_stored_masklets_equal_the_reference_for_every_clip(
    indexed, tiny_sam3_dir, meta_postprocessing
):
    compared_frames = 0
    concepts_seen = set()
    stored_and_expected = _stored_and_expected(indexed, tiny_sam3_dir, meta_postprocessing)
    for clip_id, stored, expected in stored_and_expected:
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
    ray_local, synthetic_corpus, tiny_sam3_dir, tmp_path, meta_postprocessing
):
    # --batch-objects --batch-concepts: the same objects on the same frames; masks and boxes
    # equal to float rounding (batched matrix products sum in another order), not bit for bit.
    config = _index(
        synthetic_corpus, tiny_sam3_dir, tmp_path, batch_objects=True, batch_concepts=True
    )
    compared_frames = 0
    stored_and_expected = _stored_and_expected(config, tiny_sam3_dir, meta_postprocessing)
    for clip_id, stored, expected in stored_and_expected:
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


def test_the_run_records_the_settings_sam3_ran_with(indexed, tiny_sam3_dir):
    import json

    from vidlake.model.checkpoint import SAM3_SETTINGS, sam3_settings
    from vidlake.store.maintenance import list_runs, model_settings

    config = json.loads((tiny_sam3_dir / "config.json").read_text())
    run = list_runs(IndexStore.open(indexed.index_uri), 1).to_pylist()[0]
    recorded = json.loads(run["arguments"])["model_settings"]
    assert recorded == sam3_settings(config) and set(recorded) == set(SAM3_SETTINGS)
    assert model_settings(IndexStore.open(indexed.index_uri)) == {str(tiny_sam3_dir): recorded}


def test_presence_is_stored_per_frame_for_every_concept(indexed):
    store = IndexStore.open(indexed.index_uri)
    clips = {c["clip_id"]: c for c in store.dataset("clips").to_table().to_pylist()}
    presence = store.dataset("presence").to_table().to_pylist()
    assert len(presence) == len(clips) * len(CONCEPTS)  # objects found or not
    for row in presence:
        assert len(row["frame_presence"]) == clips[row["clip_id"]]["n_frames"]
        assert row["max_presence"] == pytest.approx(max(row["frame_presence"]))
        assert all(0.0 <= p <= 1.0 for p in row["frame_presence"])
    hits = store.dataset("concept_hits").to_table().to_pylist()
    by_key = {(r["clip_id"], r["concept"]): r["max_presence"] for r in presence}
    for hit in hits:
        assert hit["max_presence"] == pytest.approx(by_key[(hit["clip_id"], hit["concept"])])
