"""Mean ± standard error over seeds, the one statistic every results table of the project uses.

One helper, so that tables agree: the standard error is the sample standard deviation over
sqrt(n), and it is *not measured* (``None``) for a single value -- a lone seed says nothing about
the spread, so it is neither 0 (a claim of no spread) nor NaN (a number that poisons sums). A
missing value (``None``: a run that did not report the number) makes the mean unknown rather
than the mean of the others, which would silently be a different group. Plain Python, no
mmengine: tools and the library share it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Iterable, Mapping
from typing import NamedTuple


class MeanSE(NamedTuple):
    """Mean, standard error and the number of values they came from.

    ``mean`` is None when there is no value or one of them is missing; ``se`` is None when
    there are fewer than two values (not measured).
    """

    mean: float | None
    se: float | None
    n: int

    @property
    def sd(self) -> float | None:
        """The sample standard deviation behind ``se`` (None where ``se`` is)."""
        return None if self.se is None else self.se * math.sqrt(self.n)


def mean_se(values: Iterable[float | None]) -> MeanSE:
    """Mean ± standard error (sample std / sqrt(n)) of ``values``; see `MeanSE` for None."""
    values = list(values)
    n = len(values)
    if n == 0 or any(v is None for v in values):
        return MeanSE(None, None, n)
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(n) if n > 1 else None
    return MeanSE(mean, se, n)


def paired_difference(values: Mapping[Hashable, float | None],
                      baseline: Mapping[Hashable, float | None]) -> MeanSE:
    """Mean ± SE of ``values[k] - baseline[k]`` over the keys (e.g. seeds) both measured.

    Runs of one seed share their initialisation and data order, so the spread of the paired
    differences is the fair one for "within N points of the baseline" (often much smaller
    than either side's own spread). Keys only one side has, or with a missing value, are left
    out; n is the number of pairs.
    """
    diffs = [v - baseline[k] for k, v in values.items()
             if v is not None and baseline.get(k) is not None]
    return mean_se(diffs)
