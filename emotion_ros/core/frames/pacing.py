"""Which frames a node processes when it cannot (or should not) take every one: evenly spaced, newest first.

`FramePacer.admit(stamp)` implements an optional processing-rate limit like hri_face_detect's
`processing_rate`: frames are admitted on a fixed grid of 1/max_rate_hz seconds, so at 30 fps and 20 Hz
two of every three frames pass, evenly, instead of bursts. Without a limit every frame is admitted and
the node keeps up adaptively: its subscription keeps only the newest frame (depth 1), so while it is busy
older frames are replaced, never queued, and latency stays bounded by about one processing time.
`FramePacer.missed` counts the frames that never reached the node that way (gaps in the input stamps
longer than the camera's own interval), so /diagnostics can say how many frames the machine could not keep
up with.
"""
from __future__ import annotations

from collections import deque


class FramePacer:
    """Rate limit on header stamps (seconds) plus a count of frames lost before they reached us."""

    def __init__(self, max_rate_hz: float = 0.0):
        self.max_rate_hz = max_rate_hz
        self.admitted = 0
        self.skipped = 0            # refused by the rate limit
        self.missed = 0             # never arrived: replaced in the depth-1 queue while we were busy
        self._next_due = None
        self._last_stamp = None
        self._gaps = deque(maxlen=31)   # recent stamp gaps; their lower quartile is the source's interval

    def admit(self, stamp: float) -> bool:
        """True when the frame stamped `stamp` should be processed now."""
        self._count_missed(stamp)
        period = 1.0 / self.max_rate_hz if self.max_rate_hz > 0 else 0.0
        if period and self._next_due is not None and stamp < self._next_due - 0.25 * self._frame_interval(period):
            self.skipped += 1
            return False
        if period:
            due = stamp if self._next_due is None else self._next_due
            # On the grid while frames come on time (30 fps at 20 Hz: gaps of 1 and 2 frames, 2 of 3 pass). A frame
            # a whole camera interval or more late means the one due was lost on the way: re-anchor on this one,
            # or the grid would admit the next frame one interval later (seen on a busy machine: 0.033 s apart at
            # 10 Hz).
            late = stamp - due
            on_grid = late < period and late < 0.75 * self._frame_interval(period)
            self._next_due = due + period if on_grid else stamp + period
        self.admitted += 1
        return True

    def _frame_interval(self, fallback: float) -> float:
        if not self._gaps:
            return fallback
        return min(self._quartile(), fallback)

    def _quartile(self) -> float:
        return sorted(self._gaps)[len(self._gaps) // 4]

    def _count_missed(self, stamp: float) -> None:
        last, self._last_stamp = self._last_stamp, stamp
        if last is None or stamp <= last:
            return
        gap = stamp - last
        if len(self._gaps) >= 3:
            interval = self._quartile()       # a quartile, not the median: with every other frame lost
            if gap > 10 * interval:           # half the gaps are double ones. A pause (source restarted,
                return                        # node inactive) is no frame missed, and not a new interval
            if gap > 1.6 * interval:
                self.missed += max(0, int(round(gap / interval)) - 1)
        self._gaps.append(gap)
