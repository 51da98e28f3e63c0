"""Wilson intervals and percentiles, against published values and their definitions."""

from __future__ import annotations

import pytest

from promptcast.evals.stats import mean, percentile, wilson


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    # Reference values: Newcombe (1998), Table I, and the usual worked examples.
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (8, 10, 0.4902, 0.9433),
])
def test_wilson_matches_published_intervals(k: int, n: int, low: float, high: float) -> None:
    got = wilson(k, n)
    assert got is not None
    assert got[0] == pytest.approx(low, abs=1e-4) and got[1] == pytest.approx(high, abs=1e-4)


def test_wilson_edges() -> None:
    assert wilson(0, 0) is None
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    with pytest.raises(ValueError):
        wilson(4, 3)


def test_percentiles_interpolate_linearly() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(1, 11)), 95) == pytest.approx(9.55)
    assert percentile([3, 1, 2], 0) == 1 and percentile([3, 1, 2], 100) == 3
    assert mean([]) is None and mean([1, 2, 6]) == 3
