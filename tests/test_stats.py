"""Wilson score intervals and rate entries (dexlite_core.stats)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from dexlite_core.stats import format_rate, rate_entry, wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (0, 10, 0.0, 0.2775),  # published Wilson score intervals (e.g. Newcombe 1998's 81/263)
        (5, 10, 0.2366, 0.7634),
        (81, 263, 0.2553, 0.3662),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_interval_matches_published_values(k: int, n: int, lo: float, hi: float) -> None:
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(lo, abs=1e-4) and got[1] == pytest.approx(hi, abs=1e-4)


def test_wilson_interval_edges() -> None:
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    lo, hi = wilson_interval(7, 7)
    assert hi == 1.0 and 0.0 < lo < 1.0
    lo, hi = wilson_interval(0, 7)
    assert lo == 0.0 and 0.0 < hi < 1.0
    # symmetric in successes and failures, and narrower with more trials at the same rate
    a, b = wilson_interval(3, 20), wilson_interval(17, 20)
    assert a[0] == pytest.approx(1 - b[1]) and a[1] == pytest.approx(1 - b[0])
    assert np.diff(wilson_interval(300, 2000))[0] < np.diff(wilson_interval(3, 20))[0]
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_rate_entry_drops_untested_and_is_json_safe() -> None:
    e = rate_entry(pd.Series([True, None, False, np.nan, True, True], dtype=object))
    assert (e["n"], e["k"], e["rate"]) == (4, 3, 0.75)
    assert e["ci95"] == pytest.approx(list(wilson_interval(3, 4)))
    assert type(e["n"]) is int and all(type(x) is float for x in (e["rate"], *e["ci95"]))
    assert json.loads(json.dumps(e)) == e
    assert rate_entry(np.array([True, True]))["rate"] == 1.0
    assert rate_entry([False, False])["ci95"][0] == 0.0
    empty = rate_entry([None, None])
    assert empty == {"n": 0, "k": 0, "rate": None, "ci95": [None, None]}
    assert rate_entry([]) == empty
    # a pandas nullable boolean column (pd.NA) too
    assert rate_entry(pd.Series([True, pd.NA, False], dtype="boolean"))["n"] == 2


def test_format_rate() -> None:
    e = rate_entry([True] * 381 + [False] * 67)
    assert format_rate(e) == "85.0% [81.4, 88.0] (n=448)"
    assert format_rate(rate_entry([None])) == "n/a"
    assert format_rate(None) == "n/a"
