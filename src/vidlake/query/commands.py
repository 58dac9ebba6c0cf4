"""The `vidlake index` command that adds a concept to an index, rebuilt from its last run.

Here, below the CLI and the HTTP API, because both print it: `vidlake query` and GET /search
answer a phrase far from every indexed concept with it instead of unrelated clips.
"""

from __future__ import annotations

import json

from vidlake.config import DEFAULT_MODEL

_REPEATED_OPTIONS = (
    ("model", "--model", DEFAULT_MODEL),
    ("clip_seconds", "--clip-seconds", 10.0),
    ("fps", "--fps", 6.0),
    ("overlap_s", "--overlap", 1.0),
    ("max_side", "--max-side", 1008),
    ("max_objects", "--max-objects", None),
)


def add_concept_command(store, concept: str) -> str:
    """The `vidlake index` command that adds CONCEPT to the index STORE: the last run's
    sources, concepts and settings, with CONCEPT added to its concepts (a run that grows the
    vocabulary segments only the new concept on the videos indexed already)."""
    import shlex

    from vidlake.store.maintenance import list_runs

    runs = [r for r in list_runs(store).to_pylist() if r["arguments"]]
    if not runs:
        return f"vidlake index SOURCES --index {shlex.quote(store.uri)} --concepts {concept!r}"
    arguments = json.loads(runs[0]["arguments"])
    concepts = [c for c in arguments.get("concepts") or [] if c != concept]
    sources = arguments.get("sources") or ["SOURCES"]
    words = ["vidlake", "index", *sources, "--index", store.uri]
    words += ["--concepts", ",".join([*concepts, concept])]
    for key, option, default in _REPEATED_OPTIONS:
        value = arguments.get(key, default)
        if value != default:
            if key == "max_side" and value is None:
                value = 0  # the native size
            words += [option, f"{value:g}" if isinstance(value, float) else str(value)]
    if arguments.get("prompts"):
        words += ["--prompts", "PROMPTS.json"]  # its exemplar prompts, as the last run had them
    return shlex.join(words)
