"""Hue bridge clients: what both APIs share (faults, target lookup, backoff, detection) and the v1 client on phue.

`phue.Bridge` as shipped waits 10 s per request, ignores HTTP status codes, logs the username, writes it to
~/.python_hue and turns light names into ids with an extra GET; the subclass below keeps phue as the v1
client but sends every request through `hue_http` (one deadline per request, capped sizes and nesting)
and addresses lights by the id the bridge listed, whatever its format.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import quote

import phue

from emotion_ros.core.hue.bridge import http as hue_http
from emotion_ros.core.hue.colors import LightState
from emotion_ros.core.hue.credentials import BridgeCredentials, redact, redacted
from emotion_ros.core.hue.bridge.http import Endpoint, HttpError, Limits
from emotion_ros.core.hue.policy import Target
from emotion_ros.core.hue.bridge.tls import TlsPolicy

logging.getLogger('phue').setLevel(logging.WARNING)

UNAUTHORIZED = 1
NOT_AVAILABLE = 3
LINK_BUTTON_NOT_PRESSED = 101
MAX_TEXT = 200


class BridgeFault(Exception):
    """A request failed. `kind`: unreachable, timeout, rate_limited, server_error, http_error, unauthorized,
    link_button, api_error, malformed, too_large, tls, certificate or not_found. `retry_after_s`: what the
    bridge asked for (429/503 Retry-After). Messages never contain the key."""

    def __init__(self, kind: str, message: str, retry_after_s: Optional[float] = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s


def short(value: Any, limit: int = 80, secrets: Iterable[str] = ()) -> str:
    """A bridge-supplied value for a log line: keys redacted first, then one printable, capped line
    (`credentials.redacted`)."""
    return redacted(value, secrets, limit)


def split_address(bridge: str) -> Tuple[str, Optional[int]]:
    host, sep, port = bridge.rpartition(':') if bridge.count(':') == 1 else (bridge, '', '')
    return (host, int(port)) if sep else (bridge, None)


@dataclass(frozen=True)
class Resource:
    """A light or group on the bridge: the id to address it by, its v1 id (v1: the same) and its name."""
    id: str
    v1_id: str
    name: str


def match_targets(targets: Iterable[Target], kind: str, found: Sequence[Resource],
                  known_names: Optional[Dict[Target, str]] = None) -> Dict[Target, Resource]:
    """Each target's resource: by id, v1 id or (case-insensitive) name; failing those, by the name the
    target's resource had when last matched (`known_names`: the same bulb re-added under new ids);
    BridgeFault('not_found') otherwise."""
    out = {}
    for t in targets:
        ref = t.ref.strip()
        hits = [r for r in found if ref == r.id] or [r for r in found if ref == r.v1_id] \
            or [r for r in found if ref.casefold() == r.name.strip().casefold()]
        before = (known_names or {}).get(t, '').strip().casefold()
        if not hits and before:
            hits = [r for r in found if before == r.name.strip().casefold()]
        if len(hits) != 1:
            known = ', '.join(f'{short(r.v1_id or r.id, 40)} "{short(r.name, 40)}"' for r in found[:20]) or 'none'
            why = 'matches several' if hits else 'is not on the bridge'
            raise BridgeFault('not_found', f'{kind} {short(ref, 60)} {why} (it has {kind}s: {known})')
        out[t] = hits[0]
    return out


class Backoff:
    """Exponential backoff between attempts after faults: initial, x2 per failure, capped; a Retry-After
    from the bridge lengthens the wait (never shortens it)."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0):
        self.initial_s, self.max_s = initial_s, max_s
        self.failures = 0
        self.ready_at = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.ready_at

    def failed(self, now: float, retry_after_s: Optional[float] = None) -> float:
        delay = min(self.max_s, self.initial_s * (2 ** self.failures))
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        self.failures += 1
        self.ready_at = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.ready_at = 0, 0.0


def redacts(method):
    """Client method decorator: a BridgeFault leaving it has the client's keys (and key-like text) redacted,
    whatever part of a bridge reply its message quotes."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except BridgeFault as fault:
            raise BridgeFault(fault.kind, redact(str(fault), self.secrets()), fault.retry_after_s) from None
    return wrapper


def http_fault(where: str, exc: HttpError) -> BridgeFault:
    return BridgeFault(exc.kind, f'{where}: {exc}')


def status_fault(where: str, reply: hue_http.Reply) -> Optional[BridgeFault]:
    """The fault an HTTP status means, or None for 2xx."""
    s = reply.status
    if 200 <= s < 300:
        return None
    if s == 429:
        return BridgeFault('rate_limited', f'{where}: HTTP 429 (bridge overloaded)', reply.retry_after_s)
    if s in (401, 403):
        return BridgeFault('unauthorized', f'{where}: HTTP {s} (the bridge rejects the key)')
    if s == 404:
        return BridgeFault('not_found', f'{where}: HTTP 404')
    if s >= 500:
        return BridgeFault('server_error', f'{where}: HTTP {s}', reply.retry_after_s)
    return BridgeFault('http_error', f'{where}: HTTP {s}')


def exchange(ep: Endpoint, method: str, path: str, body: Any, headers: Dict[str, str], limits: Limits,
             where: str, session: Optional[hue_http.Session] = None) -> hue_http.Reply:
    """One bounded request; a transport failure as a BridgeFault naming `where`."""
    try:
        reply = hue_http.request(ep, method, path, body, headers, limits, session)
    except HttpError as exc:
        if exc.kind == 'unreachable':
            raise BridgeFault('unreachable', f'{where}: bridge {ep.host}:{ep.port} unreachable ({exc})') from None
        if exc.kind == 'timeout':
            raise BridgeFault('timeout', f'{where}: no answer from the bridge within {limits.timeout_s:g} s '
                                         f'({exc})') from None
        raise http_fault(where, exc) from None
    return reply


class TargetIds:
    """Configured targets -> bridge ids, shared by both clients (each supplies `_listing(kind)`)."""
    _ids: Dict[Target, str]

    def resolve(self, targets: Iterable[Target]) -> Dict[Target, str]:
        """Map configured ids/names to bridge ids (one listing per kind); BridgeFault('not_found') otherwise."""
        targets = list(targets)
        names = self.__dict__.setdefault('_names', {})
        ids: Dict[Target, str] = {}
        for kind in ('light', 'group'):
            wanted = [t for t in targets if t.kind == kind]
            if wanted:
                for t, r in match_targets(wanted, kind, self._listing(kind), names).items():
                    ids[t] = r.id
                    if r.name.strip():
                        names[t] = r.name
        self._ids = ids
        return ids

    @property
    def resolved(self) -> bool:
        return bool(self._ids)

    def ids(self, target: Target) -> str:
        return self._ids.get(target, '')

    def forget_ids(self) -> None:
        self._ids.clear()


def json_reply(where: str, reply: hue_http.Reply, limits: Limits) -> Any:
    try:
        return hue_http.parse_json(reply.body, limits.max_depth)
    except ValueError as exc:
        raise BridgeFault('malformed', f'{where}: reply is not usable JSON ({len(reply.body)} bytes: '
                                       f'{short(str(exc), 60)})') from None


@dataclass
class BridgeInfo:
    """What GET /api/0/config (no key needed) and the v2 probe said about the bridge."""
    api: str                 # 'v1' or 'v2'
    endpoint: Endpoint
    bridge_id: str = ''
    swversion: str = ''
    name: str = ''


def endpoint(host: str, port: Optional[int], tls: Optional[TlsPolicy]) -> Endpoint:
    if tls is None:
        return Endpoint(host, port or 80)
    return Endpoint(host, port or 443, tls.context(), tls.check)


def _config(ep: Endpoint, limits: Limits) -> dict:
    where = f'GET {ep.scheme}://{ep.host}:{ep.port}/api/0/config'
    try:
        reply = hue_http.request(ep, 'GET', '/api/0/config', limits=limits)
    except HttpError as exc:
        raise http_fault(where, exc) from None
    fault = status_fault(where, reply)
    if fault:
        raise fault
    data = json_reply(where, reply, limits)
    if not isinstance(data, dict) or not isinstance(data.get('bridgeid'), str):
        raise BridgeFault('malformed', f'{where}: no bridgeid in {short(data)}')
    return data


def detect(host: str, port: Optional[int], tls: TlsPolicy, limits: Limits, api: str = 'auto',
           allow_http: bool = True) -> BridgeInfo:
    """Which API the bridge speaks: HTTPS first (a certificate problem is final, never a reason to fall
    back to plain HTTP); v2 if /clip/v2 answers (401/403 without a key), else v1; plain HTTP v1 only when
    HTTPS is not served at all (no TLS handshake reached a certificate: refused, not TLS, timed out before)
    and `allow_http` (no HTTPS pairing stored, no HTTPS answer seen before). A bridge that answers HTTPS with
    503 or 429 speaks HTTPS: the fault (with its Retry-After) goes back to the caller's backoff, and the key
    is never paired in clear text (cf495d6 fell back and paired over HTTP)."""
    https_fault = None
    if True:                                   # HTTPS first for either API (v1 paths answer over HTTPS too)
        try:
            ep = endpoint(host, port, tls)
        except HttpError as exc:
            raise BridgeFault(exc.kind, str(exc)) from None
        try:
            cfg = _config(ep, limits)
        except BridgeFault as fault:
            if fault.kind == 'certificate':
                raise
            https_fault = fault
        else:
            bridge_id = cfg['bridgeid'].lower()
            if tls.seen_cn.lower() != bridge_id:
                raise BridgeFault('certificate', f'certificate CN {short(tls.seen_cn, 40)!r} is not the bridge id '
                                                 f'{short(bridge_id, 40)!r} it reports: refusing to connect')
            if tls.bridge_id and tls.bridge_id != bridge_id:
                raise BridgeFault('certificate', f'bridge id {short(bridge_id, 40)} is not the paired bridge '
                                                 f'{tls.bridge_id}: refusing to connect')
            tls.bridge_id = bridge_id
            where = f'GET https://{host}:{ep.port}/clip/v2/resource/bridge'
            try:
                probe = hue_http.request(ep, 'GET', '/clip/v2/resource/bridge', limits=limits)
            except HttpError as exc:
                raise http_fault(where, exc) from None
            speaks_v2 = probe.status in (200, 401, 403)
            if api == 'v2' and not speaks_v2:
                raise BridgeFault('api_error', f'{where}: HTTP {probe.status}: this bridge does not speak API v2 '
                                               '(update its firmware, or set api:=v1)')
            return BridgeInfo('v2' if speaks_v2 and api != 'v1' else 'v1', ep, bridge_id,
                              short(cfg.get('swversion', ''), 20), short(cfg.get('name', ''), 40))
    why = ('api is v2' if api == 'v2' else 'this bridge speaks HTTPS (a TLS handshake reached its certificate)'
           if tls.seen_sha256 else 'this bridge was paired over HTTPS' if not allow_http else '')
    if why:
        raise BridgeFault(https_fault.kind, f'{https_fault} (HTTPS required: {why})', https_fault.retry_after_s)
    ep = endpoint(host, port, None)
    cfg = _config(ep, limits)
    return BridgeInfo('v1', ep, cfg['bridgeid'].lower(), short(cfg.get('swversion', ''), 20),
                      short(cfg.get('name', ''), 40))


class _Bridge(phue.Bridge):
    def __init__(self, ep: Endpoint, username: str, limits: Limits):
        self.ep, self.limits = ep, limits
        self.session = hue_http.Session()
        super().__init__(ip=ep.host, username=username, config_file_path=os.devnull)

    def connect(self):
        """phue's connect logs the username and may pair on its own; pairing is explicit here."""

    def _where(self, mode: str, address: str) -> str:
        return redact(f'{mode} {address}', [self.username or ''])

    def request(self, mode='GET', address=None, data=None):
        where = self._where(mode, address)
        reply = exchange(self.ep, mode, address, data, {}, self.limits, where, self.session)
        fault = status_fault(where, reply)
        if fault:
            raise fault
        body = json_reply(where, reply, self.limits)
        _raise_api_errors(where, body, [self.username or ''])
        if mode in ('PUT', 'POST') and not (isinstance(body, list) and body
                                           and all(isinstance(i, dict) and 'success' in i for i in body)):
            got = short(body, 80, [self.username or ''])
            raise BridgeFault('malformed', f'{where}: expected a list of "success" items, got {got}')
        return body


def _raise_api_errors(where: str, reply: Any, keys: List[str]) -> None:
    if not isinstance(reply, list):
        return
    errors = [i['error'] for i in reply if isinstance(i, dict) and isinstance(i.get('error'), dict)]
    if not errors:
        return
    err = errors[0]
    kind = {UNAUTHORIZED: 'unauthorized', NOT_AVAILABLE: 'not_found',
            LINK_BUTTON_NOT_PRESSED: 'link_button'}.get(err.get('type'), 'api_error')
    text = short(err.get('description', '?'), MAX_TEXT, keys)
    raise BridgeFault(kind, f'{where}: bridge error {short(err.get("type"), 10)}: {text}')


class HueClient(TargetIds):
    """The v1 calls the actuator needs: pair, resolve targets to ids, send one state."""
    api = 'v1'

    def __init__(self, host: str, username: Optional[str] = None, timeout_s: float = 1.0,
                 ep: Optional[Endpoint] = None, bridge_id: str = ''):
        h, port = split_address(host)
        self.host, self.bridge_id = host, bridge_id
        self.limits = Limits(timeout_s=timeout_s)
        self._bridge = _Bridge(ep or Endpoint(h, port or 80), username or '', self.limits)
        self._ids: Dict[Target, str] = {}
        self.clientkey = ''

    @property
    def paired(self) -> bool:
        return bool(self._bridge.username)

    def secrets(self) -> List[str]:
        return [s for s in (self._bridge.username, self.clientkey) if s]

    def set_username(self, username: str) -> None:
        self._bridge.username = username
        self._ids.clear()

    def set_credentials(self, creds: BridgeCredentials) -> None:
        self.set_username(creds.username)
        self.clientkey = creds.clientkey

    def pair(self, devicetype: str) -> str:
        """One pairing attempt: the new username, or BridgeFault('link_button') until the button is pressed."""
        return self.pair_credentials(devicetype).username

    @redacts
    def pair_credentials(self, devicetype: str) -> BridgeCredentials:
        body = {'devicetype': devicetype[:40]}
        if self._bridge.ep.tls is not None:
            body['generateclientkey'] = True
        reply = self._bridge.request('POST', '/api', body)
        try:
            success = reply[0]['success']
            username, clientkey = success['username'], success.get('clientkey', '')
        except (LookupError, TypeError, AttributeError):
            username, clientkey = None, ''
        if not isinstance(username, str) or not username or not isinstance(clientkey, str):
            raise BridgeFault('malformed', 'POST /api: no username in the pairing reply')
        return BridgeCredentials(username, clientkey, self.bridge_id, api=self.api)

    def _listing(self, kind: str) -> List[Resource]:
        path = '/lights' if kind == 'light' else '/groups'
        found = self._bridge.request('GET', f'/api/{self._bridge.username}{path}')
        if not isinstance(found, dict) or not all(isinstance(v, dict) for v in found.values()):
            raise BridgeFault('malformed', f'GET {path}: expected an object of {kind}s, got {short(found, 80, self.secrets())}')
        out = [Resource(str(k), str(k), str(v.get('name', ''))) for k, v in found.items()]
        if kind == 'group' and not any(r.id == '0' for r in out):
            out.append(Resource('0', '0', 'all lights'))
        return out

    @redacts
    def resolve(self, targets: Iterable[Target]) -> Dict[Target, str]:
        return TargetIds.resolve(self, targets)

    @redacts
    def send(self, target: Target, state) -> None:
        command = state.command() if isinstance(state, LightState) else dict(state)
        bridge_id = quote(self._ids[target], safe='')
        user = self._bridge.username
        if target.kind == 'group':
            self._bridge.request('PUT', f'/api/{user}/groups/{bridge_id}/action', command)
        else:
            self._bridge.request('PUT', f'/api/{user}/lights/{bridge_id}/state', command)

    def poll_events(self) -> List[str]:
        return []

    def shows(self, target: Target, state: LightState) -> bool:
        """v1 has no event stream, so no reconnect to check after: always 'unknown' (send again)."""
        return False

    def close(self) -> None:
        self._bridge.session.close()
