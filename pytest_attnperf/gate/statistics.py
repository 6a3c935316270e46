"""Statistics the gate needs: is the current sample really slower than the baseline's?"""

from __future__ import annotations

import math
from collections.abc import Sequence


def mann_whitney_greater(current: Sequence[float], reference: Sequence[float]) -> float:
    """One-sided Mann-Whitney U p-value for "current tends to be larger than reference".

    Normal approximation with tie and continuity corrections; fine from about 8 samples a side,
    which the timing's minimum sample count guarantees.
    """
    n1, n2 = len(current), len(reference)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    pooled = sorted([(value, 0) for value in current] + [(value, 1) for value in reference])
    ranks = [0.0] * len(pooled)
    tie_term = 0.0
    start = 0
    while start < len(pooled):
        stop = start
        while stop + 1 < len(pooled) and pooled[stop + 1][0] == pooled[start][0]:
            stop += 1
        average_rank = (start + stop) / 2 + 1
        for index in range(start, stop + 1):
            ranks[index] = average_rank
        tied = stop - start + 1
        tie_term += tied**3 - tied
        start = stop + 1
    rank_sum = sum(rank for rank, (_, group) in zip(ranks, pooled, strict=True) if group == 0)
    u_statistic = rank_sum - n1 * (n1 + 1) / 2
    mean = n1 * n2 / 2
    total = n1 + n2
    variance = n1 * n2 / 12 * ((total + 1) - tie_term / (total * (total - 1))) if total > 1 else 0.0
    if variance <= 0:
        return 0.0 if u_statistic > mean else 1.0
    z_score = (u_statistic - mean - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z_score / math.sqrt(2))
