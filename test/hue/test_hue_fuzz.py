"""Property-based fuzzing of bridge replies through the real emulator (issue 18): whatever status, headers and
JSON (or not-JSON) a bridge sends, the v1 and v2 clients either succeed or raise a typed BridgeFault, quickly,
with the key never in the message."""
import json
import os
import time

import pytest

hypothesis = pytest.importorskip('hypothesis')
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from hue_bridge_emulator import HueBridgeEmulator, make_pki  # noqa: E402

from emotion_ros.core.hue.bridge.v1 import BridgeFault, HueClient, detect  # noqa: E402
from emotion_ros.core.hue.colors import LightState  # noqa: E402
from emotion_ros.core.hue.bridge.http import Limits  # noqa: E402
from emotion_ros.core.hue.policy import Target  # noqa: E402
from emotion_ros.core.hue.bridge.tls import TlsPolicy  # noqa: E402
from emotion_ros.core.hue.bridge.v2 import HueV2Client  # noqa: E402

pytestmark = pytest.mark.timeout(300)
KEY = 'z' * 40
RED = LightState(80, 0.5, xy=(0.675, 0.322))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.just(KEY),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(['success', 'error', 'type', 'description', 'data', 'errors', 'id', 'id_v1', 'name',
                         'metadata', 'username', 'clientkey', 'bridgeid', '1', 'a b', KEY]), children, max_size=4),
    max_leaves=20)
bodies = (json_values.map(lambda v: json.dumps(v).encode())
          | st.binary(max_size=200)
          | st.integers(1, 200).map(lambda n: b'[' * n + b']' * n))
replies = st.tuples(st.sampled_from([200, 200, 200, 201, 207, 301, 400, 401, 403, 404, 429, 500, 503]),
                    st.dictionaries(st.sampled_from(['Retry-After', 'Content-Type', 'X-Odd']),
                                    st.sampled_from(['1', '0', 'soon', 'text/html', 'Wed, 21 Oct 2015 07:28:00 GMT',
                                                     '99999999']), max_size=2),
                    bodies)


@pytest.fixture(scope='module')
def bridges(tmp_path_factory):
    pki = make_pki(tmp_path_factory.mktemp('pki'))
    v1 = HueBridgeEmulator(users=[KEY]).start()
    v2 = HueBridgeEmulator(api='v2', users=[KEY], certfile=str(pki['cert']), keyfile=str(pki['key'])).start()
    yield v1, v2
    v1.stop()
    v2.stop()


def _clients(bridges):
    v1, v2 = bridges
    c1 = HueClient(v1.address, KEY, timeout_s=1.0)
    info = detect('127.0.0.1', v2.port, TlsPolicy(), Limits(1.0))
    c2 = HueV2Client(info.endpoint, info.bridge_id, 1.0, use_events=False)
    c2.key = KEY
    return [(v1, c1), (v2, c2)]


def check_reply(bridges, reply, call):
    for emu, client in _clients(bridges):
        target = Target('light', '1')
        client.resolve([target])
        emu.inject_reply(reply[0], reply[2], reply[1])
        t0 = time.monotonic()
        try:
            if call == 'resolve':
                client.resolve([target, Target('light', 'Hall')])
            elif call == 'send':
                client.send(target, RED)
            else:
                client.pair_credentials('emotion_ros#fuzz')
        except BridgeFault as fault:
            assert fault.kind and KEY not in str(fault)
            assert fault.retry_after_s is None or 0 <= fault.retry_after_s <= 300
        assert time.monotonic() - t0 < 3.0
        with emu._lock:
            emu._injections.clear()


_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=40, **_COMMON)
@given(reply=replies, call=st.sampled_from(['resolve', 'send', 'pair']))
def test_fuzz_bridge_replies_give_a_result_or_a_typed_fault(bridges, reply, call):
    check_reply(bridges, reply, call)


@pytest.mark.fuzz_long
@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
def test_fuzz_long_bridge_replies(bridges, request):
    """The same property with EMOTION_FUZZ_FACTOR (default 50) times the examples."""
    if 'fuzz_long' not in (request.config.getoption('markexpr') or '') and not os.environ.get('EMOTION_FUZZ_LONG'):
        pytest.skip('long fuzz campaign: run with -m fuzz_long (or EMOTION_FUZZ_LONG=1)')
    n = 40 * int(os.environ.get('EMOTION_FUZZ_FACTOR', '50'))
    settings(max_examples=n, **_COMMON)(given(reply=replies, call=st.sampled_from(['resolve', 'send', 'pair']))(
        lambda reply, call: check_reply(bridges, reply, call)))()
