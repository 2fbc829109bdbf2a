"""The Hue actuator without ROS: follow the mood (hold, scheduler), dispatch each target's state through the
client (v1 or v2) within the bridge's limits, back off on faults and resend when the bridge returns.

Reaching the bridge (discovery, v1/v2 and TLS, pairing, the key record) is `connection.Connection`; this class
drives it from its tick and owns the one backoff both share. The node feeds `on_faces` and calls `tick` every
50 ms; everything it would log or publish goes through the `log` and `publish` callbacks, with the keys
redacted. Every bridge request is bounded by `request_timeout_s`, so a tick blocks at most a few of those;
mDNS discovery runs on a worker thread.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable, List, Mapping, Optional, Sequence

from emotion_ros.core.hue.bridge.v1 import Backoff, BridgeFault, short
from emotion_ros.core.hue.colors import ColorTable, LightState
from emotion_ros.core.hue.connection import Connection, Settings
from emotion_ros.core.hue.credentials import redact
from emotion_ros.core.hue.policy import ExpressionHold, LightScheduler, Observation, Target, select_face

__all__ = ['EXIT_NOT_PAIRED', 'HueController', 'HueEvent', 'Settings']

EXIT_NOT_PAIRED = 3
FAULTS_THAT_RESET = ('unreachable', 'timeout', 'unauthorized', 'certificate', 'tls')
RELIST_MIN_S = 2.0   # a light that answers 404 (re-added under a new id) re-reads the light list at most this often


@dataclass
class HueEvent:
    """One decision, as the node publishes it (emotion_msgs/HueState)."""
    event: str                     # sent | dry_run | skipped | failed | paired | pairing_failed | connected | ...
    reason: str = ''
    label: str = ''
    targets: List[str] = field(default_factory=list)
    state: Optional[LightState] = None
    last_error: str = ''


class HueController:
    def __init__(self, settings: Settings, params: Mapping, colors: ColorTable, targets: Sequence[Target],
                 log: Callable[[str, str, str], None], publish: Callable[[HueEvent], None],
                 now: Callable[[], float] = time.monotonic, browse_fn=None):
        self.s, self.p, self.colors = settings, params, colors
        self._log_cb, self._publish_cb, self._now = log, publish, now
        self.scheduler = LightScheduler(targets)
        self.hold = ExpressionHold()
        self.backoff = Backoff(params['backoff_initial_s'], params['backoff_max_s'])
        self.finished, self.exit_code = False, 0
        self.last_error = ''
        self._deferred = {}
        self._failing = False
        self._stream_seen = False
        self._sent_since_loss = False
        self._check_shown = False
        self._last_relist = -float('inf')
        self._moved_from = {}
        self.conn = Connection(settings, params, self._log, browse_fn)   # CredentialsError: a start error

    @property
    def client(self):
        return self.conn.client

    @property
    def address(self) -> str:
        return self.conn.address

    # --- what the node shows --------------------------------------------------------------------------------
    @property
    def api_version(self) -> str:
        return self.conn.info.api if self.conn.info else ''

    @property
    def bridge_id(self) -> str:
        return self.conn.info.bridge_id if self.conn.info else ''

    @property
    def phase(self) -> str:
        return 'dry_run' if self.s.dry_run else self.conn.phase

    def _secrets(self) -> List[str]:
        return self.conn.secrets()

    def _log(self, level: str, key: str, text: str) -> None:
        self._log_cb(level, key, redact(text, self._secrets()))

    def _publish(self, event: str, reason: str = '', targets: Sequence[Target] = (),
                 state: Optional[LightState] = None) -> None:
        ids = [(self.client.ids(t) if self.client and self.client.ids(t) else t.ref) for t in targets]
        self._publish_cb(HueEvent(event, redact(reason, self._secrets()), self.scheduler.label or '', ids, state,
                                  redact(self.last_error, self._secrets())))

    # --- input ----------------------------------------------------------------------------------------------
    def on_faces(self, faces: Sequence[Observation], now: float) -> None:
        face = select_face(faces, self.p['follow_track_id'])
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
        # keyed, so the node writes it at most once per log period: labels can change at the frame rate
        self._log('info', 'expression', f'expression {short(label, 40)}{known} -> {state.describe()}')
        self._dispatch(now)

    def tick(self, now: float) -> None:
        if self.phase == 'connecting':
            self._connect(now)
            return
        if self.phase == 'pairing':
            self._pair(now)
            return
        if self.client is not None:
            self._events()
        label = self.hold.idle(now, self.p['no_face_after_s'], self.p['no_face_label'])
        if label is not None:
            self._accept(label, now)
        else:
            self._dispatch(now)

    # --- reaching the bridge (connection.Connection) ---------------------------------------------------------
    def _connect(self, now: float) -> None:
        if not self.backoff.ready(now):
            return
        try:
            if not self.conn.connect(now):
                return
        except BridgeFault as fault:
            self._fault(fault, None, now)
            return
        self._publish('connected', f'api {self.conn.info.api}')
        if self.phase == 'ready':
            self.backoff.succeeded()
            self._dispatch(now)

    def _pair(self, now: float) -> None:
        result = self.conn.pair(now)
        if result == 'timeout':
            self._publish('pairing_failed', 'timeout')
            self.finished, self.exit_code = True, EXIT_NOT_PAIRED
        elif result == 'paired':
            self._publish('paired')
            self._dispatch(now)

    # --- dispatch -------------------------------------------------------------------------------------------
    def _events(self) -> None:
        for note in self.client.poll_events():
            if note == 'connected':
                if self._stream_seen and not self._sent_since_loss:
                    self._check_shown = True      # the bridge may have restarted meanwhile: ask what it shows
                self._stream_seen = True
                self._publish('connected', 'event stream')
            elif note == 'disconnected':
                self._sent_since_loss = False
                self._log('warning', 'eventstream', 'Hue event stream lost; reconnecting')
                self._publish('disconnected', 'event stream')

    def _defer(self, target: Target, reason: str) -> None:
        key = (self.scheduler.wanted, reason)
        if self._deferred.get(target) != key:
            self._deferred[target] = key
            self._publish('skipped', reason, [target], self.scheduler.wanted)

    def _check_what_is_shown(self) -> None:
        """After the event stream came back with nothing sent meanwhile: resend only to targets whose bridge state
        is no longer what was sent (a restarted bridge shows its power-on state). Resending blindly sent the
        unchanged state again at every reconnect of a stream that kept dropping (cf495d6)."""
        self._check_shown = False
        changed = []
        for t in self.scheduler.targets:
            shown = self.scheduler.shown(t)
            if shown is None or not self.client.ids(t):
                continue                                   # unknown anyway: it is sent again
            try:
                same = self.client.shows(t, shown)
            except BridgeFault as fault:
                self._log('warning', 'check_' + fault.kind, f'cannot read what {t} shows ({fault}): sending its '
                                                            'state again')
                same = False
            if not same:
                changed.append(t)
        if changed:
            self._log('info', '', f'Hue event stream back: {", ".join(map(str, changed))} changed meanwhile '
                                  '(bridge restarted?): sending the current state again')
            self.scheduler.unknown(changed)

    def _resolve(self, now: float) -> bool:
        try:
            self.client.resolve(self.scheduler.targets)
        except BridgeFault as fault:
            self._fault(fault, None, now)
            return False
        for t, old in self._moved_from.items():
            new = self.client.ids(t)
            if new and new != old:
                self._log('info', '', f'{t}: now id {new} on the bridge (was {old}: re-added?)')
        self._moved_from = {}
        return True

    def _dispatch(self, now: float) -> None:
        ready = self.phase in ('ready', 'dry_run')
        if ready and self._check_shown and self.phase == 'ready' and self.backoff.ready(now):
            self._check_what_is_shown()
        pending = self.scheduler.pending()
        if not pending or not ready:
            return
        dry = self.phase == 'dry_run'
        if not dry:
            if not self.backoff.ready(now):
                for t in pending:
                    self._defer(t, 'backoff')
                return
            if not self.client.resolved and not self._resolve(now):
                return
        for target in pending:
            reason = self.scheduler.blocked(target, now, self.p['max_light_commands_per_s'],
                                            self.p['max_group_commands_per_s'])
            if reason:
                self._defer(target, reason)
                continue
            state = self.scheduler.take(target, now)
            self._deferred.pop(target, None)
            if dry:
                self._log('info', '', f'dry run: would send {target} {json.dumps(state.command())} '
                                      f'({short(self.scheduler.label, 40)})')
                self.scheduler.sent(target, state, now)
                self._publish('dry_run', '', [target], state)
                continue
            try:
                self.client.send(target, state)
            except BridgeFault as fault:
                self.scheduler.finished(target, self._now())
                self._fault(fault, target, now)
                return
            self.scheduler.finished(target, self._now())
            self.scheduler.sent(target, state, self._now())
            self._sent_since_loss = True
            self.backoff.succeeded()
            self.last_error = ''
            if self._failing:
                self._failing = False
                self._log('info', '', 'Hue bridge answers again: sending the current state')
            body = state.v2_body() if self.client.api == 'v2' else state.command()
            self._log('info', '', f'{short(self.scheduler.label, 40)} -> {target} ({self.client.ids(target)}) '
                                  f'{json.dumps(body)}')
            self._publish('sent', '', [target], state)

    def _fault(self, fault: BridgeFault, target: Optional[Target], now: float) -> None:
        self.backoff.initial_s, self.backoff.max_s = self.p['backoff_initial_s'], self.p['backoff_max_s']
        retry_after = fault.retry_after_s
        if fault.kind == 'certificate':
            retry_after = self.p['backoff_max_s']      # not transient: do not hammer an impostor
        delay = self.backoff.failed(now, retry_after)
        self._failing = True
        self.last_error = f'{fault.kind}: {fault}'
        if target is None or fault.kind in FAULTS_THAT_RESET:
            self.scheduler.unknown()
            if self.client is not None:
                self.client.forget_ids()
        else:
            self.scheduler.unknown([target])
            if fault.kind == 'not_found' and self.client is not None and now - self._last_relist >= RELIST_MIN_S:
                # the light is gone under this id (re-added, replaced): read the list again, find it by its
                # configured id or name, or by the name it had (client.resolve)
                self._last_relist = now
                self._moved_from = {t: self.client.ids(t) for t in self.scheduler.targets}
                self.client.forget_ids()
        if fault.kind in ('certificate', 'tls') or (self.s.bridge == 'auto' and fault.kind == 'unreachable'):
            self._drop_client()
        hint = ''
        if fault.kind == 'unauthorized':
            hint = (f' (the bridge rejects the stored key: delete the entry for {self.address} in '
                    f'{self.s.key_file} and restart to pair again)')
        asked = f' (the bridge asked for {retry_after:g} s)' if fault.retry_after_s else ''
        level = 'error' if fault.kind == 'certificate' else 'warning'
        self._log(level, fault.kind, f'Hue bridge fault, {fault.kind}: {fault}{hint}; retrying in {delay:.1f} s'
                                     f'{asked}')
        self._publish('failed', fault.kind, [target] if target else self.scheduler.targets, self.scheduler.wanted)

    def _drop_client(self) -> None:
        self.conn.drop()
        self._stream_seen = False

    def close(self) -> None:
        """Stop the event stream (the node's cleanup)."""
        self.conn.close()
