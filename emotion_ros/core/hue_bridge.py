"""Hue v1 bridge client on top of `phue`: short timeouts, typed faults, no secrets in logs or files.

`phue.Bridge` as shipped waits 10 s per request, ignores HTTP status codes, logs the username and writes
it to ~/.python_hue; the subclass below keeps phue's API calls and replaces the transport and connect.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import socket
from typing import Any, Dict, Iterable, Optional

import phue

from emotion_ros.core.hue_policy import Target

logging.getLogger('phue').setLevel(logging.WARNING)

UNAUTHORIZED = 1
LINK_BUTTON_NOT_PRESSED = 101


class BridgeFault(Exception):
    """A request failed. `kind`: unreachable, timeout, rate_limited, server_error, http_error, unauthorized,
    link_button, api_error, malformed or not_found. Messages never contain the username."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class _Bridge(phue.Bridge):
    def __init__(self, host: str, username: str, timeout_s: float):
        self.timeout_s = timeout_s
        super().__init__(ip=host, username=username, config_file_path=os.devnull)

    def connect(self):
        """phue's connect logs the username and may pair on its own; pairing is explicit here."""

    def _where(self, mode: str, address: str) -> str:
        if self.username:
            address = address.replace(self.username, '<username>')
        return f'{mode} {address}'

    def request(self, mode='GET', address=None, data=None):
        where = self._where(mode, address)
        conn = http.client.HTTPConnection(self.ip, timeout=self.timeout_s)
        try:
            body = None if data is None else json.dumps(data)
            conn.request(mode, address, body, {'Content-Type': 'application/json'} if body else {})
            resp = conn.getresponse()
            raw = resp.read()
        except (socket.timeout, TimeoutError):
            raise BridgeFault('timeout', f'{where}: no answer from the bridge within {self.timeout_s:g} s') from None
        except http.client.HTTPException as exc:
            raise BridgeFault('malformed', f'{where}: broken HTTP reply ({type(exc).__name__})') from None
        except OSError as exc:
            raise BridgeFault('unreachable', f'{where}: bridge {self.ip} unreachable '
                                             f'({exc.strerror or type(exc).__name__})') from None
        finally:
            conn.close()
        if resp.status == 429:
            raise BridgeFault('rate_limited', f'{where}: HTTP 429 (bridge overloaded)')
        if resp.status >= 500:
            raise BridgeFault('server_error', f'{where}: HTTP {resp.status}')
        if resp.status != 200:
            raise BridgeFault('http_error', f'{where}: HTTP {resp.status}')
        try:
            reply = json.loads(raw.decode('utf-8'))
        except ValueError:
            raise BridgeFault('malformed', f'{where}: reply is not JSON ({len(raw)} bytes)') from None
        _raise_api_errors(where, reply)
        if mode in ('PUT', 'POST') and not (isinstance(reply, list) and reply
                                           and all(isinstance(i, dict) and 'success' in i for i in reply)):
            raise BridgeFault('malformed', f'{where}: expected a list of "success" items, got {_short(reply)}')
        return reply


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + '...'


def _raise_api_errors(where: str, reply: Any) -> None:
    if not isinstance(reply, list):
        return
    errors = [i['error'] for i in reply if isinstance(i, dict) and isinstance(i.get('error'), dict)]
    if not errors:
        return
    err = errors[0]
    kind = {UNAUTHORIZED: 'unauthorized', LINK_BUTTON_NOT_PRESSED: 'link_button'}.get(err.get('type'), 'api_error')
    raise BridgeFault(kind, f'{where}: bridge error {err.get("type")}: {err.get("description", "?")}')


class HueClient:
    """The calls the actuator needs: pair, resolve targets to ids, send one state."""

    def __init__(self, host: str, username: Optional[str] = None, timeout_s: float = 1.0):
        self.host = host
        self._bridge = _Bridge(host, username or '', timeout_s)
        self._ids: Dict[Target, int] = {}

    @property
    def paired(self) -> bool:
        return bool(self._bridge.username)

    def set_username(self, username: str) -> None:
        self._bridge.username = username
        self._ids.clear()

    def pair(self, devicetype: str) -> str:
        """One pairing attempt: the new username, or BridgeFault('link_button') until the button is pressed."""
        reply = self._bridge.request('POST', '/api', {'devicetype': devicetype[:40]})
        try:
            username = reply[0]['success']['username']
        except (LookupError, TypeError):
            username = None
        if not isinstance(username, str) or not username:
            raise BridgeFault('malformed', 'POST /api: no username in the pairing reply')
        return username

    def resolve(self, targets: Iterable[Target]) -> Dict[Target, int]:
        """Map configured ids/names to bridge ids (one GET per kind); BridgeFault('not_found') for unknown ones."""
        targets = list(targets)
        ids: Dict[Target, int] = {}
        for kind, listing in (('light', '/lights'), ('group', '/groups')):
            wanted = [t for t in targets if t.kind == kind]
            if not wanted:
                continue
            found = self._bridge.request('GET', f'/api/{self._bridge.username}{listing}')
            if not isinstance(found, dict) or not all(isinstance(v, dict) for v in found.values()):
                raise BridgeFault('malformed', f'GET {listing}: expected an object of {kind}s, got {_short(found)}')
            by_name = {str(v.get('name')): k for k, v in found.items()}
            for t in wanted:
                if t.kind == 'group' and t.ref == '0':
                    ids[t] = 0
                elif t.ref in found:
                    ids[t] = int(t.ref)
                elif t.ref in by_name:
                    ids[t] = int(by_name[t.ref])
                else:
                    known = ', '.join(f'{k} "{v.get("name")}"' for k, v in sorted(found.items())) or 'none'
                    raise BridgeFault('not_found', f'{t} is not on the bridge (it has {kind}s: {known})')
        self._ids = ids
        return ids

    @property
    def resolved(self) -> bool:
        return bool(self._ids)

    def forget_ids(self) -> None:
        self._ids.clear()

    def send(self, target: Target, command: Dict[str, Any]) -> None:
        bridge_id = self._ids[target]
        if target.kind == 'group':
            self._bridge.set_group(bridge_id, dict(command))
        else:
            self._bridge.set_light(bridge_id, dict(command))


class Backoff:
    """Exponential backoff between attempts after faults: initial, x2 per failure, capped."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0):
        self.initial_s, self.max_s = initial_s, max_s
        self.failures = 0
        self.ready_at = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.ready_at

    def failed(self, now: float) -> float:
        delay = min(self.max_s, self.initial_s * (2 ** self.failures))
        self.failures += 1
        self.ready_at = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.ready_at = 0, 0.0
