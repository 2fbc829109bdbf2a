"""A Philips Hue bridge (v1 REST API) on 127.0.0.1, for tests and demos: records every request, injects faults.

Implements what phue and hue_actuator_node call: `POST /api` (pairing, needs the link button),
`GET /api/<user>[/config|/lights[/<id>]|/groups[/<id>]]`, `PUT /api/<user>/lights/<id>/state`,
`PUT /api/<user>/groups/<id>/action`, `PUT /api/<user>/lights/<id>` (rename). Errors are v1-style
(`[{"error": {"type": 1, "description": "unauthorized user"}}]` with HTTP 200), except injected
HTTP 429/500, malformed bodies and delays.

Standalone: `python test/hue_bridge_emulator.py --port 8080 --press-button` prints every request.
"""
from __future__ import annotations

import argparse
import copy
import json
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

FAULTS = ('429', '500', 'unauthorized', 'malformed', 'delay')
LINK_BUTTON_WINDOW_S = 30.0


@dataclass
class Request:
    t: float                 # time.monotonic() when the request arrived
    method: str
    path: str                # with the username replaced by <user>
    body: Any                # parsed JSON, or the raw text when not JSON, or None
    status: int = 200
    fault: str = ''          # injected fault, if any
    user: str = ''

    @property
    def resource(self) -> str:
        """'/lights/1/state', '/groups/1/action', ... (path without /api/<user>)."""
        parts = self.path.split('/')
        return '/' + '/'.join(parts[3:]) if len(parts) > 3 else ''


@dataclass
class _Injection:
    kind: str
    count: int
    method: str
    delay_s: float = 0.0


def _default_lights(n: int) -> Dict[str, dict]:
    names = ['Desk lamp', 'Hall', 'Ceiling'] + [f'Lamp {i}' for i in range(4, n + 1)]
    return {str(i): {'name': names[i - 1], 'type': 'Extended color light', 'modelid': 'LCT015',
                     'uniqueid': f'00:17:88:01:00:00:00:{i:02x}-0b', 'swversion': '1.88.1',
                     'state': {'on': False, 'bri': 254, 'hue': 8418, 'sat': 140, 'xy': [0.4573, 0.41],
                               'ct': 366, 'alert': 'none', 'effect': 'none', 'colormode': 'xy',
                               'reachable': True}}
            for i in range(1, n + 1)}


class HueBridgeEmulator:
    """Start with `start()` (ephemeral port unless given), end with `stop()`; `url`/`address` say where."""

    def __init__(self, port: int = 0, lights: int = 3, users: Optional[List[str]] = None):
        self.port = port
        self.lights = _default_lights(lights)
        self.groups = {'1': {'name': 'Living room', 'type': 'Room', 'class': 'Living room',
                             'lights': sorted(self.lights)[:2], 'action': dict(self.lights['1']['state'])}}
        self.users = set(users or [])
        self.requests: List[Request] = []
        self.delay_s = 0.0
        self._button_until = 0.0
        self._injections: List[_Injection] = []
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> 'HueBridgeEmulator':
        handler = type('Handler', (_Handler,), {'emulator': self})
        self._server = ThreadingHTTPServer(('127.0.0.1', self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={'poll_interval': 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: the bridge is unreachable until `start()` (same port) again."""
        if self._server is not None:
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

    def inject(self, kind: str, count: int = 1, method: str = 'PUT', delay_s: float = 2.0) -> None:
        """Answer the next `count` requests of `method` ('*' = any) with fault `kind` (one of FAULTS)."""
        assert kind in FAULTS, kind
        with self._lock:
            self._injections.append(_Injection(kind, count, method, delay_s))

    def puts(self, since: float = 0.0) -> List[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == 'PUT' and r.t >= since]

    def state_puts(self, since: float = 0.0, ok_only: bool = True) -> List[Request]:
        """Light/group state commands (not renames), optionally only those answered 200 without a fault."""
        return [r for r in self.puts(since) if r.resource.endswith(('/state', '/action'))
                and (not ok_only or (r.status == 200 and not r.fault))]

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
    def _take_injection(self, method: str) -> Optional[_Injection]:
        with self._lock:
            for inj in self._injections:
                if inj.count > 0 and inj.method in ('*', method):
                    inj.count -= 1
                    self._injections = [i for i in self._injections if i.count > 0]
                    return inj
        return None

    def handle(self, method: str, path: str, raw: bytes):
        """(status, body bytes, Request) for one request; the handler sends it."""
        now = time.monotonic()
        try:
            body = json.loads(raw.decode('utf-8')) if raw else None
        except ValueError:
            body = raw.decode('utf-8', 'replace')
        parts = [p for p in path.split('?')[0].split('/') if p]
        user = parts[1] if len(parts) > 1 and parts[0] == 'api' else ''
        shown = '/'.join(['', 'api', '<user>'] + parts[2:]) if user else path
        rec = Request(now, method, shown, body, user=user)
        with self._lock:
            self.requests.append(rec)
        inj = self._take_injection(method)
        if inj:
            rec.fault = inj.kind
        delay = self.delay_s + (inj.delay_s if inj and inj.kind == 'delay' else 0.0)
        if delay:
            time.sleep(delay)
        if inj:
            if inj.kind == '429':
                rec.status = 429
                return 429, b'Too Many Requests', rec
            if inj.kind == '500':
                rec.status = 500
                return 500, b'<html>Internal Server Error</html>', rec
            if inj.kind == 'malformed':
                return 200, b'[{"success": {"/lights/1/st', rec
            if inj.kind == 'unauthorized':
                return 200, _json([_error(1, '/' + '/'.join(parts[2:]), 'unauthorized user')]), rec
        with self._lock:
            reply = self._route(method, parts, body)
        return 200, _json(reply), rec

    def _route(self, method: str, parts: List[str], body: Any) -> Any:
        if parts == ['api'] and method == 'POST':
            if not isinstance(body, dict) or 'devicetype' not in body:
                return [_error(5, '/', 'invalid/missing parameters in body')]
            if time.monotonic() > self._button_until:
                return [_error(101, '', 'link button not pressed')]
            username = secrets.token_hex(20)
            self.users.add(username)
            return [{'success': {'username': username}}]
        if len(parts) < 2 or parts[0] != 'api':
            return [_error(4, '/' + '/'.join(parts), 'method, GET, not available for resource')]
        user, rest = parts[1], parts[2:]
        if rest == ['config'] and method == 'GET' and user not in self.users:
            return {'name': 'Emulated Hue', 'apiversion': '1.16.0', 'swversion': '1935144040',
                    'bridgeid': '001788FFFE000000', 'mac': '00:17:88:00:00:00'}
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
                return self._apply(self.lights.get(rest[1], {}).get('state'), rest, body)
            if len(rest) == 3 and rest[0] == 'groups' and rest[2] == 'action':
                group = ({'lights': list(self.lights), 'action': {}} if rest[1] == '0'
                         else self.groups.get(rest[1]))
                reply = self._apply(group.get('action') if group else None, rest, body)
                for lid in (group or {}).get('lights', []):
                    self._apply(self.lights[lid]['state'], rest, body)
                return reply
            if len(rest) == 2 and rest[0] == 'lights' and rest[1] in self.lights and 'name' in body:
                self.lights[rest[1]]['name'] = str(body['name'])
                return [{'success': {f'/lights/{rest[1]}/name': body['name']}}]
        return [_error(4, '/' + '/'.join(rest), f'method, {method}, not available for resource, /{"/".join(rest)}')]

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
                'linkbutton': time.monotonic() <= self._button_until, 'bridgeid': '001788FFFE000000',
                'whitelist': {u: {'name': 'app'} for u in self.users}}


def _error(kind: int, address: str, description: str) -> dict:
    return {'error': {'type': kind, 'address': address, 'description': description}}


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


class _Handler(BaseHTTPRequestHandler):
    emulator: HueBridgeEmulator = None
    protocol_version = 'HTTP/1.0'

    def _serve(self) -> None:
        length = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(length) if length else b''
        status, body, rec = self.emulator.handle(self.command, self.path, raw)
        try:
            self.send_response(status)
            self.send_header('Content-Type', 'application/json' if status == 200 else 'text/plain')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            rec.fault = rec.fault or 'client_gone'

    do_GET = do_PUT = do_POST = do_DELETE = _serve

    def log_message(self, fmt, *args):
        pass


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--port', type=int, default=8080, help='0 = any free port (printed)')
    parser.add_argument('--lights', type=int, default=3)
    parser.add_argument('--press-button', action='store_true', help='keep the link button pressed (pairing works)')
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)     # also when started in the background
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    emu = HueBridgeEmulator(args.port, args.lights).start()
    print(f'Hue bridge emulator on http://{emu.address}/api  (lights: '
          + ', '.join(f'{k} "{v["name"]}"' for k, v in emu.lights.items()) + ')', flush=True)
    seen = 0

    def print_new():
        nonlocal seen
        for r in emu.requests[seen:]:
            print(f'{r.t:12.3f}  {r.method:4s} {r.path}  {json.dumps(r.body) if r.body is not None else ""}'
                  f'  -> {r.status}{" " + r.fault if r.fault else ""}', flush=True)
            seen += 1

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
