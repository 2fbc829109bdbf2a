"""Issue 24 rows 12-15 without ROS: the controller (and its Connection alone) against the emulator, HTTPS with
the test PKI, plus a Hypothesis layer for the one redaction helper. Each test failed on cf495d6."""
import random
import re
import time

import pytest

from hue_bridge_emulator import KEY_CHARS, HueBridgeEmulator, make_pki

from emotion_ros.core.hue.bridge.v1 import _raise_api_errors, short
from emotion_ros.core.hue.bridge.v2 import _error_text
from emotion_ros.core.hue.bridge.http import Limits, Reply
from emotion_ros.core.hue.connection import Connection
from emotion_ros.core.hue.credentials import (BridgeCredentials, MIN_FRAGMENT, load_credentials, redact,
                                              redacted, store_credentials)
from emotion_ros.core.hue.policy import Target

from test_hue_controller import COLORS, Harness, params

hypothesis = pytest.importorskip('hypothesis')
from hypothesis import given, settings, strategies as st  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def a_key(seed=None) -> str:
    rnd = random.Random(seed)
    return ''.join(rnd.choice(KEY_CHARS) for _ in range(40))


def pieces_of(key: str, text: str, n: int = MIN_FRAGMENT):
    """Every piece of `key` at least `n` characters long that `text` holds (any case)."""
    low, k = text.lower(), key.lower()
    return sorted({k[i:i + n] for i in range(len(k) - n + 1) if k[i:i + n] in low})


@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp('pki'))


def v2_bridge(pki, **kw):
    return HueBridgeEmulator(api='v2', certfile=str(pki['cert']), keyfile=str(pki['key']), **kw).start()


def paired(tmp_path, emu, key):
    emu.users.add(key)
    store_credentials(tmp_path / 'cfg' / 'hue_username.json', emu.address, BridgeCredentials(key))


# --- row 12: redaction before truncation -----------------------------------------------------------------------
keys = st.text(alphabet=KEY_CHARS, min_size=20, max_size=64)


@st.composite
def texts_quoting(draw, key):
    """Bridge texts: filler, the key whole, cut, re-cased, twice, next to key-shaped characters."""
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(['filler', 'key', 'piece', 'upper', 'alnum']))
        if kind == 'filler':
            parts.append(draw(st.text(max_size=120)))
        elif kind == 'key':
            parts.append(key)
        elif kind == 'piece':
            i = draw(st.integers(0, len(key) - MIN_FRAGMENT))
            parts.append(key[i:draw(st.integers(i + MIN_FRAGMENT, len(key)))])
        elif kind == 'upper':
            parts.append(key.upper())
        else:
            parts.append(draw(st.text(alphabet=KEY_CHARS, max_size=30)))
    return ''.join(parts)


@settings(max_examples=500, deadline=None)
@given(st.data(), keys, st.integers(0, 400))
def test_row12_no_piece_of_a_key_survives_redaction_and_any_cut(data, key, limit):
    text = data.draw(texts_quoting(key))
    for out in (redacted(text, [key], limit), short(text, limit, [key]),
                redact(text[:limit], [key]),                     # cut elsewhere first: the pieces are caught
                redacted(text, [key], limit)[:data.draw(st.integers(0, limit + 20))]):
        assert not pieces_of(key, out), (text, limit, out)


@settings(max_examples=300, deadline=None)
@given(st.data(), keys, st.integers(0, 260))
def test_row12_bridge_error_texts_v1_and_v2_never_carry_a_piece_of_the_key(data, key, pad):
    text = 'x' * pad + data.draw(texts_quoting(key))
    with pytest.raises(Exception) as v1:
        _raise_api_errors('PUT /lights/1/state', [{'error': {'type': 7, 'description': text}}], [key])
    body = ('{"errors": [{"description": %s}], "data": []}' % __import__('json').dumps(text)).encode()
    v2 = _error_text(Reply(400, {}, body), Limits(), [key])
    for out in (str(v1.value), v2):
        assert not pieces_of(key, out), (pad, out)


_ESCAPED = re.compile(r'%([0-9A-Fa-f]{2})|\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})|&#([0-9]+);|&#[xX]([0-9A-Fa-f]+);')


def decoded(text: str, layers: int = 3) -> str:
    """What a reader (a browser, a log viewer, a person) makes of `text`: percent, JSON/JS and HTML numeric escapes
    undone, `layers` times over."""
    def one(m):
        if m.group(4) is not None:
            code = int(m.group(4))
        else:
            code = int(next(g for g in m.groups() if g is not None), 16)
        return chr(code) if code <= 0x10FFFF else m.group(0)
    for _ in range(layers):
        text = _ESCAPED.sub(one, text)
    return text


ENCODINGS = {
    'plain': lambda c: c, 'pct': lambda c: '%%%02X' % ord(c), 'pct_lower': lambda c: '%%%02x' % ord(c),
    'pct_twice': lambda c: '%%25%02X' % ord(c), 'json': lambda c: '\\u%04x' % ord(c),
    'js_hex': lambda c: '\\x%02X' % ord(c), 'entity': lambda c: '&#%d;' % ord(c), 'entity_hex': lambda c: '&#x%x;' % ord(c),
}


@st.composite
def texts_quoting_encoded(draw, key):
    """Bridge (or proxy) texts quoting the key or pieces of it URL-encoded (`%2D` for `-`, or every character),
    escaped or as HTML entities, character by character or all alike, in any case."""
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(['filler', 'whole', 'piece', 'mixed']))
        if kind == 'filler':
            parts.append(draw(st.text(max_size=80)) + draw(st.sampled_from(['', '%', '%2', '\\u00', '&#', '%25'])))
            continue
        if kind == 'whole':
            piece = key
        else:
            i = draw(st.integers(0, len(key) - MIN_FRAGMENT))
            piece = key[i:draw(st.integers(i + MIN_FRAGMENT, len(key)))]
        piece = piece.upper() if draw(st.booleans()) and kind != 'mixed' else piece
        if kind == 'mixed':      # each character its own way (`abc%2Ddef` ...)
            piece = ''.join(ENCODINGS[draw(st.sampled_from(sorted(ENCODINGS)))](c) for c in piece)
        else:
            enc = ENCODINGS[draw(st.sampled_from(sorted(ENCODINGS)))]
            only = draw(st.sampled_from(['all', 'dashes', 'digits']))   # `%2D` for each `-` only, ...
            piece = ''.join(enc(c) if only == 'all' or (only == 'dashes' and c == '-')
                            or (only == 'digits' and c.isdigit()) else c for c in piece)
        parts.append(piece)
    return ''.join(parts)


@settings(max_examples=400, deadline=None)
@given(st.data(), keys, st.integers(0, 400))
def test_row12_encoded_pieces_of_a_key_are_redacted_too(data, key, limit):
    text = data.draw(texts_quoting_encoded(key))
    for out in (redacted(text, [key], limit), redact(text, [key]), short(text, limit, [key]),
                redact(text[:limit], [key]),
                redacted(text, [key], limit)[:data.draw(st.integers(0, limit + 20))]):
        assert not pieces_of(key, decoded(out)), (text, limit, out)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=KEY_CHARS, min_size=40, max_size=40), st.sampled_from(sorted(ENCODINGS)),
       st.text(alphabet=' :=,"\'', min_size=1, max_size=3))
def test_row12_an_encoded_key_shaped_text_is_redacted_without_knowing_the_key(key, encoding, around):
    """A 40-character key of another bridge (not ours to know), URL-encoded whole, is still a key."""
    text = f'unauthorized user{around}' + ''.join(ENCODINGS[encoding](c) for c in key) + f'{around} denied'
    out = redacted(text, [], 1000)
    assert key.lower() not in decoded(out).lower() and 'denied' in out, out


@pytest.mark.parametrize('api', ['v1', 'v2'])
def test_row12_key_quoted_at_the_cut_is_not_logged_nor_published(tmp_path, pki, api):
    """cf495d6 cut the error text at 200 characters, then redacted: a key at 170-200 kept up to 37 characters."""
    key = a_key(12)
    emu = v2_bridge(pki) if api == 'v2' else HueBridgeEmulator().start()
    try:
        paired(tmp_path, emu, key)
        h = Harness(tmp_path, emu.address).start()
        assert h.run(15, 'happy', until=lambda: emu.state_puts()), h.text()
        labels = iter(['sad', 'fear', 'surprise', 'angry', 'neutral', 'happy'] * 3)
        for pad in range(150, 215, 4):
            emu.inject('leak', pad=pad)
            t0 = time.monotonic()
            label = next(labels)
            h.run(10, label, until=lambda: any(r.fault == 'leak' for r in emu.puts(t0)))
        assert sum(r.fault == 'leak' for r in emu.puts()) >= 15, emu.summary()
        shown = h.text() + '\n'.join(e.reason + ' ' + e.last_error for e in h.events)
        assert 'invalid value' in shown                               # the texts were logged, redacted
        assert not pieces_of(key, shown), pieces_of(key, shown)
        h.c.close()
    finally:
        emu.stop()


# --- row 13: no plain HTTP after an HTTPS answer -------------------------------------------------------------------
@pytest.mark.parametrize('status', ['503', '429'])
def test_row13_https_busy_at_first_start_is_retried_never_paired_over_http(tmp_path, pki, status):
    """The bridge serves HTTPS and plain HTTP on one port (as 443 and 80); HTTPS answers 503/429 at first.
    cf495d6 fell back to HTTP and paired in clear text (key stored as v1, no pin)."""
    emu = v2_bridge(pki, plain_http_too=True)
    try:
        emu.press_link_button(120)
        emu.inject(status, count=3, method='*', retry_after='1')
        h = Harness(tmp_path, emu.address).start()
        assert h.run(40, until=lambda: h.c.phase == 'ready'), (h.text(), emu.summary())
        assert {r.scheme for r in emu.requests} == {'https'}, emu.log_lines()
        busy = [r for r in emu.requests if r.fault == status]
        assert len(busy) == 3 and busy[-1].t - busy[0].t >= 1.5          # Retry-After honoured between them
        (key,) = emu.users
        rec = load_credentials(h.key_file, emu.address)
        assert rec.username == key and rec.api == 'v2' and len(rec.cert_sha256) == 64
        assert 'HTTPS required: this bridge speaks HTTPS' in h.text()
        h.c.close()
    finally:
        emu.stop()


def test_row13_connection_alone_refuses_http_once_a_certificate_was_seen(tmp_path, pki):
    """Connection (issue 25: testable alone): HTTPS 503 from an unpaired bridge is a fault, the next attempt too,
    and no plain request is ever made; after the bridge recovers it connects over HTTPS."""
    emu = v2_bridge(pki, plain_http_too=True)
    try:
        h = Harness(tmp_path, emu.address)
        conn = Connection(h.settings, h.p, lambda *a: None)
        emu.inject('503', count=2, method='*')
        for _ in range(2):
            with pytest.raises(Exception, match='HTTPS required'):
                conn.connect(time.monotonic())
        assert conn.connect(time.monotonic()) and conn.phase == 'pairing'
        assert conn.info.endpoint.tls is not None and {r.scheme for r in emu.requests} == {'https'}
        conn.close()
    finally:
        emu.stop()


# --- row 14: a light re-added under a new id -----------------------------------------------------------------------
@pytest.mark.parametrize('api', ['v1', 'v2'])
def test_row14_a_bulb_re_added_under_new_ids_gets_the_state_again(tmp_path, pki, api):
    """Configured by the id it had (v2 resource id / v1 number); re-added, that id answers 404 (v1: error 3).
    The light list is read again (at most once per RELIST_MIN_S) and the bulb is found by the name it had."""
    key = a_key(14)
    emu = v2_bridge(pki) if api == 'v2' else HueBridgeEmulator().start()
    try:
        paired(tmp_path, emu, key)
        ref = emu.light_v2_id('1') if api == 'v2' else '1'
        h = Harness(tmp_path, emu.address, targets=(Target('light', ref),)).start()
        assert h.run(15, 'happy', until=lambda: emu.state_puts()), h.text()
        new_v2 = emu.readd_light('1', new_lid='4')
        t0 = time.monotonic()
        sad = COLORS.lookup('sad')
        want = sad.v2_body() if api == 'v2' else sad.command()
        where = new_v2 if api == 'v2' else '/lights/4/state'

        def arrived():
            return any(r.body == want and r.resource.endswith(where) for r in emu.state_puts(t0))
        assert h.run(20, 'sad', until=arrived), (h.text(), emu.summary())
        assert emu.light_states()['Desk lamp']['on'] is True
        h.run(3.0, 'sad')
        listings = [r for r in emu.requests if r.t >= t0 and r.method == 'GET' and r.resource.endswith(
            ('/clip/v2/resource/light', '/lights'))]
        elapsed = time.monotonic() - t0
        assert 1 <= len(listings) <= 2 + elapsed / 2.0, (len(listings), elapsed)
        assert 'now id' in h.text()
        h.c.close()
    finally:
        emu.stop()


# --- row 15: an event stream that keeps dropping ------------------------------------------------------------------
def test_row15_a_stream_that_keeps_dropping_backs_off_and_resends_nothing_unchanged(tmp_path, pki):
    key = a_key(15)
    emu = v2_bridge(pki)
    try:
        paired(tmp_path, emu, key)
        h = Harness(tmp_path, emu.address).start()
        assert h.run(15, 'fear', until=lambda: emu.state_puts() and emu.stream_count() == 1), h.text()
        h.run(0.5, 'fear')
        t0 = time.monotonic()
        emu.drop_new_streams(1000)
        emu.drop_streams()
        h.run(10.0, 'fear')
        streams = [r for r in emu.requests if r.t >= t0 and r.path.startswith('/eventstream')]
        assert len(streams) <= 8, len(streams)                     # cf495d6: one every ~0.5 s, ~20 in 10 s
        assert emu.state_puts(t0) == [], [r.body for r in emu.state_puts(t0)]   # cf495d6: one per reconnect
        waits = list(h.c.client._events.waits)
        assert len(waits) >= 3 and all(b > a or b == 30.0 for a, b in zip(waits, waits[1:])), waits   # it grows
        emu.drop_new_streams(0)
        assert h.run(40, 'fear', until=lambda: emu.stream_count() == 1), h.text()
        h.run(1.0, 'fear')
        assert emu.state_puts(t0) == [], [r.body for r in emu.state_puts(t0)]   # unchanged: nothing resent
        assert 'Hue event stream lost' in h.text()
        h.c.close()
    finally:
        emu.stop()
