"""camera_node: publishes frames from a webcam, video file, image folder, stream URL or the demo clip."""
from __future__ import annotations

import time

from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from emotion_ros.core.frames.sources import SourceError, open_source
from emotion_ros.core.param_spec import ParamSpec
from emotion_ros.nodes.diagnostics import NodeDiagnostics
from emotion_ros.nodes.managed_node import ManagedNode
from emotion_ros.nodes.node_main import StartupError, main_for
from emotion_ros.nodes.ros_image import bgr_to_compressed, bgr_to_image

SPECS = (
    ParamSpec('source', 'demo', 'webcam index (e.g. "0"), /dev/videoN, video file, image folder or glob, '
              'stream URL (rtsp://, http://), "demo" (built-in clip, needs no file) or "demo:N" (N faces)',
              check=lambda v: None if v.strip() else 'must not be empty', read_only=True, also_accepts=(int,)),
    ParamSpec('fps', 0.0, 'publish rate in frames per second; 0 = the source\'s own rate (a file plays at its '
              'native rate; 30 when the source does not say); a change applies from the next frame',
              min=0.0, max=240.0),
    ParamSpec('loop', False, 'start a file/folder/demo source over when it ends (else the node ends cleanly)'),
    ParamSpec('frame_id', 'camera', 'frame_id of published headers', check=lambda v: None if v else 'must not be empty'),
    ParamSpec('width', 0, 'largest published width: frames are scaled down to fit width x height with their aspect '
              'ratio kept, never stretched or enlarged (0 = no bound)', min=0, max=8192, read_only=True),
    ParamSpec('height', 0, 'largest published height (see width; 0 = no bound)', min=0, max=8192, read_only=True),
    ParamSpec('demo_frames', 150, 'length of the built-in demo clip in frames', min=1, max=100000, read_only=True),
    ParamSpec('wait_for_subscribers', 0, 'hold the first frame until this many image_raw subscribers are '
              'matched, so a file is not gone before the graph is up (live.launch.py sets it to the consumers it '
              'starts); read at every frame until the first is published', min=0, max=100),
    ParamSpec('wait_for_nodes', '', 'comma-separated node names (in this namespace) whose image_raw subscriptions '
              'must be matched before the first frame; unlike a count, a viewer subscribed early cannot stand in '
              'for a node still loading its model (live.launch.py sets it to the consumers it starts); read at every '
              'frame until the first is published'),
    ParamSpec('wait_settle_s', 3.0, 'after the awaited subscribers appear, hold the first frame this much longer '
              'so the nodes behind them finish discovering each other (measured: the detector-classifier and '
              'classifier-listener links came up to 3 s after the camera saw its subscribers, on a busy 2-core '
              'machine); only applies when waiting was asked for; read at every frame while waiting',
              min=0.0, max=60.0),
    ParamSpec('wait_timeout_s', 30.0, 'give up waiting for subscribers after this long (counted from activation) '
              'and start anyway; read at every frame while waiting', min=0.0, max=3600.0),
    ParamSpec('reconnect_max_backoff_s', 8.0, 'longest pause between reconnect attempts of a dropped '
              'webcam/stream (backoff doubles from 0.25 s)', min=0.25, max=300.0),
    ParamSpec('compressed_quality', 0, 'also publish image_raw/compressed (sensor_msgs/CompressedImage, JPEG of '
              'this quality 1..100) for consumers across a network link (docs/multi_machine.md: ~20x fewer bytes '
              'than raw); encoded only while someone subscribes; 0 = off', min=0, max=100, read_only=True),
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
        self._image_pub = self.create_lifecycle_publisher(Image, 'image_raw', qos_profile_sensor_data)
        self._info_pub = self.create_lifecycle_publisher(CameraInfo, 'camera_info', qos_profile_sensor_data)
        self._compressed_pub = (self.create_lifecycle_publisher(CompressedImage, 'image_raw/compressed',
                                                                qos_profile_sensor_data)
                                if self.p['compressed_quality'] else None)
        self._backoff, self._retry_at = 0.25, 0.0
        self._wait_started, self._settle_started, self._waited = None, None, False
        self.fps = self._target_fps()
        self._timer = self.create_timer(1.0 / self.fps, self._tick)
        self.get_logger().info(f'{info.kind} source {info.description} at {self.fps:.1f} fps'
                               f'{" (its own rate)" if not self.p["fps"] else ""}'
                               f'{" (looping)" if self.p["loop"] else ""}')

    def _target_fps(self) -> float:
        return self.p['fps'] or self._source.info.fps or 30.0

    def _follow_fps(self) -> None:
        """A runtime change of `fps` (or back to 0 = the source's rate) re-times the frame timer."""
        fps = self._target_fps()
        if fps != self.fps:
            self.destroy_timer(self._timer)
            self.fps = fps
            self._timer = self.create_timer(1.0 / fps, self._tick)
            self.get_logger().info(f'publishing at {fps:.1f} fps')

    def _consumers_ready(self) -> bool:
        """Before the first frame: True once `wait_for_subscribers` subscribers and the `wait_for_nodes` match
        image_raw, or the timeout passed."""
        need = self.p['wait_for_subscribers']
        nodes = {n.strip() for n in self.p['wait_for_nodes'].split(',') if n.strip()}
        if self._waited or self.frames_published or not (need or nodes):
            return True
        have = self._image_pub.get_subscription_count() + (self._compressed_pub.get_subscription_count()
                                                           if self._compressed_pub is not None else 0)
        missing = nodes - {i.node_name for i in self.get_subscriptions_info_by_topic(self._image_pub.topic_name)
                           if i.node_namespace == self.get_namespace()} if nodes else set()
        now = time.monotonic()
        if self._wait_started is None:
            self._wait_started = now
            if have < need or missing:
                self.get_logger().info('waiting for image_raw subscribers: ' + ', '.join(
                    ([f'{need} (have {have})'] if need else []) + ([f'nodes {", ".join(sorted(missing))}']
                                                                   if missing else []))
                    + f' (wait_timeout_s {self.p["wait_timeout_s"]:g})')
        if have >= need and not missing:
            self._settle_started = self._settle_started or now
            self._waited = now - self._settle_started >= self.p['wait_settle_s']
            return self._waited
        if now - self._wait_started < self.p['wait_timeout_s']:
            return False
        self.get_logger().warning(f'after {self.p["wait_timeout_s"]:g} s: ' + ', '.join(
            ([f'{have} of {need} image_raw subscribers'] if have < need else [])
            + ([f'no image_raw subscription of {", ".join(sorted(missing))}'] if missing else [])) + '; starting anyway')
        self._waited = True
        return True

    def _tick(self) -> None:
        if self.finished or not self.active:
            return
        self._follow_fps()
        if not self._consumers_ready() or time.monotonic() < self._retry_at:
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
        if self._compressed_pub is not None and self._compressed_pub.get_subscription_count():
            self._compressed_pub.publish(bgr_to_compressed(frame, msg.header, self.p['compressed_quality']))
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
