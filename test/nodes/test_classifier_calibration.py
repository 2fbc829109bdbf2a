"""The classifier node's calibration_path (issue 26), on the real node over DDS: a runtime change applies from the
next frame exactly as Calibration.apply says; every unusable file is refused through the parameter service with
the reason while the old calibration stays; '' goes back to the model's own scores; a bad file at start leaves the
node running uncalibrated, and the diagnostics say which calibration is active (or why none is)."""
import json
import time

import numpy as np
import pytest

from calibration_files import calibration_doc, favouring, model_classes, write_calibration
from images import astronaut_bgr as astronaut

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from sensor_msgs.msg import Image, RegionOfInterest  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from emotion_msgs.msg import EmotionArray, Face, FaceArray  # noqa: E402
from emotion_ros.core.emotion.calibration import load_calibration  # noqa: E402
from emotion_ros.core.emotion.model import default_model_path  # noqa: E402
from emotion_ros.core.faces.detection import DEFAULT_BACKEND, create_detector  # noqa: E402
from emotion_ros.nodes.qos import latest_frame_qos, results_qos  # noqa: E402
from emotion_ros.nodes.ros_image import bgr_to_image  # noqa: E402

pytestmark = pytest.mark.ros
PROBE_NODE = 'calibration_probe'
NODE = '/emotion_classifier'
CLASSES = model_classes()


class Rig:
    """The classifier and the probe node on one executor: image+faces in, emotions and diagnostics out, and the
    classifier's parameter service (what `ros2 param set` calls)."""

    def __init__(self, clf, io):
        self.clf, self.io, self.sec = clf, io, 100
        self.exec = SingleThreadedExecutor()
        self.images = io.create_publisher(Image, 'image', latest_frame_qos(10))
        self.faces = io.create_publisher(FaceArray, 'faces', results_qos(10))
        self.emotions, self.diagnostics = [], []
        io.create_subscription(EmotionArray, 'emotions', self.emotions.append, results_qos(100))
        io.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append, 10)
        self.params = AsyncParameterClient(io, NODE)
        for n in (clf, io):
            self.exec.add_node(n)
        assert self.spin_until(lambda: self.images.get_subscription_count() >= 1
                               and self.faces.get_subscription_count() >= 1, 15), 'classifier not subscribed'
        assert self.params.wait_for_services(timeout_sec=15.0), 'no parameter services on the classifier'
        boxes = create_detector(DEFAULT_BACKEND).detect(astronaut())
        b = max(boxes, key=lambda b: b.w * b.h)
        self.face = Face(id='1', confidence=0.9, roi=RegionOfInterest(x_offset=int(b.x), y_offset=int(b.y),
                                                                      width=int(b.w), height=int(b.h)))

    def spin_until(self, done, timeout=15.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not done():
            self.exec.spin_once(timeout_sec=0.02)
        return bool(done())

    def scores(self):
        """(expression, scores) the classifier publishes for the astronaut's face in a new frame."""
        self.sec += 1
        s = self.sec
        header = Header(frame_id='cam')
        header.stamp.sec = s
        self.images.publish(bgr_to_image(astronaut(), header))
        assert self.spin_until(lambda: self.clf.pairer.image((s, 0)) is not None, 10), 'image not received'
        self.faces.publish(FaceArray(header=header, faces=[self.face]))
        assert self.spin_until(lambda: any(m.header.stamp.sec == s for m in self.emotions), 15), f'no emotions @{s}'
        e = next(m for m in self.emotions if m.header.stamp.sec == s).emotions[0]
        assert list(e.labels) == CLASSES
        return e.expression, np.array(e.scores, np.float32)

    def set(self, value):
        """SetParametersResult of calibration_path := value through the parameter service."""
        future = self.params.set_parameters([Parameter('calibration_path', value=value)])
        assert self.spin_until(future.done, 15.0), 'no answer from set_parameters'
        return future.result().results[0]

    def diagnosed(self, prefix: str) -> str:
        """The `calibration` diagnostics value, once a status starting with `prefix` arrives."""
        def value():
            for msg in reversed(self.diagnostics):
                for status in msg.status:
                    if status.name == NODE:
                        kv = {v.key: v.value for v in status.values}
                        if kv.get('calibration', '').startswith(prefix):
                            return kv['calibration']
            return ''
        self.diagnostics.clear()
        assert self.spin_until(lambda: bool(value()), 5.0), f'no diagnostics with calibration {prefix!r}...'
        return value()

    def close(self):
        for n in (self.clf, self.io):
            self.exec.remove_node(n)
        self.clf.destroy_node()


def classifier(**params):
    from emotion_ros.nodes.emotion_classifier_node import EmotionClassifierNode
    overrides = [Parameter('smoothing_time_constant_s', value=0.0)]   # published scores = the (calibrated) model's
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return EmotionClassifierNode(parameter_overrides=overrides)


def test_runtime_calibration_applies_refuses_unusable_files_and_goes_back(ros_node, tmp_path):
    rig = Rig(classifier(), ros_node)
    try:
        assert rig.diagnosed('none') == 'none'
        expression, raw = rig.scores()
        target = next(c for c in CLASSES if c not in (expression, 'neutral'))
        path = write_calibration(tmp_path / 'favour.json', bias=favouring(target))
        cal = load_calibration(path, default_model_path(), CLASSES)
        assert CLASSES[int(cal.apply(raw[None]).argmax())] == target

        result = rig.set(str(path))
        assert result.successful, result.reason
        got, calibrated = rig.scores()                      # the very next frame
        assert got == target
        np.testing.assert_allclose(calibrated, cal.apply(raw[None])[0], atol=1e-5)
        assert rig.diagnosed(str(path)) == f'{path} (bias, sha {cal.sha256[:8]})' == cal.describe

        small = default_model_path().parent / 'emotion_small.tflite'
        bad_json = tmp_path / 'bad.json'
        bad_json.write_text('{"format": "emotion_ros.calibration/1", ')
        unusable = {
            'fitted for another model': write_calibration(tmp_path / 'small.json', bias=favouring(expression),
                                                          model_path=small),
            'JSONDecodeError': bad_json,
            'does not exist': tmp_path / 'missing.json',
            'differ from the model': write_calibration(tmp_path / 'classes.json', bias=favouring(expression),
                                                       classes=CLASSES[::-1]),
            'non-finite': write_calibration(tmp_path / 'nan.json', doc=calibration_doc(
                np.r_[np.nan, np.zeros(len(CLASSES) - 1)])),
        }
        for reason, bad in unusable.items():
            result = rig.set(str(bad))
            assert not result.successful, f'{bad.name} accepted'
            assert result.reason.startswith('calibration_path: ') and reason in result.reason, result.reason
            assert str(bad) in result.reason and '\n' not in result.reason
            assert rig.clf.get_parameter('calibration_path').value == str(path)
            got, scores = rig.scores()                       # the old calibration still applies
            assert got == target
            np.testing.assert_allclose(scores, calibrated, atol=1e-6)
        assert not rig.set(' ' + str(path)).successful       # the spec's own check, before the file is read

        assert rig.set('').successful
        got, back = rig.scores()
        assert got == expression
        np.testing.assert_allclose(back, raw, atol=1e-6)
        assert rig.diagnosed('none') == 'none'
    finally:
        rig.close()


def test_a_bad_file_at_start_runs_uncalibrated_and_says_why(ros_node, tmp_path):
    other = write_calibration(tmp_path / 'other.json', bias=favouring('fear'),
                              model_path=default_model_path().parent / 'emotion_small.tflite')
    rig = Rig(classifier(calibration_path=str(other)), ros_node)
    try:
        assert rig.clf.active and rig.clf.calibration is None
        why = rig.diagnosed('none (refused: ')
        assert str(other) in why and 'fitted for another model' in why
        # the parameter says what is in force, so setting the mended file's path again loads it
        assert rig.clf.get_parameter('calibration_path').value == ''
        expression, raw = rig.scores()
        doc = calibration_doc(favouring('fear'))
        other.write_text(json.dumps(doc))
        assert rig.set(str(other)).successful
        cal = load_calibration(other, default_model_path(), CLASSES)
        got, scores = rig.scores()
        np.testing.assert_allclose(scores, cal.apply(raw[None])[0], atol=1e-5)
        assert rig.diagnosed(str(other)) == cal.describe
    finally:
        rig.close()


def test_a_prototype_calibration_scores_the_faces_embedding_on_the_running_node(ros_node, tmp_path):
    """One prototype pointing at the astronaut's own embedding pulls her face to that class, exactly as
    Calibration.apply says from the model's probabilities and embedding of the node's crop; prototypes of
    another embedding size are refused with the reason."""
    from calibration_files import prototypes_doc
    from emotion_ros.core.emotion.model import EmotionModel
    from emotion_ros.core.faces.crop import DEFAULT_MARGIN, crop_face
    rig = Rig(classifier(), ros_node)
    try:
        expression, raw = rig.scores()
        model = EmotionModel(default_model_path(), num_threads=1)
        roi = rig.face.roi
        crop = crop_face(astronaut(), (roi.x_offset, roi.y_offset, roi.width, roi.height), margin=DEFAULT_MARGIN)
        probs, emb = model.predict_with_embedding(crop[None])
        np.testing.assert_allclose(probs[0], raw, atol=1e-6)   # the node's crop and scores, reproduced here
        target = next(c for c in CLASSES if c not in (expression, 'neutral'))
        protos = np.random.default_rng(0).normal(0, 1, (len(CLASSES), model.embedding_dim))
        protos[CLASSES.index(target)] = emb[0]
        path = write_calibration(tmp_path / 'protos.json', doc=prototypes_doc(protos, 20.0))
        cal = load_calibration(path, default_model_path(), CLASSES, model.embedding_dim)
        expected = cal.apply(probs, emb)[0]
        assert CLASSES[int(expected.argmax())] == target

        result = rig.set(str(path))
        assert result.successful, result.reason
        got, scores = rig.scores()
        assert got == target
        np.testing.assert_allclose(scores, expected, atol=1e-5)
        assert rig.diagnosed(str(path)) == f'{path} (prototypes, sha {cal.sha256[:8]})'

        other = write_calibration(tmp_path / 'protos160.json', doc=prototypes_doc(protos[:, :160], 20.0))
        result = rig.set(str(other))
        assert not result.successful and '160-d embedding' in result.reason, result.reason
        assert rig.scores()[0] == target
    finally:
        rig.close()
