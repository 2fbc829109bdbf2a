"""The test's side of hri_publisher_node: publishes `image` + `emotions` frames, reads /humans/faces/tracked."""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
from rclpy.qos import qos_profile_system_default
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from emotion_msgs.msg import Emotion, EmotionArray
from emotion_ros.nodes.qos import latest_frame_qos, results_qos
from emotion_ros.nodes.ros_image import bgr_to_image
from ros_graph import spin_until


class HriFeed:
    def __init__(self, node):
        from hri_msgs.msg import IdsList
        self.node = node
        self.tracked: List = []
        self.sub = node.create_subscription(IdsList, '/humans/faces/tracked', self.tracked.append,
                                            qos_profile_system_default)
        self.images = node.create_publisher(Image, 'image', latest_frame_qos(depth=10))
        self.emotions = node.create_publisher(EmotionArray, 'emotions', results_qos())
        self.stamp = 0

    def matched(self, timeout: float = 60.0) -> bool:
        return spin_until(self.node, lambda: self.images.get_subscription_count()
                          and self.emotions.get_subscription_count() and self.sub.get_publisher_count(), timeout)

    def frame(self, track_ids: Sequence[str]) -> None:
        """One 160x120 image and its EmotionArray with a 'happy' face per track id, side by side."""
        self.stamp += 1
        header = Header(frame_id='camera')
        header.stamp.sec = self.stamp
        self.images.publish(bgr_to_image(np.zeros((120, 160, 3), np.uint8), header))
        msg = EmotionArray(header=header)
        for i, track in enumerate(track_ids):
            e = Emotion(expression='happy', confidence=0.9)
            e.face.id, e.face.roi.x_offset, e.face.roi.width, e.face.roi.height = track, 10 + 5 * i, 30, 30
            msg.emotions.append(e)
        self.emotions.publish(msg)

    def until_listed(self, track_ids: Sequence[str], want, tries: int = 60) -> bool:
        """Publish frames of `track_ids` until a `tracked` list satisfies `want(ids)` (the reader may match late)."""
        for _ in range(tries):
            self.frame(track_ids)
            if spin_until(self.node, lambda: any(want(m.ids) for m in self.tracked), 1.0):
                return True
        return False
