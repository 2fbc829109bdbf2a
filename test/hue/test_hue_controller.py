"""The Hue controller (pairing / connect / backoff / dispatch state machine) without ROS, against the emulator."""
import math
import stat
import time

import pytest

from hue_bridge_emulator import DEFAULT_BRIDGE_ID, HueBridgeEmulator, make_pki

from emotion_ros.core.hue.colors import load_colors
from emotion_ros.core.hue.controller import HueController, Settings
from emotion_ros.core.hue.credentials import BridgeCredentials, load_credentials, store_credentials
from emotion_ros.core.hue.bridge.discovery import FoundBridge, load_cache
from emotion_ros.core.hue.policy import ExpressionHold, Observation, Target
from emotion_ros.core.hue.params import defaults

from pathlib import Path

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]
COLORS = load_colors(REPO / 'config' / 'hue_colors.yaml')


def params(**over):
    p = defaults()
    p.update(hold_s=0.0, backoff_initial_s=0.1, backoff_max_s=1.0, pairing_retry_s=0.2)
    p.update(over)
    return p


class Harness:
    def __init__(self, tmp_path, bridge, api='auto', ca_file='', targets=(Target('light', '1'),), browse_fn=None,
                 **over):
        self.logs, self.events = [], []
        self.key_file = tmp_path / 'cfg' / 'hue_username.json'
        self.settings = Settings(bridge=bridge, dry_run=bridge == '', key_file=self.key_file, ca_file=ca_file,
                                 api=api, request_timeout_s=1.0, cache_file=tmp_path / 'cfg' / 'hue_bridges.json',
                                 discovery_interfaces=['127.0.0.1'], discovery_timeout_s=1.0)
        self.p = params(**over)
        self.browse_fn = browse_fn
        self.targets = list(targets)
        self.c = None

    def start(self):
        self.c = HueController(self.settings, self.p, COLORS, self.targets,
                               lambda lvl, key, text: self.logs.append((lvl, text)), self.events.append,
                               browse_fn=self.browse_fn)
        return self

    def run(self, seconds, label=None, conf=0.9, until=None):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = time.monotonic()
            if label is not None:
                self.c.on_faces([Observation('1', 100.0, label, conf)], now)
            self.c.tick(now)
            if until is not None and until():
                return True
            time.sleep(0.02)
        return until() if until else True

    def text(self):
        return '\n'.join(t for _, t in self.logs)


@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp('pki')
    return {'good': make_pki(folder), 'other': make_pki(folder / 'o', name='other')}


@pytest.fixture
def v2(pki):
    with HueBridgeEmulator(api='v2', certfile=str(pki['good']['cert']), keyfile=str(pki['good']['key'])) as emu:
        yield emu


def test_item10a_nan_and_inf_confidence_never_pass_min_confidence(tmp_path):
    hold = ExpressionHold()
    for bad in (math.nan, math.inf, -math.inf, 1.5):
        assert hold.observe('happy', bad, 0.0, 0.0, 0.5) is None
        assert hold.observe('happy', bad, 5.0, 0.0, 0.0) is None            # even with min_confidence 0
    assert hold.accepted is None
    assert hold.observe('happy', 0.9, 6.0, 0.0, 0.5) == 'happy'
    h = Harness(tmp_path, '').start()                                       # dry run: nothing to send
    h.run(0.3, 'angry', conf=math.nan)
    assert not [e for e in h.events if e.event == 'dry_run']
    h.run(0.3, 'angry', conf=0.9)
    assert {e.label for e in h.events if e.event == 'dry_run'} == {'angry'}


def test_v2_pairing_stores_key_client_key_id_and_pin_together_then_sends(tmp_path, v2):
    h = Harness(tmp_path, v2.address).start()
    h.run(1.0)
    assert h.c.phase == 'pairing' and 'Press the link button' in h.text()
    v2.press_link_button()
    assert h.run(10, until=lambda: h.c.phase == 'ready')
    (key,) = v2.users
    rec = load_credentials(h.key_file, v2.address)
    assert rec.username == key and rec.clientkey == v2.clientkeys[key]
    assert (rec.api, rec.bridge_id, len(rec.cert_sha256)) == ('v2', DEFAULT_BRIDGE_ID, 64)
    assert stat.S_IMODE(h.key_file.stat().st_mode) == 0o600
    assert h.run(5, 'happy', until=lambda: v2.state_puts())
    assert v2.state_puts()[0].body == COLORS.lookup('happy').v2_body()
    assert v2.light_states()['Desk lamp']['on'] is True
    assert 'trusting its certificate on first use' in h.text()
    assert key not in h.text() and rec.clientkey not in h.text()
    assert all(key not in (e.reason + e.last_error) for e in h.events)
    assert [e.event for e in h.events][:3] == ['connected', 'paired', 'sent']
    h.c.close()


def test_changed_certificate_is_refused_and_never_downgraded_to_http(tmp_path, v2):
    store_credentials(tmp_path / 'cfg' / 'hue_username.json', v2.address,
                      BridgeCredentials('k' * 40, '', DEFAULT_BRIDGE_ID, 'ab' * 32, 'v2'))
    h = Harness(tmp_path, v2.address).start()
    h.run(1.5, 'happy')
    assert v2.requests == []                           # refused at the handshake: not even a request was sent
    assert any(lvl == 'error' and 'certificate CHANGED' in t for lvl, t in h.logs)
    assert {e.reason for e in h.events if e.event == 'failed'} == {'certificate'}
    assert len([e for e in h.events if e.event == 'failed']) <= 2   # no hammering: backoff_max_s (1 s) at once


def test_ca_file_accepts_the_test_ca_and_refuses_another(tmp_path, v2, pki):
    v2.users.add('k' * 40)
    store_credentials(tmp_path / 'a' / 'cfg' / 'hue_username.json', v2.address, BridgeCredentials('k' * 40))
    good = Harness(tmp_path / 'a', v2.address, ca_file=str(pki['good']['ca'])).start()
    assert good.run(5, 'sad', until=lambda: v2.state_puts())
    assert 'verified against' in good.text()
    good.c.close()
    n = len(v2.requests)
    store_credentials(tmp_path / 'b' / 'cfg' / 'hue_username.json', v2.address, BridgeCredentials('k' * 40))
    bad = Harness(tmp_path / 'b', v2.address, ca_file=str(pki['other']['ca'])).start()
    bad.run(1.0, 'happy')
    assert len(v2.requests) == n and 'certificate not trusted' in bad.text()


def test_item09_retry_after_is_honoured_and_the_state_resent(tmp_path, v2):
    v2.users.add('k' * 40)
    store_credentials(tmp_path / 'cfg' / 'hue_username.json', v2.address, BridgeCredentials('k' * 40))
    h = Harness(tmp_path, v2.address).start()
    assert h.run(5, 'happy', until=lambda: v2.state_puts())
    v2.inject('429', retry_after='2')
    t0 = time.monotonic()
    assert h.run(10, 'sad', until=lambda: any(r.body == COLORS.lookup('sad').v2_body() for r in v2.state_puts(t0)))
    tries = [r for r in v2.puts(t0) if r.body == COLORS.lookup('sad').v2_body()]
    assert [r.fault for r in tries] == ['429', '']
    assert tries[1].t - tries[0].t >= 1.9                 # Retry-After: 2, although backoff_initial_s is 0.1
    assert 'the bridge asked for 2 s' in h.text()
    h.c.close()


def test_v2_event_stream_reconnect_resends_the_current_state(tmp_path, v2):
    """The bridge restarted while the stream was down (its lights at their power-on state): the state goes again."""
    v2.users.add('k' * 40)
    store_credentials(tmp_path / 'cfg' / 'hue_username.json', v2.address, BridgeCredentials('k' * 40))
    h = Harness(tmp_path, v2.address).start()
    assert h.run(5, 'fear', until=lambda: v2.state_puts() and v2.stream_count() == 1)
    h.run(0.5)
    t0 = time.monotonic()
    v2.power_cycle_lights()
    v2.drop_streams()
    assert h.run(10, until=lambda: v2.state_puts(t0)), h.text()
    assert [r.body for r in v2.state_puts(t0)] == [COLORS.lookup('fear').v2_body()]
    events = [e.event for e in h.events]
    assert 'disconnected' in events and events.count('connected') >= 3     # bridge, stream, stream again
    h.c.close()


def test_auto_discovery_uses_mdns_result_then_cache(tmp_path, v2):
    v2.users.add('k' * 40)
    store_credentials(tmp_path / 'cfg' / 'hue_username.json', DEFAULT_BRIDGE_ID, BridgeCredentials('k' * 40))
    seen = []

    def browse(timeout_s, interfaces):
        seen.append(interfaces)
        return [FoundBridge('127.0.0.1', v2.port, DEFAULT_BRIDGE_ID)]

    h = Harness(tmp_path, 'auto', browse_fn=browse).start()
    assert h.run(10, 'happy', until=lambda: v2.state_puts())
    assert seen == [['127.0.0.1']] and h.c.address == v2.address
    assert load_cache(tmp_path / 'cfg' / 'hue_bridges.json') == FoundBridge('127.0.0.1', v2.port, DEFAULT_BRIDGE_ID)
    assert load_credentials(h.key_file, DEFAULT_BRIDGE_ID).cert_sha256      # the pin is stored with the key
    h.c.close()
    h2 = Harness(tmp_path, 'auto', browse_fn=browse).start()                # second start: the cache answers
    t0 = time.monotonic()
    assert h2.run(10, 'sad', until=lambda: v2.state_puts(t0))
    assert len(seen) == 1
    h2.c.close()
