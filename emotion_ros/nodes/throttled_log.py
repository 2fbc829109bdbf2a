"""One clear log line per problem kind, at most once per period (bad input can arrive at 30 Hz).

Every line is capped and stripped of control characters (`emotion_ros.core.log_text.one_line`), and
each severity has its own call into the rclpy logger: rclpy remembers the severity per call site and
raises "Logger severity cannot be changed between calls" when one line of code logs at two severities.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Optional

from emotion_ros.core.log_text import one_line


class ThrottledLog:
    def __init__(self, logger, period_s: float = 5.0, on_warning: Optional[Callable[[str], None]] = None):
        self._logger, self._period, self._on_warning = logger, period_s, on_warning
        self._last: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}
        self.last_error = ''

    def _due(self, kind: str, text: str) -> Optional[str]:
        """The line to write now, or None while `kind` was logged less than a period ago."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) < self._period:
            return None
        self._last[kind] = now
        n = self.counts[kind]
        return one_line(text) + (f' ({n} so far)' if n > 1 else '')

    def warning(self, kind: str, text: str) -> None:
        self.last_error = one_line(text)
        if self._on_warning is not None:
            self._on_warning(self.last_error)
        line = self._due(kind, text)
        if line is not None:
            self._logger.warning(line)

    def info(self, kind: str, text: str) -> None:
        line = self._due(kind, text)
        if line is not None:
            self._logger.info(line)
