"""hri_publisher_node: the classifier's results as REP-155 (ROS4HRI) face topics, for libhri/pyhri consumers.

In: `emotions` (EmotionArray: face ids, boxes, expressions; header = source image) and `image` (sizes, crops).
Out: /humans/faces/tracked (hri_msgs/IdsList) every frame, and per tracked face /humans/faces/<id>/roi
(NormalizedRegionOfInterest2D), /expression (Expression) and /cropped (Image, only while subscribed).
The rules (ids, label mapping, normalisation, lifetimes) are in emotion_ros.core.hri.faces; docs/ros4hri.md.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Optional

from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from emotion_msgs.msg import EmotionArray
from emotion_ros.core.hri.faces import (TRACKED_TOPIC, FaceLifetimes, bounded, cropped_face, expression_of,
                                        face_topic, face_topic_id, normalised_roi)
from emotion_ros.core.frames.encoding import ImageDecodeError
from emotion_ros.core.param_spec import ParamSpec
from emotion_ros.nodes.diagnostics import NodeDiagnostics, latency_since
from emotion_ros.nodes.managed_node import ManagedNode
from emotion_ros.nodes.node_main import StartupError, main_for
from emotion_ros.nodes.qos import latest_frame_qos, results_qos
from emotion_ros.nodes.ros_image import bgr_to_image, image_to_bgr
from emotion_ros.nodes.throttled_log import ThrottledLog

try:  # not ours: apt ros-<distro>-hri-msgs on a robot, `make hri-msgs` in the pip venv
    from hri_msgs.msg import Expression, IdsList, NormalizedRegionOfInterest2D
except ImportError:  # pragma: no cover - exercised by the startup test where hri_msgs is absent
    Expression = IdsList = NormalizedRegionOfInterest2D = None


def _check_prefix(value: str) -> Optional[str]:
    if not value or not value[0].isalpha() or not all(c.isascii() and (c.isalnum() or c == '_') for c in value):
        return 'must start with a letter and hold only A-Z, a-z, 0-9 and _ (a topic-name token)'
    if value.endswith('_') or '__' in value:
        return 'must not end in _ nor hold __ (escaped ids start with _; ROS names never hold __)'
    return None


SPECS = (
    ParamSpec('cropped_size', 128, 'side in pixels of /humans/faces/<id>/cropped (the face box fitted into a '
              'square, aspect kept, black borders)', min=16, max=1024),
    ParamSpec('grace_period_s', 1.0, 'a face missing from the images keeps its per-id topics this long '
              '(node clock) before they are destroyed; it leaves `tracked` at once', min=0.0, max=3600.0),
    ParamSpec('image_cache', 10, 'images kept to find the one an EmotionArray was computed from', min=1, max=1000),
    ParamSpec('max_faces', 64, 'at most this many faces have REP-155 topics at once (3 publishers each); further '
              'new ids (a flood of ids from bad upstream data) are left out with a warning', min=1, max=4096),
    ParamSpec('id_prefix', 'f', 'prefix that makes track ids topic-name tokens ("3" -> "f3")',
              check=_check_prefix, read_only=True),
)

# libhri and pyhri subscribe with the system default QoS (reliable, volatile): a best-effort publisher
# would never match them. Depth 10 keeps a briefly slow consumer from losing frames.
HRI_QOS = results_qos(depth=10)


@dataclass
class _FaceTopics:
    roi: object
    expression: object
    cropped: object


def _stamp_key(header: Header):
    return (header.stamp.sec, header.stamp.nanosec)


class HriPublisherNode(ManagedNode):
    SPECS = SPECS

    def __init__(self, **node_kwargs):
        self._faces: Dict[str, _FaceTopics] = {}
        self._images: 'OrderedDict[tuple, Image]' = OrderedDict()
        super().__init__('hri_publisher', **node_kwargs)

    def setup(self) -> None:
        self.diag = NodeDiagnostics(self, lambda: {'faces': ','.join(self._faces)})
        self._log = ThrottledLog(self.get_logger(), period_s=5.0, on_warning=self.diag.error)
        self.frames = 0

    def configure(self) -> None:
        if IdsList is None:
            raise StartupError('hri_msgs is not installed: on a robot `apt install ros-$ROS_DISTRO-hri-msgs`; '
                               'in the pip venv `make hri-msgs` (docs/ros4hri.md)')
        self._lifetimes = FaceLifetimes(self.p['grace_period_s'])
        self._last_size = None
        self._last_header = Header()
        self._listed = []
        self._tracked_pub = self.create_publisher(IdsList, TRACKED_TOPIC, HRI_QOS)
        self.create_subscription(Image, 'image', self._on_image, latest_frame_qos(depth=self.p['image_cache']))
        self.create_subscription(EmotionArray, 'emotions', self._on_emotions, results_qos())
        self.create_timer(0.1, self._expire)

    def deactivate(self) -> None:
        """Consumers drop every face (empty `tracked`) before output stops; per-face topics go with them."""
        self._publish_tracked(self._last_header, [])
        self._remove_faces(self._lifetimes.clear())

    def cleanup(self) -> None:
        self._remove_faces(list(self._faces))
        self._images.clear()

    # --- per-face publishers: their lifetime is the face's, shorter than a configuration -------------
    def _add_face(self, face_id: str) -> _FaceTopics:
        make = Node.create_publisher  # not configuration-owned: made and destroyed as faces come and go
        topics = _FaceTopics(
            roi=make(self, NormalizedRegionOfInterest2D, face_topic(face_id, 'roi'), HRI_QOS),
            expression=make(self, Expression, face_topic(face_id, 'expression'), HRI_QOS),
            cropped=make(self, Image, face_topic(face_id, 'cropped'), results_qos(depth=1)))
        self._faces[face_id] = topics
        self.get_logger().info(f'face {face_id}: publishing {face_topic(face_id, "*")}')
        return topics

    def _remove_faces(self, face_ids) -> None:
        for face_id in face_ids:
            topics = self._faces.pop(face_id, None)
            if topics is None:
                continue
            for pub in (topics.roi, topics.expression, topics.cropped):
                self.destroy_publisher(pub)
            self.get_logger().info(f'face {face_id}: lost, topics removed')

    # --- callbacks ------------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._images[_stamp_key(msg.header)] = msg
        while len(self._images) > self.p['image_cache']:
            self._images.popitem(last=False)
        if msg.width > 0 and msg.height > 0:
            self._last_size = (msg.width, msg.height)

    def _source_image(self, header: Header) -> Optional[Image]:
        key = _stamp_key(header)
        image = self._images.pop(key, None)
        for old in [k for k in self._images if k < key]:
            del self._images[old]  # results come in stamp order: older images never get theirs
        return image

    def _on_emotions(self, msg: EmotionArray) -> None:
        self.diag.input()
        image_msg = self._source_image(msg.header)
        size = (image_msg.width, image_msg.height) if image_msg is not None and image_msg.width > 0 \
            and image_msg.height > 0 else self._last_size
        if size is None:
            self._log.warning('no_image', 'no image seen yet on `image`: rois are not published until one '
                              'arrives (is `image` remapped to the classifier\'s input?)')
        faces = {}  # REP-155 id -> its Emotion; a duplicated track id (bad upstream data) counts once
        for e in msg.emotions:
            if e.face.id:
                faces.setdefault(face_topic_id(e.face.id, self.p['id_prefix']), e)
        new = [f for f in faces if f not in self._faces]
        room = max(0, self.p['max_faces'] - len(self._faces))
        if len(new) > room:
            for face_id in new[room:]:
                del faces[face_id]
            self._log.warning('max_faces', f'{len(new) - room} new face id(s) left out: {len(self._faces)} faces '
                              f'already have topics (max_faces {self.p["max_faces"]})')
        faces = list(faces.items())
        self._lifetimes.grace_s = self.p['grace_period_s']
        changes = self._lifetimes.update([f for f, _ in faces], self._now())
        for face_id in changes.appeared:
            self._add_face(face_id)
        self._publish_tracked(msg.header, changes.tracked)
        bgr = None
        for face_id, emotion in faces:
            topics = self._faces.get(face_id) or self._add_face(face_id)
            topics.expression.publish(Expression(
                header=msg.header, expression=expression_of(emotion.expression),
                valence=bounded(emotion.valence, -1.0, 1.0), arousal=bounded(emotion.arousal, -1.0, 1.0),
                confidence=bounded(emotion.confidence, 0.0, 1.0)))
            r = emotion.face.roi
            box = (r.x_offset, r.y_offset, r.width, r.height)
            if size is not None:
                xmin, ymin, xmax, ymax = normalised_roi(box, *size)
                topics.roi.publish(NormalizedRegionOfInterest2D(
                    header=msg.header, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax,
                    c=bounded(emotion.face.confidence, 0.0, 1.0)))
            if image_msg is not None and topics.cropped.get_subscription_count() > 0:
                try:
                    bgr = image_to_bgr(image_msg) if bgr is None else bgr
                    topics.cropped.publish(bgr_to_image(cropped_face(bgr, box, self.p['cropped_size']), msg.header))
                except (ImageDecodeError, ValueError) as exc:
                    self._log.warning('crop', f'face {face_id}: no crop: {exc}')
        self.frames += 1
        self.diag.done(latency_since(self, msg.header))

    def _expire(self) -> None:
        gone = self._lifetimes.expire(self._now())
        if not gone:
            return
        if any(f in self._listed for f in gone):  # the stream stopped while they were listed
            header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self._last_header.frame_id)
            self._publish_tracked(header, [f for f in self._listed if f not in gone])
        self._remove_faces(gone)

    def _publish_tracked(self, header: Header, ids) -> None:
        self._tracked_pub.publish(IdsList(header=header, ids=list(ids)))
        self._last_header, self._listed = header, list(ids)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9


main = main_for(HriPublisherNode)
