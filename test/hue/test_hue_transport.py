"""Hue transport without ROS: the bounded HTTP(S) client, TLS (test-made CA, pinning, CN = bridge id), v1/v2
detection, the v2 client and its event stream, mDNS discovery on the loopback interface, and the hostile
bridge replies of issue 18 (items 4, 7b, 9), all against the real emulator on 127.0.0.1."""
import socket
import time

import pytest

from hue_bridge_emulator import DEFAULT_BRIDGE_ID, HueBridgeEmulator, make_pki, v2_id

from emotion_ros.core.hue.bridge import http as hue_http
from emotion_ros.core.hue.bridge.v1 import Backoff, BridgeFault, HueClient, detect
from emotion_ros.core.hue.colors import LightState, hs_to_xy
from emotion_ros.core.hue.credentials import BridgeCredentials, redact
from emotion_ros.core.hue.bridge.discovery import FoundBridge, browse, find_bridge, load_cache, store_cache
from emotion_ros.core.hue.bridge.http import Limits
from emotion_ros.core.hue.policy import Target
from emotion_ros.core.hue.bridge.tls import TlsPolicy
from emotion_ros.core.hue.bridge.v2 import HueV2Client

pytestmark = pytest.mark.timeout(120)

KEY = 'k' * 40
RED = LightState(80, 0.5, xy=(0.675, 0.322))


@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp('pki')
    return {'good': make_pki(folder), 'other': make_pki(folder / 'other', name='other'),
            'wrong_cn': make_pki(folder / 'cn', bridge_id='001788fffe999999', name='cn')}


@pytest.fixture
def v2(pki):
    with HueBridgeEmulator(api='v2', users=[KEY], certfile=str(pki['good']['cert']),
                           keyfile=str(pki['good']['key'])) as emu:
        yield emu


@pytest.fixture
def v1():
    with HueBridgeEmulator(users=[KEY]) as emu:
        yield emu


def v2_client(emu, ca='', timeout_s=1.0, events=False):
    tls = TlsPolicy(ca)
    info = detect('127.0.0.1', emu.port, tls, Limits(timeout_s))
    client = HueV2Client(info.endpoint, info.bridge_id, timeout_s, use_events=events)
    return client, info, tls


# --- the bounded client ---------------------------------------------------------------------------------

def test_json_depth_and_parse_limits():
    assert hue_http.json_depth(b'[{"a": [1, "]]]][[[{"]}]') == 3
    assert hue_http.parse_json(b'{"a": [1]}') == {'a': [1]}
    with pytest.raises(ValueError, match='nested deeper'):
        hue_http.parse_json(b'[' * 100000 + b']' * 100000)
    with pytest.raises(ValueError):
        hue_http.parse_json(b'\xff\xfe')


def test_retry_after_seconds_and_dates_are_capped():
    assert hue_http.parse_retry_after('3') == 3.0
    assert hue_http.parse_retry_after('999999') == hue_http.MAX_RETRY_AFTER_S
    assert hue_http.parse_retry_after('Wed, 21 Oct 2015 07:28:00 GMT') == 0.0    # in the past
    assert hue_http.parse_retry_after('soon') is None and hue_http.parse_retry_after(None) is None
    b = Backoff(0.2, 1.0)
    assert b.failed(0.0, retry_after_s=5.0) == 5.0 and not b.ready(4.9)             # Retry-After lengthens ...
    assert b.failed(10.0, retry_after_s=0.0) == 0.4                                  # ... never shortens


def test_item04_nested_json_reply_is_a_fault_not_a_recursion_error(v1):
    client = HueClient(v1.address, KEY, timeout_s=2.0)
    target = Target('light', '1')
    client.resolve([target])
    v1.inject('nested')
    with pytest.raises(BridgeFault) as err:
        client.send(target, RED.command())
    assert err.value.kind == 'malformed' and 'nested deeper' in str(err.value)
    v1.inject('nested', method='GET')
    with pytest.raises(BridgeFault):
        client.resolve([target])
    client.send(target, RED.command())                      # and the next request works


def test_item04_non_numeric_light_ids_and_names_in_any_case():
    with HueBridgeEmulator(users=[KEY], light_ids=['00:17:88:01:aa-0b', 'hall/2', 'x y']) as emu:
        client = HueClient(emu.address, KEY, timeout_s=1.0)
        by_id, by_name, odd = Target('light', 'hall/2'), Target('light', 'desk LAMP '), Target('light', 'x y')
        assert client.resolve([by_id, by_name, odd]) == {by_id: 'hall/2', by_name: '00:17:88:01:aa-0b',
                                                         odd: 'x y'}
        for t in (by_id, by_name, odd):
            client.send(t, RED.command())
        assert [r.path for r in emu.puts()] == ['/api/<user>/lights/hall/2/state',     # (decoded by the emulator)
                                                '/api/<user>/lights/00:17:88:01:aa-0b/state',
                                                '/api/<user>/lights/x y/state']
        assert all(r.status == 200 and r.body == RED.command() for r in emu.puts())
        assert emu.lights['hall/2']['state']['xy'] == [0.675, 0.322]
        with pytest.raises(BridgeFault) as err:
            client.resolve([Target('light', 'Kitchen')])
        assert err.value.kind == 'not_found' and '"Hall"' in str(err.value)


@pytest.mark.parametrize('api', ['v1', 'v2'])
def test_item07b_bridge_error_text_with_the_key_is_redacted(api, v1, v2):
    emu = v1 if api == 'v1' else v2
    client = HueClient(emu.address, KEY, timeout_s=1.0) if api == 'v1' else v2_client(emu)[0]
    if api == 'v2':
        client.set_credentials(BridgeCredentials(KEY))
    target = Target('light', '1')
    client.resolve([target])
    emu.inject('leak')
    with pytest.raises(BridgeFault) as err:
        client.send(target, RED)
    assert KEY not in str(err.value) and '<key>' in str(err.value), str(err.value)
    assert redact(f'user {KEY} and {"A" * 40}', []) == 'user <key> and <key>'


@pytest.mark.parametrize('fault,kind,limit_s', [('drip', 'timeout', 1.5), ('endless', 'too_large', 5.0),
                                                ('huge', 'too_large', 1.5), ('drop', 'unreachable', 1.5)])
@pytest.mark.parametrize('api', ['v1', 'v2'])
def test_item09_slow_endless_and_huge_replies_are_bounded(api, fault, kind, limit_s, v1, v2):
    emu = v1 if api == 'v1' else v2
    if api == 'v1':
        client = HueClient(emu.address, KEY, timeout_s=1.0)
    else:
        client = v2_client(emu)[0]
        client.key = KEY
    target = Target('light', '1')
    client.resolve([target])
    emu.inject(fault)
    t0 = time.monotonic()
    with pytest.raises(BridgeFault) as err:
        client.send(target, RED if api == 'v2' else RED.command())
    took = time.monotonic() - t0
    assert err.value.kind == kind, str(err.value)
    assert took <= limit_s, (fault, took)                  # the 1 s request timeout bounds the whole request


@pytest.mark.parametrize('api', ['v1', 'v2'])
def test_item09_retry_after_is_reported(api, v1, v2):
    emu = v1 if api == 'v1' else v2
    client = HueClient(emu.address, KEY, timeout_s=1.0) if api == 'v1' else v2_client(emu)[0]
    client.set_credentials(BridgeCredentials(KEY))
    target = Target('light', '1')
    client.resolve([target])
    for status, kind in (('429', 'rate_limited'), ('503', 'server_error')):
        emu.inject(status, retry_after='4')
        with pytest.raises(BridgeFault) as err:
            client.send(target, RED)
        assert err.value.kind == kind and err.value.retry_after_s == 4.0


# --- TLS and detection -----------------------------------------------------------------------------------

def test_detect_v1_over_http_and_v2_over_https(v1, v2, pki):
    tls = TlsPolicy()
    info = detect('127.0.0.1', v1.port, tls, Limits(1.0))
    assert (info.api, info.endpoint.scheme, info.bridge_id) == ('v1', 'http', DEFAULT_BRIDGE_ID)
    for ca in ('', str(pki['good']['ca'])):
        tls = TlsPolicy(ca)
        info = detect('127.0.0.1', v2.port, tls, Limits(1.0))
        assert (info.api, info.endpoint.scheme, info.bridge_id) == ('v2', 'https', DEFAULT_BRIDGE_ID)
        assert tls.seen_cn == DEFAULT_BRIDGE_ID and len(tls.seen_sha256) == 64
    info = detect('127.0.0.1', v2.port, TlsPolicy(), Limits(1.0), api='v1')
    assert (info.api, info.endpoint.scheme) == ('v1', 'https')             # v1 paths over HTTPS (Bridge Pro)
    with pytest.raises(BridgeFault, match='HTTPS required'):
        detect('127.0.0.1', v1.port, TlsPolicy(), Limits(1.0), api='v2')


def test_wrong_ca_changed_certificate_and_wrong_cn_are_refused_never_downgraded(v2, pki):
    with pytest.raises(BridgeFault) as err:
        detect('127.0.0.1', v2.port, TlsPolicy(str(pki['other']['ca'])), Limits(1.0))
    assert err.value.kind == 'certificate' and 'not trusted' in str(err.value)
    with pytest.raises(BridgeFault) as err:
        detect('127.0.0.1', v2.port, TlsPolicy('', 'ab' * 32), Limits(1.0))
    assert err.value.kind == 'certificate' and 'CHANGED' in str(err.value)
    with pytest.raises(BridgeFault) as err:
        detect('127.0.0.1', v2.port, TlsPolicy('', '', '001788fffe000001'), Limits(1.0))
    assert err.value.kind == 'certificate' and 'is not the bridge id' in str(err.value)
    with HueBridgeEmulator(api='v2', certfile=str(pki['wrong_cn']['cert']),
                           keyfile=str(pki['wrong_cn']['key'])) as impostor:       # a valid cert of another bridge
        with pytest.raises(BridgeFault) as err:
            detect('127.0.0.1', impostor.port, TlsPolicy(str(pki['wrong_cn']['ca'])), Limits(1.0))
        assert err.value.kind == 'certificate' and "CN '001788fffe999999'" in str(err.value)


def test_ca_file_that_does_not_load_is_a_certificate_fault(tmp_path, v2):
    bad = tmp_path / 'bad.pem'
    bad.write_text('not a certificate')
    with pytest.raises(BridgeFault) as err:
        detect('127.0.0.1', v2.port, TlsPolicy(str(bad)), Limits(1.0))
    assert err.value.kind == 'certificate' and 'cannot load ca_file' in str(err.value)


# --- v2 client ---------------------------------------------------------------------------------------------

def test_v2_pairs_with_generateclientkey_resolves_by_name_id_and_v1_id_and_sends(v2, pki):
    client, info, tls = v2_client(v2, str(pki['good']['ca']))
    with pytest.raises(BridgeFault) as err:
        client.pair_credentials('emotion_ros#test')
    assert err.value.kind == 'link_button'
    v2.press_link_button()
    creds = client.pair_credentials('emotion_ros#test')
    assert creds.username in v2.users and v2.clientkeys[creds.username] == creds.clientkey
    assert (creds.api, creds.bridge_id, len(creds.clientkey)) == ('v2', DEFAULT_BRIDGE_ID, 32)
    client.set_credentials(creds)
    hall, one, by_v2 = Target('light', 'hall'), Target('light', '1'), Target('light', v2_id('light', '3'))
    room, home = Target('group', 'Living room'), Target('group', '0')
    ids = client.resolve([hall, one, by_v2, room, home])
    assert ids == {hall: v2_id('light', '2'), one: v2_id('light', '1'), by_v2: v2_id('light', '3'),
                   room: v2_id('grouped_light', '1'), home: v2_id('grouped_light', '0')}
    client.send(hall, RED)
    client.send(room, LightState(35, 2.0, hue=46920, sat=220))
    puts = v2.puts()
    assert [r.path for r in puts] == [f'/clip/v2/resource/light/{v2_id("light", "2")}',
                                      f'/clip/v2/resource/grouped_light/{v2_id("grouped_light", "1")}']
    assert puts[0].body == {'on': {'on': True}, 'dimming': {'brightness': 80.0},
                            'color': {'xy': {'x': 0.675, 'y': 0.322}}, 'dynamics': {'duration': 500}}
    assert puts[0].user == creds.username                   # sent as the hue-application-key header
    x, y = hs_to_xy(46920, 220)
    assert puts[1].body['color'] == {'xy': {'x': x, 'y': y}} and puts[1].body['dynamics'] == {'duration': 2000}
    states = v2.light_states()
    assert states['Hall'] == {'on': True, 'bri': 89, 'xy': (round(x, 3), round(y, 3))}   # the group came last
    client.key = 'wrong'
    with pytest.raises(BridgeFault) as err:
        client.resolve([hall])
    assert err.value.kind == 'unauthorized'


def test_v2_event_stream_reports_updates_and_reconnects(v2):
    client, info, tls = v2_client(v2, events=True)
    client.key = KEY
    target = Target('light', '1')
    client.resolve([target])
    notes = []

    def wait_for(pred, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            notes.extend(client.poll_events())
            if pred():
                return True
            time.sleep(0.05)
        return False

    try:
        assert wait_for(lambda: 'connected' in notes and v2.stream_count() == 1)
        client.send(target, RED)
        assert wait_for(lambda: 'update' in notes)
        v2.drop_streams()
        assert wait_for(lambda: notes.count('connected') == 2), notes
        assert notes.index('disconnected') < len(notes) - 1 - notes[::-1].index('connected')
        port = v2.port
        v2.stop()                                          # the bridge goes away for a while: retries back off
        assert wait_for(lambda: notes[-1] == 'disconnected' or 'disconnected' in notes[notes.index('update'):])
        time.sleep(1.0)
        v2.port = port
        v2.start()
        assert wait_for(lambda: notes.count('connected') == 3, 40), notes
    finally:
        client.close()
    streams = [r for r in v2.requests if r.path == '/eventstream/clip/v2']
    assert len(streams) >= 3 and all(r.user == KEY for r in streams)


# --- discovery ---------------------------------------------------------------------------------------------

def test_discovery_cache_first_then_mdns_on_loopback(tmp_path):
    from zeroconf import IPVersion, ServiceInfo, Zeroconf
    cache = tmp_path / 'hue_bridges.json'
    probed = []

    def probe(found):
        probed.append(found)
        return DEFAULT_BRIDGE_ID if found.port == 44321 else None

    zc = Zeroconf(interfaces=['127.0.0.1'], ip_version=IPVersion.V4Only)
    info = ServiceInfo('_hue._tcp.local.', 'Hue Bridge - 4A5B6C._hue._tcp.local.',
                       addresses=[socket.inet_aton('127.0.0.1')], port=44321,
                       properties={'bridgeid': DEFAULT_BRIDGE_ID, 'modelid': 'BSB002'}, server='hue-emu.local.')
    zc.register_service(info)
    try:
        assert browse(5.0, ['127.0.0.1']) == [FoundBridge('127.0.0.1', 44321, DEFAULT_BRIDGE_ID)]
        store_cache(cache, FoundBridge('127.0.0.1', 9, DEFAULT_BRIDGE_ID))          # stale address
        found = find_bridge(cache, probe, 5.0, ['127.0.0.1'])
        assert found == FoundBridge('127.0.0.1', 44321, DEFAULT_BRIDGE_ID)
        assert [p.port for p in probed] == [9, 44321]
        assert load_cache(cache) == found                                       # the new address is cached
    finally:
        zc.unregister_service(info)
        zc.close()
    probed.clear()
    assert find_bridge(cache, probe, 1.0, ['127.0.0.1'], browse_fn=lambda *a: []) == found   # cache only
    assert [p.port for p in probed] == [44321]
    with pytest.raises(LookupError, match='no Hue bridge announced'):
        find_bridge(tmp_path / 'none.json', lambda f: None, 0.5, ['127.0.0.1'], browse_fn=lambda *a: [])


def test_v2_quiet_event_stream_reconnects_without_reporting_a_loss(v2):
    from emotion_ros.core.hue.bridge.http import StreamLimits
    from emotion_ros.core.hue.bridge.v2 import EventStream
    v2.stream_keepalive_s = 60.0                           # silence longer than the client's idle timeout
    info = detect('127.0.0.1', v2.port, TlsPolicy(), Limits(1.0))
    stream = EventStream(info.endpoint, KEY, StreamLimits(connect_timeout_s=1.0, idle_timeout_s=0.5))
    try:
        time.sleep(2.5)
        notes = stream.poll()
    finally:
        stream.stop()
    assert notes == ['connected'] and stream.quiet_reconnects >= 2 and stream.connects >= 3


def test_item09_a_dripping_tls_handshake_is_bounded_too(pki):
    """A peer that accepts and then sends its TLS handshake a byte at a time cannot hold the node."""
    import ssl as ssl_mod
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    stop = []

    def serve():
        conn, _ = srv.accept()
        with conn:
            ctx = ssl_mod.SSLContext(ssl_mod.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(pki['good']['cert']), str(pki['good']['key']))
            inc, out = ssl_mod.MemoryBIO(), ssl_mod.MemoryBIO()
            obj = ctx.wrap_bio(inc, out, server_side=True)
            conn.settimeout(0.05)
            end = time.monotonic() + 10
            while time.monotonic() < end and not stop:
                try:
                    inc.write(conn.recv(4096))
                except (socket.timeout, OSError):
                    pass
                try:
                    obj.do_handshake()
                except (ssl_mod.SSLWantReadError, ssl_mod.SSLError):
                    pass
                data = out.read()
                for i in range(len(data)):                   # drip the server's handshake
                    try:
                        conn.send(data[i:i + 1])
                    except OSError:
                        return
                    time.sleep(0.05)

    import threading
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(BridgeFault) as err:
            detect('127.0.0.1', port, TlsPolicy(), Limits(1.0), api='v2')
    finally:
        stop.append(1)
        srv.close()
    assert time.monotonic() - t0 < 2.5 and err.value.kind == 'timeout', str(err.value)


@pytest.mark.parametrize('api', ['v1', 'v2'])
def test_commands_reuse_one_kept_connection_and_survive_its_close(api, v1, v2):
    emu = v1 if api == 'v1' else v2
    emu.keep_alive, emu.idle_close_s = True, 0.5
    client = HueClient(emu.address, KEY, timeout_s=1.0) if api == 'v1' else v2_client(emu)[0]
    client.set_credentials(BridgeCredentials(KEY))
    target = Target('light', '1')
    client.resolve([target])
    before = emu.connections
    for i in range(20):
        client.send(target, LightState(50 + i, 0.5, xy=(0.3, 0.3)))
    assert emu.connections - before == 0                     # one connection (the listing's) for all 20
    time.sleep(1.0)                                          # the bridge closes the idle connection ...
    client.send(target, RED)                                 # ... the next command notices, reconnects once
    assert emu.connections - before == 1
    assert [r.body for r in emu.state_puts()][-1] == (RED.command() if api == 'v1' else RED.v2_body())
    assert len(emu.state_puts()) == 21                       # nothing sent twice
    emu.inject('drop')                                       # a reply dropped on a fresh connection is a fault
    time.sleep(1.0)
    with pytest.raises(BridgeFault):
        client.send(target, RED)
    client.close()
