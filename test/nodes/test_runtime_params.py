"""Every parameter that is not read-only takes effect when changed at runtime (issue 12 e, issue 18 item 13).

Real detector, classifier, recorder and Hue (dry run) nodes in this process; each change goes through the node's
`set_parameters` service (what `ros2 param set` calls) and the test observes the node's behaviour before
and after it. A coverage test keeps the lists below equal to the nodes' non-read-only ParamSpecs, so a new
runtime parameter without a behavioural test fails here.
"""
import time

import cv2
import numpy as np
import pytest

from images import astronaut_bgr as astronaut

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from emotion_msgs.msg import DatasetCounts, EmotionArray, Face, FaceArray  # noqa: E402
from emotion_msgs.srv import Capture  # noqa: E402
from emotion_ros.core.faces.crop import MARGIN_FOR_BACKEND, crop_face  # noqa: E402
from emotion_ros.core.faces.detection import DEFAULT_BACKEND, create_detector  # noqa: E402
from emotion_ros.nodes.qos import latched_qos, latest_frame_qos, results_qos  # noqa: E402
from emotion_ros.nodes.ros_image import bgr_to_image  # noqa: E402

pytestmark = pytest.mark.ros

TESTED = {
    'emotion_classifier_node': {'max_faces', 'smoothing_time_constant_s', 'smoothing_max_age_s', 'pairing_cache',
                                'annotate', 'max_pixels',
                                'calibration_path'},   # test_classifier_calibration
    'face_detector_node': {'min_score', 'tracking', 'track_iou', 'track_max_missed', 'max_pixels', 'max_rate_hz'},
    'dataset_recorder_node': {'grayscale', 'crop_size', 'no_face_timeout_s', 'max_count', 'target_per_label',
                              'pairing_cache'},
    'hue_actuator_node': {'follow_track_id', 'hold_s', 'min_confidence', 'no_face_label', 'no_face_after_s',
                          'max_light_commands_per_s', 'max_group_commands_per_s',
                          'backoff_initial_s', 'backoff_max_s', 'pairing_timeout_s', 'pairing_retry_s'},  # test_hue_node
    'camera_node': {'fps', 'wait_timeout_s', 'loop', 'frame_id', 'wait_for_subscribers', 'wait_for_nodes',
                    'wait_settle_s', 'reconnect_max_backoff_s'},         # test_camera_node, test_reliability_startup
    'hri_publisher_node': {'max_faces', 'cropped_size', 'image_cache', 'grace_period_s'},   # test_hri_publisher
    'viewer_node': {'draw_faces', 'jpeg_quality', 'max_fps'},   # reach the running server's config: test_viewer_node
}
# Runtime parameters whose runtime change no test shows yet; issue 12 e is not done while this is not empty.
WITHOUT_A_TEST = {}


@pytest.mark.parametrize('module', sorted(TESTED))
def test_every_runtime_parameter_has_a_behaviour_test(module):
    import importlib
    specs = importlib.import_module(f'emotion_ros.nodes.{module}').SPECS
    runtime = {s.name for s in specs if not s.read_only}
    listed = TESTED[module] | WITHOUT_A_TEST.get(module, set())
    assert not TESTED[module] & WITHOUT_A_TEST.get(module, set())
    assert runtime == listed, ('runtime parameters without a test here (or tested but gone / read-only): '
                               f'{sorted(runtime ^ listed)}')


def header(sec: int) -> Header:
    h = Header(frame_id='cam')
    h.stamp.sec = sec
    return h


class Rig:
    """The nodes under test plus an io node (inputs, outputs, a parameter client), on one executor."""

    def __init__(self, *nodes):
        self.exec = SingleThreadedExecutor()
        self.nodes = list(nodes)
        self.io = rclpy.create_node('param_probe_io')
        self.images = self.io.create_publisher(Image, 'image', latest_frame_qos(10))
        self.compressed = self.io.create_publisher(CompressedImage, 'image/compressed', latest_frame_qos(10))
        self.faces_in = self.io.create_publisher(FaceArray, 'faces_in', results_qos(10))
        self.faces, self.emotions, self.annotated, self.counts = [], [], [], []
        self.io.create_subscription(FaceArray, 'faces', self.faces.append, results_qos(100))
        self.io.create_subscription(EmotionArray, 'emotions', self.emotions.append, results_qos(100))
        self.io.create_subscription(Image, 'image_annotated', self.annotated.append, latest_frame_qos(10))
        self.io.create_subscription(DatasetCounts, '/dataset_recorder/counts', self.counts.append, latched_qos())
        for n in self.nodes + [self.io]:
            self.exec.add_node(n)
        self._clients = {}

    def spin_until(self, done, timeout=15.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not done():
            self.exec.spin_once(timeout_sec=0.02)
        return bool(done())

    def spin(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def set(self, node_name: str, name: str, value) -> None:
        """Through the node's parameter service, as `ros2 param set` does; asserts it was accepted."""
        client = self._clients.get(node_name)
        if client is None:
            client = self._clients[node_name] = AsyncParameterClient(self.io, node_name)
            assert client.wait_for_services(timeout_sec=15.0), f'no parameter services on {node_name}'
        future = client.set_parameters([Parameter(name, value=value)])
        assert self.spin_until(future.done, 15.0), f'no answer setting {name}'
        result = future.result().results[0]
        assert result.successful, f'{name} := {value!r} refused: {result.reason}'

    def close(self):
        for n in self.nodes + [self.io]:
            self.exec.remove_node(n)
            n.destroy_node()


@pytest.fixture(scope='module')
def face_box():
    boxes = create_detector(DEFAULT_BACKEND).detect(astronaut())
    assert boxes, 'the detector finds no face on the astronaut'
    b = max(boxes, key=lambda b: b.w * b.h)
    return int(b.x), int(b.y), int(b.w), int(b.h)


def face_msg(box, face_id='1'):
    x, y, w, h = box
    return Face(id=face_id, confidence=0.9, roi=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h))


# --- classifier -----------------------------------------------------------------------------------------------

def test_classifier_runtime_parameters_take_effect(ros, face_box):
    from emotion_ros.nodes.emotion_classifier_node import EmotionClassifierNode
    clf = EmotionClassifierNode(cli_args=['--ros-args', '-r', 'faces:=faces_in'])
    rig = Rig(clf)
    sec = [100]
    a = astronaut()
    rng = np.random.default_rng(3)
    b = rng.integers(0, 255, a.shape, dtype=np.uint8)  # something else where the face was

    def classify(image, faces, wait=True, crop_margin=0.0):
        sec[0] += 1
        s = sec[0]
        rig.images.publish(bgr_to_image(image, header(s)))
        assert rig.spin_until(lambda: clf.pairer.image((s, 0)) is not None, 10), 'image not received'
        rig.faces_in.publish(FaceArray(header=header(s), faces=faces, crop_margin=crop_margin))
        if not wait:
            rig.spin(1.0)
            return [m for m in rig.emotions if m.header.stamp.sec == s]
        assert rig.spin_until(lambda: any(m.header.stamp.sec == s for m in rig.emotions), 15), f'no emotions @{s}'
        return [m for m in rig.emotions if m.header.stamp.sec == s][0]

    def scores(image, face_id):
        return np.array(classify(image, [face_msg(face_box, face_id)]).emotions[0].scores)

    try:
        assert rig.spin_until(lambda: rig.images.get_subscription_count() >= 1
                              and rig.faces_in.get_subscription_count() >= 1, 15)
        # max_faces: three faces classified, then only one
        three = [face_msg(face_box, 'a'), face_msg((face_box[0] + 5, face_box[1], face_box[2], face_box[3]), 'b'),
                 face_msg((face_box[0], face_box[1] + 5, face_box[2] - 10, face_box[3] - 10), 'c')]
        assert sum(bool(e.expression) for e in classify(a, three).emotions) == 3
        rig.set('/emotion_classifier', 'max_faces', 1)
        assert sum(bool(e.expression) for e in classify(a, three).emotions) == 1

        # smoothing_time_constant_s: 0 = raw scores; 60 s = the second frame barely moves the average
        rig.set('/emotion_classifier', 'smoothing_time_constant_s', 0.0)
        raw_a, raw_b = scores(a, 'raw'), scores(b, 'raw')
        assert np.abs(raw_a - raw_b).max() > 0.1, 'the two test crops must score differently'
        rig.set('/emotion_classifier', 'smoothing_time_constant_s', 60.0)
        first, second = scores(a, 'slow'), scores(b, 'slow')
        assert np.abs(first - raw_a).max() < 1e-3 and np.abs(second - raw_a).max() < 0.02

        # smoothing_max_age_s: a track unseen for longer than this starts afresh (frames are 1 s apart)
        rig.set('/emotion_classifier', 'smoothing_max_age_s', 0.5)
        scores(a, 'aged')
        assert np.abs(scores(b, 'aged') - raw_b).max() < 0.02

        # pairing_cache: with room for one image, the older of two waiting images is gone when its faces come
        rig.set('/emotion_classifier', 'smoothing_time_constant_s', 0.0)
        for cache, kept in ((1, False), (10, True)):
            rig.set('/emotion_classifier', 'pairing_cache', cache)
            first_sec = sec[0] + 1
            for _ in range(2):
                sec[0] += 1
                s = sec[0]
                rig.images.publish(bgr_to_image(a, header(s)))
                assert rig.spin_until(lambda: clf.pairer.image((s, 0)) is not None, 10)
            rig.faces_in.publish(FaceArray(header=header(first_sec), faces=[face_msg(face_box, 'p')]))
            got = rig.spin_until(lambda: any(m.header.stamp.sec == first_sec for m in rig.emotions), 3.0)
            assert got == kept, f'pairing_cache {cache}: older image {"lost" if kept else "still paired"}'

        # the crop geometry comes with the boxes: FaceArray.crop_margin (0 = unknown = 1.0) changes the crop
        untracked = [face_msg(face_box, '')]
        by_margin = {m: np.array(classify(a, untracked, crop_margin=m).emotions[0].scores) for m in (0.0, 1.0, 2.0)}
        assert np.abs(by_margin[0.0] - by_margin[1.0]).max() < 1e-6
        assert np.abs(by_margin[2.0] - by_margin[1.0]).max() > 0.01

        # annotate: an annotated image per frame while true, none while false
        assert rig.spin_until(lambda: clf._annotated_pub.get_subscription_count() >= 1, 10)
        classify(a, [face_msg(face_box)])
        assert rig.spin_until(lambda: any(m.header.stamp.sec == sec[0] for m in rig.annotated), 10)
        rig.set('/emotion_classifier', 'annotate', False)
        classify(a, [face_msg(face_box)])
        rig.spin(1.0)
        assert not any(m.header.stamp.sec == sec[0] for m in rig.annotated)
    finally:
        rig.close()


def test_classifier_max_pixels_takes_effect(ros, face_box):
    from emotion_ros.nodes.emotion_classifier_node import EmotionClassifierNode
    clf = EmotionClassifierNode(cli_args=['--ros-args', '-r', 'faces:=faces_in'],
                                parameter_overrides=[Parameter('image_transport', value='compressed')])
    rig = Rig(clf)
    jpeg = cv2.imencode('.jpg', astronaut())[1].tobytes()

    def send(sec):
        rig.compressed.publish(CompressedImage(header=header(sec), format='jpeg', data=jpeg))
        assert rig.spin_until(lambda: clf.pairer.image((sec, 0)) is not None, 10), 'image not received'
        rig.faces_in.publish(FaceArray(header=header(sec), faces=[face_msg(face_box)]))
        return rig.spin_until(lambda: any(m.header.stamp.sec == sec for m in rig.emotions), 3.0)

    try:
        assert rig.spin_until(lambda: rig.compressed.get_subscription_count() >= 1
                              and rig.faces_in.get_subscription_count() >= 1, 15)
        assert send(501)
        rig.set('/emotion_classifier', 'max_pixels', 640 * 480 - 1)   # refused by its declared size
        assert not send(502)
        rig.set('/emotion_classifier', 'max_pixels', 640 * 480)
        assert send(503)
    finally:
        rig.close()


# --- detector -------------------------------------------------------------------------------------------------

def test_detector_runtime_parameters_take_effect(ros):
    from emotion_ros.nodes.face_detector_node import FaceDetectorNode
    det = FaceDetectorNode()
    rig = Rig(det)
    sec = [200]
    a, blank = astronaut(), np.zeros((480, 640, 3), np.uint8)

    def detect(image):
        sec[0] += 1
        s = sec[0]
        rig.images.publish(bgr_to_image(image, header(s)))
        assert rig.spin_until(lambda: any(m.header.stamp.sec == s for m in rig.faces), 15), f'no faces @{s}'
        return [m for m in rig.faces if m.header.stamp.sec == s][0]

    def ids(*images):
        return [','.join(f.id for f in detect(im).faces) for im in images]

    try:
        assert rig.spin_until(lambda: rig.images.get_subscription_count() >= 1, 15)
        first = detect(a)
        assert len(first.faces) == 1
        assert first.crop_margin == pytest.approx(MARGIN_FOR_BACKEND[DEFAULT_BACKEND])   # geometry with the boxes
        rig.set('/face_detector', 'min_score', 1.0)
        assert len(detect(a).faces) == 0
        rig.set('/face_detector', 'min_score', 0.5)
        assert len(detect(a).faces) == 1

        rig.set('/face_detector', 'tracking', False)
        assert ids(a, a, a) == ['', '', '']
        rig.set('/face_detector', 'tracking', True)
        confirmed = ids(a, a, a)[-1]
        assert confirmed

        # track_iou: a face jumping 60 px between frames keeps its id at 0.01, never holds one at 0.99
        shifted = astronaut(shift=60)
        rig.set('/face_detector', 'track_iou', 0.01)
        loose = ids(a, shifted, a, shifted, a)[1:]
        assert len(set(loose)) == 1 and loose[0], loose
        rig.set('/face_detector', 'track_iou', 0.99)
        strict = ids(shifted, a, shifted, a)
        assert not (len(set(strict)) == 1 and strict[0]), strict

        # track_max_missed: two frames without the face keep the track at 5, end it at 0
        rig.set('/face_detector', 'track_iou', 0.3)
        rig.set('/face_detector', 'track_max_missed', 5)
        before = ids(a, a)[-1]
        assert ids(blank, blank, a)[-1] == before
        rig.set('/face_detector', 'track_max_missed', 0)
        before = ids(a, a)[-1]
        assert ids(blank, blank, a)[-1] != before

        # max_rate_hz: frames stamped 1 s apart, at most one per 4 s processed; then every frame again
        rig.set('/face_detector', 'max_rate_hz', 0.25)
        stamps = []
        for _ in range(8):
            sec[0] += 1
            stamps.append(sec[0])
            rig.images.publish(bgr_to_image(a, header(sec[0])))
            rig.spin(0.3)
        rig.spin(2.0)
        answered = sum(1 for m in rig.faces if m.header.stamp.sec in stamps)
        assert 1 <= answered <= 3, answered
        rig.set('/face_detector', 'max_rate_hz', 0.0)
        assert len(detect(a).faces) == 1 and len(detect(a).faces) == 1
    finally:
        rig.close()


def test_detector_max_pixels_takes_effect(ros):
    from emotion_ros.nodes.face_detector_node import FaceDetectorNode
    det = FaceDetectorNode(parameter_overrides=[Parameter('image_transport', value='compressed')])
    rig = Rig(det)
    jpeg = cv2.imencode('.jpg', astronaut())[1].tobytes()

    def send(sec):
        rig.compressed.publish(CompressedImage(header=header(sec), format='jpeg', data=jpeg))
        return rig.spin_until(lambda: any(m.header.stamp.sec == sec for m in rig.faces), 3.0)

    try:
        assert rig.spin_until(lambda: rig.compressed.get_subscription_count() >= 1, 15)
        assert send(301)
        rig.set('/face_detector', 'max_pixels', 640 * 480 - 1)   # refused by its declared size
        assert not send(302)
        rig.set('/face_detector', 'max_pixels', 640 * 480)
        assert send(303)
    finally:
        rig.close()


# --- recorder -------------------------------------------------------------------------------------------------

def test_recorder_runtime_parameters_take_effect(ros, tmp_path, face_box):
    from emotion_ros.nodes.dataset_recorder_node import DatasetRecorderNode
    rec = DatasetRecorderNode(cli_args=['--ros-args', '-r', 'faces:=faces_in'],
                              parameter_overrides=[Parameter('dataset_dir', value=str(tmp_path / 'ds'))])
    rig = Rig(rec)
    client = rig.io.create_client(Capture, '/dataset_recorder/capture')
    sec = [400]
    a = astronaut()
    other = np.ascontiguousarray(a[:, ::-1])   # mirrored: the same box crops a different picture

    def capture(count=1, label='happy', feed=True, image=None):
        future = client.call_async(Capture.Request(label=label, count=count, interval=0.0))
        end = time.monotonic() + 30
        while not future.done() and time.monotonic() < end:
            if feed:
                sec[0] += 1
                rig.images.publish(bgr_to_image(a if image is None else image, header(sec[0])))
                rig.spin(0.1)
                rig.faces_in.publish(FaceArray(header=header(sec[0]), faces=[face_msg(face_box)], crop_margin=1.0))
            rig.spin(0.1)
        assert future.done(), 'no answer from ~/capture'
        return future.result()

    def saved_image(result):
        return cv2.imread(str(tmp_path / 'ds' / 'Images' / result.saved[-1].split('/')[-1]), cv2.IMREAD_UNCHANGED)

    try:
        assert client.wait_for_service(timeout_sec=15.0)
        assert rig.spin_until(lambda: rig.images.get_subscription_count() >= 1, 15)
        ok = capture()
        assert ok.success and saved_image(ok).ndim == 2
        rig.set('/dataset_recorder', 'grayscale', False)
        colour = capture()
        assert colour.success and saved_image(colour).shape == (48, 48, 3)
        rig.set('/dataset_recorder', 'crop_size', 64)
        assert saved_image(capture()).shape[:2] == (64, 64)

        rig.set('/dataset_recorder', 'no_face_timeout_s', 0.3)
        none = capture(feed=False)
        assert not none.success and 'in 0.3 s' in none.message, none.message

        rig.set('/dataset_recorder', 'max_count', 5)
        refused = capture(count=6, feed=False)
        assert not refused.success and 'above max_count 5' in refused.message

        rig.set('/dataset_recorder', 'target_per_label', 123)
        assert rig.spin_until(lambda: rig.counts and rig.counts[-1].target_per_label == 123, 10)

        # pairing_cache: two images wait, then the faces of the older one arrive
        rig.set('/dataset_recorder', 'grayscale', True)
        rig.set('/dataset_recorder', 'crop_size', 48)
        rig.set('/dataset_recorder', 'no_face_timeout_s', 5.0)
        expected = {1: crop_face(other, face_box, margin=1.0), 10: crop_face(a, face_box, margin=1.0)}
        for cache in (1, 10):
            rig.set('/dataset_recorder', 'pairing_cache', cache)
            future = client.call_async(Capture.Request(label='happy', count=1, interval=0.0))
            assert rig.spin_until(lambda: rec._burst is not None, 10)
            first, second = sec[0] + 1, sec[0] + 2
            sec[0] += 2
            for s, image in ((first, a), (second, other)):
                rig.images.publish(bgr_to_image(image, header(s)))
                assert rig.spin_until(lambda: rec.pairer.image((s, 0)) is not None, 10)
            for s in (first, second):   # faces of the older image first; with cache 1 it is gone
                rig.faces_in.publish(FaceArray(header=header(s), faces=[face_msg(face_box)], crop_margin=1.0))
                rig.spin(0.3)
            assert rig.spin_until(future.done, 10) and future.result().success
            assert np.array_equal(saved_image(future.result()), expected[cache]), f'pairing_cache {cache}'
    finally:
        rig.close()


# --- Hue actuator (dry run: the same hold, selection and rate rules as with a bridge) ------------------------

class HueRig(Rig):
    """A dry-run Hue node fed EmotionArrays; `shown(since)` = the labels it would have sent since state index."""

    def __init__(self, **params):
        from emotion_msgs.msg import HueState
        from emotion_ros.nodes.hue_actuator_node import HueActuatorNode
        params = {'dry_run': True, 'hold_s': 0.0, **params}
        super().__init__(HueActuatorNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))
        self.pub = self.io.create_publisher(EmotionArray, 'emotions', results_qos(10))
        self.states = []
        self.io.create_subscription(HueState, '/hue_actuator/state', self.states.append, latched_qos(200))
        assert self.spin_until(lambda: self.pub.get_subscription_count() > 0, 20)

    def feed(self, seconds, *tracks, hz=20.0):
        """tracks: (id, box side, label, confidence), published at `hz` for `seconds`."""
        from emotion_msgs.msg import Emotion
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msg = EmotionArray()
            for track, side, label, conf in tracks:
                e = Emotion(expression=label, confidence=float(conf))
                e.face.id, e.face.roi.width, e.face.roi.height = track, side, side
                msg.emotions.append(e)
            self.pub.publish(msg)
            self.spin(1.0 / hz)

    def shown(self, since):
        return [s.label for s in self.states[since:] if s.event == 'dry_run']

    def alternate(self, changes):
        """A new expression every second; how many of them reached the light."""
        n = len(self.states)
        for i in range(changes):
            self.feed(1.0, ('7', 200, ('happy', 'sad')[i % 2], 0.9))
        return len(self.shown(n))


def test_hue_policy_parameters_take_effect(ros):
    rig = HueRig()
    states, feed, shown = rig.states, rig.feed, rig.shown
    try:
        feed(0.5, ('7', 200, 'happy', 0.9), ('3', 80, 'sad', 0.9))
        assert shown(0)[-1:] == ['happy']                                   # the largest face is followed
        rig.set('hue_actuator', 'follow_track_id', '3')
        n = len(states)
        feed(0.5, ('7', 200, 'happy', 0.9), ('3', 80, 'sad', 0.9))
        assert shown(n)[-1:] == ['sad'], shown(n)
        rig.set('hue_actuator', 'follow_track_id', '')

        rig.set('hue_actuator', 'hold_s', 1.5)
        n = len(states)
        feed(0.6, ('7', 200, 'surprise', 0.9))
        assert shown(n) == [], shown(n)                                     # not held long enough yet
        feed(1.5, ('7', 200, 'surprise', 0.9))
        assert shown(n)[-1:] == ['surprise'], shown(n)
        rig.set('hue_actuator', 'hold_s', 0.0)

        rig.set('hue_actuator', 'min_confidence', 0.95)
        n = len(states)
        feed(0.5, ('7', 200, 'angry', 0.9))
        assert shown(n) == [], shown(n)                                     # 0.9 < 0.95 does not count
        rig.set('hue_actuator', 'min_confidence', 0.5)
        feed(0.5, ('7', 200, 'angry', 0.9))
        assert shown(n)[-1:] == ['angry'], shown(n)

        rig.set('hue_actuator', 'no_face_after_s', 0.5)
        rig.set('hue_actuator', 'no_face_label', 'neutral')
        n = len(states)
        rig.spin(1.5)                                                       # no faces at all
        assert shown(n) == ['neutral'], shown(n)

        # each light change also waits for the previous transition (0.8 s)
        rig.set('hue_actuator', 'max_light_commands_per_s', 0.2)           # one command per 5 s
        slow = rig.alternate(8)
        rig.set('hue_actuator', 'max_light_commands_per_s', 10.0)
        fast = rig.alternate(8)
        assert slow <= 2 and fast >= 4, (slow, fast)                       # 0.2/s: at most 2 in 8 s
    finally:
        rig.close()


def test_hue_group_rate_takes_effect(ros):
    rig = HueRig(group='0', max_group_commands_per_s=0.1)                 # one group command per 10 s
    try:
        slow = rig.alternate(6)
        rig.set('hue_actuator', 'max_group_commands_per_s', 1.0)
        fast = rig.alternate(6)
    finally:
        rig.close()
    assert slow <= 1 and fast >= 3, (slow, fast)
