"""NodeDiagnostics says when a node cannot keep up (frames missed), and counts rate-limit skips without alarm."""
import pytest

pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from emotion_ros.nodes.diagnostics import NodeDiagnostics  # noqa: E402

pytestmark = pytest.mark.ros


def values(status):
    return {kv.key: kv.value for kv in status.values}


def test_missed_frames_warn_with_the_share_processed(ros_node):
    diag = NodeDiagnostics(ros_node, lambda: {})
    for _ in range(20):
        diag.input()
        diag.done(0.01)
    diag.pacing(skipped=0, missed=10)
    status = diag.status()
    assert status.level == DiagnosticStatus.WARN and 'not keeping up: processed 67%' in status.message
    assert values(status)['missed_busy'] == '10'
    diag.publish()                                          # a new period: nothing missed since
    diag.done(0.01)
    diag.pacing(skipped=0, missed=10)
    assert diag.status().level == DiagnosticStatus.OK


def test_rate_limit_skips_are_counted_not_warned(ros_node):
    diag = NodeDiagnostics(ros_node, lambda: {})
    diag.done(0.01)
    diag.pacing(skipped=15, missed=0)
    status = diag.status()
    assert status.level == DiagnosticStatus.OK and values(status)['skipped_rate_limit'] == '15'
