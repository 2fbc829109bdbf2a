"""Robust summaries of timing samples: medians and tails, never means alone (a shared CPU has outliers)."""
from __future__ import annotations

import numpy as np


def summarise_ms(values_ms) -> dict:
    v = np.asarray(list(values_ms), dtype=np.float64)
    if v.size == 0:
        return {'n': 0, 'p50_ms': None, 'p95_ms': None, 'max_ms': None, 'mean_ms': None}
    return {'n': int(v.size), 'p50_ms': float(np.median(v)), 'p95_ms': float(np.percentile(v, 95)),
            'max_ms': float(v.max()), 'mean_ms': float(v.mean())}


def ratio(value, baseline):
    """value / baseline, or None when either is missing or the baseline is zero."""
    if value is None or baseline in (None, 0):
        return None
    return float(value) / float(baseline)
