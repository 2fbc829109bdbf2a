"""emotion_classifier_node: image + faces in, one EmotionArray per frame out (+ an annotated image)."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from emotion_msgs.msg import Emotion, EmotionArray, FaceArray
from emotion_ros.core.affect import valence_arousal
from emotion_ros.core.annotate import draw_faces
from emotion_ros.core.emotion_model import EmotionModel, ModelLoadError, default_model_path, resolve_model_path
from emotion_ros.core.face_crop import MARGIN_FOR_BACKEND, crop_face
from emotion_ros.core.face_detection import BACKENDS, DEFAULT_BACKEND
from emotion_ros.core.image_encoding import ImageDecodeError
from emotion_ros.core.param_spec import ParamSpec
from emotion_ros.core.score_smoothing import ScoreSmoother
from emotion_ros.core.stamp_pairing import StampPairer
from emotion_ros.nodes.diagnostics import NodeDiagnostics, latency_since
from emotion_ros.nodes.managed_node import ManagedNode
from emotion_ros.nodes.node_main import StartupError, main_for
from emotion_ros.nodes.qos import latest_frame_qos, results_qos
from emotion_ros.nodes.ros_image import bgr_to_image, image_to_bgr
from emotion_ros.nodes.throttled_log import ThrottledLog

SPECS = (
    ParamSpec('model_path', '', 'TFLite emotion model (.tflite, labels file beside it), or the name of a '
              'shipped one (emotion, emotion_accurate, emotion_fast); empty = the default shipped model',
              read_only=True),
    ParamSpec('fallback_to_default_model', False, 'when model_path cannot be loaded, log the reason and use '
              'the packaged model instead of refusing to start', read_only=True),
    ParamSpec('face_detector_backend', DEFAULT_BACKEND, 'detector that made the face boxes (' + ', '.join(BACKENDS)
              + '): selects the crop margin measured for its boxes (docs/face_crop.md)', choices=BACKENDS),
    ParamSpec('num_threads', 2, 'CPU threads for inference', min=1, max=64, read_only=True),
    ParamSpec('max_faces', 32, 'classify at most this many faces per frame (largest first); the rest are '
              'reported without an expression', min=1, max=1024),
    ParamSpec('smoothing_time_constant_s', 0.3, 'time constant of the per-track moving average of scores '
              '(0 = no smoothing)', min=0.0, max=60.0),
    ParamSpec('smoothing_max_age_s', 2.0, 'forget a track\'s smoothed scores after this long unseen',
              min=0.0, max=3600.0),
    ParamSpec('pairing_cache', 10, 'images (and face lists) kept while waiting for their partner', min=1, max=1000),
    ParamSpec('annotate', True, 'publish image_annotated (only drawn while someone subscribes)'),
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
        self.diag = NodeDiagnostics(self, lambda: {'model': self.model_path, 'labels': ','.join(self.labels),
                                                   'threads': str(self.p['num_threads'])})
        self._log = ThrottledLog(self.get_logger(), period_s=5.0, on_warning=self.diag.error)

    def _load_model(self) -> str:
        path = str(resolve_model_path(self.p['model_path']))
        try:
            self.model = EmotionModel(path, num_threads=self.p['num_threads'])
            return path
        except ModelLoadError as exc:
            if not (self.p['model_path'] and self.p['fallback_to_default_model']):
                raise StartupError(f'emotion model: {exc}') from exc
            self.get_logger().error(f'emotion model: {exc}; falling back to the packaged model')
        path = str(default_model_path())
        try:
            self.model = EmotionModel(path, num_threads=self.p['num_threads'])
        except ModelLoadError as exc:
            raise StartupError(f'packaged emotion model: {exc}') from exc
        return path

    def configure(self) -> None:
        path = self._load_model()
        self.labels = list(self.model.labels)
        self.smoother = ScoreSmoother(self.p['smoothing_time_constant_s'], self.p['smoothing_max_age_s'])
        self.pairer = StampPairer(self.p['pairing_cache'], self.p['pairing_cache'])
        self.model_path = path
        self._dropped_seen = 0
        self._emotions_pub = self.create_lifecycle_publisher(EmotionArray, 'emotions', results_qos())
        self._annotated_pub = self.create_lifecycle_publisher(Image, 'image_annotated', latest_frame_qos())
        self._subscriptions_ = [
            self.create_subscription(Image, 'image', self._on_image, latest_frame_qos()),
            self.create_subscription(FaceArray, 'faces', self._on_faces, results_qos(depth=1)),
        ]
        self.get_logger().info(f'model {path} ({len(self.labels)} labels: {", ".join(self.labels)})')

    def cleanup(self) -> None:
        for sub in self._subscriptions_:
            self.destroy_subscription(sub)
        self._subscriptions_ = []

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
            image = image_to_bgr(image_msg)
        except ImageDecodeError as exc:
            self._log.warning('decode', f'image skipped: {exc}')
            return
        faces = list(faces_msg.faces)
        order = sorted(range(len(faces)), key=lambda i: -faces[i].roi.width * faces[i].roi.height)
        chosen = sorted(order[:self.p['max_faces']])
        if len(faces) > len(chosen):
            self._log.warning('too_many', f'{len(faces)} faces in one frame; classifying the largest '
                              f'{len(chosen)} (max_faces)')
        crops, valid = [], []
        for i in chosen:
            roi = faces[i].roi
            try:
                crops.append(crop_face(image, (roi.x_offset, roi.y_offset, roi.width, roi.height),
                                       margin=MARGIN_FOR_BACKEND[self.p['face_detector_backend']]))
                valid.append(i)
            except ValueError as exc:
                self._log.warning('bad_box', f'face {faces[i].id or i} skipped: {exc}')
        chosen = valid
        probs = self.model.predict(np.stack(crops)) if crops else np.zeros((0, len(self.labels)), np.float32)
        t = faces_msg.header.stamp.sec + faces_msg.header.stamp.nanosec * 1e-9
        emotions = []
        for i, p in zip(chosen, probs):
            face = faces[i]
            p = self.smoother.update(face.id, p, t)
            top = int(np.argmax(p))
            v, a = valence_arousal(self.labels, p)
            emotions.append(Emotion(header=faces_msg.header, face=face, expression=self.labels[top],
                                    confidence=float(p[top]), valence=float(v), arousal=float(a),
                                    labels=self.labels, scores=[float(x) for x in p]))
        self.smoother.forget_older_than(t)
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
