"""SIGINT (Ctrl-C, `ros2 launch`) and SIGTERM (systemd, launch's escalation, `kill`) end every node process with
exit code 0, after it took its `shutdown` transition while its context was still valid (issue 24 row 11).

Each node runs as its console script; a probe in this process waits for it to be `active` (its get_state
service), signals it and reads what it published last. The HRI publisher must send its final empty `tracked`
list (on cf495d6 the publish raised "publisher's context is invalid" and the process exited 1).
"""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from ros_graph import NodeProcess, ros_args, spin_until

rclpy = pytest.importorskip('rclpy')
from lifecycle_msgs.srv import GetState  # noqa: E402
from rclpy.qos import qos_profile_system_default  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from emotion_msgs.msg import Emotion, EmotionArray  # noqa: E402
from emotion_ros.nodes.qos import latest_frame_qos, results_qos  # noqa: E402
from emotion_ros.nodes.ros_image import bgr_to_image  # noqa: E402

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


@pytest.fixture
def probe():
    rclpy.init()
    node = rclpy.create_node('signal_probe')
    yield node
    node.destroy_node()
    rclpy.shutdown()


def wait_active(probe, name: str, proc: NodeProcess, timeout: float = 150.0) -> None:
    client = probe.create_client(GetState, f'/{name}/get_state')
    end = time.monotonic() + timeout
    label = ''
    while time.monotonic() < end and proc.proc.poll() is None:
        if client.wait_for_service(timeout_sec=1.0):
            future = client.call_async(GetState.Request())
            spin_until(probe, future.done, 10.0)
            label = future.result().current_state.label if future.done() and future.result() else ''
            if label == 'active':
                break
        time.sleep(0.2)
    probe.destroy_client(client)
    assert label == 'active', (name, label, proc.output[-3000:])


def end_with(proc: NodeProcess, signame: str, timeout: float = 60.0) -> int:
    os.killpg(proc.proc.pid, getattr(signal, signame))
    return proc.wait(timeout=timeout)


@pytest.mark.parametrize('signame', ['SIGINT', 'SIGTERM'])
@pytest.mark.parametrize('name', list(NODES))
def test_every_node_ends_with_0_on_a_signal_after_its_shutdown_transition(probe, ros_env, tmp_path, name,
                                                                          signame):
    script, params = NODES[name]
    env = dict(ros_env, HOME=str(tmp_path / 'home'))        # dataset_recorder's default folder: ~/emotion_dataset
    proc = NodeProcess(script, ros_args(params), env, tmp_path)
    try:
        wait_active(probe, name, proc)
        code = end_with(proc, signame)
    finally:
        proc.stop()
    out = proc.output
    assert code == 0, out[-3000:]
    assert f'shut down ({signame} received); exiting' in out, out[-3000:]
    assert 'Traceback' not in out and 'KeyboardInterrupt' not in out, out[-3000:]


@pytest.mark.parametrize('signame', ['SIGINT', 'SIGTERM'])
def test_hri_publisher_sends_its_final_empty_tracked_list_on_a_signal(probe, ros_env, tmp_path, signame):
    pytest.importorskip('hri_msgs.msg', reason='hri_msgs is not built into this venv (`make hri-msgs`)')
    from hri_msgs.msg import IdsList
    tracked = []
    probe.create_subscription(IdsList, '/humans/faces/tracked', tracked.append, qos_profile_system_default)
    images = probe.create_publisher(Image, 'image', latest_frame_qos(depth=10))
    emotions = probe.create_publisher(EmotionArray, 'emotions', results_qos())
    proc = NodeProcess('hri_publisher_node', ros_args({'grace_period_s': 600.0}), ros_env, tmp_path)
    try:
        wait_active(probe, 'hri_publisher', proc)
        assert spin_until(probe, lambda: images.get_subscription_count() and emotions.get_subscription_count()
                          and probe.count_publishers('/humans/faces/tracked'), 60)
        header = Header(frame_id='camera')
        header.stamp.sec = 7
        image = bgr_to_image(np.zeros((120, 160, 3), np.uint8), header)
        msg = EmotionArray(header=image.header)
        face = Emotion(expression='happy', confidence=0.9)
        face.face.id, face.face.roi.x_offset, face.face.roi.width, face.face.roi.height = '3', 10, 40, 40
        msg.emotions.append(face)

        def seen_face():
            return any(m.ids == ['f3'] for m in tracked)
        for _ in range(60):                    # until the consumer matched and got one list with the face
            images.publish(image)
            emotions.publish(msg)
            if spin_until(probe, seen_face, 1.0):
                break
        assert seen_face(), (tracked, proc.output[-3000:])
        code = end_with(proc, signame)
        spin_until(probe, lambda: tracked[-1].ids == [], 10.0)
    finally:
        proc.stop()
    assert code == 0, proc.output[-3000:]
    assert tracked[-1].ids == [], [m.ids for m in tracked[-5:]]
    assert 'Traceback' not in proc.output, proc.output[-3000:]
