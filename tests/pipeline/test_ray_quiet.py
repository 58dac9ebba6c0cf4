"""Ray Data's advice to a pipeline's author stays off a vidlake user's console."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from vidlake.pipeline.index_job import init_ray

ISSUES = "ray.data._internal.issue_detection"


@pytest.fixture
def ray_data_settings():
    """Ray Data's settings that init_ray changes, put back after the test: an earlier job in
    this process (init_ray applies them to a caller's Ray too) must not decide this one."""
    import ray

    ctx = ray.data.DataContext.get_current()
    memory = ctx.issue_detectors_config.high_memory_detector_config
    saved = (memory.detection_time_interval_s, ctx.enable_progress_bars,
             ctx.print_on_execution_start, logging.getLogger("ray.data").level)  # fmt: skip
    yield
    (memory.detection_time_interval_s, ctx.enable_progress_bars,
     ctx.print_on_execution_start, level) = saved  # fmt: skip
    logging.getLogger("ray.data").setLevel(level)


@pytest.mark.parametrize("quiet", [False, True])
def test_high_memory_advice_is_not_printed(ray_local, ray_data_settings, quiet):
    import ray

    def hungry(batch: dict) -> dict:
        """0.25-CPU tasks holding ~1.1 GiB each: past Ray Data's "consider setting memory=" mark.
        (Nested, so Ray's workers get it by value: they cannot import this test module.)"""
        held = np.ones(1100 * 2**20, dtype=np.uint8)
        time.sleep(2)
        batch["n"] = batch["id"] + int(held[-1])
        return batch

    # Checked every 0.5 s rather than 30 (whatever an earlier job in this process set)
    memory = ray.data.DataContext.get_current().issue_detectors_config.high_memory_detector_config
    memory.detection_time_interval_s = 0.5
    if quiet:
        init_ray(None)  # Ray is up (ray_local): only the job's Ray Data settings
    seen: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = seen.append  # "ray.data" does not propagate to the root, so no caplog
    logging.getLogger(ISSUES).addHandler(catcher)
    try:
        rows = (
            ray.data.range(3, override_num_blocks=3).map_batches(hungry, num_cpus=0.25).take_all()
        )
    finally:
        logging.getLogger(ISSUES).removeHandler(catcher)
    assert sorted(r["n"] for r in rows) == [1, 2, 3]
    advice = [r for r in seen if r.levelno >= logging.WARNING]
    # Without init_ray's settings Ray Data gives the advice (so this test can see it at all).
    assert bool(advice) is not quiet, [r.getMessage()[:200] for r in advice]
