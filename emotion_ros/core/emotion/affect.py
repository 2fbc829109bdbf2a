"""Valence and arousal derived from class probabilities, until a model predicts them directly.

Each category gets a fixed point on Russell's circumplex (valence = pleasant/unpleasant, arousal =
activated/calm), both in -1..1; a face's (valence, arousal) is the probability-weighted mean of those
points, so an uncertain face drifts towards the origin instead of jumping between corners. Table,
sources and caveats: docs/affect.md.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from emotion_ros.core.emotion.labels import canonical_label

# (valence, arousal). Pleasure/arousal ratings of the emotion terms from Russell & Mehrabian (1977),
# as tabulated in Gebhard's ALMA model (2005); neutral is the origin; contempt is our estimate.
AFFECT_TABLE = {
    'angry': (-0.51, 0.59),
    'disgust': (-0.60, 0.35),
    'fear': (-0.64, 0.60),
    'happy': (0.81, 0.51),
    'sad': (-0.63, -0.27),
    'surprise': (0.40, 0.67),
    'neutral': (0.00, 0.00),
    'contempt': (-0.55, 0.20),
}


def valence_arousal(labels, probs):
    """Probability-weighted mean (valence, arousal) of the table points, each in -1..1.

    `probs` is (C,) -> two floats, or (N, C) -> two (N,) arrays. Labels are matched through
    `canonical_label`; labels without a table entry are left out and the rest renormalised; if no
    probability mass remains, the result is (0, 0) (neutral).
    """
    known, points = _table(tuple(str(n) for n in labels))
    p = np.asarray(probs, np.float64)
    single = p.ndim == 1
    p = np.atleast_2d(p)
    if p.shape[1] != len(known):
        raise ValueError(f'{len(known)} labels but probabilities of width {p.shape[1]}')
    w = np.where(known, np.clip(np.nan_to_num(p, nan=0.0), 0, None), 0.0)
    total = w.sum(1, keepdims=True)
    va = np.divide(w @ points, total, out=np.zeros((len(p), 2)), where=total > 0)
    va = np.clip(va, -1.0, 1.0)
    if single:
        return float(va[0, 0]), float(va[0, 1])
    return va[:, 0], va[:, 1]


@lru_cache(maxsize=64)
def _table(labels: tuple) -> tuple:
    """(known mask, (C, 2) points) for a label list: the same few lists every frame, built once each."""
    names = [canonical_label(n) for n in labels]
    known = np.array([n in AFFECT_TABLE for n in names], bool)
    points = np.array([AFFECT_TABLE.get(n, (0.0, 0.0)) for n in names], np.float64).reshape(-1, 2)
    known.flags.writeable = points.flags.writeable = False
    return known, points
