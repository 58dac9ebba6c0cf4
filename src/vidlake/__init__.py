"""vidlake: index video archives by concept with SAM 3, Ray Data and Lance.

The Python API is two verbs: `vidlake.index(...)` runs an index job, `vidlake.open(uri)`
opens an index for search.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "index", "open"]


def index(sources, index_uri: str, concepts, **options):
    """Runs an index job (see `vidlake.config.IndexConfig` for options); returns its RunSummary."""
    from vidlake.config import IndexConfig, parse_concepts
    from vidlake.pipeline.index_job import run_index

    if isinstance(sources, str):
        sources = [sources]
    config = IndexConfig(
        sources=tuple(sources),
        index_uri=index_uri,
        concepts=parse_concepts(concepts),
        **options,
    )
    return run_index(config)


def open(uri: str, storage_options: dict | None = None, as_of: int | None = None):  # noqa: A001
    """The index at URI, ready for `.search(phrase)`; IndexNotFoundError if there is none.

    as_of pins the index version (the `videos` table's version) the queries read.
    """
    from vidlake.query.engine import ConceptIndex

    return ConceptIndex.open(uri, storage_options, as_of=as_of)
