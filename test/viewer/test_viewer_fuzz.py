"""Issue 24 item 6, viewer: a generated-input (Hypothesis) layer beside the example tests of
test_viewer_hostile.py. Host/Origin parsing against an independent model of the allow-list, the token
comparison, the state serialisation (strict, bounded JSON for any values), and a real ViewerServer on
127.0.0.1 fed generated raw HTTP requests over sockets."""
import ipaddress
import json
import logging
import math
import re
import socket
import time

import numpy as np
import pytest

pytest.importorskip('aiohttp')
hypothesis = pytest.importorskip('hypothesis')
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from emotion_ros.core.viewer import state as state_mod  # noqa: E402
from emotion_ros.core.viewer.guards import (HostAllowList, canonical_name, parse_allowed_hosts,  # noqa: E402
                                            parse_host, parse_origin, token_matches)
from emotion_ros.core.viewer.server import ViewerConfig, ViewerServer  # noqa: E402
from emotion_ros.core.viewer.state import ViewerState  # noqa: E402
from viewer_clients import http_status  # noqa: E402

pytestmark = pytest.mark.timeout(300)

PORT = 43127                                      # the server's port in the pure guard tests (nothing listens)
EXTRA = 'Robot.Local., proxy.example:8443'        # the user's allowed_hosts
OUR_NAMES = ('localhost', '127.0.0.1', 'robot.local')


def strict_json(text):
    """json.loads that refuses NaN/Infinity, as a browser's JSON.parse does."""
    def refuse(name):
        raise ValueError(f'not JSON: {name}')
    return json.loads(text, parse_constant=refuse)


# --- an independent model of the allow-list ---------------------------------------------------------------
_MODEL_HOST = re.compile(r'(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?')


def model_parse(value: str, default_port: int):
    """(canonical name, port) of the Host values the viewer may accept at all, else None: ASCII, `name[:port]`
    or `[v6][:port]`, lower case, one trailing dot dropped, IPv6 in one spelling; no zone ids, no user info."""
    m = _MODEL_HOST.fullmatch(value)
    if not m:
        return None
    name, port = m.group(1), int(m.group(2)) if m.group(2) else default_port
    if not 0 < port < 65536:
        return None
    if name.startswith('['):
        try:
            return str(ipaddress.IPv6Address(name[1:-1])), port
        except ValueError:
            return None
    name = name.lower()
    return (name[:-1] if name.endswith('.') else name), port


def model_allows(parsed, bind_loopback: bool = True) -> bool:
    if parsed is None:
        return False
    name, port = parsed
    if parsed == ('proxy.example', 8443):
        return True
    if port != PORT:
        return False
    if name in OUR_NAMES or name == '::1':
        return True
    if not bind_loopback:                          # off loopback (token required) any IP literal is served
        if re.fullmatch(r'[0-9.]+', name) or ':' in name:
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return False
    return False


def allow_list(bind='127.0.0.1'):
    return HostAllowList.for_server(bind, PORT, parse_allowed_hosts(EXTRA))


# --- generated Host values: the allowed ones and their near misses -----------------------------------------
base_names = st.sampled_from(['localhost', '127.0.0.1', '[::1]', 'robot.local', 'proxy.example', '[0:0::1]',
                              '[0000:0000:0000:0000:0000:0000:0000:0001]', '127.0.0.2', '127.1', '0x7f.0.0.1',
                              '[::ffff:127.0.0.1]', '[::1%lo]', '10.1.2.3', '[fe80::1]', 'evil.example', '::1',
                              '127.000.0.1', '2130706433', 'robot_local', 'robot.local.evil'])
tails = st.just('') | st.sampled_from(['.', '..', '.evil', '.evil.example', '.nip.io', 'x', '-', '_', '%00', '\x00', ' ',
                         '\t', '#', '/', '?', '@evil.example', ']', '[', '\u0131', '\uff0e', '\u200b', ':'])
heads = st.just('') | st.sampled_from(['x', 'u@', 'user:pass@', 'evil.', ' ', '.', '[', 'http://', '\u0130', '*.', '%'])
ports = st.one_of(st.just(f':{PORT}'), st.just(''), st.sampled_from([':8443', ':80', ':']),
                  st.sampled_from([f':0{PORT}', f':{PORT + 1}', f':{PORT - 1}', ':0', ':65536', ':99999',
                                   f': {PORT}', f':+{PORT}', f':{PORT} ', f':{PORT}x', f':{PORT}:{PORT}',
                                   ':\u0664\u0663', f':{PORT}.evil', ':-1', f':{PORT}@evil.example']),
                  st.integers(0, 70000).map(lambda p: f':{p}'))


def recase(draw, text):
    return ''.join(c.upper() if draw(st.booleans()) else c for c in text) if draw(st.booleans()) else text


def weighted(draw, common, odd, odd_in_ten):
    """`common` most of the time (and as Hypothesis shrinks), else a draw from `odd`."""
    return draw(odd) if draw(st.integers(0, 9)) >= 10 - odd_in_ten else common


@st.composite
def host_values(draw):
    name = draw(base_names)
    if draw(st.integers(0, 9)) == 9:                       # unicode look-alikes of a character of the name
        i = draw(st.integers(0, len(name) - 1))
        name = name[:i] + draw(st.sampled_from(['\uff11', '\u0430', '\u2024', '\uff0e', '\u0131', '\u00b7',
                                                '\u0660', '\u217c'])) + name[i + 1:]
    return (weighted(draw, '', heads, 3) + recase(draw, name) + weighted(draw, '', tails, 4)
            + weighted(draw, f':{PORT}', ports, 5) + weighted(draw, '', st.sampled_from(['.', ']x', ':']), 2))


any_host = st.one_of(host_values(), host_values(), host_values(), st.text(max_size=40),
                     st.text(alphabet='[]:.0123456789abcdefxl@%', max_size=30))


@settings(max_examples=1500, deadline=None)
@given(any_host, st.sampled_from([80, 443, PORT]))
def test_host_parsing_never_raises_and_accepts_exactly_the_allow_list(value, default_port):
    for fn in (canonical_name, lambda v: parse_host(v, default_port), parse_origin):
        out = fn(value)
        assert out is None or isinstance(out, (str, tuple))
    hosts, off_loopback = allow_list(), allow_list('0.0.0.0')
    got = hosts.allows_host(value)
    assert got is model_allows(model_parse(value, 80)), (value, parse_host(value))
    assert off_loopback.allows_host(value) is model_allows(model_parse(value, 80), bind_loopback=False), value
    if got:
        assert model_parse(value, 80) == parse_host(value), value


allowed = st.sampled_from([f'localhost:{PORT}', f'127.0.0.1:{PORT}', f'[::1]:{PORT}', f'robot.local:{PORT}',
                           'proxy.example:8443', f'LOCALHOST:{PORT}', f'[0::1]:{PORT}', f'robot.local.:{PORT}'])


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(['http', 'https']) | st.sampled_from(['HTTP', 'HttpS', 'ws', 'ftp', 'http:', 'file', '']),
       st.just('://') | st.sampled_from([':/', ':///', '//', '']), allowed | any_host,
       st.just('') | st.sampled_from(['/', '/x', '?', '#', '\\', '@', ' ']), st.booleans(), allowed | any_host)
def test_origin_must_be_an_allowed_http_origin_of_the_same_host(scheme, sep, origin_host, path, same, other):
    origin = f'{scheme}{sep}{origin_host}{path}'
    host_header = origin_host if same else other
    got = allow_list().allows_origin(origin, host_header)
    expected = False
    m = re.fullmatch(r'(https?)://(.*)', origin, re.IGNORECASE | re.DOTALL)
    if m:
        parsed = model_parse(m.group(2), 443 if m.group(1).lower() == 'https' else 80)
        expected = model_allows(parsed) and parsed == model_parse(host_header, 80)
    assert got is expected, (origin, host_header)
    assert allow_list().allows_origin(None, host_header) is True         # no Origin: not a browser's page
    assert parse_origin(origin) is None or isinstance(parse_origin(origin), tuple)


# --- the token comparison ---------------------------------------------------------------------------------
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
any_text = st.one_of(st.text(max_size=40), st.lists(st.one_of(surrogates, st.characters()), max_size=20).map(''.join))


@st.composite
def near_tokens(draw, token):
    kind = draw(st.sampled_from(['same', 'prefix', 'suffix', 'case', 'nul', 'space', 'nfkc', 'other', 'empty']))
    if kind == 'same':
        return token
    if kind == 'prefix':
        return token[:draw(st.integers(0, len(token)))]
    if kind == 'suffix':
        return token + draw(st.text(min_size=1, max_size=5))
    if kind == 'case':
        return token.swapcase()
    if kind == 'nul':
        return token + '\x00'
    if kind == 'space':
        return ' ' + token
    if kind == 'nfkc':
        return token.translate({ord(c): 0xFF00 + ord(c) - 0x20 for c in 'abcdefghijklmnopqrstuvwxyz0123456789'})
    if kind == 'empty':
        return ''
    return draw(any_text)


@settings(max_examples=1000, deadline=None)
@given(st.data(), st.one_of(st.text(min_size=1, max_size=40), any_text.filter(bool)))
def test_token_comparison_never_raises_and_only_the_exact_token_matches(data, token):
    given_value = data.draw(st.one_of(near_tokens(token), any_text, st.binary(max_size=20),
                                      st.none(), st.integers()))
    got = token_matches(given_value, token)
    assert got is (isinstance(given_value, str) and given_value == token), (given_value, token)
    assert token_matches(token, token) is True
    assert token_matches(given_value, '') is False                      # no token configured: nothing matches


# --- the state serialisation ------------------------------------------------------------------------------
odd_numbers = st.one_of(st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324]),
                        st.integers(-2 ** 80, 2 ** 80), st.just(2 ** 1100), st.booleans(), st.none())
odd_ids = st.one_of(st.sampled_from(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf',
                                     '__defineGetter__', 'prototype', '0', '-1', '', ' ', '</script>', 'a' * 600]),
                    st.text(max_size=20), st.integers(), st.none(), st.binary(max_size=8))
odd_scalars = st.one_of(odd_numbers, odd_ids, st.text(max_size=700), st.builds(object), st.binary(max_size=40))
odd_values = st.recursive(odd_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=70), st.tuples(kids, kids), st.dictionaries(odd_ids, kids, max_size=40),
    st.frozensets(st.integers(), max_size=3)), max_leaves=60)


def faces_strategy():
    face = st.fixed_dictionaries({'id': odd_ids}, optional={
        'label': odd_ids, 'confidence': odd_numbers, 'valence': odd_numbers, 'arousal': odd_numbers,
        'labels': st.one_of(st.lists(odd_ids, max_size=70), odd_scalars), 'scores': st.one_of(
            st.lists(odd_numbers, max_size=70), odd_scalars),
        'box': st.one_of(st.lists(odd_numbers, max_size=6), odd_scalars)})
    return st.lists(st.one_of(face, odd_scalars), max_size=40)


def diagnostics_strategy():
    status = st.fixed_dictionaries({'name': odd_ids}, optional={
        'level': odd_scalars, 'message': odd_scalars,
        'values': st.one_of(st.dictionaries(odd_ids, odd_values, max_size=20), odd_scalars)})
    return st.lists(st.one_of(status, odd_scalars), max_size=30)


hue_states = st.one_of(st.dictionaries(st.sampled_from(['brightness', 'x', 'y', 'on', 'label', 'targets', 'event',
                                                        'transition_ms', '__proto__', 'last_error']) | odd_ids,
                                       odd_values, max_size=12), odd_scalars)
steps = st.lists(st.one_of(
    st.tuples(st.just('faces'), odd_numbers | st.floats(0, 1e6), faces_strategy()),
    st.tuples(st.just('diagnostics'), diagnostics_strategy()),
    st.tuples(st.just('hue'), hue_states)), min_size=1, max_size=8)


def check_bounded(value, depth=0, path='state'):
    """Every text, list and mapping within the caps of state.py (tables have caps of their own)."""
    assert depth <= state_mod.MAX_DEPTH + 4, path
    if isinstance(value, str):
        assert len(value) <= state_mod.MAX_TEXT, path
    elif isinstance(value, float):
        assert math.isfinite(value), path
    elif isinstance(value, int) and not isinstance(value, bool):
        assert abs(value) < 2 ** 53, path
    elif isinstance(value, list):
        cap = {'state.diagnostics': state_mod.MAX_DIAGNOSTICS}.get(path, state_mod.MAX_POINTS
                                                                  if path.startswith('state.history.') else
                                                                  state_mod.MAX_LIST)
        assert len(value) <= cap, (path, len(value))
        for v in value:
            check_bounded(v, depth + 1, path + '[]')
    elif isinstance(value, dict):
        cap = state_mod.MAX_TRACKS if path == 'state.history' else max(state_mod.MAX_MAPPING, 12)
        assert len(value) <= cap, (path, len(value))
        for k, v in value.items():
            assert isinstance(k, str) and len(k) <= state_mod.MAX_TEXT, path
            check_bounded(v, depth + 1, f'{path}.{k}' if path in ('state', 'state.history') else path + '.*')
    else:
        assert value is None or isinstance(value, bool), (path, type(value))


def as_finite(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def status_size_cap():
    """Characters of one diagnostic status with string values (what /diagnostics carries), each character
    escaped (\\uXXXX, a surrogate pair twice): the ~3 kB of state.py's table, times the escaping."""
    texts = 2 * state_mod.MAX_TEXT + state_mod.MAX_VALUES * (state_mod.MAX_VALUE_KEY + state_mod.MAX_VALUE_TEXT)
    return 12 * texts + 200


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps, st.one_of(st.none(), st.dictionaries(st.text(max_size=10), odd_values, max_size=5)))
def test_state_is_strict_bounded_json_for_any_values(steps_, viewer_stats):
    reports = []
    st_ = ViewerState(timeline_s=60.0, report=lambda kind, text: reports.append((kind, text)))
    for step in steps_:
        if step[0] == 'faces':
            st_.set_faces(step[1], step[2])
        elif step[0] == 'diagnostics':
            st_.set_diagnostics(step[1])
        else:
            st_.set_hue(step[1])
    check_bounded(strict_json(st_.state_json(viewer_stats)))
    check_bounded(strict_json(st_.api_json(viewer_stats)))
    hello = strict_json(st_.hello_json())
    check_bounded({'history': hello['history'], 'labels': hello['labels']})
    api = strict_json(st_.api_json(viewer_stats))
    assert len(api['faces']) <= state_mod.MAX_FACES and len(api['history']) <= state_mod.MAX_TRACKS
    assert len(api['diagnostics']) <= state_mod.MAX_DIAGNOSTICS
    assert all(len(points) <= state_mod.MAX_POINTS for points in api['history'].values())
    for status in api['diagnostics']:
        assert len(status['values']) <= state_mod.MAX_VALUES
        assert all(len(k) <= state_mod.MAX_VALUE_KEY for k in status['values'])
        if all(isinstance(v, str) for v in status['values'].values()):
            assert all(len(v) <= state_mod.MAX_VALUE_TEXT for v in status['values'].values())
            assert len(json.dumps(status)) <= status_size_cap()
    # The newest accepted frame is what the page shows, its ids plain keys (prototype names included).
    last = next((s for s in reversed(steps_) if s[0] == 'faces' and isinstance(s[1], (int, float))
                 and not isinstance(s[1], bool) and abs(s[1]) < 1e300 and math.isfinite(s[1])), None)
    if last is not None and last is steps_[-1]:
        sent = [f for f in last[2] if isinstance(f, dict)][:state_mod.MAX_FACES]
        assert [f['id'] for f in api['faces']] == [(f['id'][:state_mod.MAX_TEXT // 4] if isinstance(f['id'], str)
                                                    else '') or '?' for f in sent]
        for f, out in zip(sent, api['faces']):
            assert out['id'] in api['history']
            c = f.get('confidence')
            assert out['confidence'] == as_finite(c), (c, out['confidence'])   # a finite number as sent, else null


# --- a real server fed generated raw requests -------------------------------------------------------------
def exchange(port: int, data: bytes) -> bytes:
    """Send `data`, read the answer until the server closes, or shortly after a complete head (keep-alive,
    a stream), or 2 s without a byte (a request the server still waits on)."""
    with socket.create_connection(('127.0.0.1', port), timeout=10) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass
        out, end = b'', time.monotonic() + 8.0
        while time.monotonic() < end:
            sock.settimeout(0.3 if b'\r\n\r\n' in out else 2.0)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def header_bytes(text):
    return text.encode('utf-8', 'surrogateescape')


methods = st.sampled_from([b'GET', b'HEAD', b'POST', b'PUT', b'OPTIONS', b'DELETE', b'CONNECT', b'TRACE', b'get',
                           b'G\x00T', b'PRI', b'BREW', b'GET GET']) | st.binary(min_size=1, max_size=8)
paths = st.sampled_from(['/', '/api/state', '/api/stats', '/frame.jpg', '/app.js', '/index.html', '/ws',
                         '/stream.mjpg', '/../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/%00', '/%ff%fe',
                         '//', '*', 'http://evil.example/', '/?token=%ff', '/?token=tok-en', '/api/state?x=' + 'a' * 9000,
                         '/\u00e9', '/a b', '/%', '/;', '/?' + '&' * 500]).map(header_bytes)
versions = st.sampled_from([b'HTTP/1.1', b'HTTP/1.0', b'HTTP/0.9', b'HTTP/9.9', b'HTTP/1.1 x', b'', b'HTTP/1.',
                            b'HTTP/2.0', b'http/1.1'])
header_lines = st.one_of(
    st.builds(lambda h: b'Host: ' + header_bytes(h), st.one_of(host_values(), st.just('127.0.0.1:{port}'))),
    st.builds(lambda o: b'Origin: ' + header_bytes(o), st.sampled_from(['null', 'http://127.0.0.1:{port}',
                                                                        'http://evil.example', '\udcff', ''])),
    st.builds(lambda v: b'Cookie: emotion_viewer_token=' + v, st.binary(max_size=20)),
    st.builds(lambda v: b'Authorization: Bearer ' + v, st.binary(max_size=20) | st.just(b'tok-en')),
    st.sampled_from([b'Connection: Upgrade', b'Upgrade: websocket', b'Sec-WebSocket-Version: 13',
                     b'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', b'Sec-WebSocket-Version: 99',
                     b'Content-Length: 5', b'Content-Length: -1', b'Content-Length: 99999999999999999999',
                     b'Content-Length: 1, 2', b'Transfer-Encoding: chunked', b'Transfer-Encoding: gzip, chunked',
                     b'Expect: 100-continue', b'Connection: close', b'Connection: keep-alive', b' folded',
                     b'\tfolded', b'X: \x00\x01\xff', b': empty name', b'No-Colon', b'Range: bytes=0-1',
                     b'Accept-Encoding: ' + b'gzip,' * 200, b'X-Long: ' + b'a' * 9000,
                     b'Cookie: ' + b'a=b;' * 300, b'Host:', b'Host: a\x00b', b'Accept: */*', b'User-Agent: x',
                     b'Cookie: emotion_viewer_token=tok-en', b'Cookie: emotion_viewer_token=tok-en; x=\xff']))


def mostly(draw, usual, odd, odds_in_ten=3):
    return draw(odd) if draw(st.integers(0, 9)) >= 10 - odds_in_ten else draw(usual)


@st.composite
def raw_requests(draw):
    """Mostly a request the server parses (so the later checks run), each part now and then odd."""
    if draw(st.integers(0, 19)) == 19:
        return draw(st.binary(max_size=300)) + b'\r\n\r\n'
    eol = mostly(draw, st.just(b'\r\n'), st.sampled_from([b'\n', b'\r', b'\n\r']), 1)
    path = mostly(draw, st.sampled_from([b'/', b'/api/state', b'/api/stats', b'/frame.jpg', b'/app.js']),
                  paths | st.binary(max_size=40), 5)
    lines = [mostly(draw, st.sampled_from([b'GET', b'HEAD']), methods) + b' ' + path + b' '
             + mostly(draw, st.just(b'HTTP/1.1'), versions, 2)]
    if draw(st.integers(0, 9)) < 8:
        lines.append(mostly(draw, st.just(b'Host: 127.0.0.1:{port}'), header_lines.filter(bytes.strip), 4))
    if draw(st.integers(0, 9)) >= 7:                         # a cookie of any bytes, before the token
        lines.append(b'Cookie: emotion_viewer_token=' + draw(st.binary(max_size=20)))
    if draw(st.integers(0, 9)) < 7:
        lines.append(b'Authorization: Bearer tok-en')       # the token (token mode), first of its kind
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 6]))):
        lines.append(mostly(draw, header_lines, st.builds(lambda k, v: k + b': ' + v, st.binary(min_size=1, max_size=12),
                                                          st.binary(max_size=30)), 1))
    body = mostly(draw, st.just(b''), st.sampled_from([b'hello', b'0\r\n\r\n', b'5\r\nhello\r\n0\r\n\r\n', b'\xff' * 100]), 2)
    return eol.join(lines) + eol + eol + body


@pytest.mark.parametrize('token', ['', 'tok-en'])
def test_server_answers_any_raw_request_without_500_or_traceback(token, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    logs = []
    s = ViewerServer(ViewerConfig(port=0, token=token, idle_timeout_s=3.0), log=logs.append)
    s.start()
    auth = b'Authorization: Bearer tok-en\r\n' if token else b''
    normal = b'GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sConnection: close\r\n\r\n' % (s.port, auth)
    seen = []
    try:
        s.submit_frame(np.zeros((48, 64, 3), np.uint8), 1.0)   # /frame.jpg answers at once (no 5 s wait, no 503)
        s.submit_faces(1.0, [{'id': '__proto__', 'label': 'happy', 'confidence': math.nan, 'valence': 0.1,
                              'arousal': 0.2, 'labels': ['happy'], 'scores': [1.0], 'box': [0, 0, 4, 4]}])

        @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
        @given(raw_requests())
        def one(data):
            data = data.replace(b'{port}', str(s.port).encode())
            answer = exchange(s.port, data)
            status = http_status(answer)
            seen.append(status)
            assert not 500 <= status < 600, (data, answer[:300])
            assert b'Traceback' not in answer, (data, answer[:300])
            if status == 200 and token:                      # nothing is served without the token
                assert b'tok-en' in data, data
            follow = exchange(s.port, normal)                # and the server still answers a normal request
            assert http_status(follow) == 200, (data, follow[:300])
            strict_json(follow.partition(b'\r\n\r\n')[2])
        one()
    finally:
        s.stop()
    assert len(seen) >= 50 and 200 in seen and len(set(seen)) >= 3, sorted(set(seen))  # they reached different answers
    assert not any('Traceback' in line for line in logs), logs
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info][:3]
    err = capfd.readouterr().err
    assert 'Traceback' not in err and 'Error handling request' not in err, err[-2000:]
