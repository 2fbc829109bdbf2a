"""Temporal smoothing of class probabilities per tracked face, so labels do not flicker frame to frame."""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np


def valid_scores(probs) -> bool:
    """True for a vector of finite, non-negative scores with a positive sum (what may be compared or published)."""
    p = np.asarray(probs, dtype=np.float64)
    return p.size > 0 and bool(np.all(np.isfinite(p))) and bool(np.all(p >= 0.0)) and float(p.sum()) > 0.0


class ScoreSmoother:
    """Exponential moving average per track id with a time constant (robust to a varying frame rate).

    The weight of a new observation is 1 - exp(-dt / time_constant_s); time_constant_s = 0 disables
    smoothing. Tracks unseen for `max_age_s` are forgotten; untracked faces (id "") are never smoothed.
    Non-finite scores are refused (ValueError), so one bad model output cannot poison a track forever.
    """

    def __init__(self, time_constant_s: float = 0.3, max_age_s: float = 2.0):
        self.time_constant_s = time_constant_s
        self.max_age_s = max_age_s
        self._state: Dict[str, Tuple[float, np.ndarray]] = {}

    def update(self, track_id: str, probs: np.ndarray, t: float) -> np.ndarray:
        probs = np.asarray(probs, dtype=np.float32)
        if not valid_scores(probs):
            raise ValueError('scores are not finite, non-negative numbers with a positive sum')
        if not track_id or self.time_constant_s <= 0 or not math.isfinite(t):
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

    def update_frame(self, track_ids: Sequence[str], probs: Sequence[np.ndarray], t: float) -> Tuple[List, List[str]]:
        """Smooth every face of one frame: (smoothed scores per face, ids that occurred more than once).

        A repeated id within one frame would otherwise hand the first face's state to the later ones
        (dt = 0 keeps the old average): each repeat gets a state of its own, keyed by its rank among
        the faces with that id, so two faces never share scores.
        """
        seen: Dict[str, int] = {}
        out, repeated = [], []
        for track_id, p in zip(track_ids, probs):
            key = track_id
            if track_id:
                n = seen.get(track_id, 0)
                seen[track_id] = n + 1
                if n:
                    key = f'{track_id}\x00{n}'
                    if n == 1:
                        repeated.append(track_id)
            out.append(self.update(key, p, t))
        return out, repeated

    def clear(self) -> None:
        """Forget every track (e.g. scores from now on come through another calibration: no blend of the two)."""
        self._state.clear()

    def forget_older_than(self, t: float) -> None:
        for key in [k for k, (seen, _) in self._state.items() if t - seen > self.max_age_s]:
            del self._state[key]

    def __len__(self) -> int:
        return len(self._state)
