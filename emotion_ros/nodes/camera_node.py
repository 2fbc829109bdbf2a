"""camera_node: publishes frames from a webcam, video file, image folder, stream URL or the demo clip."""
from __future__ import annotations

import time

from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from emotion_ros.core.frame_sources import SourceError, open_source
from emotion_ros.core.param_spec import ParamSpec
from emotion_ros.nodes.diagnostics import NodeDiagnostics
from emotion_ros.nodes.managed_node import ManagedNode
from emotion_ros.nodes.node_main import StartupError, main_for
from emotion_ros.nodes.ros_image import bgr_to_image

SPECS = (
    ParamSpec('source', 'demo', 'webcam index (e.g. "0"), /dev/videoN, video file, image folder or glob, '
              'stream URL (rtsp://, http://), "demo" (built-in clip, needs no file) or "demo:N" (N faces)',
              check=lambda v: None if v.strip() else 'must not be empty', read_only=True, also_accepts=(int,)),
    ParamSpec('fps', 30.0, 'publish rate in frames per second (0 = the file\'s native rate, 30 if unknown)',
              min=0.0, max=240.0),
    ParamSpec('loop', False, 'start a file/folder/demo source over when it ends (else the node ends cleanly)'),
    ParamSpec('frame_id', 'camera', 'frame_id of published headers', check=lambda v: None if v else 'must not be empty'),
    ParamSpec('width', 0, 'resize frames to this width (0 = as captured)', min=0, max=8192, read_only=True),
    ParamSpec('height', 0, 'resize frames to this height (0 = as captured)', min=0, max=8192, read_only=True),
    ParamSpec('demo_frames', 150, 'length of the built-in demo clip in frames', min=1, max=100000, read_only=True),
    ParamSpec('wait_for_subscribers', 0, 'hold the first frame until this many image_raw subscribers are '
              'matched (lets a file source start only when the graph is up)', min=0, max=100),
    ParamSpec('wait_timeout_s', 30.0, 'give up waiting for subscribers after this long and start anyway',
              min=0.0, max=3600.0),
    ParamSpec('reconnect_max_backoff_s', 8.0, 'longest pause between reconnect attempts of a dropped '
              'webcam/stream (backoff doubles from 0.25 s)', min=0.25, max=300.0),
)


class CameraNode(ManagedNode):
    SPECS = SPECS

    def __init__(self, **node_kwargs):
        self.frames_published = 0
        self._source = None
        super().__init__('camera', **node_kwargs)

    def setup(self) -> None:
        self.fps = 0.0
        self.diag = NodeDiagnostics(self, lambda: {'source': self.p['source'], 'target_fps': f'{self.fps:.1f}'})

    def configure(self) -> None:
        try:
            self._source = open_source(self.p['source'], self.p['width'], self.p['height'], self.p['demo_frames'])
        except SourceError as exc:
            raise StartupError(str(exc)) from exc
        info = self._source.info
        fps = self.p['fps'] or info.fps or 30.0
        self._image_pub = self.create_lifecycle_publisher(Image, 'image_raw', qos_profile_sensor_data)
        self._info_pub = self.create_lifecycle_publisher(CameraInfo, 'camera_info', qos_profile_sensor_data)
        self.fps = fps
        self._backoff, self._retry_at = 0.25, 0.0
        self._wait_until = time.monotonic() + self.p['wait_timeout_s']
        self._timer = self.create_timer(1.0 / fps, self._tick)
        self.get_logger().info(f'{info.kind} source {info.description} at {fps:.1f} fps'
                               f'{" (looping)" if self.p["loop"] else ""}')

    def _tick(self) -> None:
        if self.finished or not self.active:
            return
        need = self.p['wait_for_subscribers']
        if need and self.frames_published == 0 and self._image_pub.get_subscription_count() < need:
            if time.monotonic() < self._wait_until:
                return
            self.get_logger().warning(f'only {self._image_pub.get_subscription_count()} of {need} subscribers '
                                      'after waiting; starting anyway')
            self.p['wait_for_subscribers'] = 0
        if time.monotonic() < self._retry_at:
            return
        frame = self._source.read()
        if frame is None:
            frame = self._on_no_frame()
            if frame is None:
                return
        stamp = self.get_clock().now().to_msg()
        msg = bgr_to_image(frame, self._header(stamp))
        self._image_pub.publish(msg)
        self._info_pub.publish(CameraInfo(header=msg.header, height=msg.height, width=msg.width,
                                          distortion_model='plumb_bob'))
        self.frames_published += 1
        self.diag.done()

    def _on_no_frame(self):
        info = self._source.info
        if info.live:
            self.get_logger().warning(f'{info.kind} {info.description} dropped; reconnecting in {self._backoff:.2f} s')
            self.diag.error(f'{info.kind} dropped')
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self.p['reconnect_max_backoff_s'])
            if self._source.reopen():
                self.get_logger().info(f'{info.kind} {info.description} reconnected')
                self._backoff = 0.25
            return None
        if self.p['loop']:
            self._source.rewind()
            frame = self._source.read()
            if frame is not None:
                return frame
        self.get_logger().info(f'end of {info.kind} source ({info.description}): {self.frames_published} frames '
                               'published')
        self.finished = True
        return None

    def _header(self, stamp) -> Header:
        return Header(stamp=stamp, frame_id=self.p['frame_id'])

    def cleanup(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None
        timer = getattr(self, '_timer', None)
        if timer is not None:
            self.destroy_timer(timer)
            self._timer = None


main = main_for(CameraNode)
