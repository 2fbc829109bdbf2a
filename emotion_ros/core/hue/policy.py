"""When the light changes: which face to follow, when an expression counts as held, what to send to whom.

Time is always passed in (monotonic seconds) so every rule is unit-testable with a fake clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

from emotion_ros.core.hue.colors import LightState

HUE_MAX_LIGHT_COMMANDS_PER_S = 10.0
HUE_MAX_GROUP_COMMANDS_PER_S = 1.0


@dataclass(frozen=True)
class Observation:
    """One face's expression in one frame (ROS-free view of an Emotion message)."""
    track_id: str
    area: float
    label: str
    confidence: float


def select_face(observations: Iterable[Observation], follow_id: str = '') -> Optional[Observation]:
    """The face with track id `follow_id`, or the largest face when `follow_id` is empty."""
    best = None
    for obs in observations:
        if follow_id:
            if obs.track_id == follow_id:
                return obs
        elif best is None or obs.area > best.area:
            best = obs
    return best


class ExpressionHold:
    """Accept a new expression only after it was seen without a break, each time with at least
    `min_confidence`, for `hold_s`: one odd frame never switches the light. A confidence that is not a
    finite number in [0, 1] (NaN, inf from a broken model) never counts."""

    def __init__(self):
        self.accepted: Optional[str] = None
        self._candidate: Optional[str] = None
        self._since = 0.0
        self._last_face: Optional[float] = None

    def observe(self, label: str, confidence: float, now: float, hold_s: float, min_confidence: float) -> Optional[str]:
        """The newly accepted label, or None when nothing changes."""
        self._last_face = now
        if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0 and confidence >= min_confidence):
            # NaN compares False with everything, so `confidence < min_confidence` would let it through
            self._candidate = None
            return None
        if label != self._candidate:
            self._candidate, self._since = label, now
        if label != self.accepted and now - self._since >= hold_s:
            self.accepted = label
            return label
        return None

    def no_face(self, now: float) -> None:
        self._candidate = None

    def idle(self, now: float, after_s: float, label: str) -> Optional[str]:
        """`label` once no followed face was seen for `after_s` (empty label: keep the last state)."""
        if not label or self.accepted == label:
            return None
        last = self._last_face if self._last_face is not None else self._start(now)
        if now - last >= after_s:
            self.accepted, self._candidate = label, None
            return label
        return None

    def _start(self, now: float) -> float:
        self._last_face = now
        return now


class RateLimiter:
    """Commands at least 1/rate apart: never more than `rate` in any 1 s window, and no burst that the
    bridge would have to queue (it forwards commands to the Zigbee network one by one)."""

    def __init__(self):
        self._last = -math.inf

    def allows(self, now: float, rate: float) -> bool:
        return now - self._last >= 1.0 / rate - 1e-9

    def record(self, now: float) -> None:
        self._last = now

    def next_allowed(self, now: float, rate: float) -> float:
        return max(now, self._last + 1.0 / rate)


@dataclass(frozen=True)
class Target:
    kind: str  # 'light' or 'group'
    ref: str   # id or name as configured

    def __str__(self) -> str:
        return f'{self.kind} {self.ref}'


@dataclass
class _TargetState:
    shown: Optional[LightState] = None   # what the bridge confirmed; None = unknown
    busy_until: float = -math.inf         # end of the transition last sent


class LightScheduler:
    """Sends each target only the difference between what it shows and what it should show,
    within the bridge's rate limits and not in the middle of a transition."""

    def __init__(self, targets: Iterable[Target]):
        self.targets: List[Target] = list(targets)
        self._state: Dict[Target, _TargetState] = {t: _TargetState() for t in self.targets}
        self.wanted: Optional[LightState] = None
        self.label: Optional[str] = None
        self._light_limit = RateLimiter()
        self._group_limit = RateLimiter()

    def want(self, label: str, state: LightState) -> bool:
        """Set the state every target should show; False when that is already what is wanted."""
        changed = state != self.wanted
        self.label, self.wanted = label, state
        return changed

    def pending(self) -> List[Target]:
        if self.wanted is None:
            return []
        return [t for t in self.targets if self._state[t].shown != self.wanted]

    def blocked(self, target: Target, now: float, light_rate: float, group_rate: float) -> Optional[str]:
        """Why `target` cannot be sent to now ('transition', 'rate_limited'), or None."""
        if now < self._state[target].busy_until:
            return 'transition'
        if not self._light_limit.allows(now, min(light_rate, HUE_MAX_LIGHT_COMMANDS_PER_S)):
            return 'rate_limited'
        if target.kind == 'group' and not self._group_limit.allows(now, min(group_rate, HUE_MAX_GROUP_COMMANDS_PER_S)):
            return 'rate_limited'
        return None

    def take(self, target: Target, now: float) -> LightState:
        """Reserve a command slot for `target` (counted whether or not the bridge answers)."""
        self._light_limit.record(now)
        if target.kind == 'group':
            self._group_limit.record(now)
        return self.wanted

    def finished(self, target: Target, now: float) -> None:
        """The request for `target` returned at `now` (answered or not): the rate limits count from here, so
        the bridge sees commands at least 1/rate apart however long one took to arrive."""
        self._light_limit.record(now)
        if target.kind == 'group':
            self._group_limit.record(now)

    def sent(self, target: Target, state: LightState, now: float) -> None:
        st = self._state[target]
        st.shown, st.busy_until = state, now + state.transition_s

    def unknown(self, targets: Optional[Iterable[Target]] = None) -> None:
        """Forget what the given (default: all) targets show, so the wanted state is sent again."""
        for t in (self.targets if targets is None else targets):
            self._state[t].shown = None
            self._state[t].busy_until = -math.inf

    def shown(self, target: Target) -> Optional[LightState]:
        return self._state[target].shown
