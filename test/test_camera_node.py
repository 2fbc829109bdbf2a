"""camera_node as a real process: frames and camera_info over DDS, clean end of file, clear start errors."""
import pytest

from conftest import require_shared
from ros_graph import NodeProcess, ros_args, spin_until, stamp_ns

rclpy = pytest.importorskip('rclpy')
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from emotion_ros.nodes.qos import latest_frame_qos  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture
def listener():
    rclpy.init()
    node = rclpy.create_node('camera_test_listener')
    yield node
    node.destroy_node()
    rclpy.shutdown()


def test_file_source_publishes_every_frame_then_ends_cleanly(listener, ros_env, tmp_path):
    clip = require_shared('media', 'head-pose-face-detection-male.mp4')
    images, infos = [], []
    listener.create_subscription(Image, 'image_raw', images.append, latest_frame_qos(100))
    listener.create_subscription(CameraInfo, 'camera_info', infos.append, latest_frame_qos(100))
    cam = NodeProcess('camera_node', ros_args({'source': str(clip), 'fps': 30.0, 'frame_id': 'cam_test',
                                               'wait_for_subscribers': 1}), ros_env, tmp_path)
    try:
        spin_until(listener, lambda: cam.proc.poll() is not None and len(images) >= 62, 60)
        spin_until(listener, lambda: False, 0.5)
    finally:
        code = cam.stop()
    assert code == 0, cam.output
    assert 'end of file source' in cam.output and '62 frames published' in cam.output
    assert len(images) == 62
    assert {(m.width, m.height, m.encoding, m.header.frame_id) for m in images} == {(480, 270, 'bgr8', 'cam_test')}
    stamps = [stamp_ns(m.header) for m in images]
    assert stamps == sorted(stamps) and len(set(stamps)) == 62
    assert len(infos) >= 60 and {stamp_ns(i.header) for i in infos} <= set(stamps)


def test_loop_and_resize(listener, ros_env, tmp_path):
    clip = require_shared('media', 'classroom.mp4')
    images = []
    listener.create_subscription(Image, 'image_raw', images.append, latest_frame_qos(200))
    cam = NodeProcess('camera_node', ros_args({'source': str(clip), 'fps': 60.0, 'loop': True, 'width': 320,
                                               'height': 180, 'wait_for_subscribers': 1}), ros_env, tmp_path)
    try:
        spin_until(listener, lambda: len(images) >= 60, 60)
    finally:
        cam.stop()
    assert len(images) >= 60 and cam.proc.returncode in (0, -2)  # 45-frame clip looped, still running
    assert {(m.width, m.height) for m in images} == {(320, 180)}


@pytest.mark.parametrize('params,needle', [
    ({'source': '/nonexistent/clip.mp4'}, 'video file not found: /nonexistent/clip.mp4'),
    ({'fps': -5.0}, 'fps'),
])
def test_bad_start_exits_nonzero_with_reason(ros_env, tmp_path, params, needle):
    cam = NodeProcess('camera_node', ros_args(params), ros_env, tmp_path)
    try:
        code = cam.wait(60)
    finally:
        cam.stop()
    assert code == 2, cam.output
    assert 'cannot start' in cam.output and needle in cam.output
    assert 'Traceback' not in cam.output
