"""The Hue actuator without ROS: connect (discover, detect v1/v2, check TLS), pair, follow the mood, dispatch
within the bridge's limits, back off on faults and resend when the bridge returns.

The node feeds `on_faces` and calls `tick` every 50 ms; everything it would log or publish goes through
the `log` and `publish` callbacks, with the keys redacted. Every bridge request is bounded by
`request_timeout_s`, so a tick blocks at most a few of those; mDNS discovery runs on a worker thread.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from emotion_ros.core.hue.bridge.v1 import (Backoff, BridgeFault, BridgeInfo, HueClient, detect, short,
                                         split_address)
from emotion_ros.core.hue.colors import ColorTable, LightState
from emotion_ros.core.hue.credentials import (BridgeCredentials, CredentialsError, load_all, redact,
                                              store_credentials)
from emotion_ros.core.hue.bridge.discovery import FoundBridge, find_bridge
from emotion_ros.core.hue.bridge.http import Limits
from emotion_ros.core.hue.policy import ExpressionHold, LightScheduler, Observation, Target, select_face
from emotion_ros.core.hue.bridge.tls import TlsPolicy
from emotion_ros.core.hue.bridge.v2 import HueV2Client

PAIRING_REMINDER_S = 15.0
EXIT_NOT_PAIRED = 3
FAULTS_THAT_RESET = ('unreachable', 'timeout', 'unauthorized', 'certificate', 'tls')


@dataclass
class HueEvent:
    """One decision, as the node publishes it (emotion_msgs/HueState)."""
    event: str                     # sent | dry_run | skipped | failed | paired | pairing_failed | connected | ...
    reason: str = ''
    label: str = ''
    targets: List[str] = field(default_factory=list)
    state: Optional[LightState] = None
    last_error: str = ''


@dataclass
class Settings:
    """What is fixed for the controller's life (the node's read-only parameters)."""
    bridge: str                    # host, host:port or 'auto'; '' with dry_run
    dry_run: bool
    key_file: Path
    ca_file: str = ''
    api: str = 'auto'              # auto | v1 | v2
    request_timeout_s: float = 1.0
    discovery_timeout_s: float = 5.0
    discovery_interfaces: Sequence[str] = ()
    cache_file: Optional[Path] = None
    devicetype: str = field(default_factory=lambda: 'emotion_ros#' + socket.gethostname()[:19])


class HueController:
    def __init__(self, settings: Settings, params: Mapping, colors: ColorTable, targets: Sequence[Target],
                 log: Callable[[str, str, str], None], publish: Callable[[HueEvent], None],
                 now: Callable[[], float] = time.monotonic, browse_fn=None):
        self.s, self.p, self.colors = settings, params, colors
        self._log_cb, self._publish_cb, self._now = log, publish, now
        self._browse_fn = browse_fn
        self.scheduler = LightScheduler(targets)
        self.hold = ExpressionHold()
        self.backoff = Backoff(params['backoff_initial_s'], params['backoff_max_s'])
        self.finished, self.exit_code = False, 0
        self.client = None
        self.info: Optional[BridgeInfo] = None
        self.address = settings.bridge
        self.last_error = ''
        self._records: Dict[str, BridgeCredentials] = {}
        self._creds: Optional[BridgeCredentials] = None
        self._tls: Optional[TlsPolicy] = None
        self._deferred: Dict[Target, tuple] = {}
        self._failing = False
        self._phase = 'dry_run' if settings.dry_run else 'connecting'
        self._pairing_since = self._pair_next = self._pair_reminded = 0.0
        self._discovery: Optional[tuple] = None
        self._stream_seen = False
        self._sent_since_loss = False
        self._key = settings.bridge
        if not settings.dry_run:
            self._records = load_all(settings.key_file)   # CredentialsError: a start error, before any request

    # --- what the node shows --------------------------------------------------------------------------------
    @property
    def api_version(self) -> str:
        return self.info.api if self.info else ''

    @property
    def bridge_id(self) -> str:
        return self.info.bridge_id if self.info else ''

    @property
    def phase(self) -> str:
        return self._phase

    def _secrets(self) -> List[str]:
        out = list(self.client.secrets()) if self.client else []
        return out + (list(self._creds.secrets()) if self._creds else [])

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
        if self._phase == 'connecting':
            self._connect(now)
            return
        if self._phase == 'pairing':
            self._try_pair(now)
            return
        if self.client is not None:
            self._events()
        label = self.hold.idle(now, self.p['no_face_after_s'], self.p['no_face_label'])
        if label is not None:
            self._accept(label, now)
        else:
            self._dispatch(now)

    # --- connect: discover, detect, TLS -------------------------------------------------------------------
    def _limits(self) -> Limits:
        return Limits(timeout_s=self.s.request_timeout_s)

    def _probe(self, found: FoundBridge) -> Optional[str]:
        try:
            rec = self._records.get(found.bridge_id) if found.bridge_id else None
            tls = TlsPolicy(self.s.ca_file, rec.cert_sha256 if rec else '', found.bridge_id)
            return detect(found.host, found.port, tls, self._limits(), self.s.api,
                          allow_http=not (rec and rec.cert_sha256)).bridge_id
        except BridgeFault:
            return None

    def _discover(self, now: float) -> Optional[FoundBridge]:
        """The discovered bridge once the search (a daemon thread: it never holds up the process's exit) is done."""
        if self._discovery is None:
            kw = {'browse_fn': self._browse_fn} if self._browse_fn else {}
            result: Dict[str, object] = {}

            def search():
                try:
                    result['found'] = find_bridge(self.s.cache_file, self._probe, self.s.discovery_timeout_s,
                                                  self.s.discovery_interfaces or None, **kw)
                except LookupError as exc:
                    result['error'] = exc
                except Exception as exc:  # zeroconf/OS errors: reported as a fault, the node goes on
                    result['error'] = LookupError(f'mDNS search failed: {type(exc).__name__}: {short(str(exc), 80)}')
            thread = threading.Thread(target=search, name='hue_discovery', daemon=True)
            self._discovery = (thread, result)
            thread.start()
            self._log('info', '', f'looking for a Hue bridge (cache {self.s.cache_file}, then mDNS _hue._tcp for '
                                  f'up to {self.s.discovery_timeout_s:g} s)')
            return None
        thread, result = self._discovery
        if thread.is_alive():
            return None
        self._discovery = None
        if 'error' in result:
            self._fault(BridgeFault('unreachable', str(result['error'])), None, now)
            return None
        return result['found']

    def _connect(self, now: float) -> None:
        if not self.backoff.ready(now):
            return
        auto = self.s.bridge == 'auto'
        if auto:
            found = self._discover(now)
            if found is None:
                return
            host, port, key = found.host, found.port, found.bridge_id
            self.address = found.address
        else:
            (host, port), key = split_address(self.s.bridge), self.s.bridge
        creds = self._records.get(key)
        tls = TlsPolicy(self.s.ca_file, creds.cert_sha256 if creds else '', creds.bridge_id if creds else '')
        try:
            info = detect(host, port, tls, self._limits(), self.s.api,
                          allow_http=not (creds and (creds.api == 'v2' or creds.cert_sha256)))
        except BridgeFault as fault:
            self._fault(fault, None, now)
            return
        self.info, self._tls, self._key = info, tls, key
        first_pin = bool(info.endpoint.tls) and not tls.pinned_sha256
        if first_pin:
            tls.pinned_sha256 = tls.seen_sha256         # pinned for this session now; stored with the key
        if info.api == 'v2':
            self.client = HueV2Client(info.endpoint, info.bridge_id, self.s.request_timeout_s)
        else:
            self.client = HueClient(self.address, timeout_s=self.s.request_timeout_s, ep=info.endpoint,
                                    bridge_id=info.bridge_id)
        how = f'{info.endpoint.scheme.upper()}, {tls.describe()}' if info.endpoint.tls else 'plain HTTP (v1 only)'
        self._log('info', '', f'bridge {self.address}: id {info.bridge_id}, software {info.swversion}, API '
                              f'{info.api} over {how}')
        if first_pin and not self.s.ca_file:
            self._log('warning', '', f'bridge {self.address}: trusting its certificate on first use (sha256 '
                                     f'{tls.seen_sha256}); a different certificate will be refused')
        self._publish('connected', f'api {info.api}')
        if creds is None:
            self._phase = 'pairing'
            self._pairing_since = self._pair_reminded = now
            self._pair_next = 0.0
            limit = (f'up to {self.p["pairing_timeout_s"]:g} s' if self.p['pairing_timeout_s'] > 0
                     else 'until pressed')
            self._log('warning', '', f'PAIRING: no Hue key for bridge {self.address} in {self.s.key_file}. Press '
                                     f'the link button on the Hue bridge now; retrying every '
                                     f'{self.p["pairing_retry_s"]:g} s, {limit}.')
            return
        self.client.set_credentials(creds)
        self._creds = creds
        wanted = BridgeCredentials(creds.username, creds.clientkey, info.bridge_id,
                                   tls.pinned_sha256 if info.endpoint.tls else '', creds.api or info.api)
        if wanted != creds:
            self._store(wanted, 'key record updated (bridge id, certificate pin)')
        self._phase = 'ready'
        self.backoff.succeeded()
        self._dispatch(now)

    def _store(self, creds: BridgeCredentials, what: str) -> bool:
        try:
            store_credentials(self.s.key_file, self._key, creds)
        except (OSError, CredentialsError) as exc:
            self._log('error', '', f'cannot store the Hue key in {self.s.key_file}: {exc}; it is kept in memory '
                                   'only, so the next start pairs again')
            return False
        self._records[self._key] = creds
        self._log('info', '', f'{what}: stored in {self.s.key_file} (mode 0600)')
        return True

    # --- pairing ----------------------------------------------------------------------------------------------
    def _try_pair(self, now: float) -> None:
        timeout = self.p['pairing_timeout_s']
        if timeout > 0 and now - self._pairing_since > timeout:
            self._log('error', '', f'PAIRING failed: the link button of bridge {self.address} was not pressed '
                                   f'within {timeout:g} s; restart the node to try again')
            self._publish('pairing_failed', 'timeout')
            self._phase = 'failed'
            self.finished, self.exit_code = True, EXIT_NOT_PAIRED
            return
        if now < self._pair_next:
            return
        self._pair_next = now + self.p['pairing_retry_s']
        try:
            creds = self.client.pair_credentials(self.s.devicetype)
        except BridgeFault as fault:
            if fault.kind != 'link_button':
                self._log('warning', 'pairing_' + fault.kind, f'PAIRING: {fault}')
            elif now - self._pair_reminded >= PAIRING_REMINDER_S:
                self._pair_reminded = now
                self._log('warning', '', f'PAIRING: waiting for the link button on bridge {self.address} '
                                         f'({now - self._pairing_since:.0f} s so far)')
            return
        tls_pin = self._tls.pinned_sha256 if self.info.endpoint.tls else ''
        creds = BridgeCredentials(creds.username, creds.clientkey, self.info.bridge_id, tls_pin, self.info.api)
        self.client.set_credentials(creds)
        self._creds = creds
        if self._store(creds, f'PAIRING done: bridge {self.address} accepted this node; key'
                       + (' and client key' if creds.clientkey else '')):
            pass
        self._phase = 'ready'
        self._publish('paired')
        self._dispatch(now)

    # --- dispatch -------------------------------------------------------------------------------------------
    def _events(self) -> None:
        for note in self.client.poll_events():
            if note == 'connected':
                if self._stream_seen and not self._sent_since_loss:
                    # the bridge may have restarted meanwhile (lights back at their power-on state)
                    self._log('info', '', 'Hue event stream back: sending the current state again')
                    self.scheduler.unknown()
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

    def _dispatch(self, now: float) -> None:
        pending = self.scheduler.pending()
        if not pending or self._phase not in ('ready', 'dry_run'):
            return
        dry = self._phase == 'dry_run'
        if not dry:
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
        if self.client is not None:
            self.client.close()
        self.client, self.info = None, None
        self._stream_seen = False
        if self._phase != 'dry_run':
            self._phase = 'connecting'

    def close(self) -> None:
        """Stop the event stream (the node's cleanup)."""
        if self.client is not None:
            self.client.close()
        self._discovery = None                  # a running search ends on its own (daemon thread, bounded)
