"""face_detector_node: image topic in, tracked face boxes out (emotion_msgs/FaceArray, header copied)."""
from __future__ import annotations

from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest

from emotion_msgs.msg import Face, FaceArray
from emotion_ros.core.faces.crop import DEFAULT_MARGIN, MARGIN_FOR_BACKEND
from emotion_ros.core.faces.detection import BACKENDS, DEFAULT_BACKEND, create_detector
from emotion_ros.core.frames.pacing import FramePacer
from emotion_ros.core.faces.tracking import FaceTracker
from emotion_ros.core.frames.encoding import ImageDecodeError
from emotion_ros.core.frames.header import DEFAULT_MAX_PIXELS, MAX_PIXELS_LIMIT
from emotion_ros.core.param_spec import ParamSpec
from emotion_ros.nodes.diagnostics import NodeDiagnostics, latency_since
from emotion_ros.nodes.managed_node import ManagedNode
from emotion_ros.nodes.node_main import StartupError, main_for
from emotion_ros.nodes.qos import latest_frame_qos, results_qos
from emotion_ros.nodes.ros_image import compressed_to_bgr, image_to_bgr
from emotion_ros.nodes.throttled_log import ThrottledLog

SPECS = (
    ParamSpec('backend', DEFAULT_BACKEND, 'face detector: ' + ', '.join(BACKENDS), choices=BACKENDS, read_only=True),
    ParamSpec('min_score', 0.5, 'drop detections scoring below this (0..1; changeable at runtime)', min=0.0, max=1.0),
    ParamSpec('max_side', 640, 'frames larger than this (longest side, px) are downscaled for detection; '
              'boxes are still reported in source pixels', min=64, max=8192, read_only=True),
    ParamSpec('max_pixels', DEFAULT_MAX_PIXELS, 'compressed images whose header declares more pixels (width x '
              'height) than this are refused before decoding (default 8K UHD)', min=1, max=MAX_PIXELS_LIMIT),
    ParamSpec('image_transport', 'raw', 'subscribe to `image` (raw, sensor_msgs/Image) or `image/compressed` '
              '(sensor_msgs/CompressedImage)', choices=('raw', 'compressed'), read_only=True),
    ParamSpec('tracking', True, 'give faces stable ids across frames (IoU tracking)'),
    ParamSpec('track_iou', 0.3, 'minimum IoU for a box to continue a track', min=0.01, max=1.0,
              on_change='_set_track_iou'),
    ParamSpec('track_max_missed', 5, 'frames a track survives without a matching box', min=0, max=1000,
              on_change='_set_track_max_missed'),
    ParamSpec('max_rate_hz', 0.0, 'process at most this many frames per second, skipped evenly by header stamp '
              '(like hri_face_detect\'s processing_rate); 0 = every frame the node keeps up with: it always takes '
              'the newest frame, older ones are replaced, never queued (/diagnostics counts them)',
              min=0.0, max=1000.0, on_change='_set_max_rate'),
)


class FaceDetectorNode(ManagedNode):
    SPECS = SPECS

    def __init__(self, **node_kwargs):
        self.frames = 0
        self._subscription = None
        super().__init__('face_detector', **node_kwargs)

    def setup(self) -> None:
        self._ids_seen = set()
        self.diag = NodeDiagnostics(self, lambda: {'backend': self.p['backend'], 'tracks': str(len(self._ids_seen))})
        self._log = ThrottledLog(self.get_logger(), period_s=5.0, on_warning=self.diag.error)

    def configure(self) -> None:
        try:
            self.detector = create_detector(self.p['backend'], min_score=self.p['min_score'],
                                            max_side=self.p['max_side'])
        except (ValueError, OSError, RuntimeError) as exc:
            raise StartupError(f'face detector {self.p["backend"]!r}: {exc}') from exc
        self.tracker = FaceTracker(iou_threshold=self.p['track_iou'], max_missed=self.p['track_max_missed'])
        self.pacer = FramePacer(self.p['max_rate_hz'])
        self.crop_margin = MARGIN_FOR_BACKEND.get(self.p['backend'], DEFAULT_MARGIN)  # travels with the boxes
        self._pub = self.create_lifecycle_publisher(FaceArray, 'faces', results_qos())
        if self.p['image_transport'] == 'compressed':
            self._subscription = self.create_subscription(CompressedImage, 'image/compressed', self._on_compressed,
                                                          latest_frame_qos())
        else:
            self._subscription = self.create_subscription(Image, 'image', self._on_image, latest_frame_qos())
        self.get_logger().info(f'{self.detector.name} detector on {self.p["image_transport"]} images')

    def cleanup(self) -> None:
        self._subscription = None  # destroyed by ManagedNode with everything configure() created

    def _set_track_iou(self, value: float) -> None:
        self.tracker.iou_threshold = float(value)

    def _set_track_max_missed(self, value: int) -> None:
        self.tracker.max_missed = int(value)

    def _set_max_rate(self, value: float) -> None:
        self.pacer.max_rate_hz = float(value)

    def _on_image(self, msg: Image) -> None:
        self._process(msg.header, lambda: image_to_bgr(msg))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._process(msg.header, lambda: compressed_to_bgr(msg, self.p['max_pixels']))

    def _process(self, header, decode) -> None:
        if not self.active:
            return
        self.diag.input()
        admitted = self.pacer.admit(header.stamp.sec + header.stamp.nanosec * 1e-9)
        self.diag.pacing(self.pacer.skipped, self.pacer.missed)
        if not admitted:
            return
        try:
            image = decode()
        except ImageDecodeError as exc:
            self._log.warning('decode', f'image skipped: {exc}')
            return
        self.detector.min_score = self.p['min_score']
        boxes = self.detector.detect(image)
        ids = self.tracker.update(boxes) if self.p['tracking'] else [''] * len(boxes)
        faces = [Face(id=track_id, confidence=float(b.score),
                      roi=RegionOfInterest(x_offset=int(b.x), y_offset=int(b.y), width=int(b.w), height=int(b.h)))
                 for b, track_id in zip(boxes, ids)]
        self._pub.publish(FaceArray(header=header, faces=faces, crop_margin=float(self.crop_margin)))
        self._ids_seen.update(i for i in ids if i)
        self.frames += 1
        self.diag.done(latency_since(self, header))


main = main_for(FaceDetectorNode)
