"""camera_node as a real process: frames and camera_info over DDS, clean end of file, clear start errors."""
import pytest

from conftest import require_shared
from ros_graph import NodeProcess, ros_args, set_param, spin_until, stamp_ns

pytest.importorskip('rclpy')
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from emotion_ros.nodes.qos import latest_frame_qos  # noqa: E402

pytestmark = pytest.mark.ros
PROBE_NODE = 'camera_test_listener'   # the conftest's ros_node, named so a camera can wait for it


def test_file_source_publishes_every_frame_then_ends_cleanly(ros_node, ros_env, tmp_path):
    clip = require_shared('media', 'head-pose-face-detection-male.mp4')
    images, infos = [], []
    ros_node.create_subscription(Image, 'image_raw', images.append, latest_frame_qos(100))
    ros_node.create_subscription(CameraInfo, 'camera_info', infos.append, latest_frame_qos(100))
    cam = NodeProcess('camera_node', ros_args({'source': str(clip), 'fps': 30.0, 'frame_id': 'cam_test',
                                               'wait_for_subscribers': 1}), ros_env, tmp_path)
    try:
        spin_until(ros_node, lambda: cam.proc.poll() is not None and len(images) >= 62, 60)
        spin_until(ros_node, lambda: False, 0.5)
    finally:
        code = cam.stop()
    assert code == 0, cam.output
    assert 'end of file source' in cam.output and '62 frames published' in cam.output
    assert len(images) == 62
    assert {(m.width, m.height, m.encoding, m.header.frame_id) for m in images} == {(480, 270, 'bgr8', 'cam_test')}
    stamps = [stamp_ns(m.header) for m in images]
    assert stamps == sorted(stamps) and len(set(stamps)) == 62
    assert len(infos) >= 60 and {stamp_ns(i.header) for i in infos} <= set(stamps)


def test_loop_and_resize(ros_node, ros_env, tmp_path):
    clip = require_shared('media', 'classroom.mp4')
    images = []
    ros_node.create_subscription(Image, 'image_raw', images.append, latest_frame_qos(200))
    cam = NodeProcess('camera_node', ros_args({'source': str(clip), 'fps': 60.0, 'loop': True, 'width': 320,
                                               'height': 180, 'wait_for_subscribers': 1}), ros_env, tmp_path)
    try:
        spin_until(ros_node, lambda: len(images) >= 60, 60)
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


def _median_interval_ms(images):
    import numpy as np
    return float(np.median(np.diff([stamp_ns(m.header) for m in images]))) / 1e6


def test_file_plays_at_its_own_rate_and_fps_applies_at_runtime(ros_node, ros_env, tmp_path):
    clip = require_shared('media', 'head-pose-face-detection-male.mp4')  # 12 fps
    images = []
    ros_node.create_subscription(Image, 'image_raw', images.append, latest_frame_qos(200))
    cam = NodeProcess('camera_node', ros_args({'source': str(clip), 'loop': True, 'wait_for_subscribers': 1}),
                      ros_env, tmp_path)
    try:
        assert spin_until(ros_node, lambda: len(images) >= 15, 60), cam.output
        own_rate = _median_interval_ms(images[-12:])
        set_param(ros_node, 'camera', 'fps', 60.0)
        n = len(images)
        assert spin_until(ros_node, lambda: len(images) >= n + 30, 60), cam.output
        fast = _median_interval_ms(images[-20:])
    finally:
        cam.stop()
    assert 'at 12.0 fps (its own rate)' in cam.output
    assert own_rate > 60.0, own_rate  # 83 ms at 12 fps; 33 ms would be the old fixed 30 fps
    assert fast < 0.5 * own_rate, (own_rate, fast)  # 17 ms at 60 fps; a busy machine is slower, not 83 ms
    assert 'publishing at 60.0 fps' in cam.output


def test_wait_timeout_applies_at_runtime(ros_node, ros_env, tmp_path):
    images = []
    ros_node.create_subscription(Image, 'image_raw', images.append, latest_frame_qos(50))
    cam = NodeProcess('camera_node', ros_args({'source': 'demo', 'wait_for_subscribers': 5,
                                               'wait_timeout_s': 3600.0}), ros_env, tmp_path)
    try:
        spin_until(ros_node, lambda: 'waiting for image_raw subscribers: 5' in cam.output, 60)
        spin_until(ros_node, lambda: False, 1.0)
        assert not images, 'published before its 5 subscribers or the timeout'
        set_param(ros_node, 'camera', 'wait_timeout_s', 0.5)
        assert spin_until(ros_node, lambda: len(images) >= 5, 60), cam.output
    finally:
        cam.stop()
    assert 'after 0.5 s: 1 of 5 image_raw subscribers; starting anyway' in cam.output


def test_loop_and_frame_id_apply_at_runtime(ros_node, ros_env, tmp_path):
    """loop switched on before a 4 s clip ends plays it again; switched off, the node ends at the clip's end."""
    images = []
    ros_node.create_subscription(Image, 'image_raw', images.append, latest_frame_qos(200))
    cam = NodeProcess('camera_node', ros_args({'source': 'demo', 'demo_frames': 40, 'fps': 10.0,
                                               'wait_for_subscribers': 1}), ros_env, tmp_path)
    try:
        assert spin_until(ros_node, lambda: len(images) >= 3, 60), cam.output
        set_param(ros_node, 'camera', 'loop', True)
        set_param(ros_node, 'camera', 'frame_id', 'cam_left')
        assert spin_until(ros_node, lambda: len(images) >= 50, 60), cam.output     # past the clip's 40 frames
        assert images[-1].header.frame_id == 'cam_left'
        set_param(ros_node, 'camera', 'loop', False)
        n = len(images)
        assert spin_until(ros_node, lambda: cam.proc.poll() is not None, 60), cam.output
    finally:
        cam.stop()
    assert cam.proc.returncode == 0, cam.output
    assert len(images) - n <= 40, (n, len(images))                       # it ended at the end of this pass
    assert images[0].header.frame_id == 'camera'


@pytest.mark.parametrize('held_by, release', [
    ({'wait_for_subscribers': 5}, ('wait_for_subscribers', 1)),
    ({'wait_for_nodes': PROBE_NODE + ',absent_node'}, ('wait_for_nodes', PROBE_NODE)),
    ({'wait_for_subscribers': 1, 'wait_settle_s': 60.0}, ('wait_settle_s', 0.0)),
])
def test_wait_conditions_apply_at_runtime(ros_node, ros_env, tmp_path, held_by, release):
    """A camera held back by its wait condition (timeout one hour) starts once the condition is changed."""
    images = []
    ros_node.create_subscription(Image, 'image_raw', images.append, latest_frame_qos(50))
    cam = NodeProcess('camera_node', ros_args({'source': 'demo', 'fps': 10.0, 'wait_timeout_s': 3600.0, **held_by}),
                      ros_env, tmp_path)
    try:
        assert spin_until(ros_node, lambda: len(ros_node.get_publishers_info_by_topic('/image_raw')) > 0, 60), \
            cam.output
        spin_until(ros_node, lambda: False, 2.0)
        assert not images, f'published while held by {held_by}'
        set_param(ros_node, 'camera', *release)
        assert spin_until(ros_node, lambda: len(images) >= 5, 60), cam.output
    finally:
        cam.stop()
    assert 'starting anyway' not in cam.output
