"""dataset_recorder_node: the `~/capture` service saves the largest face of the next frames into a FaceLabeler folder.

A burst answers only when it is complete, yet frames must keep arriving to complete it: the service
callback is a coroutine in its own (reentrant) callback group that awaits a future the image/face
callbacks resolve, so one single-threaded executor serves both (also inside `emotion_live`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.task import Future
from sensor_msgs.msg import Image

from emotion_msgs.msg import DatasetCounts, FaceArray
from emotion_msgs.srv import Capture
from emotion_ros.core.faces.crop import clip_box, crop_face, margin_of
from emotion_ros.core.dataset.facelabeler import DatasetError, DatasetWriter, UnknownLabel
from emotion_ros.core.frames.encoding import ImageDecodeError
from emotion_ros.core.log_text import untrusted
from emotion_ros.core.param_spec import ParamSpec
from emotion_ros.core.stamp_pairing import StampPairer
from emotion_ros.nodes.managed_node import ManagedNode
from emotion_ros.nodes.node_main import StartupError, main_for
from emotion_ros.nodes.qos import latched_qos, latest_frame_qos, results_qos
from emotion_ros.nodes.ros_image import image_to_bgr
from emotion_ros.nodes.throttled_log import ThrottledLog

MAX_INTERVAL_S = 3600.0

SPECS = (
    ParamSpec('dataset_dir', '~/emotion_dataset', 'FaceLabeler folder (labelList.csv, faceLabels.csv, Images/); '
              'created with the default labels if missing', check=lambda v: None if v.strip() else 'must not be empty',
              read_only=True),
    ParamSpec('grayscale', True, 'save single-channel crops (what the classifier sees); false = colour'),
    ParamSpec('crop_size', 48, 'side of the saved square crop in pixels (48 = the classifier input)', min=16, max=1024),
    ParamSpec('no_face_timeout_s', 2.0, 'a capture ends with "no face" after this long without a face',
              min=0.1, max=60.0),
    ParamSpec('max_count', 1000, 'most crops one capture request may ask for', min=1, max=100000),
    ParamSpec('target_per_label', 300, 'images per label to aim for; published with the counts so a UI can '
              'show progress', min=0, max=10_000_000, on_change='_republish_counts'),
    ParamSpec('pairing_cache', 10, 'images (and face lists) kept while waiting for their partner', min=1, max=1000,
              on_change='_set_pairing_cache'),
)


def crop_face_bgr(image: np.ndarray, box, size: int, margin: float) -> np.ndarray:
    """Colour twin of `crop_face`: each channel through the very same crop, so geometry never drifts apart."""
    return np.dstack([crop_face(np.ascontiguousarray(image[:, :, c]), box, size=size, margin=margin)
                      for c in range(3)])


def _stamp_key(header):
    return (header.stamp.sec, header.stamp.nanosec)


@dataclass
class _Burst:
    label: str
    count: int
    interval_ns: int
    done: Future
    last_face: float
    saved: List[str] = field(default_factory=list)
    images: int = 0
    last_saved_ns: Optional[int] = None
    last_problem: str = ''


class DatasetRecorderNode(ManagedNode):
    """configure opens the dataset folder and creates ~/counts, ~/capture and the inputs; activate publishes
    the counts; deactivate and cleanup end a running capture with the reason."""
    SPECS = SPECS

    def __init__(self, **node_kwargs):
        super().__init__('dataset_recorder', **node_kwargs)

    def setup(self) -> None:
        self._log = ThrottledLog(self.get_logger(), period_s=5.0)
        self._burst: Optional[_Burst] = None
        self._timer = None
        self.dataset = None

    def configure(self) -> None:
        try:
            self.dataset = DatasetWriter(self.p['dataset_dir'])
        except DatasetError as exc:
            raise StartupError(str(exc)) from exc
        for problem in self.dataset.problems[:10]:
            self.get_logger().warning(untrusted(problem, 300))   # quotes rows of the folder's CSV files
        if len(self.dataset.problems) > 10:
            self.get_logger().warning(f'... {len(self.dataset.problems) - 10} more problems in {self.dataset.root}')
        self.pairer = StampPairer(self.p['pairing_cache'], self.p['pairing_cache'])
        self._counts_pub = self.create_publisher(DatasetCounts, '~/counts', latched_qos())
        self.create_subscription(Image, 'image', self._on_image, latest_frame_qos())
        self.create_subscription(FaceArray, 'faces', self._on_faces, results_qos(depth=1))
        self.create_service(Capture, '~/capture', self._on_capture, callback_group=ReentrantCallbackGroup())
        total = sum(self.dataset.counts.values())
        labels = ', '.join(untrusted(x) for x in self.dataset.labels)
        self.get_logger().info(f'dataset {self.dataset.root}: {total} images, labels {labels}')

    def activate(self) -> None:
        self.publish_counts()

    def deactivate(self) -> None:
        if self._burst is not None:
            self._finish(False, 'recorder deactivated')

    def cleanup(self) -> None:
        if self._burst is not None:
            self._finish(False, 'node shutting down')
        self.dataset = None

    def publish_counts(self) -> None:
        counts = self.dataset.counts_dict()
        msg = DatasetCounts(dataset=str(self.dataset.root), labels=list(counts),
                            counts=[int(n) for n in counts.values()], total=int(sum(counts.values())),
                            target_per_label=int(self.p['target_per_label']))
        msg.header.stamp = self.get_clock().now().to_msg()
        self._counts_pub.publish(msg)

    def _republish_counts(self, _value) -> None:
        self.publish_counts()

    def _set_pairing_cache(self, value: int) -> None:
        self.pairer.set_capacity(value, value)

    def _refusal(self, request) -> Optional[str]:
        if not self.active:
            return 'the recorder is not active (lifecycle state: ' + self._state_machine.current_state[1] + ')'
        if self._burst is not None:
            b = self._burst
            return f'busy: capturing {b.count} {b.label} ({len(b.saved)} saved so far)'
        if not request.label.strip():
            return f'no label given; labelList.csv has {", ".join(self.dataset.labels)}'
        try:
            self.dataset.resolve_label(request.label)
        except UnknownLabel as exc:
            return str(exc)
        if request.count > self.p['max_count']:
            return f'count {request.count} is above max_count {self.p["max_count"]}'
        if not math.isfinite(request.interval) or not 0.0 <= request.interval <= MAX_INTERVAL_S:
            return f'interval {request.interval} s is outside 0..{MAX_INTERVAL_S:.0f} s'
        return None

    async def _on_capture(self, request, response):
        reason = self._refusal(request)
        if reason:
            response.success, response.message = False, reason
            self._log.warning('capture_refused', f'capture refused: {reason}')
            return response
        burst = _Burst(label=self.dataset.resolve_label(request.label), count=max(1, request.count),
                       interval_ns=int(round(request.interval * 1e9)), done=Future(), last_face=time.monotonic())
        self.pairer = StampPairer(self.p['pairing_cache'], self.p['pairing_cache'])
        self._burst = burst
        self._timer = self.create_timer(0.1, self._check_no_face)
        success, message = await burst.done
        response.success, response.message, response.saved = success, message, list(burst.saved)
        if success:   # two call sites: rclpy refuses a second severity from one line of code
            self.get_logger().info(f'capture: {message}')
        else:
            self._log.warning('capture_failed', f'capture: {message}')
        return response

    def _finish(self, success: bool, message: str) -> None:
        burst, self._burst = self._burst, None
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if burst is not None and not burst.done.done():
            burst.done.set_result((success, message))

    def _check_no_face(self) -> None:
        b = self._burst
        if b is None or time.monotonic() - b.last_face < self.p['no_face_timeout_s']:
            return
        waited = f'{self.p["no_face_timeout_s"]:g} s'
        if b.images == 0:
            self._finish(False, f'no face: no image with its face list arrived in {waited} '
                                '(is the camera and face detector running, `image` remapped?)')
        elif not b.saved:
            why = f' (faces seen but unusable: {b.last_problem})' if b.last_problem else ''
            self._finish(False, f'no face in {b.images} images over {waited}{why}')
        else:
            self._finish(False, f'no face for {waited}: saved {len(b.saved)} of {b.count} {b.label}')

    def _on_image(self, msg: Image) -> None:
        if self._burst is not None:
            pair = self.pairer.add_image(_stamp_key(msg.header), msg)
            if pair:
                self._on_pair(*pair)

    def _on_faces(self, msg: FaceArray) -> None:
        if self._burst is not None:
            pair = self.pairer.add_faces(_stamp_key(msg.header), msg)
            if pair:
                self._on_pair(*pair)

    def _on_pair(self, image_msg: Image, faces_msg: FaceArray) -> None:
        b = self._burst
        b.images += 1
        if not faces_msg.faces:
            return
        stamp = faces_msg.header.stamp.sec * 1_000_000_000 + faces_msg.header.stamp.nanosec
        if b.last_saved_ns is not None and stamp - b.last_saved_ns < b.interval_ns:
            b.last_face = time.monotonic()
            return
        try:
            image = image_to_bgr(image_msg)
        except ImageDecodeError as exc:
            b.last_problem = f'image skipped: {exc}'
            self._log.warning('decode', b.last_problem)
            return
        crop = self._largest_usable_crop(image, faces_msg)
        if crop is None:
            return
        b.last_face = time.monotonic()
        try:
            b.saved.append(self.dataset.save(crop, b.label))
        except OSError as exc:
            self._finish(False, f'cannot write to {self.dataset.root}: {exc.strerror or exc} '
                                f'(saved {len(b.saved)} of {b.count} {b.label})')
            return
        b.last_saved_ns = stamp
        self.publish_counts()
        if len(b.saved) >= b.count:
            self._finish(True, f'saved {len(b.saved)} {b.label}')

    def _largest_usable_crop(self, image: np.ndarray, faces_msg: FaceArray) -> Optional[np.ndarray]:
        """Crop of the largest face whose box, clipped to the image, can be cropped; None, with the reason
        kept for the capture's answer, when none can (boxes outside or far larger than the image)."""
        b, h, w = self._burst, image.shape[0], image.shape[1]
        usable = []
        for face in faces_msg.faces:
            box = (face.roi.x_offset, face.roi.y_offset, face.roi.width, face.roi.height)
            try:
                _, _, cw, ch = clip_box(box, w, h)
                usable.append((cw * ch, box))
            except ValueError as exc:
                b.last_problem = f'face {untrusted(face.id)} skipped: {exc}'
        for _, box in sorted(usable, key=lambda a: -a[0]):
            try:
                return (crop_face if self.p['grayscale'] else crop_face_bgr)(
                    image, box, size=self.p['crop_size'], margin=margin_of(faces_msg.crop_margin))
            except ValueError as exc:
                b.last_problem = f'face skipped: {exc}'
        if b.last_problem:
            self._log.warning('crop', b.last_problem)
        return None



main = main_for(DatasetRecorderNode)
