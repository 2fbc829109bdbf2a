"""Hue CLIP v2 client (HTTPS, `hue-application-key` header) and its event stream, written on `hue_http`.

Why not aiohue (4.9.0, what Home Assistant uses): it connects with `ssl=False` hard-coded (no certificate
check is possible without patching it), pairs without `generateclientkey`, retries 429/503 internally
ignoring `Retry-After` (against our own rate limits and backoff), bounds no reply size or total time, and
brings aiohttp, asyncio-throttle and awesomeversion along. The few calls the actuator needs fit here:
pairing, the light / grouped-light listing, one PUT per state, and the SSE event stream on a thread of its
own that reconnects with backoff.
"""
from __future__ import annotations

import collections
import queue
import threading
import time
from typing import Any, Dict, Iterable, List, Optional
from urllib.parse import quote

from emotion_ros.core.hue.bridge import http as hue_http
from emotion_ros.core.hue.bridge.v1 import (BridgeFault, Resource, TargetIds, exchange, json_reply, redacts, short,
                                         status_fault)
from emotion_ros.core.hue.colors import LightState
from emotion_ros.core.hue.credentials import BridgeCredentials
from emotion_ros.core.hue.bridge.http import Endpoint, HttpError, Limits, StreamLimits
from emotion_ros.core.hue.policy import Target


class HueV2Client(TargetIds):
    api = 'v2'

    def __init__(self, ep: Endpoint, bridge_id: str, timeout_s: float = 1.0,
                 stream_limits: StreamLimits = StreamLimits(), use_events: bool = True):
        self.ep, self.bridge_id = ep, bridge_id
        self.limits = Limits(timeout_s=timeout_s)
        self.stream_limits = stream_limits
        self.use_events = use_events
        self.key, self.clientkey = '', ''
        self.session = hue_http.Session()
        self._ids: Dict[Target, str] = {}
        self._events: Optional[EventStream] = None

    # --- credentials --------------------------------------------------------------------------------------
    @property
    def paired(self) -> bool:
        return bool(self.key)

    def secrets(self) -> List[str]:
        return [s for s in (self.key, self.clientkey) if s]

    def set_credentials(self, creds: BridgeCredentials) -> None:
        self.key, self.clientkey = creds.username, creds.clientkey
        self._ids.clear()

    @redacts
    def pair_credentials(self, devicetype: str) -> BridgeCredentials:
        """POST /api with generateclientkey (pairing is still a v1-style call on v2 bridges)."""
        reply = self._call('POST', '/api', {'devicetype': devicetype[:40], 'generateclientkey': True}, auth=False)
        items = reply if isinstance(reply, list) else []
        errors = [i['error'] for i in items if isinstance(i, dict) and isinstance(i.get('error'), dict)]
        if errors:
            kind = 'link_button' if errors[0].get('type') == 101 else 'api_error'
            raise BridgeFault(kind, f'POST /api: bridge error {short(errors[0].get("type"), 10)}: '
                                    f'{short(errors[0].get("description", "?"), 100)}')
        try:
            success = items[0]['success']
            key, clientkey = success['username'], success.get('clientkey', '')
        except (LookupError, TypeError):
            key, clientkey = None, None
        if not isinstance(key, str) or not key or not isinstance(clientkey, str):
            raise BridgeFault('malformed', 'POST /api: no username/clientkey in the pairing reply')
        return BridgeCredentials(key, clientkey, self.bridge_id, api='v2')

    # --- requests -----------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        where = f'{method} {path}'
        headers = {'hue-application-key': self.key} if auth else {}
        reply = exchange(self.ep, method, path, body, headers, self.limits, where, self.session)
        fault = status_fault(where, reply)
        if fault is not None:
            detail = _error_text(reply, self.limits, self.secrets())
            if detail:
                fault = BridgeFault(fault.kind, f'{fault}: {detail}', fault.retry_after_s)
            raise fault
        data = json_reply(where, reply, self.limits)
        if isinstance(data, dict) and data.get('errors'):
            raise BridgeFault('api_error', f'{where}: {_error_text(reply, self.limits, self.secrets())}')
        return data

    def _data(self, path: str) -> List[dict]:
        reply = self._call('GET', path)
        data = reply.get('data') if isinstance(reply, dict) else None
        if not isinstance(data, list) or not all(isinstance(i, dict) and isinstance(i.get('id'), str) for i in data):
            raise BridgeFault('malformed', f'GET {path}: expected {{"data": [resources]}}, got {short(reply, 80, self.secrets())}')
        return data

    def _listing(self, kind: str) -> List[Resource]:
        if kind == 'light':
            return [Resource(i['id'], _v1(i), _name(i)) for i in self._data('/clip/v2/resource/light')]
        grouped = self._data('/clip/v2/resource/grouped_light')
        owners = {}
        for rtype in ('room', 'zone'):
            for i in self._data(f'/clip/v2/resource/{rtype}'):
                for svc in i.get('services') or []:
                    if isinstance(svc, dict) and svc.get('rtype') == 'grouped_light':
                        owners[str(svc.get('rid'))] = i
        out = []
        for g in grouped:
            owner = owners.get(g['id'])
            v1 = _v1(g) or (_v1(owner) if owner else '')
            is_home = isinstance(g.get('owner'), dict) and g['owner'].get('rtype') == 'bridge_home'
            name = _name(owner) if owner else ('all lights' if is_home else '')
            out.append(Resource(g['id'], '0' if is_home and not v1 else v1, name))
        return out

    @redacts
    def resolve(self, targets: Iterable[Target]) -> Dict[Target, str]:
        ids = TargetIds.resolve(self, targets)
        if self.use_events and self._events is None:
            self._events = EventStream(self.ep, self.key, self.stream_limits)
        return ids

    @redacts
    def send(self, target: Target, state: LightState) -> None:
        rtype = 'grouped_light' if target.kind == 'group' else 'light'
        self._call('PUT', f'/clip/v2/resource/{rtype}/{quote(self._ids[target], safe="")}', state.v2_body())

    def poll_events(self) -> List[str]:
        return self._events.poll() if self._events else []

    @redacts
    def shows(self, target: Target, state: LightState) -> bool:
        """Whether the bridge reports `target` in `state` (on, brightness within 1.5 %, xy within 0.01; a
        grouped_light reports on and brightness only)."""
        rtype = 'grouped_light' if target.kind == 'group' else 'light'
        items = self._data(f'/clip/v2/resource/{rtype}/{quote(self._ids[target], safe="")}')
        if not items:
            return False
        item = items[0]
        on = item.get('on') if isinstance(item.get('on'), dict) else {}
        if on.get('on') is not state.on:
            return False
        if not state.on:
            return True
        dimming = item.get('dimming') if isinstance(item.get('dimming'), dict) else {}
        try:
            if 'brightness' in dimming and abs(float(dimming['brightness']) - state.brightness_pct) > 1.5:
                return False
            xy = (item.get('color') or {}).get('xy') if isinstance(item.get('color'), dict) else None
            want = state.color_xy()
            if isinstance(xy, dict) and want is not None and max(abs(float(xy['x']) - want[0]),
                                                                 abs(float(xy['y']) - want[1])) > 0.01:
                return False
        except (TypeError, ValueError, KeyError):
            return False
        return True

    def close(self) -> None:
        self.session.close()
        if self._events is not None:
            self._events.stop()
            self._events = None


def _v1(item: Optional[dict]) -> str:
    """'/lights/3' -> '3'."""
    value = (item or {}).get('id_v1')
    return value.rsplit('/', 1)[-1] if isinstance(value, str) and value else ''


def _name(item: dict) -> str:
    meta = item.get('metadata')
    return str(meta.get('name', '')) if isinstance(meta, dict) else ''


def _error_text(reply: hue_http.Reply, limits: Limits, keys: List[str]) -> str:
    try:
        data = hue_http.parse_json(reply.body, limits.max_depth)
    except ValueError:
        return ''
    errors = data.get('errors') if isinstance(data, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return ''
    return short(errors[0].get('description', ''), 200, keys)


class EventStream:
    """GET /eventstream/clip/v2 on a daemon thread: 'connected' / 'disconnected' / 'update' notes for the
    controller's tick (polled, so no ROS or locking outside this class); reconnects with backoff.

    The backoff (retry_initial_s doubling to retry_max_s) is reset only by a stream that stayed up for
    `healthy_s`: a bridge that answers 200 and drops at once (or sends one oversized event) was reconnected every
    0.5 s on cf495d6, since every 200 reset it."""

    def __init__(self, ep: Endpoint, key: str, limits: StreamLimits, retry_initial_s: float = 0.5,
                 retry_max_s: float = 30.0, healthy_s: float = 30.0):
        self.ep, self.key, self.limits = ep, key, limits
        self.retry_initial_s, self.retry_max_s, self.healthy_s = retry_initial_s, retry_max_s, healthy_s
        self.waits: 'collections.deque[float]' = collections.deque(maxlen=50)   # recent reconnect delays
        self.connects = 0
        self.quiet_reconnects = 0
        self._notes: 'queue.Queue[str]' = queue.Queue(maxsize=1000)
        self._stop = threading.Event()
        self._close = lambda: None
        self._thread = threading.Thread(target=self._run, name='hue_eventstream', daemon=True)
        self._thread.start()

    def _note(self, text: str) -> None:
        try:
            self._notes.put_nowait(text)
        except queue.Full:
            pass

    def poll(self) -> List[str]:
        out = []
        while True:
            try:
                out.append(self._notes.get_nowait())
            except queue.Empty:
                return out

    def _run(self) -> None:
        delay = self.retry_initial_s
        up = False                 # connected, as far as the controller was told
        while not self._stop.is_set():
            reading = False
            since = time.monotonic()
            try:
                stream = hue_http.stream_lines(self.ep, '/eventstream/clip/v2', {'hue-application-key': self.key},
                                               self.limits)
                self._close = stream.close
                if stream.status != 200:
                    stream.close()
                    raise HttpError('malformed', f'event stream: HTTP {stream.status}')
                self.connects += 1
                since = time.monotonic()
                if not up:
                    up = True
                    self._note('connected')
                reading = True
                for line in stream.lines:
                    if self._stop.is_set():
                        break
                    if line.startswith('data:'):
                        try:
                            events = hue_http.parse_json(line[5:].strip().encode())
                        except ValueError:
                            continue
                        if isinstance(events, list) and any(isinstance(e, dict) and e.get('type') == 'update'
                                                            for e in events):
                            self._note('update')
            except HttpError as exc:
                if reading and exc.kind == 'timeout':
                    # a stream quiet for idle_timeout_s is not a lost bridge: reconnect at once, and tell the
                    # controller only if that fails (so an idle light is not sent its state again)
                    self.quiet_reconnects += 1
                    continue
            except (OSError, ValueError):
                pass
            if reading and time.monotonic() - since >= self.healthy_s:
                delay = self.retry_initial_s      # it had stayed up: a fresh drop, not a stream that keeps dropping
            if up:
                up = False
                self._note('disconnected')
            self.waits.append(delay)
            if self._stop.wait(delay):
                break
            delay = min(self.retry_max_s, delay * 2)

    def stop(self) -> None:
        self._stop.set()
        self._close()
        self._thread.join(timeout=2.0)
