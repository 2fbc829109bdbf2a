"""One clear log line per problem kind, at most once per period (bad input can arrive at 30 Hz)."""
from __future__ import annotations

import time
from typing import Callable, Dict, Optional


class ThrottledLog:
    def __init__(self, logger, period_s: float = 5.0, on_warning: Optional[Callable[[str], None]] = None):
        self._logger, self._period, self._on_warning = logger, period_s, on_warning
        self._last: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}
        self.last_error = ''

    def warning(self, kind: str, text: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.last_error = text
        if self._on_warning is not None:
            self._on_warning(text)
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) >= self._period:
            self._last[kind] = now
            n = self.counts[kind]
            self._logger.warning(text + (f' ({n} so far)' if n > 1 else ''))
