"""Temporal smoothing of class probabilities per tracked face, so labels do not flicker frame to frame."""
from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np


class ScoreSmoother:
    """Exponential moving average per track id with a time constant (robust to a varying frame rate).

    The weight of a new observation is 1 - exp(-dt / time_constant_s); time_constant_s = 0 disables
    smoothing. Tracks unseen for `max_age_s` are forgotten; untracked faces (id "") are never smoothed.
    """

    def __init__(self, time_constant_s: float = 0.3, max_age_s: float = 2.0):
        self.time_constant_s = time_constant_s
        self.max_age_s = max_age_s
        self._state: Dict[str, Tuple[float, np.ndarray]] = {}

    def update(self, track_id: str, probs: np.ndarray, t: float) -> np.ndarray:
        probs = np.asarray(probs, dtype=np.float32)
        if not track_id or self.time_constant_s <= 0:
            return probs
        previous = self._state.get(track_id)
        if previous is None or previous[1].shape != probs.shape or t - previous[0] > self.max_age_s or t < previous[0]:
            smoothed = probs
        else:
            w = 1.0 - math.exp(-(t - previous[0]) / self.time_constant_s)
            smoothed = previous[1] + w * (probs - previous[1])
            smoothed = smoothed / max(float(smoothed.sum()), 1e-12)
        self._state[track_id] = (t, smoothed)
        return smoothed

    def forget_older_than(self, t: float) -> None:
        for key in [k for k, (seen, _) in self._state.items() if t - seen > self.max_age_s]:
            del self._state[key]

    def __len__(self) -> int:
        return len(self._state)
