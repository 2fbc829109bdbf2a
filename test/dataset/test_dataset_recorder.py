"""dataset_recorder_node in-process, fed synthetic frames: bursts complete while frames keep flowing through the
same single-threaded executor, refusals carry a reason, counts are latched."""
import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image, RegionOfInterest  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from emotion_msgs.msg import DatasetCounts, Face, FaceArray  # noqa: E402
from emotion_msgs.srv import Capture  # noqa: E402
from emotion_ros.core.faces.crop import MARGIN_FOR_BACKEND, crop_face  # noqa: E402
from emotion_ros.core.faces.detection import DEFAULT_BACKEND  # noqa: E402

MARGIN = MARGIN_FOR_BACKEND[DEFAULT_BACKEND]
from emotion_ros.nodes.dataset_recorder_node import DatasetRecorderNode  # noqa: E402
from emotion_ros.nodes.qos import latched_qos, latest_frame_qos, results_qos  # noqa: E402
from emotion_ros.nodes.ros_image import bgr_to_image  # noqa: E402

pytestmark = pytest.mark.ros

BOX = (40, 30, 50, 60)


class FakeGraph:
    """Camera + detector stand-in publishing a frame and its face list at `fps`; `face` toggles the face."""

    def __init__(self, fps=30.0):
        self.node = rclpy.create_node('fake_graph')
        self.image_pub = self.node.create_publisher(Image, 'image', latest_frame_qos())
        self.faces_pub = self.node.create_publisher(FaceArray, 'faces', results_qos())
        self.face, self.published, self.stamps = True, 0, []
        rng = np.random.default_rng(0)
        self.frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        self.node.create_timer(1.0 / fps, self.tick)

    def tick(self):
        if self.image_pub.get_subscription_count() == 0:
            return
        header = Header(stamp=self.node.get_clock().now().to_msg(), frame_id='cam')
        self.image_pub.publish(bgr_to_image(self.frame, header))
        small = Face(id='2', confidence=0.9, roi=RegionOfInterest(x_offset=0, y_offset=0, width=10, height=10))
        big = Face(id='1', confidence=0.9, roi=RegionOfInterest(x_offset=BOX[0], y_offset=BOX[1], width=BOX[2],
                                                               height=BOX[3]))
        self.faces_pub.publish(FaceArray(header=header, faces=[small, big] if self.face else [],
                                         crop_margin=MARGIN))  # the recorder crops with the boxes' own margin
        self.published += 1
        self.stamps.append(time.monotonic())


@pytest.fixture
def graph(tmp_path):
    rclpy.init()
    executor = SingleThreadedExecutor()
    nodes = []

    def make(**params):
        params.setdefault('dataset_dir', str(tmp_path / 'ds'))
        rec = DatasetRecorderNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        fake = FakeGraph()
        client_node = rclpy.create_node('capture_client')
        client = client_node.create_client(Capture, '/dataset_recorder/capture')
        for n in (rec, fake.node, client_node):
            executor.add_node(n)
            nodes.append(n)
        return rec, fake, client_node, client

    def call(client, label, count=1, interval=0.0, timeout=20.0):
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(Capture.Request(label=label, count=count, interval=interval))
        executor.spin_until_future_complete(future, timeout_sec=timeout)
        assert future.done(), 'no answer'
        return future.result()

    yield make, call, executor
    for n in nodes:
        n.destroy_node()
    rclpy.shutdown()


def rows(root):
    return (root / 'faceLabels.csv').read_text().splitlines()


def test_burst_saves_count_crops_while_frames_keep_flowing(graph, tmp_path):
    make, call, _ = graph
    rec, fake, _, client = make()
    before = fake.published
    t0 = time.monotonic()
    res = call(client, 'happy', count=8)
    elapsed = time.monotonic() - t0
    assert res.success, res.message
    assert res.message == 'saved 8 happy'
    assert list(res.saved) == [f'Images/face{i}.png' for i in range(8)]
    assert rows(tmp_path / 'ds') == [f'face{i}.png,happy' for i in range(8)]
    assert fake.published - before >= 8 and elapsed < 10  # frames flowed during the burst, same executor
    crop = cv2.imread(str(tmp_path / 'ds/Images/face0.png'), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(crop, crop_face(fake.frame, BOX, margin=MARGIN))  # the largest face, the classifier's crop


def test_interval_spaces_the_crops(graph, tmp_path):
    make, call, _ = graph
    rec, fake, _, client = make()
    t0 = time.monotonic()
    res = call(client, 'sad', count=3, interval=0.3)
    assert res.success and len(res.saved) == 3
    assert time.monotonic() - t0 >= 0.6


def test_colour_crops_of_the_requested_size(graph, tmp_path):
    make, call, _ = graph
    rec, fake, _, client = make(grayscale=False, crop_size=96)
    res = call(client, 'fear')
    assert res.success
    crop = cv2.imread(str(tmp_path / 'ds' / res.saved[0]), cv2.IMREAD_UNCHANGED)
    assert crop.shape == (96, 96, 3)
    for c in range(3):
        assert np.array_equal(crop[:, :, c], crop_face(np.ascontiguousarray(fake.frame[:, :, c]), BOX, size=96,
                                                       margin=MARGIN))


@pytest.mark.parametrize('label,count,interval,needle', [
    ('hapy', 1, 0.0, "unknown label 'hapy': labelList.csv has angry, disgust, fear, happy, sad, surprise, neutral"),
    ('', 1, 0.0, 'no label given'),
    ('happy', 5000, 0.0, 'count 5000 is above max_count 1000'),
    ('happy', 1, -1.0, 'interval -1.0 s is outside'),
])
def test_bad_requests_are_refused_with_a_reason(graph, tmp_path, label, count, interval, needle):
    make, call, _ = graph
    rec, fake, _, client = make()
    res = call(client, label, count=count, interval=interval)
    assert not res.success and needle in res.message and list(res.saved) == []
    assert rows(tmp_path / 'ds') == []


def test_no_face_answers_after_the_timeout(graph, tmp_path):
    make, call, _ = graph
    rec, fake, _, client = make(no_face_timeout_s=0.5)
    fake.face = False
    t0 = time.monotonic()
    res = call(client, 'happy', count=3)
    assert not res.success and res.message.startswith('no face in ') and 0.4 < time.monotonic() - t0 < 5
    assert rows(tmp_path / 'ds') == []


def test_second_request_during_a_burst_is_refused_busy(graph, tmp_path):
    make, call, executor = graph
    rec, fake, _, client = make()
    assert client.wait_for_service(timeout_sec=10.0)
    first = client.call_async(Capture.Request(label='happy', count=15))
    second = client.call_async(Capture.Request(label='sad', count=1))
    executor.spin_until_future_complete(first, timeout_sec=20)
    executor.spin_until_future_complete(second, timeout_sec=5)
    assert first.result().success and len(first.result().saved) == 15
    assert not second.result().success and second.result().message.startswith('busy: capturing 15 happy')


def test_counts_are_latched_for_late_subscribers(graph, tmp_path):
    make, call, executor = graph
    rec, fake, _, client = make(target_per_label=200)
    call(client, 'happy', count=2)
    late = rclpy.create_node('late_ui')
    got = []
    late.create_subscription(DatasetCounts, '/dataset_recorder/counts', got.append, latched_qos())
    executor.add_node(late)
    end = time.monotonic() + 10
    while not got and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    executor.remove_node(late)
    late.destroy_node()
    state = got[-1]
    assert dict(zip(state.labels, state.counts)) == {'angry': 0, 'disgust': 0, 'fear': 0, 'happy': 2, 'sad': 0,
                                                     'surprise': 0, 'neutral': 0}
    assert list(state.labels) == ['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral']
    assert state.total == 2 and state.target_per_label == 200 and state.dataset == str(tmp_path / 'ds')
    assert state.header.stamp.sec > 0
