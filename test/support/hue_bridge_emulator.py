"""A Philips Hue bridge on 127.0.0.1 for tests and demos: v1 REST over HTTP, or v1 + CLIP v2 over HTTPS with
the event stream; records every request and injects faults.

v1 (`api='v1'`, plain HTTP): `POST /api` (pairing, needs the link button), `GET /api/0/config`,
`GET /api/<user>[/config|/lights[/<id>]|/groups[/<id>]]`, `PUT /api/<user>/lights/<id>/state`,
`PUT /api/<user>/groups/<id>/action`, `PUT /api/<user>/lights/<id>` (rename). Errors are v1-style
(`[{"error": {"type": 1, "description": "unauthorized user"}}]` with HTTP 200).

v2 (`api='v2'`, HTTPS with a certificate the test made, CN = bridge id; v1 paths answer too, as on a Bridge
Pro): `POST /api` with `generateclientkey`, `GET /clip/v2/resource/{light,grouped_light,room,zone,bridge}`,
`PUT /clip/v2/resource/light/<id>` and `grouped_light/<id>` (`on`, `dimming`, `color.xy`, `dynamics`),
`GET /eventstream/clip/v2` (server-sent events of every change); 403 without a valid `hue-application-key`.

Faults (`inject`): 429 (with Retry-After), 500, 503, unauthorized, malformed, delay, drop (close without
a reply), drip (a byte every 0.2 s), endless (a chunked reply that never ends), nested (JSON 100000 deep),
huge (a 5 MB body), leak (an error text quoting the caller's key, `pad` characters in); `drop_streams()` cuts
the event streams, `drop_new_streams(n)` makes the next n answer 200 and drop at once. `readd_light` re-adds a
bulb under a new v2 id (and v1 id): the old ids answer 404 / error 3. `power_cycle_lights` puts every light
back at its power-on state. `plain_http_too=True` (v2) also answers plain HTTP on the HTTPS port, as a real
bridge does on port 80 (each `Request` records its `scheme`).

Standalone: `python test/support/hue_bridge_emulator.py --port 8080 --press-button` (v1) or `--v2 --cert-dir DIR`
(writes ca.pem for the node's ca_file) prints every request.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import queue
import secrets
import signal
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote

FAULTS = ('429', '500', '503', 'unauthorized', 'malformed', 'delay', 'drop', 'drip', 'endless', 'nested', 'huge',
          'leak', 'reply')
LINK_BUTTON_WINDOW_S = 30.0
DEFAULT_BRIDGE_ID = '001788fffe4a5b6c'
KEY_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-'


@dataclass
class Request:
    t: float                 # time.monotonic() when the request arrived
    method: str
    path: str                # with the v1 username replaced by <user>
    body: Any                # parsed JSON, or the raw text when not JSON, or None
    status: int = 200
    fault: str = ''          # injected fault, if any
    user: str = ''           # v1 username in the path, or the v2 hue-application-key header
    t_done: float = 0.0      # when the reply was written
    scheme: str = 'https'    # 'http' for a plain request (v1 emulator, or plain_http_too)

    @property
    def resource(self) -> str:
        """'/lights/1/state', '/groups/1/action' (v1 path without /api/<user>); v2 paths as they are."""
        if self.path.startswith('/clip/v2') or self.path.startswith('/eventstream'):
            return self.path
        parts = self.path.split('/')
        return '/' + '/'.join(parts[3:]) if len(parts) > 3 else ''

    @property
    def is_state(self) -> bool:
        r = self.resource
        return self.method == 'PUT' and (r.endswith(('/state', '/action')) or r.startswith('/clip/v2/resource/'))


@dataclass
class _Injection:
    kind: str
    count: int
    method: str
    delay_s: float = 0.0
    retry_after: str = ''
    reply: Optional[Tuple[int, Dict[str, str], bytes]] = None
    pad: int = 0


def _default_lights(n: int) -> Dict[str, dict]:
    names = ['Desk lamp', 'Hall', 'Ceiling'] + [f'Lamp {i}' for i in range(4, n + 1)]
    return {str(i): {'name': names[i - 1], 'type': 'Extended color light', 'modelid': 'LCT015',
                     'uniqueid': f'00:17:88:01:00:00:00:{i:02x}-0b', 'swversion': '1.88.1',
                     'state': {'on': False, 'bri': 254, 'hue': 8418, 'sat': 140, 'xy': [0.4573, 0.41],
                               'ct': 366, 'alert': 'none', 'effect': 'none', 'colormode': 'xy',
                               'reachable': True}}
            for i in range(1, n + 1)}


def v2_id(kind: str, v1_id: str) -> str:
    """Stable v2 resource id of a v1 light/group."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f'hue-emulator/{kind}/{v1_id}'))


class HueBridgeEmulator:
    """Start with `start()` (ephemeral port unless given), end with `stop()`; `address` says where.

    `api='v2'` needs `certfile`/`keyfile` (see `make_pki`) and serves HTTPS."""

    def __init__(self, port: int = 0, lights: int = 3, users: Optional[List[str]] = None, api: str = 'v1',
                 certfile: Optional[str] = None, keyfile: Optional[str] = None, bridge_id: str = DEFAULT_BRIDGE_ID,
                 light_ids: Optional[List[str]] = None, plain_http_too: bool = False):
        self.port = port
        self.api = api
        self.bridge_id = bridge_id.lower()
        self.certfile, self.keyfile = certfile, keyfile
        self.lights = _default_lights(lights)
        if light_ids:                                  # v1 ids in any format (a probe used non-numeric ones)
            self.lights = {new: v for new, v in zip(light_ids, self.lights.values())}
        first_two = list(self.lights)[:2]
        self.groups = {'1': {'name': 'Living room', 'type': 'Room', 'class': 'Living room',
                             'lights': first_two, 'action': dict(self.lights[first_two[0]]['state'])}}
        self.users = set(users or [])
        self.clientkeys: Dict[str, str] = {}
        self.requests: List[Request] = []
        self.delay_s = 0.0
        self.stream_keepalive_s = 1.0            # a comment line on the event stream this often
        self.keep_alive = False                  # True: answer on persistent connections (HTTP/1.1 keep-alive)
        self.idle_close_s = 10.0                 # with keep_alive: close a connection idle this long
        self.connections = 0                     # TCP (TLS) connections accepted
        self.plain_http_too = False              # api='v2': also answer plain HTTP on the same port (as port 80)
        self._v2_light_ids: Dict[str, str] = {}  # lights re-added under a new v2 id (readd_light)
        self._stream_drops = 0                   # event streams still to answer 200 and then drop at once
        self._button_until = 0.0
        self._injections: List[_Injection] = []
        self._lock = threading.Lock()
        self._streams: List[queue.Queue] = []
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self.plain_http_too = plain_http_too

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> 'HueBridgeEmulator':
        handler = type('Handler', (_Handler,), {'emulator': self})
        self._server = _Server(('127.0.0.1', self.port), handler)
        self._server.daemon_threads = True
        if self.api == 'v2':
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.certfile, self.keyfile)
            if self.plain_http_too:
                self._server.tls_sniff = ctx          # each connection: TLS if it starts with a handshake
            else:
                self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True,
                                                      do_handshake_on_connect=False)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={'poll_interval': 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: the bridge is unreachable until `start()` (same port) again."""
        if self._server is not None:
            self.drop_streams()
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    @property
    def address(self) -> str:
        return f'127.0.0.1:{self.port}'

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- test controls -------------------------------------------------------------------------------------
    def press_link_button(self, window_s: float = LINK_BUTTON_WINDOW_S) -> None:
        self._button_until = time.monotonic() + window_s

    def inject(self, kind: str, count: int = 1, method: str = 'PUT', delay_s: float = 2.0,
               retry_after: str = '', pad: int = 0) -> None:
        """Answer the next `count` requests of `method` ('*' = any) with fault `kind` (one of FAULTS).
        `pad`: for 'leak', that many characters of text before the quoted key (where a client cuts texts)."""
        assert kind in FAULTS, kind
        with self._lock:
            self._injections.append(_Injection(kind, count, method, delay_s, retry_after, pad=pad))

    def inject_reply(self, status: int, body: bytes, headers: Optional[Dict[str, str]] = None, method: str = '*',
                     count: int = 1) -> None:
        """Answer the next `count` requests with exactly this status, headers and body (fuzzing)."""
        with self._lock:
            self._injections.append(_Injection('reply', count, method, reply=(status, dict(headers or {}), body)))

    def light_v2_id(self, lid: str) -> str:
        return self._v2_light_ids.get(lid) or v2_id('light', lid)

    def readd_light(self, lid: str, new_lid: Optional[str] = None) -> str:
        """The bulb `lid` deleted and added again (as after a reset): a new v2 id (the old one answers 404) and,
        with `new_lid`, a new v1 id (the old one: error 3); name and state stay. Returns the new v2 id."""
        with self._lock:
            new_lid = new_lid or lid
            self.lights[new_lid] = self.lights.pop(lid)
            for g in self.groups.values():
                g['lights'] = [new_lid if i == lid else i for i in g['lights']]
            self._v2_light_ids.pop(lid, None)
            self._v2_light_ids[new_lid] = str(uuid.uuid4())
            return self._v2_light_ids[new_lid]

    def power_cycle_lights(self) -> None:
        """Every light back at its power-on state (a bridge or mains restart), without telling anyone."""
        with self._lock:
            for light in self.lights.values():
                light['state'].update(on=True, bri=254, xy=[0.4573, 0.41], colormode='xy')

    def drop_new_streams(self, count: int) -> None:
        """The next `count` event streams answer 200, send one comment and close at once."""
        with self._lock:
            self._stream_drops = count

    def drop_streams(self) -> None:
        """Cut every open event stream (the client must reconnect)."""
        with self._lock:
            streams, self._streams = self._streams, []
        for q in streams:
            q.put(None)

    def stream_count(self) -> int:
        with self._lock:
            return len(self._streams)

    def puts(self, since: float = 0.0) -> List[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == 'PUT' and r.t >= since]

    def state_puts(self, since: float = 0.0, ok_only: bool = True) -> List[Request]:
        """Light/group state commands (not renames), optionally only those answered 200 without a fault."""
        return [r for r in self.puts(since) if r.is_state and (not ok_only or (r.status == 200 and not r.fault))]

    def light_states(self) -> Dict[str, dict]:
        """name -> {on, bri, xy} of every light, API-independent (hue/sat shown as xy)."""
        from emotion_ros.core.hue.colors import hs_to_xy
        out = {}
        with self._lock:
            for light in self.lights.values():
                st = light['state']
                xy = tuple(st['xy']) if st.get('colormode') == 'xy' else hs_to_xy(st['hue'], st['sat'])
                out[light['name']] = {'on': st['on'], 'bri': st['bri'], 'xy': (round(xy[0], 3), round(xy[1], 3))}
        return out

    def log_lines(self, since: float = 0.0) -> List[str]:
        """The request log as printed by the standalone emulator (relative times)."""
        with self._lock:
            reqs = [r for r in self.requests if r.t >= since]
        t0 = reqs[0].t if reqs else 0.0
        return [f'{r.t - t0:7.3f}  {r.method:4s} {r.path}  {json.dumps(r.body) if r.body is not None else ""}'
                f'  -> {r.status}{" [" + r.fault + "]" if r.fault else ""}' for r in reqs]

    def summary(self) -> str:
        with self._lock:
            reqs = list(self.requests)
        if not reqs:
            return 'no requests'
        counts: Dict[str, int] = {}
        for r in reqs:
            key = f'{r.method} {r.resource or r.path}' + (f' [{r.fault}]' if r.fault else '') + f' -> {r.status}'
            counts[key] = counts.get(key, 0) + 1
        span = reqs[-1].t - reqs[0].t
        lines = [f'{n:5d}  {k}' for k, n in sorted(counts.items())]
        return '\n'.join([f'{len(reqs)} requests in {span:.1f} s'] + lines)

    # --- request handling ----------------------------------------------------------------------------------
    def _take_injection(self, method: str, path: str) -> Optional[_Injection]:
        if path.startswith('/eventstream'):
            return None
        with self._lock:
            for inj in self._injections:
                if inj.count > 0 and inj.method in ('*', method):
                    inj.count -= 1
                    self._injections = [i for i in self._injections if i.count > 0]
                    return inj
        return None

    def record(self, method: str, path: str, raw: bytes, key: str) -> Tuple[Request, List[str], Any]:
        try:
            body = json.loads(raw.decode('utf-8')) if raw else None
        except ValueError:
            body = raw.decode('utf-8', 'replace')
        parts = [unquote(p) for p in path.split('?')[0].split('/') if p]
        user = parts[1] if len(parts) > 1 and parts[0] == 'api' else ''
        shown = '/'.join(['', 'api', '<user>'] + parts[2:]) if user and user != '0' else path
        rec = Request(time.monotonic(), method, shown, body, user=user or key)
        with self._lock:
            self.requests.append(rec)
        return rec, parts, body

    def handle(self, rec: Request, parts: List[str], body: Any, key: str):
        """(status, body bytes, extra headers) for one request; faults are applied by the handler."""
        if parts[:2] == ['clip', 'v2'] and self.api == 'v2':
            if key not in self.users:
                return 403, _json({'errors': [{'description': 'unauthorized user'}], 'data': []}), {}
            with self._lock:
                status, reply = self._route_v2(rec.method, parts[2:], body)
            return status, _json(reply), {}
        with self._lock:
            reply = self._route(rec.method, parts, body)
        return 200, _json(reply), {}

    def _route(self, method: str, parts: List[str], body: Any) -> Any:
        if parts == ['api'] and method == 'POST':
            if not isinstance(body, dict) or 'devicetype' not in body:
                return [_error(5, '/', 'invalid/missing parameters in body')]
            if time.monotonic() > self._button_until:
                return [_error(101, '', 'link button not pressed')]
            username = ''.join(secrets.choice(KEY_CHARS) for _ in range(40))    # as real bridges make them
            self.users.add(username)
            success = {'username': username}
            if body.get('generateclientkey') and self.api == 'v2':
                success['clientkey'] = secrets.token_hex(16).upper()
                self.clientkeys[username] = success['clientkey']
            return [{'success': success}]
        if len(parts) < 2 or parts[0] != 'api':
            return [_error(4, '/' + '/'.join(parts), f'method, {method}, not available for resource')]
        user, rest = parts[1], parts[2:]
        if rest == ['config'] and method == 'GET' and user not in self.users:
            return {'name': 'Emulated Hue', 'apiversion': '1.70.0' if self.api == 'v2' else '1.16.0',
                    'swversion': '1970084010' if self.api == 'v2' else '1935144040',
                    'bridgeid': self.bridge_id.upper(), 'mac': '00:17:88:00:00:00', 'modelid': 'BSB002'}
        if user not in self.users:
            return [_error(1, '/' + '/'.join(rest), 'unauthorized user')]
        if method == 'GET':
            if not rest:
                return {'lights': self.lights, 'groups': self.groups, 'config': self._config()}
            if rest == ['config']:
                return self._config()
            if rest[0] in ('lights', 'groups'):
                table = self.lights if rest[0] == 'lights' else self.groups
                if len(rest) == 1:
                    return copy.deepcopy(table)
                if rest[1] in table:
                    return copy.deepcopy(table[rest[1]])
                return [_error(3, '/' + '/'.join(rest), f'resource, /{"/".join(rest)}, not available')]
        if method == 'PUT' and isinstance(body, dict):
            if len(rest) == 3 and rest[0] == 'lights' and rest[2] == 'state':
                reply = self._apply(self.lights.get(rest[1], {}).get('state'), rest, body)
                self._event('light', rest[1])
                return reply
            if len(rest) == 3 and rest[0] == 'groups' and rest[2] == 'action':
                group = ({'lights': list(self.lights), 'action': {}} if rest[1] == '0'
                         else self.groups.get(rest[1]))
                reply = self._apply(group.get('action') if group else None, rest, body)
                for lid in (group or {}).get('lights', []):
                    self._apply(self.lights[lid]['state'], rest, body)
                    self._event('light', lid)
                return reply
            if len(rest) == 2 and rest[0] == 'lights' and rest[1] in self.lights and 'name' in body:
                self.lights[rest[1]]['name'] = str(body['name'])
                return [{'success': {f'/lights/{rest[1]}/name': body['name']}}]
        return [_error(4, '/' + '/'.join(rest), f'method, {method}, not available for resource, /{"/".join(rest)}')]

    # --- v2 ----------------------------------------------------------------------------------------------
    def _v2_light(self, lid: str, light: dict) -> dict:
        st = light['state']
        return {'id': self.light_v2_id(lid), 'id_v1': f'/lights/{lid}', 'type': 'light',
                'owner': {'rid': v2_id('device', lid), 'rtype': 'device'},
                'metadata': {'name': light['name'], 'archetype': 'sultan_bulb'},
                'on': {'on': st['on']}, 'dimming': {'brightness': round(st['bri'] / 2.54, 2)},
                'color': {'xy': {'x': st['xy'][0], 'y': st['xy'][1]}},
                'dynamics': {'status': 'none', 'speed': 0.0}}

    def _v2_groups(self) -> Tuple[List[dict], List[dict]]:
        grouped, rooms = [], []
        for gid, g in self.groups.items():
            gl = v2_id('grouped_light', gid)
            grouped.append({'id': gl, 'id_v1': f'/groups/{gid}', 'type': 'grouped_light',
                            'owner': {'rid': v2_id('room', gid), 'rtype': 'room'}, 'on': {'on': g['action'].get('on')}})
            rooms.append({'id': v2_id('room', gid), 'id_v1': f'/groups/{gid}', 'type': 'room',
                          'metadata': {'name': g['name'], 'archetype': 'living_room'},
                          'children': [{'rid': v2_id('device', lid), 'rtype': 'device'} for lid in g['lights']],
                          'services': [{'rid': gl, 'rtype': 'grouped_light'}]})
        grouped.append({'id': v2_id('grouped_light', '0'), 'id_v1': '/groups/0', 'type': 'grouped_light',
                        'owner': {'rid': v2_id('bridge_home', '0'), 'rtype': 'bridge_home'}, 'on': {'on': False}})
        return grouped, rooms

    def _route_v2(self, method: str, rest: List[str], body: Any) -> Tuple[int, Any]:
        if len(rest) < 2 or rest[0] != 'resource':
            return 404, {'errors': [{'description': 'Not Found'}], 'data': []}
        kind, rid = rest[1], (rest[2] if len(rest) > 2 else None)
        lights = {self.light_v2_id(lid): lid for lid in self.lights}
        grouped, rooms = self._v2_groups()
        if method == 'GET':
            if kind == 'light':
                items = [self._v2_light(lid, light) for lid, light in self.lights.items()]
            elif kind == 'grouped_light':
                items = grouped
            elif kind == 'room':
                items = rooms
            elif kind == 'zone':
                items = []
            elif kind == 'bridge':
                items = [{'id': v2_id('bridge', '0'), 'bridge_id': self.bridge_id, 'type': 'bridge',
                          'time_zone': {'time_zone': 'Europe/Amsterdam'}}]
            else:
                return 404, {'errors': [{'description': f'Invalid resource type {kind}'}], 'data': []}
            if rid is not None:
                items = [i for i in items if i['id'] == rid]
                if not items:
                    return 404, {'errors': [{'description': 'Not Found'}], 'data': []}
            return 200, {'errors': [], 'data': items}
        if method == 'PUT' and isinstance(body, dict) and rid is not None:
            if kind == 'light' and rid in lights:
                targets = [lights[rid]]
            elif kind == 'grouped_light' and rid in {g['id'] for g in grouped}:
                gid = next(g['id_v1'].rsplit('/', 1)[1] for g in grouped if g['id'] == rid)
                targets = list(self.lights) if gid == '0' else list(self.groups[gid]['lights'])
                if gid != '0':
                    self._apply_v2(self.groups[gid]['action'], body)
            else:
                return 404, {'errors': [{'description': 'Not Found'}], 'data': []}
            bad = set(body) - {'on', 'dimming', 'color', 'dynamics', 'color_temperature', 'alert'}
            if bad:
                return 400, {'errors': [{'description': f'body contains invalid properties: {sorted(bad)}'}],
                             'data': []}
            for lid in targets:
                self._apply_v2(self.lights[lid]['state'], body)
                self._event('light', lid)
            return 200, {'errors': [], 'data': [{'rid': rid, 'rtype': kind}]}
        return 405, {'errors': [{'description': 'Method Not Allowed'}], 'data': []}

    @staticmethod
    def _apply_v2(state: dict, body: dict) -> None:
        if isinstance(body.get('on'), dict):
            state['on'] = bool(body['on'].get('on'))
        if isinstance(body.get('dimming'), dict):
            state['bri'] = max(1, min(254, int(round(float(body['dimming']['brightness']) * 2.54))))
        if isinstance(body.get('color'), dict):
            xy = body['color']['xy']
            state['xy'], state['colormode'] = [xy['x'], xy['y']], 'xy'

    def _event(self, kind: str, lid: str) -> None:
        """Queue a v2 update event for every open event stream (called with the lock held)."""
        if self.api != 'v2' or not self._streams:
            return
        st = self.lights[lid]['state']
        event = [{'creationtime': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
                  'id': str(uuid.uuid4()), 'type': 'update',
                  'data': [{'id': self.light_v2_id(lid), 'id_v1': f'/lights/{lid}', 'type': kind,
                            'on': {'on': st['on']}, 'dimming': {'brightness': round(st['bri'] / 2.54, 2)}}]}]
        for q in self._streams:
            q.put(f'id: {int(time.time())}:0\ndata: {json.dumps(event)}\n\n'.encode())

    def open_stream(self) -> queue.Queue:
        q = queue.Queue()
        with self._lock:
            self._streams.append(q)
        return q

    def close_stream(self, q: queue.Queue) -> None:
        with self._lock:
            if q in self._streams:
                self._streams.remove(q)

    @staticmethod
    def _apply(state: Optional[dict], rest: List[str], body: dict) -> list:
        address = '/' + '/'.join(rest)
        if state is None:
            return [_error(3, address, f'resource, {address}, not available')]
        out = []
        for key, value in body.items():
            if key not in ('on', 'bri', 'hue', 'sat', 'xy', 'ct', 'alert', 'effect', 'transitiontime'):
                out.append(_error(6, f'{address}/{key}', f'parameter, {key}, not available'))
                continue
            if key != 'transitiontime':
                state[key] = value
                if key in ('xy', 'hue', 'sat', 'ct'):
                    state['colormode'] = 'xy' if key == 'xy' else ('ct' if key == 'ct' else 'hs')
            out.append({'success': {f'{address}/{key}': value}})
        return out

    def _config(self) -> dict:
        return {'name': 'Emulated Hue', 'apiversion': '1.16.0', 'swversion': '1935144040', 'ipaddress': '127.0.0.1',
                'linkbutton': time.monotonic() <= self._button_until, 'bridgeid': self.bridge_id.upper(),
                'whitelist': {u: {'name': 'app'} for u in self.users}}


def _error(kind: int, address: str, description: str) -> dict:
    return {'error': {'type': kind, 'address': address, 'description': description}}


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


class _Server(ThreadingHTTPServer):
    tls_sniff: Optional[ssl.SSLContext] = None

    def handle_error(self, request, client_address):
        pass                                             # clients that hang up or fail the TLS handshake


class _Handler(BaseHTTPRequestHandler):
    emulator: HueBridgeEmulator = None
    protocol_version = 'HTTP/1.1'
    timeout = 10
    disable_nagle_algorithm = True               # headers and body are two writes: no 40 ms delayed-ACK stall

    def setup(self):
        with self.emulator._lock:
            self.emulator.connections += 1
        self.timeout = self.emulator.idle_close_s if self.emulator.keep_alive else 10
        ctx = self.server.tls_sniff
        if ctx is not None:
            self.request.settimeout(5)
            if self.request.recv(1, socket.MSG_PEEK) == b'\x16':       # a TLS ClientHello
                self.request = ctx.wrap_socket(self.request, server_side=True, do_handshake_on_connect=False)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(5)
            self.request.do_handshake()
        super().setup()

    def _send(self, status: int, body: bytes, ctype: str = 'application/json', extra: Optional[dict] = None,
              length: bool = True) -> None:
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if length:
            self.send_header('Content-Length', str(len(body)))
        keep = self.emulator.keep_alive and length and status < 400
        if not keep:
            self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = not keep

    def _serve(self) -> None:
        emu = self.emulator
        length = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(min(length, 1 << 20)) if length else b''
        key = self.headers.get('hue-application-key', '')
        rec, parts, body = emu.record(self.command, self.path, raw, key)
        rec.scheme = 'https' if isinstance(self.request, ssl.SSLSocket) else 'http'
        try:
            if parts[:3] == ['eventstream', 'clip', 'v2'] and emu.api == 'v2':
                self._event_stream(rec, key)
                return
            inj = emu._take_injection(self.command, self.path)
            if inj:
                rec.fault = inj.kind
            delay = emu.delay_s + (inj.delay_s if inj and inj.kind == 'delay' else 0.0)
            if delay:
                time.sleep(delay)
            if inj and self._fault(inj, rec, parts):
                return
            status, reply, extra = emu.handle(rec, parts, body, key)
            rec.status = status
            self._send(status, reply, extra=extra)
        except OSError:
            rec.fault = rec.fault or 'client_gone'
        finally:
            rec.t_done = time.monotonic()

    def _fault(self, inj: _Injection, rec: Request, parts: List[str]) -> bool:
        kind = inj.kind
        if kind in ('429', '500', '503'):
            rec.status = int(kind)
            extra = {'Retry-After': inj.retry_after} if inj.retry_after else {}
            self._send(rec.status, b'<html>busy</html>' if kind != '500' else b'<html>Internal Server Error</html>',
                       'text/html', extra)
            return True
        if kind == 'malformed':
            self._send(200, b'[{"success": {"/lights/1/st')
            return True
        if kind == 'unauthorized':
            if parts[:2] == ['clip', 'v2']:
                rec.status = 403
                self._send(403, _json({'errors': [{'description': 'unauthorized user'}], 'data': []}))
            else:
                self._send(200, _json([_error(1, '/' + '/'.join(parts[2:]), 'unauthorized user')]))
            return True
        if kind == 'drop':
            rec.status = 0
            self.close_connection = True
            self.connection.close()
            return True
        if kind == 'drip':                                # headers and body a byte at a time, 0.2 s apart
            data = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n' + b'[' * 40
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(0.2)
            self.close_connection = True
            return True
        if kind == 'endless':                             # a chunked reply that never ends
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Transfer-Encoding', 'chunked')
            self.end_headers()
            chunk = b'[' * 4096
            t_end = time.monotonic() + 30.0
            while time.monotonic() < t_end:
                self.wfile.write(b'%x\r\n%s\r\n' % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(0.001)
            self.close_connection = True
            return True
        if kind == 'reply':
            status, headers, data = inj.reply
            headers = dict(headers)
            rec.status = status
            self._send(status, data, headers.pop('Content-Type', 'application/json'), headers)
            return True
        if kind == 'leak':                                # an error text that quotes the key back
            text = 'value ' * (inj.pad // 6) + '.' * (inj.pad % 6) + f'invalid value, {rec.user}, for parameter'
            if parts[:2] == ['clip', 'v2']:
                rec.status = 400
                self._send(400, _json({'errors': [{'description': text}], 'data': []}))
            else:
                self._send(200, _json([_error(7, '/' + '/'.join(parts[2:]), text)]))
            return True
        if kind == 'nested':
            self._send(200, b'[' * 100000 + b']' * 100000)
            return True
        if kind == 'huge':
            self._send(200, b'[' + b'{"success": {}},' * 300000 + b'{"success": {}}]')
            return True
        return False

    def _event_stream(self, rec: Request, key: str) -> None:
        emu = self.emulator
        if key not in emu.users:
            rec.status = 403
            self._send(403, _json({'errors': [{'description': 'unauthorized user'}], 'data': []}))
            return
        self.send_response(200)
        self.send_header('Content-Type', 'text/event-stream')
        self.send_header('Cache-Control', 'no-cache')
        self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.write(b': hi\n\n')
        self.wfile.flush()
        with emu._lock:
            drop, emu._stream_drops = emu._stream_drops > 0, max(0, emu._stream_drops - 1)
        if drop:
            rec.fault = 'stream_drop'
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        q = emu.open_stream()
        try:
            while True:
                try:
                    item = q.get(timeout=emu.stream_keepalive_s)
                except queue.Empty:
                    item = b': keep-alive\n\n'
                if item is None:
                    break
                self.wfile.write(item)
                self.wfile.flush()
        finally:
            emu.close_stream(q)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    do_GET = do_PUT = do_POST = do_DELETE = _serve

    def log_message(self, fmt, *args):
        pass


def make_pki(folder: Path, bridge_id: str = DEFAULT_BRIDGE_ID, name: str = 'test') -> Dict[str, Path]:
    """A CA and a bridge certificate it signed (CN = bridge id, as on real bridges), as PEM files in `folder`:
    {'ca': ..., 'cert': ..., 'key': ...}. Made with `cryptography`; the CA is for this test only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, 'NL'),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, f'emotion_ros {name} CA'),
                         x509.NameAttribute(NameOID.COMMON_NAME, f'root-bridge-{name}')])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, 'NL'),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'Philips Hue'),
                         x509.NameAttribute(NameOID.COMMON_NAME, bridge_id.lower())])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(int(bridge_id, 16) if all(c in '0123456789abcdefABCDEF' for c in bridge_id)
                           else x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {'ca': folder / f'{name}_ca.pem', 'cert': folder / f'{name}_bridge.pem', 'key': folder / f'{name}_key.pem'}
    paths['ca'].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths['cert'].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths['key'].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--port', type=int, default=8080, help='0 = any free port (printed)')
    parser.add_argument('--lights', type=int, default=3)
    parser.add_argument('--press-button', action='store_true', help='keep the link button pressed (pairing works)')
    parser.add_argument('--v2', action='store_true', help='HTTPS with v1 + CLIP v2 and the event stream')
    parser.add_argument('--cert-dir', default='/tmp/hue-emulator-pki', help='--v2: where the test CA and the '
                        'bridge certificate are written (give the node ca_file:=<dir>/test_ca.pem)')
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)     # also when started in the background
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    kw = {}
    if args.v2:
        pki = make_pki(Path(args.cert_dir))
        kw = dict(api='v2', certfile=str(pki['cert']), keyfile=str(pki['key']))
    emu = HueBridgeEmulator(args.port, args.lights, **kw).start()
    if args.press_button:
        emu.press_link_button()                                  # before the banner: a client may pair at once
    scheme = 'https' if args.v2 else 'http'
    print(f'Hue bridge emulator (API {emu.api}) on {scheme}://{emu.address}/  bridge id {emu.bridge_id}'
          + (f', CA {kw and pki["ca"]}' if args.v2 else '') + '  (lights: '
          + ', '.join(f'{k} "{v["name"]}"' for k, v in emu.lights.items()) + ')', flush=True)
    seen = 0

    def print_new():
        nonlocal seen
        lines = emu.log_lines()
        for line in lines[seen:]:
            print(line, flush=True)
        seen = len(lines)

    try:
        while True:
            if args.press_button:
                emu.press_link_button()
            time.sleep(0.2)
            print_new()
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
        print_new()
        print(emu.summary(), flush=True)


if __name__ == '__main__':
    main()
