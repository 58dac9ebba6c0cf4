"""An index of the synthetic corpus for the server tests, built once per session, and its truth."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pytest

from vidlake.synthetic.corpus import SyntheticVideo

# Two of the palette's concepts indexed; "green triangle" is left for POST /verify.
INDEXED = ("red square", "blue circle")
MIN_PIXELS = 8  # the colour segmenter's presence threshold


@dataclass
class ServedIndex:
    uri: str
    videos: dict[str, SyntheticVideo]  # by uri

    def truth(self, concept: str) -> set[str]:
        """Clip ids where CONCEPT is visible in a sampled frame (the synthetic ground truth)."""
        import lance

        clips = lance.dataset(f"{self.uri}/clips.lance").to_table(
            columns=["clip_id", "video_uri", "frame_indices"]
        )
        return {
            row["clip_id"]
            for row in clips.to_pylist()
            if any(
                int(self.videos[row["video_uri"]].mask(concept, f).sum()) >= MIN_PIXELS
                for f in row["frame_indices"]
            )
        }


@pytest.fixture(scope="session")
def served_index(synthetic_corpus, tmp_path_factory, index_synthetic) -> ServedIndex:
    folder = tmp_path_factory.mktemp("served_index")
    return ServedIndex(
        uri=index_synthetic(folder, synthetic_corpus, INDEXED),
        videos={v.uri: v for v in synthetic_corpus},
    )


@pytest.fixture
def writable_index(served_index, tmp_path) -> ServedIndex:
    """A copy of the session index that a test may add verified hits to."""
    dst = tmp_path / "idx"
    shutil.copytree(served_index.uri, dst)
    return ServedIndex(uri=str(dst), videos=served_index.videos)
