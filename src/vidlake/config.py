"""The frozen configuration of each job: built by the CLI or the API, recorded in `runs`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field

from vidlake.errors import UsageError
from vidlake.records import Prompt

DEFAULT_MODEL = "facebook/sam3"
MAX_CONCEPT_CHARS = 200

# What IndexConfig's messages call its options: `vidlake.index`'s keywords, or the CLI's
# options while the CLI runs (`cli_option_names`), so that each user reads the name they typed.
PYTHON_NAMES: dict[str, str] = {
    "clip_seconds": "clip_seconds",
    "fps": "fps",
    "overlap_s": "overlap",
    "max_side": "max_side",
    "num_actors": "actors",
    "actors_per_gpu": "actors_per_gpu",
    "max_objects": "max_objects",
    "device": "device",
    "batch_objects": "batch_objects",
    "batch_concepts": "batch_concepts",
    "prune": "prune",
    "prune_concepts": "prune_concepts",
}
CLI_NAMES: dict[str, str] = {k: "--" + v.replace("_", "-") for k, v in PYTHON_NAMES.items()}
_OPTION_NAMES: ContextVar[dict[str, str]] = ContextVar("vidlake_option_names", default=PYTHON_NAMES)


@contextmanager
def cli_option_names() -> Iterator[None]:
    """Within the block, configurations name their options as the CLI does (`--clip-seconds`)."""
    token = _OPTION_NAMES.set(CLI_NAMES)
    try:
        yield
    finally:
        _OPTION_NAMES.reset(token)


def option_name(field: str) -> str:
    """What messages call IndexConfig's FIELD: the CLI's option inside `cli_option_names`,
    else `vidlake.index`'s keyword."""
    return _OPTION_NAMES.get()[field]


def parse_concepts(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Concepts from "a, b,c" or a list: stripped, lower-cased, de-duplicated, order kept."""
    if isinstance(text, str):
        items = text.split(",")
    elif isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
        items = list(text)
    else:
        raise UsageError(f"concepts must be a string 'a,b' or a list of strings, got {text!r}")
    out: list[str] = []
    for item in items:
        concept = " ".join(item.strip().lower().split())
        if not concept:
            continue
        if len(concept) > MAX_CONCEPT_CHARS:
            raise UsageError(
                f"concept {concept[:40]!r}... is longer than {MAX_CONCEPT_CHARS} chars"
            )
        if concept not in out:
            out.append(concept)
    if not out:
        raise UsageError("no concepts given: pass --concepts 'red umbrella,person'")
    return tuple(out)


@dataclass(frozen=True)
class IndexConfig:
    """Everything one index job needs; every knob named, with its default."""

    sources: tuple[str, ...]
    index_uri: str
    concepts: tuple[str, ...]
    model: str = DEFAULT_MODEL
    clip_seconds: float = 10.0
    fps: float = 6.0
    overlap_s: float = 1.0
    max_side: int | None = 1008
    address: str | None = None
    num_actors: int | None = None
    # Segment actors sharing each GPU: transformers' SAM 3 tracks objects one forward pass at a
    # time, a Python loop that leaves one process's GPU idle ~60% of the time; 3 processes kept
    # an H200 93% busy (bench/RESULTS.md). Each holds its own model (~3.4 GiB) and clip state.
    actors_per_gpu: int = 3
    # SAM 3: alike tracked objects through the tracker in one batched pass per frame (faster;
    # not bit-identical to transformers' per-object passes, see Sam3Segmenter). None: on with
    # CUDA, off on CPU (`--exact`: False, `--batch-objects`: True).
    batch_objects: bool | None = None
    # SAM 3: the detector once per frame for all concepts instead of once per concept (faster;
    # equal to float rounding, see Sam3Segmenter). None: as batch_objects.
    batch_concepts: bool | None = None
    device: str = "auto"
    storage_options: dict[str, str] = field(default_factory=dict)
    prune: bool = False
    # Delete from indexed videos the concepts this job does not name; without it, a job with
    # fewer concepts than a video was indexed with changes nothing on it.
    prune_concepts: bool = False
    # Named prompts beyond text: exemplar boxes on a reference frame (vidlake.model.prompts).
    prompts: tuple[Prompt, ...] = ()
    # At most this many objects per clip, the highest scores kept; None: the model's own limit.
    max_objects: int | None = None

    def __post_init__(self) -> None:
        from vidlake.model.prompts import validate_prompts

        self._check_types()
        if not self.sources:
            raise UsageError("no video sources given")
        validate_prompts(self.concepts, self.prompts)
        names = _OPTION_NAMES.get()
        if self.max_objects is not None and self.max_objects < 1:
            raise UsageError(f"{names['max_objects']} must be >= 1, got {self.max_objects}")
        if self.clip_seconds <= 0:
            raise UsageError(f"{names['clip_seconds']} must be > 0, got {self.clip_seconds}")
        self._check_overlap(names)
        if self.fps <= 0:
            raise UsageError(f"{names['fps']} must be > 0, got {self.fps}")
        if self.max_side is not None and self.max_side < 16:
            raise UsageError(
                f"{names['max_side']} must be >= 16 (or 0: the native size), got {self.max_side}"
            )
        if self.num_actors is not None and self.num_actors < 1:
            raise UsageError(f"{names['num_actors']} must be >= 1, got {self.num_actors}")
        from vidlake.model import is_sam3

        for name, on in (("batch_objects", self.batch_objects),
                         ("batch_concepts", self.batch_concepts)):  # fmt: skip
            if on is not None and not isinstance(on, bool):
                raise UsageError(f"{name} must be True, False or None, got {on!r}")
            if on and not is_sam3(self.model):
                raise UsageError(f"{names[name]} needs a SAM 3 model, not {self.model!r}")
            if on is False and not is_sam3(self.model):
                object.__setattr__(self, name, None)  # other segmenters have no such passes
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise UsageError(
                f"{names['device']} must be auto, cpu, cuda or cuda:N, got {self.device!r}"
            )
        if not 1 <= self.actors_per_gpu <= 16:
            raise UsageError(
                f"{names['actors_per_gpu']} must be in 1..16, got {self.actors_per_gpu}"
            )

    def _check_overlap(self, names: dict[str, str]) -> None:
        """UsageError unless 0 <= overlap < clip seconds, saying which value to change: the
        default overlap (1 s) is too long for clips of 1 s or less, which users who never
        set it cannot guess."""
        overlap, clip = names["overlap_s"], names["clip_seconds"]
        if self.overlap_s < 0:
            raise UsageError(f"{overlap} must be >= 0, got {self.overlap_s}")
        if self.overlap_s < self.clip_seconds:
            return
        default = IndexConfig.overlap_s
        given = f"(default {default} s)" if self.overlap_s == default else f"{self.overlap_s} s"
        example = f"{self.clip_seconds / 2:g}"
        example = f"{overlap} {example}" if overlap.startswith("--") else f"{overlap}={example}"
        raise UsageError(
            f"{overlap} {given} must be less than {clip} {self.clip_seconds} s; pass e.g. {example}"
        )

    def _check_types(self) -> None:
        """UsageError for a value of the wrong type (the Python API takes whatever it is given)."""
        from vidlake.checks import real, whole

        names = _OPTION_NAMES.get()
        for name in ("clip_seconds", "fps", "overlap_s"):
            real(names[name], getattr(self, name))
        for name in ("max_side", "num_actors", "actors_per_gpu", "max_objects"):
            value = getattr(self, name)
            if value is not None or name == "actors_per_gpu":
                whole(names[name], value)
        if not all(isinstance(s, str) for s in self.sources):
            raise UsageError(f"sources must be paths or URIs, got {self.sources!r}")
        for name in ("index_uri", "model", "device"):
            if not isinstance(getattr(self, name), str):
                raise UsageError(f"{name} must be a string, got {getattr(self, name)!r}")
        options = self.storage_options
        if not isinstance(options, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in options.items()
        ):
            raise UsageError(f"storage_options must be a dict of strings, got {options!r}")

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Every concept name masklets of this job can carry: the concepts, then prompt names."""
        return (*self.concepts, *(p.name for p in self.prompts))

    def vocabulary_key(self) -> list[str]:
        """What the vocabulary hash must cover: the concepts and each prompt in full (JSON), so
        moving an exemplar box reindexes a video as a new concept would."""
        return [
            *self.concepts,
            *(json.dumps(p.describe(), sort_keys=True) for p in self.prompts),
        ]

    def to_json(self) -> str:
        """The arguments as recorded in the `runs` table (storage option values redacted)."""
        d = asdict(self)
        d["storage_options"] = {k: "***" for k in self.storage_options}
        d["prompts"] = [p.describe() for p in self.prompts]
        return json.dumps(d, sort_keys=True)
