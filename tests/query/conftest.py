"""An index of the synthetic corpus (plus one video where two shapes share a clip but never a
frame, and one where a shape leaves and comes back), built once per session with the colour
segmenter, and its query indexes."""

from __future__ import annotations

import shutil

import pytest
from query_truth import INDEXED, BuiltIndex, apart_video, twice_video


@pytest.fixture(scope="session")
def query_index(synthetic_corpus, tmp_path_factory, index_synthetic) -> BuiltIndex:
    folder = tmp_path_factory.mktemp("query_index")
    videos = [*synthetic_corpus, apart_video(folder), twice_video(folder)]
    uri = index_synthetic(folder, videos, INDEXED)
    return BuiltIndex(uri=uri, videos={v.uri: v for v in videos})


@pytest.fixture
def index_copy(query_index, tmp_path) -> BuiltIndex:
    """A copy of the session index that a test may write to (verification)."""
    dst = tmp_path / "idx"
    shutil.copytree(query_index.uri, dst)
    # Clip rows store the videos' URIs, which stay valid: only the index moves.
    return BuiltIndex(uri=str(dst), videos=query_index.videos)
