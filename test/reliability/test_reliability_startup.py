"""Faults at start and in the source: bad models, bad parameters, absent devices, dropping streams.
Each is injected into the real node process; the node either refuses once with a clear reason (exit 2,
no traceback, no crash loop) or keeps running and recovers."""
import contextlib
import shutil
import threading
import time

import numpy as np
import pytest

from mjpeg_server import MjpegCamera
from ros_graph import NodeProcess, ros_args, set_param, spin_until

rclpy = pytest.importorskip('rclpy')
from sensor_msgs.msg import Image  # noqa: E402

from emotion_ros.core.emotion.model import default_model_path, labels_path_for  # noqa: E402
from emotion_ros.nodes.qos import latest_frame_qos  # noqa: E402

pytestmark = pytest.mark.ros


def _start_and_wait(script, params, env, tmp_path, timeout=60):
    proc = NodeProcess(script, ros_args(params), env, tmp_path)
    try:
        code = proc.wait(timeout)
    finally:
        proc.stop()
    return code, proc.output


@pytest.fixture(scope='module')
def bad_models(tmp_path_factory):
    d = tmp_path_factory.mktemp('models')
    labels = labels_path_for(default_model_path()).read_text()
    (d / 'corrupt.tflite').write_bytes(np.random.default_rng(0).bytes(4096))
    (d / 'corrupt.labels.txt').write_text(labels)
    shutil.copy(default_model_path(), d / 'mismatch.tflite')
    (d / 'mismatch.labels.txt').write_text('happy\nsad\nneutral\n')
    shutil.copy(default_model_path(), d / 'nolabels.tflite')
    import tensorflow as tf
    wrong = tf.keras.Sequential([tf.keras.Input((64, 64, 3)), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(7, activation='softmax')])
    (d / 'wrongshape.tflite').write_bytes(tf.lite.TFLiteConverter.from_keras_model(wrong).convert())
    (d / 'wrongshape.labels.txt').write_text(labels)
    return d


@pytest.mark.parametrize('name,needle', [
    ('missing', 'does not exist'), ('corrupt', 'not a usable TFLite model'), ('mismatch', 'classes but'),
    ('nolabels', 'labels file'), ('wrongshape', 'input shape'),
])
def test_bad_model_refuses_once_with_reason(bad_models, ros_env, tmp_path, name, needle):
    code, out = _start_and_wait('emotion_classifier_node', {'model_path': str(bad_models / f'{name}.tflite')},
                                ros_env, tmp_path)
    assert code == 2, out
    assert 'cannot start' in out and needle in out, out
    assert 'Traceback' not in out


def _classifier_output_once_loaded(params, ros_env, tmp_path, needle) -> str:
    """Start the classifier, wait (while it lives) until its log shows `needle`, stop it cleanly."""
    proc = NodeProcess('emotion_classifier_node', ros_args(params), ros_env, tmp_path)
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and needle not in proc.output:
            assert proc.proc.poll() is None, proc.output
            time.sleep(0.2)
    finally:
        code = proc.stop()
    assert needle in proc.output and code in (0, -2), proc.output
    return proc.output


def test_bad_model_falls_back_to_packaged_model_when_configured(bad_models, ros_env, tmp_path):
    out = _classifier_output_once_loaded({'model_path': str(bad_models / 'corrupt.tflite'),
                                          'fallback_to_default_model': True}, ros_env, tmp_path,
                                         f'model {default_model_path()}')
    assert 'falling back to the packaged model' in out


def test_shipped_model_chosen_by_name(ros_env, tmp_path):
    accurate = default_model_path().with_name('emotion_accurate.tflite')
    out = _classifier_output_once_loaded({'model_path': 'emotion_accurate'}, ros_env, tmp_path, f'model {accurate}')
    assert 'falling back' not in out


@pytest.mark.parametrize('script,params,needle', [
    ('face_detector_node', {'backend': 'dlib'}, "backend: 'dlib' is not one of"),
    ('face_detector_node', {'min_score': 1.5}, 'min_score'),
    ('emotion_classifier_node', {'num_threads': 0}, 'num_threads'),
    ('emotion_classifier_node', {'max_faces': -3}, 'max_faces'),
    ('camera_node', {'source': '7'}, 'cannot open webcam /dev/video7'),
    ('camera_node', {'frame_id': ''}, 'frame_id: must not be empty'),
])
def test_bad_parameters_and_absent_devices_refuse_with_reason(ros_env, tmp_path, script, params, needle):
    code, out = _start_and_wait(script, params, ros_env, tmp_path)
    assert code == 2, out
    assert 'cannot start' in out and needle in out, out
    assert 'Traceback' not in out


@contextlib.contextmanager
def stream_camera(ros_env, tmp_path, reconnect_max_backoff_s):
    """A camera node on a local MJPEG stream and a listener of its images; all ended afterwards."""
    cam_server = MjpegCamera(frames_per_connection=30, fps=30)
    rclpy.init()
    node = rclpy.create_node('stream_listener')
    images = []
    node.create_subscription(Image, 'image_raw', images.append, latest_frame_qos(100))
    proc = NodeProcess('camera_node', ros_args({'source': cam_server.url, 'fps': 30.0,
                                                'reconnect_max_backoff_s': reconnect_max_backoff_s}), ros_env, tmp_path)
    try:
        yield cam_server, node, images, proc
    finally:
        proc.stop()
        node.destroy_node()
        rclpy.shutdown()
        cam_server.close()


def test_dropping_stream_reconnects_with_backoff(ros_env, tmp_path):
    with stream_camera(ros_env, tmp_path, reconnect_max_backoff_s=1.0) as (cam_server, node, images, proc):
        assert spin_until(node, lambda: len(images) >= 20, 60), proc.output
        mark = len(proc.output)                  # natural ends of earlier connections are logged before this
        cam_server.down.set()                    # the stream ends and the camera is offline for a while
        spin_until(node, lambda: proc.output[mark:].count('reconnecting') >= 3, 30)
        before = len(images)
        offline_output = proc.output[mark:]
        timer = threading.Timer(0.5, cam_server.down.clear)
        timer.start()
        assert spin_until(node, lambda: len(images) >= before + 20, 60), proc.output
        assert proc.proc.poll() is None
    assert 'dropped; reconnecting in 0.25 s' in offline_output and 'reconnecting in 0.50 s' in offline_output
    assert 'reconnected' in proc.output and cam_server.connections >= 2
    assert {(m.width, m.height) for m in images} == {(160, 120)}


def test_reconnect_max_backoff_applies_at_runtime(ros_env, tmp_path):
    """The reconnect pause of a dropped stream is capped by reconnect_max_backoff_s as it is set now."""
    with stream_camera(ros_env, tmp_path, reconnect_max_backoff_s=0.5) as (cam_server, node, images, proc):
        assert spin_until(node, lambda: len(images) >= 5, 60), proc.output
        cam_server.down.set()
        assert spin_until(node, lambda: proc.output.count('reconnecting in 0.50 s') >= 3, 30), proc.output
        capped = proc.output
        set_param(node, 'camera', 'reconnect_max_backoff_s', 4.0)
        assert spin_until(node, lambda: 'reconnecting in 2.00 s' in proc.output, 30), proc.output
    assert 'reconnecting in 1.00 s' not in capped and 'reconnecting in 1.00 s' in proc.output


def test_unparsable_ros_arguments_refuse_with_reason(ros_env, tmp_path):
    proc = NodeProcess('camera_node', ['--ros-args', '-p', 'frame_id:='], ros_env, tmp_path)
    try:
        code = proc.wait(60)
    finally:
        proc.stop()
    assert code == 2 and 'invalid ROS arguments' in proc.output and 'Traceback' not in proc.output, proc.output
