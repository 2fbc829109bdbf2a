"""Bad input never kills a node: malformed images, odd encodings, huge frames, impossible face boxes,
floods of faces. Injected over DDS into the real detector and classifier nodes (in this process)."""
import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from emotion_msgs.msg import EmotionArray, Face, FaceArray  # noqa: E402
from emotion_ros.nodes.emotion_classifier_node import EmotionClassifierNode  # noqa: E402
from emotion_ros.nodes.face_detector_node import FaceDetectorNode  # noqa: E402
from emotion_ros.nodes.qos import latest_frame_qos, results_qos  # noqa: E402

pytestmark = pytest.mark.ros


def astronaut_bgr(width=640, height=480):
    from skimage import data
    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return cv2.resize(img, (width, height))


def image_msg(pixels: np.ndarray, encoding: str, stamp_sec: int, step=None, data=None) -> Image:
    h, w = pixels.shape[:2]
    row = pixels.strides[0] if pixels.ndim > 1 else 0
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=step if step is not None else row,
                data=data if data is not None else np.ascontiguousarray(pixels).tobytes())
    msg.header.stamp.sec, msg.header.frame_id = stamp_sec, 'cam'
    return msg


class Rig:
    """Real nodes + a test node that publishes inputs and collects outputs, all on one executor."""

    def __init__(self, *nodes):
        self.exec = SingleThreadedExecutor()
        self.nodes = list(nodes)
        self.io = rclpy.create_node('fault_injector')
        self.images = self.io.create_publisher(Image, 'image', latest_frame_qos(10))
        self.compressed = self.io.create_publisher(CompressedImage, 'image/compressed', latest_frame_qos(10))
        self.faces_in = self.io.create_publisher(FaceArray, 'faces', results_qos(10))
        self.faces, self.emotions = [], []
        self.io.create_subscription(FaceArray, 'faces', self.faces.append, results_qos(100))
        self.io.create_subscription(EmotionArray, 'emotions', self.emotions.append, results_qos(100))
        for n in self.nodes + [self.io]:
            self.exec.add_node(n)
        self.spin_until(lambda: self.images.get_subscription_count() >= 1, 10)

    def spin_until(self, done, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not done():
            self.exec.spin_once(timeout_sec=0.02)
        return done()

    def send(self, msg, pub=None, wait_for=None, timeout=10.0):
        (pub or self.images).publish(msg)
        if wait_for is not None:
            return self.spin_until(wait_for, timeout)
        self.spin_until(lambda: False, 0.3)

    def close(self):
        for n in self.nodes + [self.io]:
            n.destroy_node()


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def _faces_for(rig, sec):
    return [m for m in rig.faces if m.header.stamp.sec == sec]


def test_detector_survives_bad_images_and_reads_every_encoding(ros):
    det = FaceDetectorNode(parameter_overrides=[Parameter('tracking', value=False)])
    rig = Rig(det)
    try:
        good = astronaut_bgr()
        assert rig.send(image_msg(good, 'bgr8', 1), wait_for=lambda: _faces_for(rig, 1))
        ref = _faces_for(rig, 1)[0].faces[0].roi
        bad = [
            image_msg(good[:, :, :2].copy(), 'yuv422', 2),                       # unsupported encoding
            image_msg(good, 'bgr8', 3, step=100),                                # step < width*3
            Image(height=0, width=0, encoding='bgr8', step=0, data=b''),         # empty
            image_msg(good, 'bgr8', 4, data=good.tobytes()[:1000]),              # truncated
        ]
        for msg in bad:
            rig.send(msg)
        assert det.diag.errors >= 4 and 'truncated' in det._log.last_error
        gray = cv2.cvtColor(good, cv2.COLOR_BGR2GRAY)
        variants = {
            10: image_msg(gray, 'mono8', 10),
            11: image_msg(good[:, :, ::-1].copy(), 'rgb8', 11),
            12: image_msg(cv2.cvtColor(good, cv2.COLOR_BGR2BGRA), 'bgra8', 12),
            13: image_msg(gray.astype(np.uint16) * 257, 'mono16', 13),
            14: image_msg(good[:, :, ::-1].astype(np.uint16) * 257, 'rgb16', 14),
        }
        for sec, msg in variants.items():
            assert rig.send(msg, wait_for=lambda s=sec: _faces_for(rig, s)), msg.encoding
            faces = _faces_for(rig, sec)[0].faces
            assert len(faces) == 1, msg.encoding
            roi = faces[0].roi
            assert abs(roi.x_offset - ref.x_offset) <= 8 and abs(roi.width - ref.width) <= 12, msg.encoding
        # a still-working node after all of it
        assert rig.send(image_msg(good, 'bgr8', 20), wait_for=lambda: _faces_for(rig, 20))
    finally:
        rig.close()


def test_detector_huge_frames_are_downscaled_and_boxes_in_source_pixels(ros):
    det = FaceDetectorNode(parameter_overrides=[Parameter('tracking', value=False)])
    try:
        published = []
        det._pub.publish = published.append
        for (w, h) in ((3840, 2160), (7680, 4320)):
            big = astronaut_bgr(w, h)
            start = time.monotonic()
            det._on_image(image_msg(big, 'bgr8', w))
            elapsed = time.monotonic() - start
            faces = published[-1].faces
            assert len(faces) == 1 and faces[0].roi.width > w / 10, (w, faces)
            assert elapsed < 10.0, f'{w}x{h} took {elapsed:.1f} s'
    finally:
        det.destroy_node()


def test_detector_compressed_transport_skips_garbage(ros):
    det = FaceDetectorNode(parameter_overrides=[Parameter('image_transport', value='compressed'),
                                                Parameter('tracking', value=False)])
    rig = Rig(det)
    try:
        rig.spin_until(lambda: rig.compressed.get_subscription_count() >= 1, 10)
        for data in (b'', b'\x00garbage' * 100, b'\xff\xd8\xff\xe0truncated-jpeg'):
            msg = CompressedImage(format='jpeg', data=data)
            msg.header.stamp.sec = 1
            rig.send(msg, pub=rig.compressed)
        assert not _faces_for(rig, 1) and det.diag.errors >= 3
        ok, jpeg = cv2.imencode('.jpg', astronaut_bgr())
        msg = CompressedImage(format='jpeg', data=jpeg.tobytes())
        msg.header.stamp.sec = 2
        assert rig.send(msg, pub=rig.compressed, wait_for=lambda: _faces_for(rig, 2))
        assert len(_faces_for(rig, 2)[0].faces) == 1
    finally:
        rig.close()


def _face(x, y, w, h, i=''):
    return Face(id=i, roi=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h), confidence=0.9)


def test_classifier_survives_impossible_boxes_unpaired_faces_and_floods(ros):
    cls = EmotionClassifierNode(parameter_overrides=[Parameter('max_faces', value=16)])
    rig = Rig(cls)
    try:
        rig.spin_until(lambda: rig.faces_in.get_subscription_count() >= 1, 10)
        good = astronaut_bgr()

        def frame(sec, faces):
            rig.images.publish(image_msg(good, 'bgr8', sec))
            rig.spin_until(lambda: False, 0.1)
            header = Header(frame_id='cam')
            header.stamp.sec = sec
            rig.faces_in.publish(FaceArray(header=header, faces=faces))
            return rig.spin_until(lambda: any(m.header.stamp.sec == sec for m in rig.emotions), 10)

        assert frame(1, [_face(250, 60, 120, 140, '1')])
        outside = [_face(5000, 5000, 50, 50), _face(0, 0, 0, 0), _face(600, 400, 4000, 4000), _face(250, 60, 120, 140)]
        assert frame(2, outside)
        out = [m for m in rig.emotions if m.header.stamp.sec == 2][0]
        assert len(out.emotions) == 2  # the two boxes that overlap the image; the others skipped with a warning
        assert 'outside' in cls._log.last_error or 'positive' in cls._log.last_error or cls.diag.errors >= 2

        header = Header(frame_id='cam')
        header.stamp.sec = 3                          # faces for an image that never comes
        rig.faces_in.publish(FaceArray(header=header, faces=[_face(10, 10, 40, 40)]))
        rig.spin_until(lambda: False, 0.3)
        rng = np.random.default_rng(0)
        flood = [_face(int(x), int(y), 40, 40) for x, y in rng.integers(0, 400, size=(500, 2))]
        assert frame(4, flood)
        out = [m for m in rig.emotions if m.header.stamp.sec == 4][0]
        assert len(out.emotions) == 16               # bounded batch (max_faces)
        assert not any(m.header.stamp.sec == 3 for m in rig.emotions)
        assert frame(5, [_face(250, 60, 120, 140, '1')])   # still working
    finally:
        rig.close()


NODE_MODULES = ('camera_node', 'face_detector_node', 'emotion_classifier_node', 'hue_actuator_node',
                'dataset_recorder_node')


@pytest.mark.parametrize('module', NODE_MODULES)
def test_every_parameter_has_description_default_and_numeric_range(module):
    import importlib
    specs = importlib.import_module(f'emotion_ros.nodes.{module}').SPECS
    for spec in specs:
        assert len(spec.description) > 10, spec.name
        assert spec.reason_invalid(spec.default) is None, spec.name
        if type(spec.default) in (int, float):
            assert spec.min is not None and spec.max is not None, f'{module}.{spec.name} has no range'


def test_runtime_parameter_changes_are_validated_on_the_real_node(ros):
    det = FaceDetectorNode()
    try:
        results = det.set_parameters([Parameter('min_score', value=1.5)])
        assert not results[0].successful and 'out of range' in results[0].reason
        assert det.p['min_score'] == 0.5
        results = det.set_parameters([Parameter('backend', value='haar')])
        assert not results[0].successful                          # read-only: fixed at configure
        assert det.set_parameters([Parameter('min_score', value=0.8)])[0].successful
        assert det.p['min_score'] == 0.8
    finally:
        det.destroy_node()


def test_lifecycle_processing_only_while_active(ros):
    from lifecycle_msgs.msg import State
    det = FaceDetectorNode(parameter_overrides=[Parameter('autostart', value=False), Parameter('tracking', value=False)])
    rig = Rig(det)
    try:
        assert det._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
        rig.send(image_msg(astronaut_bgr(), 'bgr8', 1))
        assert not rig.faces                                      # unconfigured: nothing subscribed yet
        det.trigger_configure()
        rig.spin_until(lambda: rig.images.get_subscription_count() >= 1, 10)
        rig.send(image_msg(astronaut_bgr(), 'bgr8', 2))
        assert not rig.faces                                      # configured, inactive: no output
        det.trigger_activate()
        assert rig.send(image_msg(astronaut_bgr(), 'bgr8', 3), wait_for=lambda: _faces_for(rig, 3))
        det.trigger_deactivate()
        rig.send(image_msg(astronaut_bgr(), 'bgr8', 4))
        assert not _faces_for(rig, 4)
    finally:
        rig.close()
