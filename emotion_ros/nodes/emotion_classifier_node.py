"""emotion_classifier_node: image + faces in, one EmotionArray per frame out (+ an annotated image)."""
from __future__ import annotations

import math

from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest

from emotion_msgs.msg import Emotion, EmotionArray, Face, FaceArray
from emotion_ros.core.emotion.calibration import CalibrationError, load_calibration
from emotion_ros.core.faces.annotate import draw_faces
from emotion_ros.core.emotion.model import ModelLoadError, default_model_path, load_fastest, resolve_model_path
from emotion_ros.core.emotion.pipeline import EmotionPipeline
from emotion_ros.core.faces.crop import margin_of
from emotion_ros.core.frames.encoding import ImageDecodeError
from emotion_ros.core.frames.header import DEFAULT_MAX_PIXELS, MAX_PIXELS_LIMIT
from emotion_ros.core.log_text import untrusted
from emotion_ros.core.param_spec import ParamSpec
from emotion_ros.core.emotion.smoothing import ScoreSmoother
from emotion_ros.core.stamp_pairing import StampPairer
from emotion_ros.nodes.diagnostics import NodeDiagnostics, latency_since
from emotion_ros.nodes.managed_node import ManagedNode
from emotion_ros.nodes.node_main import StartupError, main_for
from emotion_ros.nodes.qos import latest_frame_qos, results_qos
from emotion_ros.nodes.ros_image import bgr_to_image, compressed_to_bgr, image_to_bgr
from emotion_ros.nodes.throttled_log import ThrottledLog


def _calibration_path_reason(value: str):
    """What a path can be refused for before the file is read (the file itself is checked by on_change)."""
    if value != value.strip():
        return 'has leading or trailing white space'
    if len(value) > 4096 or '\x00' in value:
        return 'is not a usable path'
    return None


SPECS = (
    ParamSpec('model_path', '', 'TFLite emotion model (.tflite, labels file beside it), or the name of a '
              'shipped one (emotion, emotion_accurate, emotion_fast, emotion_small); empty = the default shipped model',
              read_only=True),
    ParamSpec('fallback_to_default_model', False, 'when model_path cannot be loaded, log the reason and use '
              'the packaged model instead of refusing to start', read_only=True),
    ParamSpec('model_precision', 'auto', 'which export of the model to run: auto = time the int8 and the float32 '
              'export on a dummy batch at configure and keep the faster (int8 wins only on CPUs with int8 dot '
              'products); int8 / float32 force one', choices=('auto', 'int8', 'float32'), read_only=True),
    ParamSpec('num_threads', 1, 'CPU threads for inference (1 in a process of its own: a second thread cost more '
              'CPU per face and no latency on a busy 2-core machine; emotion_live defaults to 2; '
              'emotion_ros.core.cpu_threads)', min=1, max=64, read_only=True),
    ParamSpec('max_faces', 32, 'classify at most this many faces per frame (largest first); the rest are '
              'reported without an expression', min=1, max=1024),
    ParamSpec('smoothing_time_constant_s', 0.3, 'time constant of the per-track moving average of scores '
              '(0 = no smoothing)', min=0.0, max=60.0, on_change='_set_smoothing_time_constant'),
    ParamSpec('smoothing_max_age_s', 2.0, 'forget a track\'s smoothed scores after this long unseen',
              min=0.0, max=3600.0, on_change='_set_smoothing_max_age'),
    ParamSpec('pairing_cache', 10, 'images (and face lists) kept while waiting for their partner', min=1, max=1000,
              on_change='_set_pairing_cache'),
    ParamSpec('annotate', True, 'publish image_annotated (only drawn while someone subscribes)'),
    ParamSpec('image_transport', 'raw', 'subscribe to `image` (raw) or `image/compressed` (JPEG/PNG '
              'CompressedImage, decoded only for frames that have faces): compressed across a network link, '
              'docs/multi_machine.md', choices=('raw', 'compressed'), read_only=True),
    ParamSpec('calibration_path', '', 'calibration file from `emotion-train calibrate` (docs/calibration.md) applied '
              'to the scores before smoothing, so every consumer of `emotions` sees calibrated scores; it must be '
              'fitted for the running model (sha256) and labels; empty = none. A runtime change applies from the '
              'next frame (a rewritten file at the same path: set \'\' first); a file that cannot be used is refused '
              'with the reason and the old calibration kept; at start it is logged as an error, the node runs '
              'uncalibrated and the parameter reads \'\' (diagnostics say why)',
              check=_calibration_path_reason, on_change='_set_calibration'),
    ParamSpec('max_pixels', DEFAULT_MAX_PIXELS, 'compressed images whose header declares more pixels than this '
              'are refused before decoding', min=1, max=MAX_PIXELS_LIMIT),
)


def _stamp_key(header):
    return (header.stamp.sec, header.stamp.nanosec)


class EmotionClassifierNode(ManagedNode):
    SPECS = SPECS

    def __init__(self, **node_kwargs):
        self.frames = 0
        self._subscriptions_ = []
        super().__init__('emotion_classifier', **node_kwargs)

    def setup(self) -> None:
        self.model_path, self.labels = '', []
        self.calibration, self.calibration_state = None, 'none'
        self.diag = NodeDiagnostics(self, lambda: {'model': self.model_path, 'labels': ','.join(self.labels),
                                                   'threads': str(self.p['num_threads']),
                                                   'calibration': self.calibration_state})
        self._log = ThrottledLog(self.get_logger(), period_s=5.0, on_warning=self.diag.error)

    def _load_model(self) -> str:
        path = str(resolve_model_path(self.p['model_path']))
        try:
            self.model, why = load_fastest(path, self.p['model_precision'], self.p['num_threads'])
        except ModelLoadError as exc:
            if not (self.p['model_path'] and self.p['fallback_to_default_model']):
                raise StartupError(f'emotion model: {exc}') from exc
            self.get_logger().error(f'emotion model: {exc}; falling back to the packaged model')
            path = str(default_model_path())
            try:
                self.model, why = load_fastest(path, 'auto', self.p['num_threads'])
            except ModelLoadError as exc:
                raise StartupError(f'packaged emotion model: {exc}') from exc
        self.get_logger().info(f'emotion model export: {self.model.path.name}: {why}')
        return str(self.model.path)

    def configure(self) -> None:
        path = self._load_model()
        self.labels = list(self.model.labels)
        self.smoother = ScoreSmoother(self.p['smoothing_time_constant_s'], self.p['smoothing_max_age_s'])
        self.pipeline = EmotionPipeline(self.model, self.smoother, self.p['max_faces'])
        self._start_calibration(self.p['calibration_path'])
        self.pairer = StampPairer(self.p['pairing_cache'], self.p['pairing_cache'])
        self.model_path = path
        self._dropped_seen = 0
        self._emotions_pub = self.create_lifecycle_publisher(EmotionArray, 'emotions', results_qos())
        self._annotated_pub = self.create_lifecycle_publisher(Image, 'image_annotated', latest_frame_qos())
        self._subscriptions_ = [
            self.create_subscription(CompressedImage, 'image/compressed', self._on_image, latest_frame_qos())
            if self.p['image_transport'] == 'compressed' else
            self.create_subscription(Image, 'image', self._on_image, latest_frame_qos()),
            self.create_subscription(FaceArray, 'faces', self._on_faces, results_qos(depth=1)),
        ]
        labels = ', '.join(untrusted(x) for x in self.labels)   # a labels file is text from outside
        self.get_logger().info(f'model {path} ({len(self.labels)} labels: {labels})')

    def cleanup(self) -> None:
        self._subscriptions_ = []  # destroyed by ManagedNode with everything configure() created
        self.model = None
        self.pipeline = None
        self.calibration, self.calibration_state = None, 'none'

    def _load_calibration(self, path: str):
        """The checked Calibration for `path` ('' = None); CalibrationError says why a file cannot be used."""
        return load_calibration(path, self.model.path, self.model.labels, self.model.embedding_dim) if path else None

    def _use_calibration(self, calibration, state: str = '') -> None:
        self.calibration = self.pipeline.calibration = calibration   # read once per frame by the pipeline
        self.smoother.clear()   # no track averages scores of two different maps
        self.calibration_state = calibration.describe if calibration is not None else (state or 'none')
        self.get_logger().info(f'calibration: {untrusted(self.calibration_state, 500)}')

    def _start_calibration(self, path: str) -> None:
        """At configure a bad file must not stop the node: it runs uncalibrated and says why (log, diagnostics)."""
        try:
            self._use_calibration(self._load_calibration(path))
        except CalibrationError as exc:
            reason = untrusted(str(exc), 500)
            self.get_logger().error(f'calibration_path refused, running uncalibrated: {reason}')
            self.diag.error(f'calibration refused: {reason}')
            self._use_calibration(None, f'none (refused: {reason})')
            # The parameter then says what is in force, and setting the mended file's path again loads it.
            self.set_parameters([Parameter('calibration_path', value='')])

    def _set_calibration(self, path: str) -> None:
        """on_change: CalibrationError (a ValueError) refuses the change with its reason; the old map stays."""
        self._use_calibration(self._load_calibration(path))

    def _set_smoothing_time_constant(self, value: float) -> None:
        self.smoother.time_constant_s = value

    def _set_smoothing_max_age(self, value: float) -> None:
        self.smoother.max_age_s = value

    def _set_pairing_cache(self, value: int) -> None:
        self.pairer.set_capacity(value, value)

    def _on_image(self, msg: Image) -> None:
        if not self.active:
            return
        pair = self.pairer.add_image(_stamp_key(msg.header), msg)
        if pair:
            self._classify(*pair)

    def _on_faces(self, msg: FaceArray) -> None:
        if not self.active:
            return
        self.diag.input()
        if not msg.faces and self._annotated_pub.get_subscription_count() == 0:
            self._publish(msg, [])
            return
        pair = self.pairer.add_faces(_stamp_key(msg.header), msg)
        if pair:
            self._classify(*pair)

    def _classify(self, image_msg: Image, faces_msg: FaceArray) -> None:
        try:
            image = (compressed_to_bgr(image_msg, self.p['max_pixels']) if isinstance(image_msg, CompressedImage)
                     else image_to_bgr(image_msg))
        except ImageDecodeError as exc:
            self._log.warning('decode', f'image skipped: {exc}')
            return
        faces = list(faces_msg.faces)
        self.pipeline.max_faces = self.p['max_faces']
        t = faces_msg.header.stamp.sec + faces_msg.header.stamp.nanosec * 1e-9
        result = self.pipeline.process(
            image, [(f.roi.x_offset, f.roi.y_offset, f.roi.width, f.roi.height) for f in faces],
            [f.id for f in faces], t, margin=margin_of(faces_msg.crop_margin), display=untrusted)
        for key, message in result.problems:
            self._log.warning(key, message)
        emotions = []
        for r in result.faces:
            x, y, w, h = r.box
            score = float(faces[r.index].confidence)   # a NaN detector score is not passed on
            face = Face(id=r.track_id, confidence=min(max(score, 0.0), 1.0) if math.isfinite(score) else 0.0,
                        roi=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h))
            emotions.append(Emotion(header=faces_msg.header, face=face, expression=r.expression,
                                    confidence=r.confidence, valence=r.valence, arousal=r.arousal,
                                    labels=self.labels, scores=r.scores.tolist()))
        self._publish(faces_msg, emotions, image)

    def _publish(self, faces_msg: FaceArray, emotions, image=None) -> None:
        self._emotions_pub.publish(EmotionArray(header=faces_msg.header, emotions=emotions))
        self.frames += 1
        self.diag.done(latency_since(self, faces_msg.header))
        dropped = self.pairer.dropped_faces
        if dropped > self._dropped_seen:
            self.diag.drop(dropped - self._dropped_seen)
            self._dropped_seen = dropped
        if image is not None and self.p['annotate'] and self._annotated_pub.get_subscription_count() > 0:
            drawn = draw_faces(image, [((e.face.roi.x_offset, e.face.roi.y_offset, e.face.roi.width,
                                         e.face.roi.height), e.face.id, e.expression, e.confidence)
                                        for e in emotions])
            self._annotated_pub.publish(bgr_to_image(drawn, faces_msg.header))


main = main_for(EmotionClassifierNode)
