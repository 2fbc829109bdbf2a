"""hue_actuator_node: `emotions` in, a Philips Hue light (or group) showing the followed face's mood out.

Publishes every decision as JSON on `~/state` (std_msgs/String): result sent | dry_run | skipped |
failed | paired | pairing_failed, with label, target, light state and reason.
"""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import List, Optional

from rclpy.node import Node
from std_msgs.msg import String

from emotion_msgs.msg import EmotionArray
from emotion_ros.config_files import config_file
from emotion_ros.core.hue_bridge import Backoff, BridgeFault, HueClient
from emotion_ros.core.hue_colors import ColorConfigError, LightState, load_colors
from emotion_ros.core.hue_credentials import (CredentialsError, check_location, default_username_file,
                                              load_username, store_username)
from emotion_ros.core.hue_policy import (HUE_MAX_GROUP_COMMANDS_PER_S, HUE_MAX_LIGHT_COMMANDS_PER_S,
                                         ExpressionHold, LightScheduler, Observation, Target, select_face)
from emotion_ros.core.param_spec import ParamSpec
from emotion_ros.nodes.node_main import StartupError, main_for
from emotion_ros.nodes.params import declare_params
from emotion_ros.nodes.qos import results_qos
from emotion_ros.nodes.throttled_log import ThrottledLog

TICK_S = 0.05
PAIRING_REMINDER_S = 15.0
EXIT_NOT_PAIRED = 3


def _check_host(value: str) -> Optional[str]:
    if not value:
        return None
    host, _, port = value.rpartition(':') if value.count(':') == 1 else (value, '', '')
    if any(c in value for c in '/ @?#') or not host:
        return f'{value!r} is not host or host:port'
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return f'{value!r}: port must be 1-65535'
    return None


SPECS = (
    ParamSpec('bridge', '', 'Hue bridge as host or host:port (v1 REST API over HTTP); may be empty with dry_run',
              check=_check_host, read_only=True),
    ParamSpec('dry_run', False, 'no bridge: log and publish the states that would be sent (same rules and limits)',
              read_only=True),
    ParamSpec('lights', '1', 'comma-separated light ids or names to drive (used when group is empty)',
              read_only=True),
    ParamSpec('group', '', 'group id or name to drive instead of lights ("0" = all lights); group commands are '
              'limited to 1/s by the bridge', read_only=True),
    ParamSpec('colors_file', '', 'label -> light state table (YAML); empty = config/hue_colors.yaml of the package',
              read_only=True),
    ParamSpec('username_file', '', 'JSON file (mode 0600, outside any git tree) holding the bridge username; empty = '
              '$XDG_CONFIG_HOME/emotion_ros/hue_username.json or ~/.config/emotion_ros/hue_username.json',
              read_only=True),
    ParamSpec('follow_track_id', '', 'follow the face with this track id; empty = the largest face'),
    ParamSpec('hold_s', 1.0, 'a new expression must hold this long (every frame >= min_confidence) before the '
              'light changes', min=0.0, max=60.0),
    ParamSpec('min_confidence', 0.5, 'frames below this confidence do not count towards a new expression',
              min=0.0, max=1.0),
    ParamSpec('no_face_label', '', 'show this label\'s state after no_face_after_s without the followed face; '
              'empty = keep the last state'),
    ParamSpec('no_face_after_s', 10.0, 'see no_face_label', min=0.0, max=86400.0),
    ParamSpec('max_light_commands_per_s', HUE_MAX_LIGHT_COMMANDS_PER_S, 'all commands to the bridge, in any 1 s '
              'window (the bridge handles about 10/s)', min=0.1, max=HUE_MAX_LIGHT_COMMANDS_PER_S),
    ParamSpec('max_group_commands_per_s', HUE_MAX_GROUP_COMMANDS_PER_S, 'group commands, in any max(1 s, 1/rate) '
              'window (the bridge handles about 1/s)', min=0.05, max=HUE_MAX_GROUP_COMMANDS_PER_S),
    ParamSpec('request_timeout_s', 1.0, 'HTTP timeout of one bridge request (the executor waits this long at most)',
              min=0.05, max=10.0, read_only=True),
    ParamSpec('backoff_initial_s', 0.5, 'first wait after a bridge fault; doubles per failure', min=0.05, max=60.0),
    ParamSpec('backoff_max_s', 30.0, 'longest wait between attempts after faults', min=0.1, max=600.0),
    ParamSpec('pairing_timeout_s', 120.0, 'give up pairing (exit code 3) when the link button was not pressed within '
              'this time; 0 = wait forever', min=0.0, max=86400.0),
    ParamSpec('pairing_retry_s', 2.0, 'interval between pairing attempts', min=0.2, max=60.0),
)


def parse_targets(lights: str, group: str) -> List[Target]:
    if group.strip():
        return [Target('group', group.strip())]
    refs = [r.strip() for r in lights.split(',') if r.strip()]
    if not refs:
        raise StartupError('no target: set lights (ids or names) or group')
    return [Target('light', r) for r in dict.fromkeys(refs)]


class HueActuatorNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__('hue_actuator', **node_kwargs)
        self.p = declare_params(self, SPECS)
        self.finished, self.exit_code = False, 0
        self._now = time.monotonic
        colors_path = Path(self.p['colors_file'] or config_file('hue_colors.yaml'))
        try:
            self.colors = load_colors(colors_path)
        except ColorConfigError as exc:
            raise StartupError(str(exc)) from exc
        targets = parse_targets(self.p['lights'], self.p['group'])
        self.dry_run = self.p['dry_run']
        if not self.dry_run and not self.p['bridge']:
            raise StartupError('set bridge (host or host:port of the Hue bridge) or dry_run:=true')
        self.scheduler = LightScheduler(targets)
        self.hold = ExpressionHold()
        self.backoff = Backoff(self.p['backoff_initial_s'], self.p['backoff_max_s'])
        self._log = ThrottledLog(self.get_logger(), period_s=5.0)
        self._deferred = {}
        self._failing = False
        self._pairing_since: Optional[float] = None
        self._pair_next = 0.0
        self._pair_reminded = 0.0
        self.client: Optional[HueClient] = None
        self.username_file = Path(self.p['username_file'] or default_username_file()).expanduser()
        if not self.dry_run:
            self._init_bridge()
        self._state_pub = self.create_publisher(String, '~/state', results_qos(depth=50))
        self.create_subscription(EmotionArray, 'emotions', self._on_emotions, results_qos(depth=10))
        self.create_timer(TICK_S, self._tick)
        mode = 'dry run (no bridge)' if self.dry_run else f'bridge {self.p["bridge"]}'
        self.get_logger().info(f'{mode}; target {", ".join(map(str, targets))}; colours {colors_path}; '
                               f'hold {self.p["hold_s"]:g} s at confidence >= {self.p["min_confidence"]:g}')

    def _init_bridge(self) -> None:
        try:
            check_location(self.username_file)
            username = load_username(self.username_file, self.p['bridge'])
        except CredentialsError as exc:
            raise StartupError(str(exc)) from exc
        self.client = HueClient(self.p['bridge'], username, timeout_s=self.p['request_timeout_s'])
        if username is None:
            self._pairing_since = self._pair_reminded = self._now()
            limit = (f'up to {self.p["pairing_timeout_s"]:g} s' if self.p['pairing_timeout_s'] > 0 else 'until pressed')
            self.get_logger().warning(
                f'PAIRING: no Hue username for bridge {self.p["bridge"]} in {self.username_file}. Press the link '
                f'button on the Hue bridge now; retrying every {self.p["pairing_retry_s"]:g} s, {limit}.')

    def _publish(self, result: str, reason: str = '', target: Optional[Target] = None,
                 state: Optional[LightState] = None) -> None:
        body = {'result': result, 'reason': reason, 'label': self.scheduler.label or '',
                'target': str(target) if target else '', 'state': state.command() if state else None,
                'stamp': self.get_clock().now().nanoseconds / 1e9}
        self._state_pub.publish(String(data=json.dumps(body)))

    def _on_emotions(self, msg: EmotionArray) -> None:
        now = self._now()
        face = select_face((Observation(e.face.id, float(e.face.roi.width) * e.face.roi.height, e.expression,
                                        e.confidence) for e in msg.emotions), self.p['follow_track_id'])
        if face is None:
            self.hold.no_face(now)
            return
        label = self.hold.observe(face.label, face.confidence, now, self.p['hold_s'], self.p['min_confidence'])
        if label is not None:
            self._accept(label, now)

    def _accept(self, label: str, now: float) -> None:
        state = self.colors.lookup(label)
        changed = self.scheduler.want(label, state)
        if not changed or not self.scheduler.pending():
            self._publish('skipped', 'unchanged', state=state)
            return
        known = '' if self.colors.knows(label) else ' (not in the colour table: default state)'
        self.get_logger().info(f'expression {label}{known} -> {json.dumps(state.command())}')
        self._dispatch(now)

    def _tick(self) -> None:
        now = self._now()
        if self._pairing_since is not None:
            self._try_pair(now)
            return
        label = self.hold.idle(now, self.p['no_face_after_s'], self.p['no_face_label'])
        if label is not None:
            self._accept(label, now)
        else:
            self._dispatch(now)

    def _defer(self, target: Target, reason: str) -> None:
        key = (self.scheduler.wanted, reason)
        if self._deferred.get(target) != key:
            self._deferred[target] = key
            self._publish('skipped', reason, target, self.scheduler.wanted)

    def _dispatch(self, now: float) -> None:
        pending = self.scheduler.pending()
        if not pending or self._pairing_since is not None:
            return
        if not self.dry_run:
            if not self.backoff.ready(now):
                for t in pending:
                    self._defer(t, 'backoff')
                return
            if not self.client.resolved:
                try:
                    self.client.resolve(self.scheduler.targets)
                except BridgeFault as fault:
                    self._fault(fault, None, now)
                    return
        for target in pending:
            reason = self.scheduler.blocked(target, now, self.p['max_light_commands_per_s'],
                                            self.p['max_group_commands_per_s'])
            if reason:
                self._defer(target, reason)
                continue
            state = self.scheduler.take(target, now)
            self._deferred.pop(target, None)
            if self.dry_run:
                self.get_logger().info(f'dry run: would send {target} {json.dumps(state.command())} '
                                       f'({self.scheduler.label})')
                self.scheduler.sent(target, state, now)
                self._publish('dry_run', '', target, state)
                continue
            try:
                self.client.send(target, state.command())
            except BridgeFault as fault:
                self._fault(fault, target, now)
                return
            self.scheduler.sent(target, state, self._now())
            self.backoff.succeeded()
            if self._failing:
                self._failing = False
                self.get_logger().info('Hue bridge answers again: sending the current state')
            self.get_logger().info(f'{self.scheduler.label} -> {target} {json.dumps(state.command())}')
            self._publish('sent', '', target, state)

    def _fault(self, fault: BridgeFault, target: Optional[Target], now: float) -> None:
        self.backoff.initial_s, self.backoff.max_s = self.p['backoff_initial_s'], self.p['backoff_max_s']
        delay = self.backoff.failed(now)
        self._failing = True
        if target is None or fault.kind in ('unreachable', 'timeout', 'unauthorized'):
            self.scheduler.unknown()
            self.client.forget_ids()
        else:
            self.scheduler.unknown([target])
        hint = ''
        if fault.kind == 'unauthorized':
            hint = (f' (the bridge rejects the stored username: delete the entry for {self.p["bridge"]} in '
                    f'{self.username_file} and restart to pair again)')
        self._log.warning(fault.kind, f'Hue bridge fault, {fault.kind}: {fault}{hint}; retrying in {delay:.1f} s')
        self._publish('failed', fault.kind, target, self.scheduler.wanted)

    def _try_pair(self, now: float) -> None:
        timeout = self.p['pairing_timeout_s']
        if timeout > 0 and now - self._pairing_since > timeout:
            self.get_logger().error(f'PAIRING failed: the link button of bridge {self.p["bridge"]} was not pressed '
                                    f'within {timeout:g} s; restart the node to try again')
            self._publish('pairing_failed', 'timeout')
            self._pairing_since = None
            self.finished, self.exit_code = True, EXIT_NOT_PAIRED
            return
        if now < self._pair_next:
            return
        self._pair_next = now + self.p['pairing_retry_s']
        try:
            username = self.client.pair('emotion_ros#' + socket.gethostname()[:19])
        except BridgeFault as fault:
            if fault.kind != 'link_button':
                self._log.warning('pairing_' + fault.kind, f'PAIRING: {fault}')
            elif now - self._pair_reminded >= PAIRING_REMINDER_S:
                self._pair_reminded = now
                self.get_logger().warning(f'PAIRING: waiting for the link button on bridge {self.p["bridge"]} '
                                          f'({now - self._pairing_since:.0f} s so far)')
            return
        try:
            store_username(self.username_file, self.p['bridge'], username)
        except OSError as exc:
            self.get_logger().error(f'PAIRING: paired, but cannot store the username: {exc}; it is kept in memory '
                                    'only, so the next start pairs again')
        else:
            self.get_logger().info(f'PAIRING done: bridge {self.p["bridge"]} accepted this node; username stored in '
                                   f'{self.username_file} (mode 0600)')
        self.client.set_username(username)
        self._pairing_since = None
        self._publish('paired')
        self._dispatch(now)


main = main_for(HueActuatorNode)
