from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from vidlake.operators.encode import (
    decode_rle,
    encode_rle,
    encode_rles,
    encode_rles_tensor,
    mask_area,
)
from vidlake.synthetic.corpus import SyntheticVideo


def test_rle_round_trip_through_pycocotools(synthetic_corpus: list[SyntheticVideo]) -> None:
    video = synthetic_corpus[2]
    masks = np.stack([video.mask(c, 5) for c in video.concepts])
    assert masks.any(axis=(1, 2)).all()
    for mask, rle in zip(masks, encode_rles(masks), strict=True):
        assert rle["size"] == [video.height, video.width]
        decoded = mask_utils.decode(rle)
        assert decoded.shape == mask.shape
        np.testing.assert_array_equal(decoded.astype(bool), mask)
        np.testing.assert_array_equal(decode_rle(rle), mask)
        assert mask_area(rle) == int(mask.sum())
        assert encode_rle(mask)["counts"] == rle["counts"]


def test_rle_of_non_square_and_empty_masks() -> None:
    mask = np.zeros((7, 13), bool)
    mask[2:5, 3:11] = True
    mask[6, 12] = True
    np.testing.assert_array_equal(mask_utils.decode(encode_rle(mask)).astype(bool), mask)
    empty = encode_rle(np.zeros((4, 5), bool))
    assert mask_area(empty) == 0
    assert encode_rles(np.zeros((0, 4, 5), bool)) == []


def test_tensor_rles_are_the_bytes_pycocotools_gives(synthetic_corpus) -> None:
    import torch

    rng = np.random.default_rng(7)
    video = synthetic_corpus[2]
    shapes = np.stack([video.mask(c, 5) for c in video.concepts])
    noise = rng.random((3, 9, 14)) > 0.5
    edge = np.zeros((5, 9, 14), bool)
    edge[1] = True  # all set: counts start with a zero-length run
    edge[2, 0, 0] = True  # first pixel only
    edge[3, -1, -1] = True  # last pixel only
    edge[4, :, 5] = True  # one full column: a single run in column-major order
    for masks in (shapes, noise, edge, np.ones((2, 1, 1), bool), np.zeros((1, 1, 3), bool)):
        assert encode_rles_tensor(torch.from_numpy(masks)) == encode_rles(masks)
    assert encode_rles_tensor(torch.zeros((0, 4, 5), dtype=torch.bool)) == []
