"""The statistics a summary reports: rates with Wilson intervals, means, percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence

# The 97.5th percentile of the standard normal distribution: a two-sided 95 % interval.
Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a binomial proportion; None with no trials.

    Unlike the normal approximation it stays inside [0, 1] and is sound for
    small samples and for rates near 0 or 1, which test sets of 20 cases give.
    """
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes in {trials} trials")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100) by linear interpolation between order statistics.

    The same definition as numpy's default and Excel's PERCENTILE.INC; None
    for no values.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0-100")
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean; None for no values."""
    return sum(values) / len(values) if values else None
