"""Issue 18: the faults an outside probe found, each injected into the real node class (in this process,
real messages into its callbacks or over DDS) or the real tool. Each test fails at 85abc79."""
import json
import os
import resource
import struct
import time
import zlib

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from emotion_msgs.msg import Face, FaceArray  # noqa: E402
from emotion_msgs.srv import Capture  # noqa: E402
from emotion_ros.core.dataset import facelabeler as fl  # noqa: E402
from emotion_ros.nodes.qos import latest_frame_qos, results_qos  # noqa: E402
from emotion_ros.nodes.ros_image import bgr_to_image  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def astronaut_bgr(width=640, height=480):
    from skimage import data
    return cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (width, height))


def header(sec):
    h = Header(frame_id='cam')
    h.stamp.sec = sec
    return h


def face(x, y, w, h, i=''):
    return Face(id=i, confidence=0.9, roi=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h))


def _png_chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def png_bomb(width, height):
    """A tiny PNG whose IHDR declares width x height (zlib-compressed zero rows would inflate to it)."""
    rows = zlib.compress(b'\0' * min(width * height + height, 1 << 20), 9)
    return (b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
            + _png_chunk(b'IDAT', rows) + _png_chunk(b'IEND', b''))


def jpeg_bomb(width, height):
    """A real small JPEG with its frame header (SOF) rewritten to declare width x height."""
    ok, jpg = cv2.imencode('.jpg', np.full((16, 16, 3), 128, np.uint8))
    b = bytearray(jpg.tobytes())
    sof = next(i for i in range(2, len(b) - 1) if b[i] == 0xFF and b[i + 1] in (0xC0, 0xC2))
    struct.pack_into('>HH', b, sof + 5, height, width)
    return bytes(b)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --- item 1: decompression bombs on the compressed transport ---------------------------------------
def test_item01_compressed_bombs_are_refused_by_declared_size_before_decoding(ros):
    from emotion_ros.nodes.face_detector_node import FaceDetectorNode
    det = FaceDetectorNode(parameter_overrides=[Parameter('image_transport', value='compressed'),
                                                Parameter('tracking', value=False)])
    published = []
    det._pub.publish = published.append
    try:
        rss = peak_rss_mb()
        start = time.monotonic()
        for data in (jpeg_bomb(65000, 65000), png_bomb(40000, 40000), png_bomb(12000, 12000),
                     jpeg_bomb(9000, 9000)):
            det._on_compressed(CompressedImage(header=header(1), format='jpeg', data=data))
        assert time.monotonic() - start < 5.0        # refused from the header, nothing decoded
        assert peak_rss_mb() - rss < 300
        assert not published and det.diag.errors >= 4
        assert 'refused before decoding' in det._log.last_error and 'max_pixels' in det._log.last_error
        ok, jpg = cv2.imencode('.jpg', astronaut_bgr())
        det._on_compressed(CompressedImage(header=header(2), format='jpeg', data=jpg.tobytes()))
        assert len(published) == 1 and len(published[0].faces) == 1 and published[0].header.stamp.sec == 2
        # max_pixels is a validated parameter that takes effect at runtime
        assert not det.set_parameters([Parameter('max_pixels', value=0)])[0].successful
        assert det.set_parameters([Parameter('max_pixels', value=640 * 480 - 1)])[0].successful
        det._on_compressed(CompressedImage(header=header(3), format='jpeg', data=jpg.tobytes()))
        assert len(published) == 1 and 'max_pixels 307199' in det._log.last_error
    finally:
        det.destroy_node()


def test_item01_image_folder_camera_skips_bombs_fifos_and_devices(tmp_path):
    """The same bombs as the camera's image-folder source (cv2.imread at 85abc79 raised or allocated GBs)."""
    from emotion_ros.core.frames.sources import open_source
    cv2.imwrite(str(tmp_path / 'a.png'), astronaut_bgr(64, 48))
    (tmp_path / 'b.png').write_bytes(png_bomb(40000, 40000))
    (tmp_path / 'c.jpg').write_bytes(jpeg_bomb(65000, 65000))
    os.mkfifo(tmp_path / 'd.png')                       # would block a plain read forever
    os.symlink('/dev/zero', tmp_path / 'e.png')         # would never end
    cv2.imwrite(str(tmp_path / 'f.png'), astronaut_bgr(64, 48))
    source = open_source(str(tmp_path))
    rss, start = peak_rss_mb(), time.monotonic()
    frames = [source.read(), source.read(), source.read()]
    assert time.monotonic() - start < 5.0 and peak_rss_mb() - rss < 300
    assert [f.shape for f in frames[:2]] == [(48, 64, 3)] * 2 and frames[2] is None
    assert [os.path.basename(p) for p in source.skipped] == ['b.png', 'c.jpg', 'd.png', 'e.png']


# --- item 2: huge rois in the classifier and the recorder ----------------------------------------
def test_item02_classifier_clips_or_refuses_huge_rois_without_stalling(ros):
    from emotion_ros.nodes.emotion_classifier_node import EmotionClassifierNode
    cls = EmotionClassifierNode()
    out = []
    cls._emotions_pub.publish = out.append
    try:
        img = bgr_to_image(astronaut_bgr(), header(1))
        good = face(250, 60, 120, 140, 'good')
        hostile = [face(0, 0, 200000, 200000, 'a'), face(0, 0, 2 ** 31, 100, 'b'),
                   face(10, 10, 2 ** 32 - 1, 2 ** 32 - 1, 'c'), face(300, 200, 4000, 4000, 'd')]
        hostile += [face(i, i, 20000, 20000, f'z{i}') for i in range(8)]
        rss = peak_rss_mb()
        start = time.monotonic()
        cls._classify(img, FaceArray(header=header(1), faces=[good] + hostile))
        assert time.monotonic() - start < 20.0 and peak_rss_mb() - rss < 500
        assert len(out) == 1 and out[0].header.stamp.sec == 1
        ids = [e.face.id for e in out[0].emotions]
        assert 'good' in ids
        for e in out[0].emotions:                     # every published roi lies inside the 640x480 image
            r = e.face.roi
            assert r.x_offset + r.width <= 640 and r.y_offset + r.height <= 480 and r.width > 0
            assert abs(sum(e.scores) - 1.0) < 1e-3 and all(np.isfinite(e.scores))
        assert 'far larger' in cls._log.last_error or cls.diag.errors >= 1
    finally:
        cls.destroy_node()


class Feed:
    """A test node publishing an image and its face list with matching stamps, and a capture client."""

    def __init__(self, executor):
        self.node = rclpy.create_node('hostile_feed')
        self.images = self.node.create_publisher(Image, 'image', latest_frame_qos())
        self.faces = self.node.create_publisher(FaceArray, 'faces', results_qos())
        self.client = self.node.create_client(Capture, '/dataset_recorder/capture')
        self.executor = executor
        executor.add_node(self.node)
        self.frame = astronaut_bgr(160, 120)
        self.face_list, self.sec = [face(40, 20, 60, 70, '1')], 100

    def tick(self):
        self.sec += 1
        h = Header(stamp=self.node.get_clock().now().to_msg(), frame_id='cam')
        self.images.publish(bgr_to_image(self.frame, h))
        self.faces.publish(FaceArray(header=h, faces=self.face_list))

    def capture(self, label, count=1, timeout=30.0):
        assert self.client.wait_for_service(timeout_sec=10.0)
        future = self.client.call_async(Capture.Request(label=label, count=count, interval=0.0))
        timer = self.node.create_timer(0.05, self.tick)
        try:
            self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        finally:
            self.node.destroy_timer(timer)
        assert future.done(), 'capture request left unanswered'
        return future.result()


@pytest.fixture
def recorder(ros, tmp_path):
    from emotion_ros.nodes.dataset_recorder_node import DatasetRecorderNode
    executor = SingleThreadedExecutor()
    rec = DatasetRecorderNode(parameter_overrides=[Parameter('dataset_dir', value=str(tmp_path / 'ds')),
                                                   Parameter('no_face_timeout_s', value=1.0)])
    executor.add_node(rec)
    feed = Feed(executor)
    yield rec, feed
    rec.destroy_node()
    feed.node.destroy_node()


def test_item02_recorder_answers_a_capture_whose_faces_are_huge_rois(recorder):
    rec, feed = recorder
    feed.face_list = [face(0, 0, 200000, 200000, 'huge'), face(0, 0, 2 ** 31, 2 ** 31, 'wide')]
    reply = feed.capture('happy')
    assert not reply.success and 'no face' in reply.message and 'far larger' in reply.message
    feed.face_list = [face(0, 0, 200000, 200000, 'huge'), face(40, 20, 60, 70, 'real')]
    reply = feed.capture('happy', count=2)             # the real face beside the huge one is saved
    assert reply.success and len(reply.saved) == 2


# --- item 3: one logger configuration in the recorder ------------------------------------------
def test_item03_failed_then_successful_capture_then_failed_again(recorder):
    rec, feed = recorder
    feed.face_list = []
    first = feed.capture('happy')
    assert not first.success and 'no face' in first.message
    feed.face_list = [face(40, 20, 60, 70, '1')]
    second = feed.capture('happy')
    assert second.success, second.message
    feed.face_list = []
    third = feed.capture('sad')
    assert not third.success and 'no face' in third.message
    feed.face_list = [face(40, 20, 60, 70, '1')]
    assert feed.capture('sad').success             # the node (and a graph around it) is still alive


# --- item 5 / 7a / 12: emotion-train import ------------------------------------------------------
def _facelabeler(root, bom=False):
    images = root / 'Images'
    images.mkdir(parents=True)
    text = '0,angry\n1,happy\n2,sad\n'
    (root / 'labelList.csv').write_bytes((b'\xef\xbb\xbf' if bom else b'') + text.encode())
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        cv2.imwrite(str(images / f'face{i}.png'), rng.integers(0, 255, (48, 48), dtype=np.uint8))
        rows.append(f'face{i}.png,{["angry", "happy", "sad"][i]}')
    return images, rows


def test_item05_import_refuses_decompression_bombs_and_still_writes_npz_and_report(tmp_path):
    from emotion_ros.training.cli import main
    root = tmp_path / 'fl'
    images, rows = _facelabeler(root)
    (images / 'bomb.png').write_bytes(png_bomb(40000, 40000))
    (images / 'bomb.jpg').write_bytes(jpeg_bomb(65000, 65000))
    (images / 'mid.png').write_bytes(png_bomb(12000, 12000))
    rows += ['bomb.png,happy', 'bomb.jpg,sad', 'mid.png,angry']
    (root / 'faceLabels.csv').write_text('\n'.join(rows) + '\n')
    out = tmp_path / 'out.npz'
    rss = peak_rss_mb()
    rc = main(['import', str(root), '--out', str(out), '--crop', 'never', '--quiet'])
    assert peak_rss_mb() - rss < 300
    assert rc == 0 and out.exists()
    report = json.loads((tmp_path / 'out.npz.report.json').read_text())
    assert report['imported'] == 3
    refused = [u for u in report['unreadable'] if 'refused before decoding' in u]
    assert sorted(u.split(':')[0] for u in refused) == ['Images/bomb.jpg', 'Images/bomb.png', 'Images/mid.png']


def test_item07_import_refuses_symlinks_that_leave_the_dataset_folder(tmp_path):
    from emotion_ros.training import importer
    outside = tmp_path / 'private'
    outside.mkdir()
    secret = outside / 'secret.png'
    cv2.imwrite(str(secret), np.full((48, 48), 7, np.uint8))
    root = tmp_path / 'fl'
    images, rows = _facelabeler(root)
    os.symlink(secret, images / 'face3.png')
    os.symlink(images / 'face0.png', images / 'face4.png')         # a link that stays inside is fine
    os.symlink(outside, images / 'sub')                             # a folder link out of the dataset
    rows += ['face3.png,happy', 'face4.png,angry', 'sub/secret.png,sad']
    (root / 'faceLabels.csv').write_text('\n'.join(rows) + '\n')
    arrays, report = importer.import_dataset(root, crop='never', progress=False)
    assert report.imported == 4 and not (arrays['images'] == 7).all(axis=(1, 2)).any()
    assert sorted(x.split(':')[0] for x in report.outside_links) == ['Images/face3.png', 'Images/sub/secret.png']
    assert all('outside the dataset folder' in x for x in report.outside_links)
    assert report.imported + report.skipped == len(rows)
    tree = tmp_path / 'tree'                                        # a folder-per-class tree: the same rule
    (tree / 'happy').mkdir(parents=True)
    cv2.imwrite(str(tree / 'happy' / 'a.png'), np.full((48, 48), 100, np.uint8))
    os.symlink(secret, tree / 'happy' / 'b.png')
    os.symlink(outside, tree / 'sad')
    arrays, report = importer.import_dataset(tree, crop='never', progress=False)
    assert report.imported == 1 and not (arrays['images'] == 7).all(axis=(1, 2)).any()
    assert sorted(x.split(':')[0] for x in report.outside_links) == ['happy/b.png', 'sad/secret.png']


def test_item12_utf8_bom_in_label_list_keeps_every_class(tmp_path):
    from emotion_ros.training import importer
    root = tmp_path / 'fl'
    images, rows = _facelabeler(root, bom=True)
    (root / 'faceLabels.csv').write_bytes(b'\xef\xbb\xbf' + ('\n'.join(rows) + '\n').encode())
    labels, problems = fl.read_labels(root)
    assert labels == ['angry', 'happy', 'sad'] and problems == []
    arrays, report = importer.import_dataset(root, crop='never', progress=False)
    assert list(arrays['classes']) == ['angry', 'happy', 'sad'] and report.imported == 3
    assert report.problems == [] and report.skipped == 0


# --- item 8: log forging and floods -------------------------------------------------------------
def test_item08_untrusted_text_is_escaped_capped_and_repeats_are_throttled(recorder, capfd):
    rec, feed = recorder
    hostile = 'happy\n[INFO] [0.0] [dataset_recorder]: forged line\x1b[2J\x1b[31m' + 'x' * 10000
    assert feed.client.wait_for_service(timeout_sec=10.0)
    futures, started = [], time.monotonic()
    for _ in range(40):                     # 200 requests, 5 at a time (a service queue holds 10)
        batch = [feed.client.call_async(Capture.Request(label=hostile, count=1, interval=0.0)) for _ in range(5)]
        end = time.monotonic() + 20
        while time.monotonic() < end and not all(f.done() for f in batch):
            feed.executor.spin_once(timeout_sec=0.02)
        futures += batch
    assert all(f.done() and not f.result().success for f in futures)
    err = capfd.readouterr().err
    refused = [line for line in err.splitlines() if 'capture refused' in line]
    allowed = 2 + (time.monotonic() - started) / 5.0          # one line per 5 s per kind, however busy the box
    assert 1 <= len(refused) <= allowed, f'{len(refused)} lines for 200 refusals'
    assert 'forged line' not in err.replace('\\n', '').split('capture refused', 1)[0]
    assert not any(line.startswith('[INFO] [0.0]') for line in err.splitlines())
    assert '\x1b[2J' not in err and all(len(line) < 1000 for line in refused)


def test_item08_classifier_escapes_hostile_face_ids(ros):
    from emotion_ros.nodes.emotion_classifier_node import EmotionClassifierNode
    cls = EmotionClassifierNode()
    lines = []

    class Logger:
        def warning(self, text):
            lines.append(text)
        info = warning

    cls._log._logger = Logger()
    cls._emotions_pub.publish = lambda m: None
    try:
        evil = 'x\n[ERROR] [1.0] [emotion_classifier]: forged\x1b[31m' + 'y' * 5000
        cls._classify(bgr_to_image(astronaut_bgr(), header(1)), FaceArray(header=header(1),
                      faces=[face(5000, 5000, 10, 10, evil)]))
        assert lines and all('\n' not in line and '\x1b' not in line and len(line) < 1000 for line in lines)
        assert '\\x0a[ERROR]' in lines[0]
    finally:
        cls.destroy_node()


# --- item 10 (second half): a model that outputs NaN / inf ---------------------------------------
def test_item10_model_nan_output_never_reaches_emotion_array(ros):
    from emotion_ros.nodes.emotion_classifier_node import EmotionClassifierNode
    cls = EmotionClassifierNode(parameter_overrides=[Parameter('smoothing_time_constant_s', value=0.3)])
    out = []
    cls._emotions_pub.publish = out.append
    real = cls.model._from_output

    def poisoned(y):
        probs = real(y).copy()
        probs[0] = np.nan                    # the first face of every batch
        if len(probs) > 1:
            probs[1, 0] = np.inf
        return probs

    try:
        img = bgr_to_image(astronaut_bgr(), header(1))
        faces = [face(250, 60, 120, 140, '1'), face(50, 50, 100, 100, '2'), face(400, 250, 120, 120, '3')]
        cls._classify(img, FaceArray(header=header(1), faces=faces))
        cls.model._from_output = poisoned
        for sec in (2, 3):
            cls._classify(bgr_to_image(astronaut_bgr(), header(sec)), FaceArray(header=header(sec), faces=faces))
        cls.model._from_output = real
        cls._classify(bgr_to_image(astronaut_bgr(), header(4)), FaceArray(header=header(4), faces=faces))
        for msg in out:
            for e in msg.emotions:
                assert np.isfinite(e.confidence) and np.isfinite(e.valence) and np.isfinite(e.arousal)
                assert all(np.isfinite(e.scores)) and abs(sum(e.scores) - 1.0) < 1e-3
        assert [e.face.id for e in out[1].emotions] == ['3']     # the unscorable faces left out, face 3 kept
        assert 'non-finite' in cls._log.last_error
        assert [e.face.id for e in out[3].emotions] == ['1', '2', '3']  # tracks not poisoned
    finally:
        cls.destroy_node()


# --- item 11: duplicate track ids within one frame ----------------------------------------------
def test_item11_duplicate_track_ids_get_their_own_smoothing_state(ros):
    from emotion_ros.nodes.emotion_classifier_node import EmotionClassifierNode
    cls = EmotionClassifierNode()
    out = []
    cls._emotions_pub.publish = out.append
    try:
        rng = np.random.default_rng(3)
        frame = astronaut_bgr()
        frame[300:460, 420:620] = rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)
        faces = [face(250, 60, 120, 140, '7'), face(430, 310, 140, 140, '7')]
        for sec in (1, 2, 3):
            cls._classify(bgr_to_image(frame, header(sec)), FaceArray(header=header(sec), faces=faces))
        for msg in out:
            a, b = (np.array(e.scores) for e in msg.emotions)
            assert not np.allclose(a, b, atol=1e-4), 'the second face copied the first face\'s scores'
        assert 'more than once' in cls._log.last_error
    finally:
        cls.destroy_node()


def test_item08_hue_node_expression_flood_is_throttled_and_escaped(ros, tmp_path, capfd):
    from emotion_msgs.msg import Emotion, EmotionArray
    from emotion_ros.nodes.hue_actuator_node import HueActuatorNode
    node = HueActuatorNode(parameter_overrides=[Parameter('dry_run', value=True), Parameter('hold_s', value=0.0),
                                                Parameter('username_file', value=str(tmp_path / 'user.json'))])
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    callback = [s for s in node.subscriptions if s.msg_type is EmotionArray][0].callback
    started = time.monotonic()
    try:
        for i in range(600):                      # a label flood: a different expression every frame
            label = ['happy', 'sad', f'x{i}\n[INFO] [0.0] [hue_actuator]: forged\x1b[31m'][i % 3]
            callback(EmotionArray(emotions=[Emotion(expression=label, confidence=0.9, labels=[label], scores=[1.0],
                                                    face=face(10, 10, 50, 50, '1'))]))
            executor.spin_once(timeout_sec=0.001)
    finally:
        node.destroy_node()
    err = capfd.readouterr().err
    expression_lines = [line for line in err.splitlines() if ']: expression ' in line]
    allowed = 2 + (time.monotonic() - started) / 5.0          # once per 5 s, however busy the box
    assert 1 <= len(expression_lines) <= allowed, f'{len(expression_lines)} expression lines for 600 labels'
    assert all('\\x0a[INFO]' in line for line in err.splitlines() if 'forged' in line) and '\x1b[31m' not in err
    assert not any(line.startswith('[INFO] [0.0]') for line in err.splitlines())


@pytest.mark.slow
def test_item03_emotion_live_record_survives_a_failed_then_a_successful_capture(ros_env, tmp_path):
    """The issue's scenario: under `emotion_live --record` a failed capture followed by a successful one
    used to end the whole one-process graph (the recorder's log call raised inside the shared executor)."""
    import subprocess
    from ros_graph import NodeProcess, VENV_BIN
    ds = tmp_path / 'ds'
    live = NodeProcess('emotion_live', ['--source', 'demo', '--loop', '--fps', '10', '--record', str(ds)],
                       ros_env, tmp_path)

    def capture(label):
        return subprocess.run([str(VENV_BIN / 'emotion-dataset'), 'capture', '--label', label, '--count', '1'],
                              env=ros_env, capture_output=True, text=True, timeout=120)
    try:
        end = time.monotonic() + 90
        while 'images, labels' not in live.output:
            assert live.proc.poll() is None and time.monotonic() < end, live.output[-3000:]
            time.sleep(0.2)
        images = ds / 'Images'
        images.rename(ds / 'Images.away')              # every write now fails: ENOTDIR
        images.write_text('not a folder')
        failed = capture('happy')
        images.unlink()
        (ds / 'Images.away').rename(images)
        ok = capture('happy')
        alive = live.proc.poll() is None
    finally:
        live.stop()
    assert failed.returncode != 0 and 'cannot write' in (failed.stdout + failed.stderr), failed.stderr
    assert ok.returncode == 0, ok.stderr + live.output[-3000:]
    assert alive and 'Logger severity' not in live.output
