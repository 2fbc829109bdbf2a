"""emotion_viewer: a live web page of what the graph sees (annotated video, faces, timelines, health, Hue).

Subscribes to the topics any user would (`image_annotated` or `image_raw`, `emotions`, `/diagnostics`, the Hue
node's `~/state`), so it also views a graph running on another machine. The HTTP server is
emotion_ros.core.viewer.server, on an event loop in a thread of its own: callbacks here only hand data over.
"""
from __future__ import annotations

import socket
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

from emotion_msgs.msg import EmotionArray, HueState
from emotion_ros.core.frames.encoding import ImageDecodeError
from emotion_ros.core.param_spec import ParamSpec
from emotion_ros.core.viewer.guards import parse_allowed_hosts
from emotion_ros.core.viewer.server import ViewerConfig, ViewerServer, access_token, is_loopback
from emotion_ros.core.viewer.token_file import default_token_file, read_token, write_token
from emotion_ros.nodes.diagnostics import NodeDiagnostics, latency_since
from emotion_ros.nodes.managed_node import ManagedNode
from emotion_ros.nodes.node_main import StartupError, main_for
from emotion_ros.nodes.qos import latched_qos, latest_frame_qos, results_qos
from emotion_ros.nodes.ros_image import image_to_bgr
from emotion_ros.nodes.throttled_log import ThrottledLog


def _address_reason(value: str):
    try:
        socket.getaddrinfo(value, None, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST)
        return None
    except socket.gaierror:
        return None if value == 'localhost' else f'{value!r} is not a numeric IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)'


def _hosts_reason(value: str):
    try:
        parse_allowed_hosts(value)
        return None
    except ValueError as exc:
        return str(exc)


SPECS = (
    ParamSpec('port', 8080, 'HTTP port of the page (0 = any free port; the URL is logged)', min=0, max=65535,
              read_only=True),
    ParamSpec('bind_address', '127.0.0.1', 'address to listen on; any non-loopback address (e.g. 0.0.0.0) '
              'requires the access token', check=_address_reason, read_only=True),
    ParamSpec('token', '', 'access token for the page (empty: none on loopback, else the one in token_file, or a '
              'random one written there); write-only: used as given at start, but never logged, never shown by '
              '`ros2 param get/dump` nor on /parameter_events; it stays in the command line, launch or '
              'parameter file it came from: prefer token_file', read_only=True,
              secret=True),
    ParamSpec('token_file', '', 'file (0600) holding the access token: read when it exists, else a random token '
              'is written to it when one is needed (empty: ~/.config/emotion_ros/viewer_token)', read_only=True),
    ParamSpec('allowed_hosts', '', 'comma-separated extra Host names (or name:port) the page answers to, beside '
              'its bind address, localhost, 127.0.0.1 and [::1] (e.g. robot.local); exact names, no wildcards',
              check=_hosts_reason, read_only=True),
    ParamSpec('max_connections', 128, 'open HTTP connections at most (a connection over the cap is closed '
              'at once)', min=4, max=4096, read_only=True),
    ParamSpec('max_connections_per_client', 32, 'open HTTP connections per client address at most', min=2,
              max=4096, read_only=True),
    ParamSpec('idle_timeout_s', 10.0, 'close a connection that has sent no complete request for this long '
              '(idle or slow headers)', min=1.0, max=600.0, read_only=True),
    ParamSpec('image_topic', 'image_annotated', 'image topic to show (sensor_msgs/Image); with image_raw set '
              'draw_faces', check=lambda v: None if v.strip() else 'must not be empty', read_only=True),
    ParamSpec('draw_faces', False, 'draw the boxes and expressions from `emotions` onto the frames (for an '
              'image topic without them, e.g. image_raw)', on_change='_set_server_option'),
    ParamSpec('hue_state_topic', 'hue_actuator/state', 'emotion_msgs/HueState topic of the Hue node (latched)',
              read_only=True),
    ParamSpec('max_fps', 30.0, 'stream at most this many frames per second to browsers', min=1.0, max=120.0,
              on_change='_set_server_option'),
    ParamSpec('jpeg_quality', 80, 'JPEG quality of streamed frames', min=10, max=100,
              on_change='_set_server_option'),
    ParamSpec('client_timeout_s', 5.0, 'cut off a browser that takes longer than this to accept a frame',
              min=0.5, max=300.0, read_only=True),
    ParamSpec('timeline_s', 60.0, 'length of the per-face expression timeline', min=5.0, max=3600.0, read_only=True),
)


def _stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def _level(value) -> int:
    return value[0] if isinstance(value, (bytes, bytearray)) else int(value)


class ViewerNode(ManagedNode):
    SPECS = SPECS

    def __init__(self, **node_kwargs):
        self.server = None
        super().__init__('emotion_viewer', **node_kwargs)

    def setup(self) -> None:
        self.diag = NodeDiagnostics(self, lambda: {
            'url': self.server.url if self.server else '',
            'browsers': str(self.server.stats['clients']) if self.server else '0',
            'frames_skipped_for_slow_browsers': str(self.server.stats['frames_skipped']) if self.server else '0'})
        self._log = ThrottledLog(self.get_logger(), period_s=5.0, on_warning=self.diag.error)

    def configure(self) -> None:
        host = self.p['bind_address']
        token_file = Path(self.p['token_file']).expanduser() if self.p['token_file'] else default_token_file()
        try:
            given = self.p['token'] or (read_token(token_file) if not is_loopback(host) or self.p['token_file']
                                        else '')
            token, generated = access_token(host, given)
            if generated:
                write_token(token_file, token)
        except OSError as exc:
            raise StartupError(f'viewer: access token: {exc}') from exc
        config = ViewerConfig(host=host, port=self.p['port'], token=token,
                              client_timeout_s=self.p['client_timeout_s'], timeline_s=self.p['timeline_s'],
                              jpeg_quality=self.p['jpeg_quality'], max_fps=self.p['max_fps'],
                              draw_faces=self.p['draw_faces'],
                              allowed_hosts=parse_allowed_hosts(self.p['allowed_hosts']),
                              max_connections=self.p['max_connections'],
                              max_connections_per_client=self.p['max_connections_per_client'],
                              idle_timeout_s=self.p['idle_timeout_s'])
        try:
            server = ViewerServer(config, log=self.get_logger().warning)
            server.start()
        except OSError as exc:
            raise StartupError(f'viewer: {exc}') from exc
        self.server = server
        # Owned by the configuration (ManagedNode): run only while active, destroyed on cleanup. The image
        # subscription follows the browsers (_follow_browsers), the rest is small and always on.
        self._image_sub, self._unwatched_since = None, None
        self.create_timer(0.5, self._follow_browsers)
        self.create_subscription(EmotionArray, 'emotions', self._on_emotions, results_qos())
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, results_qos(50))
        self.create_subscription(HueState, self.p['hue_state_topic'], self._on_hue, latched_qos())
        url = server.url
        # The token itself never goes into a log line: rcl sends every line to /rosout.
        if token and generated:
            self.get_logger().info(f'viewer at {url} (bound to {host}: the access token is required; a new one '
                                   f'is in {token_file} (mode 0600): open {url}?token=<its content>)')
        elif token:
            where = 'the token parameter' if self.p['token'] else f'the content of {token_file}'
            self.get_logger().info(f'viewer at {url} (access token required: ?token=<{where}>)')
        else:
            self.get_logger().info(f'viewer at {url}')
        if not is_loopback(host):
            self.get_logger().warning(f'viewer reachable from other machines on {host}:{server.port}')

    def _follow_browsers(self) -> None:
        """Join the image topic while someone watches; leave it 5 s after the last browser (the classifier
        draws image_annotated only for subscribers, so an unwatched viewer costs the graph nothing)."""
        if self.server is None:
            return
        if self.server.wants_frames():
            self._unwatched_since = None
            if self._image_sub is None:
                self._image_sub = self.create_subscription(Image, self.p['image_topic'], self._on_image,
                                                           latest_frame_qos())
        elif self._image_sub is not None:
            now = time.monotonic()
            if self._unwatched_since is None:
                self._unwatched_since = now
            elif now - self._unwatched_since > 5.0:
                self.destroy_subscription(self._image_sub)
                self._image_sub = None

    def _set_server_option(self, _value) -> None:
        """max_fps, jpeg_quality, draw_faces: the encoder thread reads them for every frame."""
        if self.server is not None:
            cfg = self.server.config
            cfg.max_fps, cfg.jpeg_quality, cfg.draw_faces = (self.p['max_fps'], self.p['jpeg_quality'],
                                                             self.p['draw_faces'])

    def cleanup(self) -> None:
        """Close the browsers' connections and the listening socket (the port is free again)."""
        self._image_sub = None  # destroyed by ManagedNode with the rest of the configuration
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _on_image(self, msg: Image) -> None:
        if self.server is None:
            return
        self.diag.input()
        try:
            self.server.submit_frame(image_to_bgr(msg), _stamp_s(msg.header))
        except ImageDecodeError as exc:
            self._log.warning('decode', f'image skipped: {exc}')
            return
        self.diag.done(latency_since(self, msg.header))

    def _on_emotions(self, msg: EmotionArray) -> None:
        if self.server is None:
            return
        faces = [{'id': e.face.id, 'label': e.expression, 'confidence': float(e.confidence),
                  'valence': float(e.valence), 'arousal': float(e.arousal), 'labels': list(e.labels),
                  'scores': [round(float(s), 4) for s in e.scores],
                  'box': [e.face.roi.x_offset, e.face.roi.y_offset, e.face.roi.width, e.face.roi.height]}
                 for e in msg.emotions]
        self.server.submit_faces(_stamp_s(msg.header), faces)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        if self.server is None:
            return
        self.server.submit_diagnostics([{'name': s.name, 'level': _level(s.level), 'message': s.message,
                                         'values': {kv.key: kv.value for kv in s.values}} for s in msg.status])

    def _on_hue(self, msg: HueState) -> None:
        if self.server is None:
            return
        self.server.submit_hue({
            'stamp': _stamp_s(msg.header), 'event': msg.event, 'reason': msg.reason, 'label': msg.label,
            'bridge': msg.bridge, 'bridge_id': msg.bridge_id, 'api_version': msg.api_version,
            'targets': list(msg.targets), 'on': bool(msg.on), 'brightness': float(msg.brightness),
            'x': float(msg.x), 'y': float(msg.y), 'transition_ms': int(msg.transition_ms),
            'last_error': msg.last_error})


main = main_for(ViewerNode)
