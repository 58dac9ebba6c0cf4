"""Fixtures of the benchmark smoke tests: the bench/ scripts loaded as modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    """bench/NAME.py, a script, loaded by path under the name its siblings use for it."""
    module_name = f"vidlake_bench_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


@pytest.fixture(scope="session")
def bench_pipeline():
    return _load("pipeline")


@pytest.fixture(scope="session")
def bench_memory():
    return _load("memory")


@pytest.fixture(scope="session")
def bench_resume():
    return _load("resume")


@pytest.fixture(scope="session")
def bench_grow_vocabulary():
    return _load("grow_vocabulary")
