"""hue_actuator_node: `emotions` in, a Philips Hue light (or group) showing the followed face's mood out.

A lifecycle node: configure checks the colour table, targets and key file and starts the bridge controller
(core/hue/controller.py: policy, dispatch, faults; core/hue/connection.py: discovery, v1/v2 detection, TLS,
pairing); cleanup stops it.
Every decision is published as emotion_msgs/HueState on `~/state` (latched: a late subscriber gets the
recent ones).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

from emotion_msgs.msg import EmotionArray, HueState
from emotion_ros.nodes.config_files import config_file
from emotion_ros.core.hue.colors import ColorConfigError, load_colors
from emotion_ros.core.hue.controller import EXIT_NOT_PAIRED, HueController, HueEvent, Settings
from emotion_ros.core.hue.credentials import CredentialsError, check_location, default_username_file
from emotion_ros.core.hue.params import SPECS
from emotion_ros.core.hue.policy import Observation, Target
from emotion_ros.nodes.managed_node import ManagedNode
from emotion_ros.nodes.node_main import StartupError, main_for
from emotion_ros.nodes.qos import latched_qos, results_qos

TICK_S = 0.05
LOG_PERIOD_S = 5.0
STATE_DEPTH = 20

__all__ = ['HueActuatorNode', 'SPECS', 'EXIT_NOT_PAIRED', 'parse_targets', 'main']


def parse_targets(lights, group) -> List[Target]:
    group, lights = str(group).strip(), str(lights)
    if group:
        return [Target('group', group)]
    refs = [r.strip() for r in lights.split(',') if r.strip()]
    if not refs:
        raise StartupError('no target: set lights (ids or names) or group')
    return [Target('light', r) for r in dict.fromkeys(refs)]


class HueActuatorNode(ManagedNode):
    SPECS = SPECS

    def __init__(self, **node_kwargs):
        self.controller: Optional[HueController] = None
        super().__init__('hue_actuator', **node_kwargs)

    def setup(self) -> None:
        self._now = time.monotonic
        self._logged = {}

    def configure(self) -> None:
        colors_path = Path(self.p['colors_file'] or config_file('hue_colors.yaml'))
        try:
            colors = load_colors(colors_path)
        except ColorConfigError as exc:
            raise StartupError(str(exc)) from exc
        targets = parse_targets(self.p['lights'], self.p['group'])
        dry_run = self.p['dry_run']
        if not dry_run and not self.p['bridge']:
            raise StartupError('set bridge (host, host:port or auto) or dry_run:=true')
        key_file = Path(self.p['username_file'] or default_username_file()).expanduser()
        settings = Settings(
            bridge=self.p['bridge'], dry_run=dry_run, key_file=key_file,
            ca_file=str(Path(self.p['ca_file']).expanduser()) if self.p['ca_file'] else '',
            api=self.p['api'], request_timeout_s=self.p['request_timeout_s'],
            discovery_timeout_s=self.p['discovery_timeout_s'],
            discovery_interfaces=[p.strip() for p in self.p['discovery_interfaces'].split(',') if p.strip()],
            cache_file=key_file.with_name('hue_bridges.json'))
        try:
            if not dry_run:
                check_location(key_file)
            self.controller = HueController(settings, self.p, colors, targets, self._log, self._publish, self._now)
        except CredentialsError as exc:
            raise StartupError(str(exc)) from exc
        self._state_pub = self.create_publisher(HueState, '~/state', latched_qos(depth=STATE_DEPTH))
        self.create_subscription(EmotionArray, 'emotions', self._on_emotions, results_qos(depth=10))
        self.create_timer(TICK_S, self._tick)
        mode = 'dry run (no bridge)' if dry_run else f'bridge {self.p["bridge"]} (api {self.p["api"]})'
        self.get_logger().info(f'{mode}; target {", ".join(map(str, targets))}; colours {colors_path}; '
                               f'hold {self.p["hold_s"]:g} s at confidence >= {self.p["min_confidence"]:g}')

    def cleanup(self) -> None:
        if self.controller is not None:
            self.controller.close()
            self.controller = None

    # --- ROS <-> core -----------------------------------------------------------------------------------
    def _log(self, level: str, key: str, text: str) -> None:
        if key:
            now = self._now()
            last, count = self._logged.get(key, (-1e9, 0))
            count += 1
            if now - last < LOG_PERIOD_S:
                self._logged[key] = (last, count)
                return
            self._logged[key] = (now, count)
            if count > 1:
                text += f' ({count} so far)'
        # one call site per severity: rclpy refuses a call site whose severity changes between calls
        if level == 'error':
            self.get_logger().error(text)
        elif level == 'warning':
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    def _publish(self, ev: HueEvent) -> None:
        c = self.controller
        msg = HueState(event=ev.event, reason=ev.reason, label=ev.label, targets=list(ev.targets),
                       last_error=ev.last_error)
        msg.header.stamp = self.get_clock().now().to_msg()
        if c is not None:
            msg.bridge, msg.bridge_id, msg.api_version = c.address or '', c.bridge_id, c.api_version
        if ev.state is not None:
            msg.on = ev.state.on
            msg.brightness = float(ev.state.brightness_pct if ev.state.on else 0.0)
            xy = ev.state.color_xy()
            msg.x, msg.y = (float(xy[0]), float(xy[1])) if xy else (0.0, 0.0)
            msg.transition_ms = int(round(ev.state.transition_s * 1000))
        self._state_pub.publish(msg)

    def _on_emotions(self, msg: EmotionArray) -> None:
        faces = [Observation(e.face.id, float(e.face.roi.width) * e.face.roi.height, e.expression, e.confidence)
                 for e in msg.emotions]
        self.controller.on_faces(faces, self._now())

    def _tick(self) -> None:
        self.controller.tick(self._now())
        if self.controller.finished:
            self.finished, self.exit_code = True, self.controller.exit_code


main = main_for(HueActuatorNode)
