"""Hue actuator core without ROS: colour table, face choice, hold, rate limits, scheduler, backoff,
credentials, and the phue-based client against the emulated bridge."""
import json
import math
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hue_bridge_emulator import HueBridgeEmulator

from emotion_ros.core.hue.bridge.v1 import Backoff, BridgeFault, HueClient
from emotion_ros.core.hue.colors import ColorConfigError, LightState, load_colors, parse_colors
from emotion_ros.core.hue.credentials import (CredentialsError, default_username_file, load_username,
                                              store_username)
from emotion_ros.core.hue.policy import (ExpressionHold, LightScheduler, Observation, RateLimiter, Target,
                                         select_face)

REPO = Path(__file__).resolve().parents[2]
RED = LightState(80, 0.5, xy=(0.675, 0.322))
BLUE = LightState(35, 2.0, hue=46920, sat=220)


# --- colour table ------------------------------------------------------------------------------------------

def test_shipped_colour_table_covers_the_model_labels():
    table = load_colors(REPO / 'config' / 'hue_colors.yaml')
    for label in ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral'):
        assert table.knows(label)
    assert len({table.lookup(lbl) for lbl in table.states}) == 7  # all distinct
    assert table.lookup(' Happy ') == table.lookup('happy')
    assert table.lookup('contempt') == table.default


def test_state_commands_in_v1_units():
    assert RED.command() == {'on': True, 'bri': 203, 'xy': [0.675, 0.322], 'transitiontime': 5}
    assert BLUE.command() == {'on': True, 'bri': 89, 'hue': 46920, 'sat': 220, 'transitiontime': 20}
    assert LightState(0, 1.0).command() == {'on': False, 'transitiontime': 10}
    assert LightState(0.1, 0, xy=(0.3, 0.3)).command()['bri'] == 1


@pytest.mark.parametrize('entry,needle', [
    ({'xy': [0.3, 0.3], 'brightness': 50}, 'missing "transition_s"'),
    ({'xy': [0.3, 1.3], 'brightness': 50, 'transition_s': 1}, '"xy" must be two numbers in [0, 1]'),
    ({'xy': [0.3, 0.3], 'hue': 1, 'brightness': 50, 'transition_s': 1}, 'not both'),
    ({'hue': 70000, 'sat': 10, 'brightness': 50, 'transition_s': 1}, '"hue" = 70000 is outside'),
    ({'brightness': 50, 'transition_s': 1}, 'no colour'),
    ({'xy': [0.3, 0.3], 'brightness': 'high', 'transition_s': 1}, '"brightness" must be a number'),
    ({'xy': [0.3, 0.3], 'brightness': 50, 'transition_s': 1, 'colour': 'red'}, 'unknown key(s) colour'),
    ({'xy': [0.3, 0.3], 'brightness': 50, 'transition_s': 100}, 'outside [0, 60.0]'),
])
def test_bad_colour_entries_name_the_label_and_the_problem(entry, needle):
    good = {'xy': [0.3, 0.3], 'brightness': 50, 'transition_s': 1}
    with pytest.raises(ColorConfigError) as err:
        parse_colors({'default': good, 'labels': {'happy': entry}}, 'f.yaml')
    assert 'f.yaml: labels.happy' in str(err.value) and needle in str(err.value)


def test_colour_file_errors(tmp_path):
    with pytest.raises(ColorConfigError, match='cannot read colour file'):
        load_colors(tmp_path / 'missing.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('default: [')
    with pytest.raises(ColorConfigError, match='not valid YAML'):
        load_colors(bad)
    bad.write_text('labels: {}')
    with pytest.raises(ColorConfigError, match='"default" and "labels"'):
        load_colors(bad)


# --- face choice and hold ----------------------------------------------------------------------------------

def test_select_face_largest_or_track_id():
    faces = [Observation('1', 100, 'sad', 0.9), Observation('2', 400, 'happy', 0.9), Observation('3', 50, 'fear', 1)]
    assert select_face(faces).track_id == '2'
    assert select_face(faces, '3').label == 'fear'
    assert select_face(faces, '9') is None
    assert select_face([]) is None


def test_hold_needs_continuous_confident_frames():
    hold = ExpressionHold()
    t, hold_s, conf = 0.0, 1.0, 0.5
    assert hold.observe('happy', 0.9, t, hold_s, conf) is None
    assert hold.observe('happy', 0.9, 0.5, hold_s, conf) is None
    assert hold.observe('happy', 0.9, 1.0, hold_s, conf) == 'happy'
    assert hold.observe('happy', 0.9, 5.0, hold_s, conf) is None  # already accepted: no repeat
    assert hold.observe('sad', 0.9, 5.1, hold_s, conf) is None
    assert hold.observe('sad', 0.4, 5.6, hold_s, conf) is None     # low confidence breaks the hold
    assert hold.observe('sad', 0.9, 6.0, hold_s, conf) is None     # restarted at 6.0
    assert hold.observe('sad', 0.9, 6.9, hold_s, conf) is None
    assert hold.observe('sad', 0.9, 7.0, hold_s, conf) == 'sad'
    assert hold.observe('happy', 0.9, 7.1, hold_s, conf) is None   # one odd frame ...
    assert hold.observe('sad', 0.9, 7.2, hold_s, conf) is None     # ... changes nothing
    assert hold.accepted == 'sad'


def test_hold_zero_accepts_at_once_and_no_face_breaks_the_hold():
    hold = ExpressionHold()
    assert hold.observe('fear', 0.6, 0.0, 0.0, 0.5) == 'fear'
    assert hold.observe('happy', 0.9, 1.0, 0.5, 0.5) is None
    hold.no_face(1.2)
    assert hold.observe('happy', 0.9, 1.6, 0.5, 0.5) is None       # restarted at 1.6
    assert hold.observe('happy', 0.9, 2.1, 0.5, 0.5) == 'happy'


def test_idle_label_after_no_face():
    hold = ExpressionHold()
    assert hold.idle(0.0, 5.0, 'neutral') is None                  # the clock starts now
    assert hold.idle(4.9, 5.0, 'neutral') is None
    assert hold.idle(5.0, 5.0, 'neutral') == 'neutral'
    assert hold.idle(9.0, 5.0, 'neutral') is None
    hold.observe('happy', 1.0, 10.0, 0.0, 0.5)
    assert hold.idle(12.0, 5.0, 'neutral') is None
    assert hold.idle(15.0, 5.0, 'neutral') == 'neutral'
    assert hold.idle(100.0, 5.0, '') is None                       # empty label: keep the last state


# --- rate limits and scheduler -----------------------------------------------------------------------------

def _events_in_any_window(times, window):
    return max(sum(1 for u in times if t <= u < t + window - 1e-6) for t in times)  # 1e-6: float noise


@pytest.mark.parametrize('rate,window', [(10.0, 1.0), (1.0, 1.0), (2.5, 1.0), (0.5, 2.0)])
def test_rate_limiter_never_exceeds_rate_in_any_window(rate, window):
    lim, sent, t = RateLimiter(), [], 0.0
    while t < 10.0:
        if lim.allows(t, rate):
            lim.record(t)
            sent.append(t)
        t = round(t + 0.01, 2)
    assert _events_in_any_window(sent, window) <= math.ceil(rate * window)
    assert len(sent) == int(rate * 10)
    assert min(b - a for a, b in zip(sent, sent[1:])) >= 1 / rate - 1e-6


def test_rate_limiter_next_allowed():
    lim = RateLimiter()
    assert lim.allows(0.0, 10.0)
    lim.record(0.0)
    assert not lim.allows(0.05, 10.0)
    assert lim.next_allowed(0.05, 10.0) == pytest.approx(0.1)
    assert lim.allows(0.1, 10.0)


def _drain(sched, now, light_rate=10.0, group_rate=1.0, until=None):
    """Send what the scheduler allows at `now` (every 10 ms up to `until`, if given)."""
    if until is not None:
        out, t = [], now
        while t <= until + 1e-9:
            out += _drain(sched, t, light_rate, group_rate)
            t = round(t + 0.01, 2)
        return out
    out = []
    for t in sched.pending():
        if sched.blocked(t, now, light_rate, group_rate) is None:
            state = sched.take(t, now)
            sched.sent(t, state, now)
            out.append((t, state))
    return out


def test_scheduler_sends_only_differences():
    lights = [Target('light', '1'), Target('light', '2')]
    sched = LightScheduler(lights)
    assert sched.pending() == []
    assert sched.want('angry', RED)
    assert _drain(sched, 0.0) == [(lights[0], RED)]         # 10/s: 100 ms between commands
    assert sched.blocked(lights[1], 0.05, 10, 1) == 'rate_limited'
    assert _drain(sched, 0.1) == [(lights[1], RED)]
    assert not sched.want('angry', RED)                      # unchanged: nothing wanted anew
    assert sched.pending() == [] and _drain(sched, 10.0) == []
    sched.want('other', RED)                                 # a different label with the same state
    assert sched.pending() == []
    sched.unknown([lights[1]])                               # e.g. a 500 for light 2
    assert _drain(sched, 20.0) == [(lights[1], RED)]


def test_scheduler_waits_for_transitions_and_rate_limits():
    first = Target('light', '1')
    sched = LightScheduler([first])
    sched.want('sad', BLUE)                                  # 2 s transition
    assert len(_drain(sched, 0.0)) == 1
    sched.want('angry', RED)
    assert sched.blocked(first, 1.0, 10, 1) == 'transition'
    assert _drain(sched, 1.0, until=1.99) == [] and len(_drain(sched, 2.0)) == 1
    sched.want('sad', BLUE)
    assert sched.blocked(first, 2.4, 10, 1) == 'transition'  # angry's 0.5 s transition runs until 2.5
    assert len(_drain(sched, 2.5)) == 1


def test_scheduler_defers_what_the_rate_limit_does_not_allow():
    lights = [Target('light', str(i)) for i in range(1, 13)]
    sched = LightScheduler(lights)
    sched.want('angry', RED)
    assert len(_drain(sched, 0.0, until=0.99)) == 10
    assert [sched.blocked(t, 0.95, 10, 1) for t in sched.pending()] == ['rate_limited'] * 2
    assert len(_drain(sched, 1.0, until=1.1)) == 2 and sched.pending() == []


def test_scheduler_burst_respects_light_and_group_limits():
    lights = [Target('light', str(i)) for i in range(1, 4)]
    sched, sent, t = LightScheduler(lights), [], 0.0
    states = [LightState(50, 0, xy=(0.1 * (i % 7 + 1), 0.3)) for i in range(300)]
    for i in range(300):                                     # a new state every 10 ms for 3 s
        t = i * 0.01
        sched.want(str(i), states[i])
        sent += [t for _ in _drain(sched, t)]
    assert _events_in_any_window(sent, 1.0) <= 10
    assert len(sent) >= 25
    group = LightScheduler([Target('group', '1')])
    gsent = []
    for i in range(300):
        t = i * 0.01
        group.want(str(i), states[i])
        gsent += [t for _ in _drain(group, t)]
    assert _events_in_any_window(gsent, 1.0) == 1 and len(gsent) == 3


# --- backoff -----------------------------------------------------------------------------------------------

def test_backoff_doubles_and_caps_and_resets():
    b = Backoff(0.5, 4.0)
    assert b.ready(0.0)
    assert [b.failed(0.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert not b.ready(3.9) and b.ready(4.0)
    b.succeeded()
    assert b.ready(0.0) and b.failed(10.0) == 0.5


# --- credentials -------------------------------------------------------------------------------------------

def test_username_file_is_0600_in_a_0700_folder(tmp_path):
    path = tmp_path / 'cfg' / 'emotion_ros' / 'hue_username.json'
    store_username(path, '10.0.0.2', 'secret-user-1')
    store_username(path, '127.0.0.1:8080', 'secret-user-2')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_username(path, '10.0.0.2') == 'secret-user-1'
    assert load_username(path, '127.0.0.1:8080') == 'secret-user-2'
    assert load_username(path, 'other') is None
    assert load_username(tmp_path / 'none.json', 'x') is None
    os.chmod(path, 0o644)
    load_username(path, '10.0.0.2')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600        # tightened on read (after it was validated)


def test_username_file_default_location_and_refusals(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CONFIG_HOME', str(tmp_path / 'xdg'))
    assert default_username_file() == tmp_path / 'xdg' / 'emotion_ros' / 'hue_username.json'
    monkeypatch.delenv('XDG_CONFIG_HOME')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert default_username_file() == tmp_path / 'home' / '.config' / 'emotion_ros' / 'hue_username.json'
    with pytest.raises(CredentialsError, match='inside the git working tree') as err:
        store_username(REPO / 'hue_username.json', 'b', 'secret-user')
    assert 'secret-user' not in str(err.value)
    assert not (REPO / 'hue_username.json').exists()
    bad = tmp_path / 'bad.json'
    bad.write_text('{not json')
    with pytest.raises(CredentialsError, match='not valid JSON'):
        load_username(bad, 'b')


# --- the phue-based client against the emulator ------------------------------------------------------------

@pytest.fixture
def bridge():
    with HueBridgeEmulator(users=['u' * 40]) as emu:
        yield emu


def test_client_pairs_only_after_the_link_button(bridge, tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    client = HueClient(bridge.address, timeout_s=1.0)
    with pytest.raises(BridgeFault) as err:
        client.pair('emotion_ros#test')
    assert err.value.kind == 'link_button'
    bridge.press_link_button()
    username = client.pair('emotion_ros#test')
    assert username in bridge.users and len(username) == 40
    assert list(tmp_path.iterdir()) == []                    # phue wrote no ~/.python_hue


def test_client_resolves_names_and_sends(bridge):
    client = HueClient(bridge.address, 'u' * 40, timeout_s=1.0)
    hall, one, room = Target('light', 'Hall'), Target('light', '1'), Target('group', 'Living room')
    assert client.resolve([hall, one, room]) == {hall: '2', one: '1', room: '1'}
    client.send(hall, RED.command())
    client.send(room, BLUE.command())
    assert [r.resource for r in bridge.puts()] == ['/lights/2/state', '/groups/1/action']
    assert bridge.puts()[0].body == RED.command()
    assert bridge.lights['2']['state']['xy'] == [0.675, 0.322]
    assert bridge.lights['1']['state']['hue'] == 46920
    with pytest.raises(BridgeFault) as err:
        client.resolve([Target('light', 'Kitchen')])
    assert err.value.kind == 'not_found' and '2 "Hall"' in str(err.value)


@pytest.mark.parametrize('fault,kind', [('429', 'rate_limited'), ('500', 'server_error'),
                                        ('unauthorized', 'unauthorized'), ('malformed', 'malformed'),
                                        ('delay', 'timeout')])
def test_client_faults_are_typed_and_never_show_the_username(bridge, fault, kind):
    client = HueClient(bridge.address, 'u' * 40, timeout_s=0.3)
    target = Target('light', '1')
    client.resolve([target])
    bridge.inject(fault, delay_s=1.0)
    with pytest.raises(BridgeFault) as err:
        client.send(target, RED.command())
    assert err.value.kind == kind
    assert 'u' * 40 not in str(err.value) and '<key>' in str(err.value)
    client.send(target, RED.command())                       # the next request goes through


def test_client_unreachable_and_wrong_user(bridge):
    port = bridge.port
    bridge.stop()
    client = HueClient(f'127.0.0.1:{port}', 'u' * 40, timeout_s=0.5)
    with pytest.raises(BridgeFault) as err:
        client.resolve([Target('light', '1')])
    assert err.value.kind == 'unreachable'
    bridge.start()
    assert client.resolve([Target('light', '1')])
    stranger = HueClient(bridge.address, 'not-a-user', timeout_s=0.5)
    with pytest.raises(BridgeFault) as err:
        stranger.resolve([Target('light', '1')])
    assert err.value.kind == 'unauthorized'
    assert json.dumps(bridge.requests[-1].path) == '"/api/<user>/lights"'


def test_emulator_runs_standalone_and_prints_a_request_log():
    proc = subprocess.Popen([sys.executable, str(REPO / 'test' / 'support' / 'hue_bridge_emulator.py'), '--port', '0',
                             '--press-button'], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        address = first.split('http://')[1].split('/')[0].strip()
        assert address.startswith('127.0.0.1:')
        client = HueClient(address, timeout_s=2.0)
        client.set_username(client.pair('emotion_ros#test'))
        client.resolve([Target('light', '1')])
        client.send(Target('light', '1'), RED.command())
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=10)[0]
    assert proc.returncode == 0
    assert 'PUT  /api/<user>/lights/1/state' in out and '1  PUT /lights/1/state -> 200' in out
    assert client.secrets()[0] not in out                    # the log shows <user>, never the username


def test_scheduler_counts_rate_limits_from_when_a_request_returned():
    group = Target('group', '1')
    sched = LightScheduler([group])
    sched.want('a', RED)
    assert sched.blocked(group, 0.0, 10, 1) is None
    sched.take(group, 0.0)
    sched.finished(group, 0.4)                               # a slow request: returned 0.4 s later
    sched.sent(group, RED, 0.4)
    sched.want('b', BLUE)
    assert sched.blocked(group, 1.2, 10, 1) == 'rate_limited'   # 1 s after it returned, not after it started
    assert sched.blocked(group, 1.4, 10, 1) is None
