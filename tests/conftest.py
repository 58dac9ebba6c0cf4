"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidlake.synthetic.corpus import SyntheticVideo, write_bad_inputs, write_corpus

# -- synthetic corpus (operators/ and synthetic/ tests, pipeline tests) --------------------------


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[SyntheticVideo]:
    """The default synthetic corpus, written once: [a_red_first_half, b_no_red, c_all_four].

    See vidlake.synthetic.corpus.default_specs for what each video shows and when.
    """
    return write_corpus(tmp_path_factory.mktemp("synthetic_corpus"), seed=0)


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"empty", "text", "truncated", "zero_frames": Path}: inputs that must fail to probe."""
    return write_bad_inputs(tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture(scope="session")
def tiny_sam3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SAM 3 video checkpoint folder (seed 0), written once per session."""
    from vidlake.model.tiny import build_tiny_sam3

    return build_tiny_sam3(tmp_path_factory.mktemp("tiny_sam3"), seed=0)
