"""vidlake: index video archives by concept with SAM 3, Ray Data and Lance.

The Python API is two verbs: `vidlake.index(...)` runs an index job, `vidlake.open(uri)`
opens an index for search.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vidlake.pipeline.index_job import RunSummary
    from vidlake.records import Prompt

__version__ = "0.1.0"

__all__ = ["__version__", "index", "open"]


def index(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    index_uri: str | os.PathLike,
    concepts: str | Sequence[str],
    *,
    model: str = "facebook/sam3",
    clip_seconds: float = 10.0,
    fps: float = 6.0,
    overlap: float = 1.0,
    max_side: int = 1008,
    address: str | None = None,
    actors: int | None = None,
    actors_per_gpu: int = 3,
    batch_objects: bool | None = None,
    batch_concepts: bool | None = None,
    device: str = "auto",
    storage_options: dict[str, str] | None = None,
    prune: bool = False,
    prune_concepts: bool = False,
    prompts: Sequence[Prompt] = (),
    max_objects: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> RunSummary:
    """Runs an index job, as `vidlake index` does; returns its RunSummary.

    The keywords are the CLI's options (README, "Commands"): `max_side=0` keeps the native
    size, `actors=None` sizes the pool to the GPUs, `batch_objects`/`batch_concepts` None
    batch SAM 3's passes with CUDA only (False for both: the CLI's `--exact`), `prompts` are
    exemplar prompts (`vidlake.model.prompts.parse_exemplars` / `load_prompt_file`).
    `progress(phase, done, total)` is called as videos ("videos") and clips ("segment") are
    done; the clips' total is 0 before the first clip is in, then estimated from the videos
    whose clips have started arriving, and exact once every video's have. Bad arguments raise
    `vidlake.errors.UsageError`; per-video failures are rows of the index and counted in the
    summary, not exceptions.

    Ray: without `address` a local Ray is started, or the one this process already runs is
    used. Either way the job sets this process's Ray Data context as the CLI needs it
    (`init_ray`): progress bars and the per-dataset start line off, Ray Data's high-memory
    advice off, its log level WARNING. Later Ray Data jobs of the same process keep them.
    """
    from vidlake.config import IndexConfig, parse_concepts
    from vidlake.errors import UsageError
    from vidlake.pipeline.index_job import run_index

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    try:
        sources = tuple(os.fspath(s) for s in sources)
    except TypeError:
        raise UsageError(f"sources must be paths or URIs, got {sources!r}") from None
    given = bool(concepts.strip()) if isinstance(concepts, str) else bool(concepts)
    config = IndexConfig(
        sources=sources,
        index_uri=os.fspath(index_uri) if isinstance(index_uri, os.PathLike) else index_uri,
        # Exemplar prompts may stand alone: then no concepts is no error.
        concepts=parse_concepts(concepts) if given or not prompts else (),
        model=model,
        clip_seconds=clip_seconds,
        fps=fps,
        overlap_s=overlap,
        max_side=max_side or None,
        address=address,
        num_actors=actors,
        actors_per_gpu=actors_per_gpu,
        batch_objects=batch_objects,
        batch_concepts=batch_concepts,
        device=device,
        storage_options={} if storage_options is None else storage_options,
        prune=prune,
        prune_concepts=prune_concepts,
        prompts=tuple(prompts),
        max_objects=max_objects,
    )
    return run_index(config, progress=progress)


def open(uri: str | os.PathLike, storage_options: dict | None = None, as_of: int | None = None):  # noqa: A001
    """The index at URI, ready for `.search(phrase)`; IndexNotFoundError if there is none.

    as_of pins the index version (the `videos` table's version) the queries read.
    """
    from vidlake.query.engine import ConceptIndex

    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    return ConceptIndex.open(uri, storage_options, as_of=as_of)
