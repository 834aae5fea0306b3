"""Success rates with their sample size and a 95% Wilson score interval.

Every rate the evaluation reports goes through :func:`rate_entry`, so it carries ``n`` (grasps that
were tested), ``k`` (successes) and ``ci95``; :func:`format_rate` prints one for Markdown, HTML and
the CLI, e.g. ``85.0% [81.4, 88.1] (n=448)``.

The Wilson interval (Wilson 1927; Agresti & Coull 1998) stays inside [0, 1] and keeps close to its
nominal coverage for small n and for rates near 0 or 1, where the normal ("Wald") interval fails.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of `k` successes in `n` trials (two-sided, `z` = 1.96 for 95%);
    ``(nan, nan)`` when ``n == 0``."""
    k, n = int(k), int(n)
    if n <= 0:
        return (math.nan, math.nan)
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    lo, hi = centre - half, centre + half
    # exact at the ends (rounding would leave 1e-17 outside or inside)
    return (0.0 if k == 0 else max(0.0, lo), 1.0 if k == n else min(1.0, hi))


def _as_series(success: Any) -> pd.Series:
    if isinstance(success, pd.Series):
        return success.astype(object)
    if isinstance(success, np.ndarray):
        return pd.Series(list(success), dtype=object)
    return pd.Series(list(success) if isinstance(success, Iterable) else [success], dtype=object)


def rate_entry(success: Any) -> dict[str, Any]:
    """``{"n", "k", "rate", "ci95": [lo, hi]}`` of a bool array / Series / list; None and NaN
    entries (not tested) are dropped. ``rate`` None and ``ci95`` ``[None, None]`` when nothing is
    left. Plain Python ints and floats (JSON-safe)."""
    s = _as_series(success)
    s = s[~s.isna()]
    n = int(len(s))
    if n == 0:
        return {"n": 0, "k": 0, "rate": None, "ci95": [None, None]}
    k = int(sum(bool(v) for v in s))
    lo, hi = wilson_interval(k, n)
    return {"n": n, "k": k, "rate": float(k / n), "ci95": [float(lo), float(hi)]}


def format_rate(entry: Mapping[str, Any] | None) -> str:
    """``"85.0% [81.4, 88.1] (n=448)"``; ``"n/a"`` for a missing entry or one with ``n == 0``."""
    if not entry or not entry.get("n") or entry.get("rate") is None:
        return "n/a"
    lo, hi = entry.get("ci95") or (None, None)
    ci = "" if lo is None or hi is None else f" [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{100 * entry['rate']:.1f}%{ci} (n={int(entry['n'])})"
