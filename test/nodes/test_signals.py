"""SIGINT (Ctrl-C, `ros2 launch`) and SIGTERM (systemd, launch's escalation, `kill`) end every node process with
exit code 0, after it took its `shutdown` transition while its context was still valid (issue 24 row 11).

Each node runs as its console script; a probe in this process waits for it to be `active` (its get_state
service), signals it and reads what it published last. The HRI publisher must send its final empty `tracked`
list (on cf495d6 the publish raised "publisher's context is invalid" and the process exited 1).
"""
from __future__ import annotations

import os
import signal

import pytest

from ros_graph import NodeProcess, ros_args, spin_until, wait_active

pytest.importorskip('rclpy')

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.timeout(300)]

# node name -> (console script, parameters)
NODES = {
    'camera': ('camera_node', {'source': 'demo', 'loop': True, 'fps': 5.0}),
    'face_detector': ('face_detector_node', {}),
    'emotion_classifier': ('emotion_classifier_node', {'num_threads': 1}),
    'dataset_recorder': ('dataset_recorder_node', {}),
    'hue_actuator': ('hue_actuator_node', {'dry_run': True}),
    'hri_publisher': ('hri_publisher_node', {}),
    'emotion_viewer': ('emotion_viewer', {'port': 0}),
}


def end_with(proc: NodeProcess, signame: str, node, timeout: float = 60.0) -> int:
    """Signal the process; `node` keeps spinning while it ends, as a consumer does (a sample still untaken when
    its writer went was lost under two CPU hogs)."""
    os.killpg(proc.proc.pid, getattr(signal, signame))
    spin_until(node, lambda: proc.proc.poll() is not None, timeout)
    return proc.wait(timeout=10)


@pytest.mark.parametrize('signame', ['SIGINT', 'SIGTERM'])
@pytest.mark.parametrize('name', list(NODES))
def test_every_node_ends_with_0_on_a_signal_after_its_shutdown_transition(ros_node, ros_env, tmp_path, name,
                                                                          signame):
    script, params = NODES[name]
    env = dict(ros_env, HOME=str(tmp_path / 'home'))        # dataset_recorder's default folder: ~/emotion_dataset
    proc = NodeProcess(script, ros_args(params), env, tmp_path)
    try:
        wait_active(ros_node, name, proc)
        code = end_with(proc, signame, ros_node)
    finally:
        proc.stop()
    out = proc.output
    assert code == 0, out[-3000:]
    assert f'shut down ({signame} received); exiting' in out, out[-3000:]
    assert 'Traceback' not in out and 'KeyboardInterrupt' not in out, out[-3000:]


@pytest.mark.parametrize('signame', ['SIGINT', 'SIGTERM'])
def test_hri_publisher_sends_its_final_empty_tracked_list_on_a_signal(ros_node, ros_env, tmp_path, signame):
    pytest.importorskip('hri_msgs.msg', reason='hri_msgs is not built into this venv (`make hri-msgs`)')
    from hri_feed import HriFeed
    feed = HriFeed(ros_node)
    proc = NodeProcess('hri_publisher_node', ros_args({'grace_period_s': 600.0}), ros_env, tmp_path)
    try:
        wait_active(ros_node, 'hri_publisher', proc)
        assert feed.matched(), proc.output[-3000:]
        assert feed.until_listed(['3'], lambda ids: ids == ['f3']), (feed.tracked, proc.output[-3000:])
        code = end_with(proc, signame, ros_node)
        spin_until(ros_node, lambda: feed.tracked[-1].ids == [], 10.0)
    finally:
        proc.stop()
    assert code == 0, proc.output[-3000:]
    assert feed.tracked[-1].ids == [], [m.ids for m in feed.tracked[-5:]]
    assert 'Traceback' not in proc.output, proc.output[-3000:]
