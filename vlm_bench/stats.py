"""Medians and spreads of repeated timings.

A benchmark run repeats each measurement; :func:`summarize` reduces the
repeats to the median, the quartiles (inclusive method: the quartiles of 2
values are their lower and upper values' interpolations) and the extremes.

Example:
    >>> summarize([1.0, 2.0, 3.0, 4.0])["median"]
    2.5
    >>> iqr([1.0, 2.0, 3.0, 4.0, 5.0])
    2.0
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence


def _values(values: Iterable[float]) -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise ValueError("no values to summarize; run at least one repeat (--repeats >= 1)")
    bad = [v for v in out if math.isnan(v)]
    if bad:
        raise ValueError(f"{len(bad)} of {len(out)} values are NaN: {out!r}")
    return out


def median(values: Iterable[float]) -> float:
    """The median of ``values`` (mean of the two middle values for an even count).

    Example:
        >>> median([3.0, 1.0, 2.0])
        2.0
    """
    return float(statistics.median(_values(values)))


def quartiles(values: Iterable[float]) -> tuple[float, float]:
    """First and third quartile of ``values`` (``statistics.quantiles``, inclusive).

    One value is its own quartiles.

    Example:
        >>> quartiles([1.0, 2.0, 3.0, 4.0, 5.0])
        (2.0, 4.0)
    """
    vals = _values(values)
    if len(vals) == 1:
        return vals[0], vals[0]
    q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    return float(q1), float(q3)


def iqr(values: Iterable[float]) -> float:
    """Interquartile range: third minus first quartile.

    Example:
        >>> iqr([10.0])
        0.0
    """
    q1, q3 = quartiles(values)
    return q3 - q1


def summarize(values: Sequence[float] | Iterable[float]) -> dict[str, float | int]:
    """``n``, ``median``, ``q1``, ``q3``, ``iqr``, ``min``, ``max`` and ``mean`` of ``values``.

    Example:
        >>> s = summarize([1.0, 2.0, 4.0])
        >>> s["n"], s["median"], s["min"], s["max"]
        (3, 2.0, 1.0, 4.0)
    """
    vals = _values(values)
    q1, q3 = quartiles(vals)
    return {
        "n": len(vals),
        "median": median(vals),
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "min": min(vals),
        "max": max(vals),
        "mean": float(statistics.fmean(vals)),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``; None when either is None or the denominator is not positive.

    Example:
        >>> ratio(3.0, 2.0)
        1.5
        >>> ratio(1.0, 0.0) is None
        True
        >>> ratio(None, 2.0) is None
        True
    """
    if denominator is None or numerator is None or denominator <= 0:
        return None
    return numerator / denominator


__all__ = ["median", "quartiles", "iqr", "summarize", "ratio"]
