"""pytest-benchmark has no public way to take samples timed elsewhere: we use three of its internals.

This fails, naming them, when a pytest-benchmark release moves them (pyproject.toml pins below
the next major so that such a release is a deliberate upgrade).
"""

from __future__ import annotations

import importlib.metadata

import pytest
from packaging.version import Version
from pytest_benchmark.fixture import BenchmarkFixture
from pytest_benchmark.stats import Stats

from pytest_attnperf.integrations.pytest_benchmark import FIXTURE_INTERNALS


def test_the_pinned_range_is_what_is_installed() -> None:
    installed = Version(importlib.metadata.version("pytest-benchmark"))
    assert Version("4.0") <= installed < Version("6"), installed


@pytest.mark.parametrize("name", [name for name in FIXTURE_INTERNALS if name.startswith("_make")])
def test_the_fixture_still_has_its_internal_methods(name: str) -> None:
    assert callable(getattr(BenchmarkFixture, name, None)), f"BenchmarkFixture.{name} moved"


def test_a_fixture_instance_still_has_the_attributes_we_set(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_contract="""
        from pytest_attnperf.integrations.pytest_benchmark import FIXTURE_INTERNALS

        def test_attributes(benchmark):
            missing = [name for name in FIXTURE_INTERNALS if not hasattr(benchmark, name)]
            assert not missing, missing
            benchmark.pedantic(lambda: None, rounds=1)  # used, so pytest-benchmark does not warn
        """
    )
    assert pytester.runpytest("-p", "no:cacheprovider").ret == 0


def test_stats_still_take_one_sample_at_a_time() -> None:
    stats = Stats()
    for sample in (0.001, 0.002, 0.003):
        stats.update(sample)
    assert stats.median == pytest.approx(0.002)
