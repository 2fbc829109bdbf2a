"""Per-node health on /diagnostics (diagnostic_msgs/DiagnosticArray), as ROS4HRI and yolo_ros nodes do."""
from __future__ import annotations

import time
from collections import deque
from typing import Callable, Dict

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node


class NodeDiagnostics:
    """Counts processed frames, latencies and drops; publishes a status once per `period_s`.

    `extra()` adds fixed facts (model, backend, source). Level: WARN when a frame was dropped or an error
    was logged in the last period, or when frames were missed (the machine could not keep up: the node
    processes the newest frame and older ones are replaced, see core.frame_pacing); ERROR when nothing was
    processed for 5 periods while input arrived. Frames skipped by a configured rate limit are counted
    (`skipped`) but are no warning: that is what was asked for.
    """

    def __init__(self, node: Node, extra: Callable[[], Dict[str, str]], period_s: float = 1.0):
        self._node, self._extra, self._period = node, extra, period_s
        self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._times = deque(maxlen=300)
        self._latencies = deque(maxlen=300)
        self.processed = 0
        self.inputs = 0
        self.dropped = 0
        self.skipped = 0
        self.missed = 0
        self.errors = 0
        self.last_error = ''
        self._period_errors = 0
        self._period_drops = 0
        self._period_missed = 0
        self._period_processed = 0
        self._last_processed_at = time.monotonic()
        node.create_timer(period_s, self.publish)

    def input(self) -> None:
        self.inputs += 1

    def done(self, latency_s: float = 0.0) -> None:
        now = time.monotonic()
        self.processed += 1
        self._period_processed += 1
        self._times.append(now)
        self._latencies.append(latency_s)
        self._last_processed_at = now

    def drop(self, n: int = 1) -> None:
        self.dropped += n
        self._period_drops += n

    def pacing(self, skipped: int, missed: int) -> None:
        """Totals from a FramePacer: frames skipped by the rate limit, frames missed while busy."""
        self._period_missed += max(0, missed - self.missed)
        self.skipped, self.missed = skipped, missed

    def error(self, text: str) -> None:
        self.errors += 1
        self._period_errors += 1
        self.last_error = text

    def status(self) -> DiagnosticStatus:
        now = time.monotonic()
        recent = [t for t in self._times if now - t <= 5.0]
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
        lat = sorted(self._latencies)
        p50 = lat[len(lat) // 2] * 1e3 if lat else 0.0
        p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))] * 1e3 if lat else 0.0
        level, message = DiagnosticStatus.OK, 'ok'
        if self._period_missed:
            share = self._period_processed / max(1, self._period_processed + self._period_missed)
            level, message = DiagnosticStatus.WARN, (f'not keeping up: processed {share:.0%} of frames in the last '
                                                     f'{self._period:g} s, always the newest (skipping evenly)')
        if self._period_errors or self._period_drops:
            level, message = DiagnosticStatus.WARN, self.last_error or f'{self._period_drops} dropped'
        if self.inputs and now - self._last_processed_at > 5 * self._period and self.processed < self.inputs:
            level, message = DiagnosticStatus.ERROR, 'input arrives but nothing is processed'
        values = {'rate_hz': f'{rate:.2f}', 'processed': str(self.processed), 'inputs': str(self.inputs),
                  'dropped': str(self.dropped), 'skipped_rate_limit': str(self.skipped),
                  'missed_busy': str(self.missed), 'errors': str(self.errors), 'latency_p50_ms': f'{p50:.2f}',
                  'latency_p95_ms': f'{p95:.2f}', 'last_error': self.last_error}
        values.update(self._extra())
        return DiagnosticStatus(level=level, name=self._node.get_fully_qualified_name(), message=message,
                                hardware_id='emotion_ros', values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def publish(self) -> None:
        msg = DiagnosticArray(status=[self.status()])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)
        self._period_errors = self._period_drops = self._period_missed = self._period_processed = 0


def latency_since(node: Node, header) -> float:
    """Seconds from a header stamp to now on the node's clock (both from the same clock source)."""
    return (node.get_clock().now().nanoseconds - (header.stamp.sec * 1_000_000_000 + header.stamp.nanosec)) / 1e9
