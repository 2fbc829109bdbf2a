"""Fuzz layer (issue 18): Hypothesis generates typed but hostile inputs -- CompressedImage headers and
payloads, raw Image fields, FaceArray rois/ids/margins, EmotionArray scores and strings, dataset folders --
and feeds them to the real node classes (in this process, real messages into the callbacks they
subscribed with) and to `emotion-train import`.

Properties: no exception escapes a callback; what is published is valid (stamps copied, rois inside the
image, finite scores summing to 1, at most max_faces); time and peak memory stay bounded.

The quick layer runs in every `make test` (a few seconds each). The long campaign (thousands of examples
per property) runs with `pytest -m fuzz_long test/reliability/test_fuzz_inputs.py` or EMOTION_FUZZ_LONG=1.
"""
import math
import os
import resource
import struct
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

hypothesis = pytest.importorskip('hypothesis')
rclpy = pytest.importorskip('rclpy')
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from emotion_msgs.msg import Emotion, EmotionArray, Face, FaceArray  # noqa: E402
from emotion_ros.core.frames.encoding import SUPPORTED_ENCODINGS  # noqa: E402
from emotion_ros.nodes.ros_image import bgr_to_image  # noqa: E402

pytestmark = pytest.mark.ros

_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                      HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                      HealthCheck.large_base_example])
LONG_FACTOR = int(os.environ.get('EMOTION_FUZZ_FACTOR', '50'))


def quick(n):
    return settings(max_examples=n, **_COMMON)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


U32 = st.one_of(st.integers(0, 700), st.sampled_from([0, 1, 2, 255, 20000, 65535, 200000, 2 ** 31 - 1, 2 ** 31,
                                                      2 ** 32 - 1]), st.integers(0, 2 ** 32 - 1))
HOSTILE_TEXT = st.one_of(st.text(max_size=40), st.sampled_from(
    ['', '1', '1', '2', 'x\n[ERROR] [0.0] [node]: forged', '\x1b[2J\x1b[31mred', '\u202eevil', 'a' * 5000, '\x00']))
F32 = st.floats(width=32)   # includes nan, +-inf, subnormals


# --- the real nodes, once per module --------------------------------------------------------------
class Rig:
    """Real node objects; every publisher's publish() replaced by a recorder, callbacks found by message type."""

    def __init__(self):
        rclpy.init()
        from emotion_ros.nodes.emotion_classifier_node import EmotionClassifierNode
        from emotion_ros.nodes.face_detector_node import FaceDetectorNode
        self.detector = FaceDetectorNode(parameter_overrides=[Parameter('image_transport', value='compressed')])
        self.raw_detector = FaceDetectorNode(namespace='raw')
        self.classifier = EmotionClassifierNode(parameter_overrides=[Parameter('max_faces', value=8)])
        self.out = {}
        for node in (self.detector, self.raw_detector, self.classifier):
            for pub in node.publishers:
                box = self.out.setdefault((id(node), pub.msg_type), [])
                pub.publish = box.append

    def callback(self, node, msg_type):
        subs = [s for s in node.subscriptions if s.msg_type is msg_type]
        assert subs, f'{node.get_name()} does not subscribe to {msg_type.__name__}'
        return subs[0].callback

    def published(self, node, msg_type):
        return self.out.setdefault((id(node), msg_type), [])

    def close(self):
        for node in (self.detector, self.raw_detector, self.classifier):
            node.destroy_node()
        rclpy.shutdown()


@pytest.fixture(scope='module')
def rig():
    r = Rig()
    yield r
    r.close()


@pytest.fixture
def long_campaign(request):
    if 'fuzz_long' not in (request.config.getoption('markexpr') or '') and not os.environ.get('EMOTION_FUZZ_LONG'):
        pytest.skip('long fuzz campaign: run with -m fuzz_long (or EMOTION_FUZZ_LONG=1)')


def header(sec, nsec=0):
    h = Header(frame_id='cam')
    h.stamp.sec, h.stamp.nanosec = sec, nsec
    return h


# --- compressed images -----------------------------------------------------------------------------
def _encoded(ext):
    rng = np.random.default_rng(len(ext))
    img = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    ok, b = cv2.imencode(ext, img[:, :, 0] if ext in ('.pgm', '.pbm') else img)
    return b.tobytes()


BASES = {ext: _encoded(ext) for ext in ('.jpg', '.png', '.webp', '.bmp', '.tiff', '.ppm', '.pgm')}


def _with_dims(ext, data, w, h):
    """`data` with the width/height fields of its header overwritten (the decompression-bomb move)."""
    b = bytearray(data)
    w16, h16 = w & 0xFFFF, h & 0xFFFF
    if ext == '.png':
        struct.pack_into('>II', b, 16, w, h)
        struct.pack_into('>I', b, 29, zlib.crc32(bytes(b[12:29])))
    elif ext == '.jpg':
        sof = next((i for i in range(2, len(b) - 9) if b[i] == 0xFF and b[i + 1] in (0xC0, 0xC2)), None)
        if sof is not None:
            struct.pack_into('>HH', b, sof + 5, h16, w16)
    elif ext == '.bmp':
        struct.pack_into('<ii', b, 18, w & 0x7FFFFFFF, h & 0x7FFFFFFF)
    elif ext == '.webp' and b[12:16] == b'VP8 ':
        struct.pack_into('<HH', b, 26, w & 0x3FFF, h & 0x3FFF)
    elif ext in ('.ppm', '.pgm'):
        body = bytes(b).split(b'\n', 3)[-1]
        return (b'P6' if ext == '.ppm' else b'P5') + f'\n{w} {h}\n255\n'.encode() + body
    return bytes(b)


@st.composite
def compressed_payloads(draw):
    kind = draw(st.sampled_from(['dims', 'flip', 'truncate', 'magic', 'random', 'valid']))
    ext = draw(st.sampled_from(sorted(BASES)))
    data = BASES[ext]
    if kind == 'dims':
        data = _with_dims(ext, data, draw(U32), draw(U32))
    elif kind == 'flip':
        b = bytearray(data)
        for pos in draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=8)):
            b[pos] = draw(st.integers(0, 255))
        data = bytes(b)
    elif kind == 'truncate':
        data = data[:draw(st.integers(0, len(data)))]
    elif kind == 'magic':
        data = draw(st.sampled_from([b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n', b'RIFF\0\0\0\0WEBP', b'BM', b'II*\0',
                                     b'MM\0*', b'P5 ', b'P7\n', b'GIF89a'])) + draw(st.binary(max_size=300))
    elif kind == 'random':
        data = draw(st.binary(max_size=1024))
    fmt = draw(st.sampled_from(['jpeg', 'png', 'rgb8; jpeg compressed bgr8', '', 'x' * 300, 'j\npeg']))
    return CompressedImage(header=header(draw(st.integers(0, 2 ** 31 - 1)), draw(st.integers(0, 10 ** 9 - 1))),
                           format=fmt, data=data)


def check_compressed(rig, msg):
    det = rig.detector
    out = rig.published(det, FaceArray)
    before, errors = len(out), det.diag.errors
    start = time.monotonic()
    rig.callback(det, CompressedImage)(msg)
    assert time.monotonic() - start < 10.0
    if len(out) > before:
        assert out[-1].header == msg.header           # stamp and frame_id copied
    else:
        assert det.diag.errors > errors               # refused with a counted, logged reason


@quick(60)
@given(msg=compressed_payloads())
def test_fuzz_detector_compressed_headers_and_payloads(rig, msg):
    rss = peak_rss_mb()
    check_compressed(rig, msg)
    assert peak_rss_mb() - rss < 400


# --- raw images ------------------------------------------------------------------------------------
@st.composite
def raw_images(draw):
    encoding = draw(st.one_of(st.sampled_from(SUPPORTED_ENCODINGS), HOSTILE_TEXT))
    small = draw(st.booleans())
    height = draw(st.integers(0, 64) if small else U32)
    width = draw(st.integers(0, 64) if small else U32)
    channels = {'mono8': 1, 'mono16': 2, '8UC1': 1}.get(encoding, 3)
    step = draw(st.one_of(st.just(width * channels), U32))
    size = draw(st.one_of(st.just(min(step * height, 1 << 16)), st.integers(0, 4096)))
    return Image(header=header(draw(st.integers(0, 2 ** 31 - 1))), height=height, width=width, encoding=encoding,
                 is_bigendian=draw(st.integers(0, 1)), step=step,
                 data=draw(st.binary(min_size=size, max_size=size)) if size < 4096 else bytes(size))


def check_raw(rig, msg):
    det = rig.raw_detector
    out = rig.published(det, FaceArray)
    before = len(out)
    start = time.monotonic()
    rig.callback(det, Image)(msg)
    assert time.monotonic() - start < 10.0
    if len(out) > before:
        assert out[-1].header == msg.header


@quick(60)
@given(msg=raw_images())
def test_fuzz_detector_raw_image_fields(rig, msg):
    check_raw(rig, msg)


# --- face lists into the classifier ---------------------------------------------------------------
FRAME = None


def _frame():
    global FRAME
    if FRAME is None:
        from skimage import data
        FRAME = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (320, 240))
    return FRAME


@st.composite
def face_lists(draw):
    n = draw(st.integers(0, 40))
    faces = [Face(id=draw(HOSTILE_TEXT), confidence=draw(F32),
                  roi=RegionOfInterest(x_offset=draw(U32), y_offset=draw(U32), width=draw(U32), height=draw(U32)))
             for _ in range(n)]
    if n and draw(st.booleans()):      # at least one plausible face
        faces[0].roi = RegionOfInterest(x_offset=120, y_offset=30, width=70, height=80)
    size = draw(st.sampled_from([(320, 240), (1, 1), (3, 2), (64, 48)]))
    sec = draw(st.integers(0, 2 ** 31 - 1))
    msg = FaceArray(header=header(sec, draw(st.integers(0, 10 ** 9 - 1))), faces=faces)
    msg.crop_margin = draw(F32)
    return size, msg


def check_faces(rig, case):
    (w, h), faces_msg = case
    cls = rig.classifier
    out = rig.published(cls, EmotionArray)
    image = _frame() if (w, h) == (320, 240) else cv2.resize(_frame(), (w, h))
    before = len(out)
    start = time.monotonic()
    rig.callback(cls, Image)(bgr_to_image(image, faces_msg.header))
    rig.callback(cls, FaceArray)(faces_msg)
    assert time.monotonic() - start < 20.0
    assert len(out) == before + 1, 'every paired frame gets exactly one EmotionArray'
    msg = out[-1]
    assert msg.header == faces_msg.header
    assert len(msg.emotions) <= min(8, len(faces_msg.faces))
    for e in msg.emotions:
        r = e.face.roi
        assert r.width > 0 and r.height > 0 and r.x_offset + r.width <= w and r.y_offset + r.height <= h
        assert all(math.isfinite(v) for v in e.scores) and abs(sum(e.scores) - 1.0) < 1e-3
        assert all(math.isfinite(v) for v in (e.confidence, e.valence, e.arousal, e.face.confidence))
        assert e.expression in e.labels and len(e.labels) == len(e.scores)
        assert e.header == faces_msg.header


@quick(40)
@given(case=face_lists())
def test_fuzz_classifier_face_arrays(rig, case):
    rss = peak_rss_mb()
    check_faces(rig, case)
    assert peak_rss_mb() - rss < 400


# --- emotion arrays into their consumers (Hue node in dry run) ------------------------------------
@st.composite
def emotion_arrays(draw):
    emotions = []
    for _ in range(draw(st.integers(0, 6))):
        labels = draw(st.lists(HOSTILE_TEXT, max_size=8))
        emotions.append(Emotion(header=header(1), expression=draw(HOSTILE_TEXT), confidence=draw(F32),
                                valence=draw(F32), arousal=draw(F32), labels=labels,
                                scores=draw(st.lists(F32, max_size=10)),
                                face=Face(id=draw(HOSTILE_TEXT), confidence=draw(F32))))
    return EmotionArray(header=header(draw(st.integers(0, 2 ** 31 - 1))), emotions=emotions)


@pytest.fixture(scope='module')
def hue_node(rig, tmp_path_factory):
    """The Hue node in dry-run mode (no bridge); its bridge-reply fuzzing lives with the Hue emulator tests."""
    from emotion_ros.nodes import hue_actuator_node
    try:
        node = hue_actuator_node.HueActuatorNode(parameter_overrides=[
            Parameter('dry_run', value=True),
            Parameter('username_file', value=str(tmp_path_factory.mktemp('hue') / 'user.json'))])
    except Exception as exc:  # the node's own start-up contract is tested in test_hue_node.py
        pytest.skip(f'Hue node does not start in dry run here: {exc}')
    yield node
    node.destroy_node()


@quick(40)
@given(msg=emotion_arrays())
def test_fuzz_hue_node_emotion_arrays(rig, hue_node, msg):
    start = time.monotonic()
    rig.callback(hue_node, EmotionArray)(msg)
    assert time.monotonic() - start < 10.0


@pytest.fixture(scope='module')
def hri_node(rig):
    from emotion_ros.nodes.hri_publisher_node import HriPublisherNode
    node = HriPublisherNode(namespace='fuzz_hri')
    yield node
    node.destroy_node()


@quick(30)
@given(msg=emotion_arrays(), rois=st.lists(st.tuples(U32, U32, U32, U32), min_size=6, max_size=6),
       size=st.sampled_from([(320, 240), (2, 2)]))
def test_fuzz_hri_publisher_emotion_arrays(rig, hri_node, msg, rois, size):
    """REP-155 publisher: per-id topics are made from ids that came over the network."""
    check_hri(rig, hri_node, msg, rois, size)


def check_hri(rig, hri_node, msg, rois, size):
    for e, (x, y, w, h) in zip(msg.emotions, rois):
        e.header = msg.header
        e.face.roi = RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)
    image = cv2.resize(_frame(), size)
    start = time.monotonic()
    rig.callback(hri_node, Image)(bgr_to_image(image, msg.header))
    rig.callback(hri_node, EmotionArray)(msg)
    assert time.monotonic() - start < 10.0


# --- dataset folders into emotion-train import ----------------------------------------------------
def _png(value):
    ok, b = cv2.imencode('.png', np.full((48, 48), value, np.uint8))
    return b.tobytes()


ROW_NAMES = st.one_of(st.sampled_from(['face0.png', 'face1.png', 'face2.jpg', 'bomb.png', 'junk.png', 'link.png',
                                       'dirlink/secret.png', 'fifo.png', '../escape.png', '/etc/passwd',
                                       'sub/../face0.png', 'a\nb.png', 'x' * 300 + '.png', '']),
                      st.text(max_size=20))
LABELS = st.one_of(st.sampled_from(['angry', 'happy', 'sad', 'Happy', 'happiness', '', ' ', 'bored']), HOSTILE_TEXT)


@st.composite
def dataset_folders(draw):
    label_rows = draw(st.lists(st.tuples(st.one_of(st.integers(-2, 9).map(str), HOSTILE_TEXT), LABELS), max_size=8))
    face_rows = draw(st.lists(st.tuples(ROW_NAMES, LABELS), max_size=12))
    files = draw(st.lists(st.sampled_from(['face0.png', 'face1.png', 'face2.jpg', 'bomb.png', 'junk.png', 'link.png',
                                           'dirlink', 'fifo.png', 'zero.png']), unique=True, max_size=9))
    bom = draw(st.booleans())
    tail = draw(st.binary(max_size=64))
    return label_rows, face_rows, files, bom, tail


def build_folder(root: Path, case):
    label_rows, face_rows, files, bom, tail = case
    images = root / 'fl' / 'Images'
    images.mkdir(parents=True)
    outside = root / 'outside'
    outside.mkdir()
    (outside / 'secret.png').write_bytes(_png(7))
    text = ''.join(f'{a},{b}\n' for a, b in label_rows)
    (root / 'fl' / 'labelList.csv').write_bytes((b'\xef\xbb\xbf' if bom else b'') + text.encode('utf-8', 'replace'))
    rows = ''.join(f'{a},{b}\n' for a, b in face_rows)
    (root / 'fl' / 'faceLabels.csv').write_bytes(rows.encode('utf-8', 'replace') + tail)
    for name in files:
        p = images / name
        if name in ('face0.png', 'face1.png'):
            p.write_bytes(_png(100 + len(name)))
        elif name == 'face2.jpg':
            p.write_bytes(cv2.imencode('.jpg', np.full((48, 48), 90, np.uint8))[1].tobytes())
        elif name == 'bomb.png':
            p.write_bytes(_with_dims('.png', _png(1), 40000, 40000))
        elif name == 'junk.png':
            p.write_bytes(os.urandom(64))
        elif name == 'link.png':
            os.symlink(outside / 'secret.png', p)
        elif name == 'dirlink':
            os.symlink(outside, p)
        elif name == 'fifo.png':
            os.mkfifo(p)
        elif name == 'zero.png':
            p.write_bytes(b'')
    return root / 'fl'


def check_import(case):
    from emotion_ros.core.dataset.facelabeler import DatasetError, DatasetWriter
    from emotion_ros.training import importer
    with tempfile.TemporaryDirectory() as tmp:
        root = build_folder(Path(tmp), case)
        start = time.monotonic()
        arrays, report = importer.import_dataset(root, crop='never', progress=False)
        assert time.monotonic() - start < 30.0
        n = len(arrays['labels'])
        assert arrays['images'].shape == (n, 48, 48) and len(arrays['source']) == n == report.imported
        assert not (arrays['images'] == 7).all(axis=(1, 2)).any(), 'a file outside the dataset was imported'
        for name in arrays['source']:
            assert (root / name).resolve().is_relative_to(root.resolve())
        assert all(0 <= lab < len(arrays['classes']) for lab in arrays['labels'])
        try:                                              # the recorder's writer on the same folder
            writer = DatasetWriter(root)
        except DatasetError:
            return
        assert writer.save(np.zeros((48, 48), np.uint8), writer.labels[0]).startswith('Images/face')


@quick(25)
@given(case=dataset_folders())
def test_fuzz_import_of_hostile_dataset_folders(case):
    check_import(case)


# --- the long campaign ----------------------------------------------------------------------------
@pytest.mark.fuzz_long
@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
def test_fuzz_long_campaign(rig, hue_node, hri_node, long_campaign):
    """Every property above with LONG_FACTOR times the examples (minutes, not for every `make test`)."""
    long = settings(max_examples=60 * LONG_FACTOR, **_COMMON)
    long(given(msg=compressed_payloads())(lambda msg: check_compressed(rig, msg)))()
    long(given(msg=raw_images())(lambda msg: check_raw(rig, msg)))()
    long(given(case=face_lists())(lambda case: check_faces(rig, case)))()
    long(given(msg=emotion_arrays())(lambda msg: rig.callback(hue_node, EmotionArray)(msg)))()
    long(given(msg=emotion_arrays(), rois=st.lists(st.tuples(U32, U32, U32, U32), min_size=6, max_size=6),
               size=st.sampled_from([(320, 240), (2, 2)]))(
        lambda msg, rois, size: check_hri(rig, hri_node, msg, rois, size)))()
    settings(max_examples=25 * LONG_FACTOR, **_COMMON)(given(case=dataset_folders())(check_import))()
