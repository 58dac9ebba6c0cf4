"""Reading Prometheus text in tests: a sample's value summed over the series that match.

A plain module (not conftest.py), as archive_corpus.py, so tests import it by a name no other
module shares.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named NAME (as exposed: `_total`, `_count`, `_bucket` included)
    whose labels include LABELS; 0 when none. Ray exports one series per worker process
    (WorkerId), and the sum over them is the cluster's value."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def has_sample(text: str, name: str) -> bool:
    """Whether TEXT has a sample named NAME (whatever its labels and value)."""
    return any(
        sample.name == name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )
