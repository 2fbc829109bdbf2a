"""hue_actuator_node as a real process: EmotionArray messages over DDS in, requests to the emulated bridge out,
for both API versions: v1 over HTTP and CLIP v2 over HTTPS (certificate from a CA the test made).

Timing assertions use the emulator's recorded arrival times with generous margins (loaded 2-core box).
"""
import json
import math
import os
import stat
import time
from pathlib import Path

import pytest

from conftest import ARTIFACTS
from hue_bridge_emulator import DEFAULT_BRIDGE_ID, HueBridgeEmulator, make_pki, v2_id
from ros_graph import NodeProcess, ros_args, set_param, spin_until

rclpy = pytest.importorskip('rclpy')

from emotion_msgs.msg import Emotion, EmotionArray, HueState  # noqa: E402
from emotion_ros.core.hue.colors import load_colors  # noqa: E402
from emotion_ros.core.hue.credentials import BridgeCredentials, load_credentials, store_credentials  # noqa: E402
from emotion_ros.nodes.qos import latched_qos, results_qos  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
COLORS = load_colors(REPO / 'config' / 'hue_colors.yaml')
USER = 'f00dfeed' * 5
LABELS = ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')
APIS = ['v1', 'v2']


def body(api, label, **over):
    state = COLORS.lookup(label)
    out = state.command() if api == 'v1' else state.v2_body()
    out.update(over)
    return out


def instant(api, label):
    """The body with no transition (the colour file of the burst test)."""
    return body(api, label, **({'transitiontime': 0} if api == 'v1' else {'dynamics': {'duration': 0}}))


def emotion_array(*faces):
    """faces: (track id, box side in px, label, confidence)."""
    msg = EmotionArray()
    for track, side, label, conf in faces:
        e = Emotion(expression=label, confidence=float(conf))
        e.face.id, e.face.roi.width, e.face.roi.height = track, side, side
        msg.emotions.append(e)
    return msg


class Driver:
    """The test's side of the graph: publishes `emotions`, collects HueState from the nodes' `~/state`."""

    def __init__(self, node, names=('hue_actuator',)):
        self.node = node
        self.pub = node.create_publisher(EmotionArray, 'emotions', results_qos())
        self.by_node = {n: [] for n in names}
        self.ready = set()
        for n in names:
            node.create_subscription(HueState, f'/{n}/state', lambda m, n=n: self.by_node[n].append(m),
                                     latched_qos(200))

    @property
    def states(self):
        return next(iter(self.by_node.values()))

    def wait_ready(self, proc: NodeProcess, timeout=60.0, name='hue_actuator'):
        """Until `name`'s emotions subscription is matched by our publisher (one more match per node waited
        for: with two nodes, the first one's match let an unmatched second one miss the first message in CI)."""
        self.ready.add(name)
        ok = spin_until(self.node, lambda: proc.proc.poll() is not None or (
            self.pub.get_subscription_count() >= len(self.ready) and
            self.node.count_publishers(f'/{name}/state') > 0), timeout)
        assert ok and proc.proc.poll() is None, proc.output

    def spin(self, seconds):
        spin_until(self.node, lambda: False, seconds)

    def feed(self, seconds, label, conf=0.9, hz=20.0, decoy=True):
        """Publish `label` (a str, or a function of the frame index) as the largest face, with a smaller face
        showing 'angry' beside it; returns the monotonic time of the first message."""
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds:
            lbl = label(i) if callable(label) else label
            faces = [('7', 200, lbl, conf)] + ([('3', 80, 'angry', 0.99)] if decoy else [])
            self.pub.publish(emotion_array(*faces))
            i += 1
            spin_until(self.node, lambda: time.monotonic() >= t0 + i / hz, 1.0)
        return t0

    def results(self, event, name=None):
        return [s for s in (self.by_node[name] if name else self.states) if s.event == event]


@pytest.fixture
def driver():
    rclpy.init()
    node = rclpy.create_node('hue_test_driver')
    yield Driver(node)
    node.destroy_node()
    rclpy.shutdown()


@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp('pki')
    return {'good': make_pki(folder), 'other': make_pki(folder / 'other', name='other')}


def make_bridge(api, pki, **kw):
    if api == 'v1':
        return HueBridgeEmulator(lights=3, **kw).start()
    return HueBridgeEmulator(lights=3, api='v2', certfile=str(pki['good']['cert']), keyfile=str(pki['good']['key']),
                             **kw).start()


@pytest.fixture(params=APIS)
def bridge(request, pki):
    emu = make_bridge(request.param, pki)
    yield emu
    emu.stop()


def start_node(env, tmp_path, remaps=None, **params):
    quoted = {k: (f"'{v}'" if isinstance(v, str) else v) for k, v in params.items()}
    return NodeProcess('hue_actuator_node', ros_args(quoted, remaps), env, tmp_path)


def paired_username_file(tmp_path, bridge, name='hue_username.json'):
    path = tmp_path / 'cfg' / name
    store_credentials(path, bridge.address, BridgeCredentials(USER))
    bridge.users.add(USER)
    return path


def logs_contain(text, node: NodeProcess) -> bool:
    if text in node.output:
        return True
    log_dir = Path(os.environ['ROS_LOG_DIR'])
    return any(text in p.read_text(errors='replace') for p in log_dir.rglob('*') if p.is_file())


def state_put_paths(bridge, since=0.0):
    return [r.resource for r in bridge.state_puts(since)]


def test_pairing_hold_and_no_resend(driver, bridge, ros_env, tmp_path):
    api = bridge.api
    cred = tmp_path / 'xdg' / 'emotion_ros' / 'hue_username.json'
    node = start_node(ros_env, tmp_path, bridge=bridge.address, username_file=str(cred), hold_s=0.5,
                      min_confidence=0.5, pairing_retry_s=0.3, lights='Desk lamp')
    try:
        driver.wait_ready(node)
        assert spin_until(driver.node, lambda: 'Press the link button' in node.output, 20), node.output
        driver.spin(0.5)
        assert not cred.exists() and bridge.state_puts() == []
        bridge.press_link_button()
        assert spin_until(driver.node, lambda: cred.exists() and driver.results('paired'), 20), node.output
        (username,) = bridge.users

        t_happy = driver.feed(3.0, 'happy')
        happy = bridge.state_puts()
        light1 = '/lights/1/state' if api == 'v1' else f'/clip/v2/resource/light/{v2_id("light", "1")}'
        assert [(r.resource, r.body) for r in happy] == [(light1, body(api, 'happy'))]
        assert 0.45 <= happy[0].t - t_happy <= 3.0          # held 0.5 s first
        driver.feed(1.5, 'sad', conf=0.3)                    # below min_confidence: no change
        driver.feed(1.0, 'sad', conf=math.nan)               # NaN confidence (issue 18 item 10): no change
        driver.feed(0.3, 'sad')                              # shorter than hold_s: no change
        driver.feed(0.3, 'happy')
        assert len(bridge.state_puts()) == 1
        t_sad = driver.feed(2.0, 'sad')
        sad = bridge.state_puts(since=t_sad)
        assert [r.body for r in sad] == [body(api, 'sad')] and 0.45 <= sad[0].t - t_sad <= 2.0
        t_other = driver.feed(2.0, 'contempt')               # not in the table: default state
        driver.feed(2.0, 'boredom')                          # also default: unchanged, nothing sent
        default = COLORS.default.command() if api == 'v1' else COLORS.default.v2_body()
        assert [r.body for r in bridge.state_puts(since=t_other)] == [default]
        driver.spin(0.5)
    finally:
        code = node.stop()
    assert code in (0, -2), node.output
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600 and stat.S_IMODE(cred.parent.stat().st_mode) == 0o700
    rec = load_credentials(cred, bridge.address)
    assert rec.username == username and rec.bridge_id == DEFAULT_BRIDGE_ID and rec.api == api
    if api == 'v2':
        assert rec.clientkey == bridge.clientkeys[username] and len(rec.cert_sha256) == 64
        assert not logs_contain(rec.clientkey, node)
        assert all(r.user == username for r in bridge.requests if r.path.startswith('/clip/v2/resource/light'))
    assert not logs_contain(username, node)
    assert 'PAIRING done' in node.output and str(cred) in node.output
    sent = [(s.label, list(s.targets), s.api_version) for s in driver.results('sent')]
    target = ['1'] if api == 'v1' else [v2_id('light', '1')]
    assert sent == [('happy', target, api), ('sad', target, api), ('contempt', target, api)]
    skipped = driver.results('skipped')[-1]
    assert (skipped.label, skipped.reason) == ('boredom', 'unchanged')
    assert not any(s.label == 'angry' for s in driver.states)   # the smaller face is never followed
    assert all(s.bridge_id == DEFAULT_BRIDGE_ID for s in driver.states if s.event == 'sent')
    listing = '/api/<user>/lights' if api == 'v1' else '/clip/v2/resource/light'
    assert [r.path for r in bridge.requests if r.method == 'GET'].count(listing) == 1


@pytest.mark.parametrize('target', ['lights', 'group'])
@pytest.mark.parametrize('api', APIS)
def test_burst_of_changing_emotions_respects_rate_limits(driver, pki, ros_env, tmp_path, api, target):
    bridge = make_bridge(api, pki)
    params = {'lights': '1,2,3'} if target == 'lights' else {'group': 'Living room'}
    if api == 'v2':
        params['ca_file'] = str(pki['good']['ca'])              # verified by the test's CA instead of pinned
    instant_colors = tmp_path / 'instant_colors.yaml'         # no transitions: only the rate limits hold back
    instant_colors.write_text((REPO / 'config' / 'hue_colors.yaml').read_text()
                              .replace('transition_s: ', 'transition_s: 0 #'))
    node = start_node(ros_env, tmp_path, bridge=bridge.address, hold_s=0.0, min_confidence=0.0,
                      colors_file=str(instant_colors), username_file=str(paired_username_file(tmp_path, bridge)),
                      **params)
    try:
        driver.wait_ready(node)
        assert spin_until(driver.node, lambda: driver.results('connected'), 20), node.output
        t0 = driver.feed(3.0, lambda i: LABELS[i % len(LABELS)], hz=30.0)   # a new expression every frame
        driver.feed(2.5, 'neutral')                                          # then one holds
        driver.spin(0.5)
    finally:
        node.stop()
        bridge.stop()
    puts = bridge.state_puts(since=t0, ok_only=False)
    times = [r.t for r in puts]
    if target == 'lights':
        assert 25 <= len(puts) <= 10 * (times[-1] - times[0]) + 10
        assert all(b - a >= 0.9 for a, b in zip(times, times[10:])), times      # <= 10 in any second
        gaps = sorted(b - a for a, b in zip(times, times[1:]))
        assert gaps[len(gaps) // 2] >= 0.09                                      # spaced ~100 ms, no bursts
        finals = {r.resource: r.body for r in puts}
        paths = ([f'/lights/{i}/state' for i in (1, 2, 3)] if api == 'v1'
                 else [f'/clip/v2/resource/light/{v2_id("light", str(i))}' for i in (1, 2, 3)])
        assert finals == {p: instant(api, 'neutral') for p in paths}
    else:
        group = '/groups/1/action' if api == 'v1' else f'/clip/v2/resource/grouped_light/{v2_id("grouped_light", "1")}'
        assert 3 <= len(puts) <= 8 and {r.resource for r in puts} == {group}
        assert all(b - a >= 0.9 for a, b in zip(times, times[1:])), times       # <= 1 per second
        assert puts[-1].body == instant(api, 'neutral')
    reasons = {s.reason for s in driver.results('skipped')}
    assert 'rate_limited' in reasons and reasons <= {'rate_limited', 'unchanged'}   # unchanged: back to what shows
    if api == 'v2':
        assert 'verified against' in node.output and 'first use' not in node.output


@pytest.mark.slow
def test_faults_back_off_and_resend_when_the_bridge_returns(driver, bridge, ros_env, tmp_path):
    api = bridge.api
    node = start_node(ros_env, tmp_path, bridge=bridge.address, hold_s=0.0, request_timeout_s=0.3,
                      backoff_initial_s=0.2, backoff_max_s=1.0,
                      username_file=str(paired_username_file(tmp_path, bridge)))
    try:
        driver.wait_ready(node)
        assert spin_until(driver.node, lambda: driver.results('connected'), 20), node.output
        driver.feed(1.0, 'neutral')
        assert [r.body for r in bridge.state_puts()] == [body(api, 'neutral')]
        plan = [('429', 'happy', 2, 'rate_limited'), ('500', 'sad', 1, 'server_error'),
                ('503', 'surprise', 1, 'server_error'), ('malformed', 'fear', 1, 'malformed'),
                ('unauthorized', 'disgust', 1, 'unauthorized'), ('delay', 'angry', 1, 'timeout'),
                ('drop', 'happy', 1, 'unreachable'), ('drip', 'sad', 1, 'timeout'),
                ('nested', 'fear', 1, 'malformed'),
                ('leak', 'neutral', 1, 'api_error' if api == 'v1' else 'http_error')]
        for fault, label, count, kind in plan:
            bridge.inject(fault, count=count, delay_s=1.0)
            t0 = driver.feed(0.5, label, decoy=False)
            assert spin_until(driver.node, lambda: any(r.body == body(api, label) for r in bridge.state_puts(t0)),
                              15), (fault, bridge.summary(), node.output)
            tries = [r for r in bridge.puts(t0) if r.body == body(api, label)]
            assert [r.fault for r in tries] == [fault] * count + [''], (fault, [(r.fault, r.status) for r in tries])
            assert tries[-1].t - tries[-2].t >= 0.15                       # backed off before resending
            assert kind in {s.reason for s in driver.results('failed') if s.label == label}, fault
            assert node.proc.poll() is None
            driver.spin(1.2)                                                # let the delayed reply finish
        port = bridge.port
        bridge.stop()                                                       # unreachable
        t_down = driver.feed(2.0, 'angry', decoy=False)
        driver.spin(1.0)
        bridge.port = port
        bridge.start()
        assert spin_until(driver.node, lambda: any(r.body == body(api, 'angry') for r in bridge.state_puts(t_down)),
                          20), node.output
        driver.spin(1.5)
        assert 'unreachable' in {s.reason for s in driver.results('failed')}
        assert [r.body for r in bridge.state_puts(t_down)] == [body(api, 'angry')]   # sent once it was back, once
    finally:
        node.stop()
    assert not logs_contain(USER, node)                                     # issue 18 item 7: not even in errors
    assert all(USER not in s.last_error + s.reason for s in driver.states)
    assert any('<key>' in s.last_error for s in driver.results('failed'))   # the leaked key, redacted
    out = node.output
    errors = '\n'.join(s.last_error for s in driver.results('failed'))
    for text in ('HTTP 429', 'HTTP 500', 'HTTP 503', 'not usable JSON', 'unauthorized user',
                 'no answer from the bridge within 0.3 s', 'nested deeper', 'unreachable'):
        assert text in errors, text                                         # every fault is published ...
    for text in ('HTTP 429', 'HTTP 500', 'not usable JSON', 'unauthorized user', 'Hue bridge answers again'):
        assert text in out, text                                            # ... and logged (5 s per kind)
    assert 'delete the entry for' in out                                    # re-pairing hint on unauthorized


def test_one_emotion_run_drives_a_v1_and_a_v2_bridge_to_equivalent_states(pki, ros_env, tmp_path):
    rclpy.init()
    node = rclpy.create_node('hue_test_driver_2')
    driver = Driver(node, names=('hue_v1', 'hue_v2'))
    b1, b2 = make_bridge('v1', pki), make_bridge('v2', pki)
    n1 = start_node(ros_env, tmp_path, {'__node': 'hue_v1'}, bridge=b1.address, hold_s=0.3, lights='1,Hall',
                    username_file=str(paired_username_file(tmp_path, b1, 'v1.json')))
    n2 = start_node(ros_env, tmp_path, {'__node': 'hue_v2'}, bridge=b2.address, hold_s=0.3, lights='1,Hall',
                    ca_file=str(pki['good']['ca']), username_file=str(paired_username_file(tmp_path, b2, 'v2.json')))
    try:
        driver.wait_ready(n1, name='hue_v1')
        driver.wait_ready(n2, name='hue_v2')
        assert spin_until(node, lambda: driver.results('connected', 'hue_v1') and
                          driver.results('connected', 'hue_v2'), 20), (n1.output, n2.output)
        seen = []
        for i, label in enumerate(('happy', 'sad', 'surprise', 'neutral', 'sad', 'fear')):
            driver.feed(1.0, label)
            assert spin_until(node, lambda: all(len(driver.results('sent', n)) == 2 * (i + 1)
                                                for n in ('hue_v1', 'hue_v2')), 10), label   # after transitions
            states1, states2 = b1.light_states(), b2.light_states()
            seen.append((label, states1))
            for name in ('Desk lamp', 'Hall'):
                s1, s2 = states1[name], states2[name]
                assert s1['on'] == s2['on'] and abs(s1['bri'] - s2['bri']) <= 1, (label, name, s1, s2)
                assert all(abs(a - b) <= 0.002 for a, b in zip(s1['xy'], s2['xy'])), (label, name, s1, s2)
        assert states1['Ceiling'] == states2['Ceiling']                           # not a target: untouched
    finally:
        n1.stop()
        n2.stop()
        b1.stop()
        b2.stop()
        node.destroy_node()
        rclpy.shutdown()
    labels1 = [s.label for s in driver.results('sent', 'hue_v1')]
    labels2 = [s.label for s in driver.results('sent', 'hue_v2')]
    assert labels1 == labels2 == [lbl for lbl in ('happy', 'sad', 'surprise', 'neutral', 'sad', 'fear')
                                  for _ in range(2)]
    assert {s.api_version for s in driver.results('sent', 'hue_v1')} == {'v1'}
    assert {s.api_version for s in driver.results('sent', 'hue_v2')} == {'v2'}
    log_dir = Path(os.environ.get('HUE_REQUEST_LOG_DIR', ARTIFACTS))      # kept as test artefacts
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / 'hue_v1_requests.log').write_text('\n'.join(b1.log_lines()) + '\n')
    (log_dir / 'hue_v2_requests.log').write_text('\n'.join(b2.log_lines()) + '\n')
    v2_puts = [r for r in b2.state_puts()]
    assert v2_puts and all(r.user == USER for r in v2_puts)
    assert [r.path for r in b2.requests[:2]] == ['/api/0/config', '/clip/v2/resource/bridge']


@pytest.mark.parametrize('how', ['wrong_ca', 'changed_pin'])
def test_wrong_certificate_is_refused_with_a_clear_message(driver, pki, ros_env, tmp_path, how):
    bridge = make_bridge('v2', pki)
    cred = paired_username_file(tmp_path, bridge)
    params = {}
    if how == 'wrong_ca':
        params['ca_file'] = str(pki['other']['ca'])
    else:
        store_credentials(cred, bridge.address, BridgeCredentials(USER, '', DEFAULT_BRIDGE_ID, 'ab' * 32, 'v2'))
    node = start_node(ros_env, tmp_path, bridge=bridge.address, hold_s=0.0, username_file=str(cred), **params)
    try:
        driver.wait_ready(node)
        driver.feed(3.0, 'happy')
        assert spin_until(driver.node, lambda: driver.results('failed'), 10), node.output
        assert node.proc.poll() is None
    finally:
        node.stop()
        bridge.stop()
    assert bridge.requests == []                       # nothing was sent to the impostor, not even over HTTP
    needle = 'certificate not trusted' if how == 'wrong_ca' else 'certificate CHANGED'
    assert needle in node.output and '[ERROR]' in node.output, node.output
    assert {s.reason for s in driver.results('failed')} == {'certificate'}
    assert load_credentials(cred, bridge.address).cert_sha256 == ('' if how == 'wrong_ca' else 'ab' * 32)


def test_dry_run_logs_what_it_would_send_follows_a_track_id_and_idles(driver, ros_env, tmp_path):
    node = start_node(ros_env, tmp_path, dry_run=True, hold_s=0.2, follow_track_id='3', lights='1,Hall',
                      no_face_label='neutral', no_face_after_s=1.5)
    try:
        driver.wait_ready(node)
        driver.feed(1.5, 'happy')                            # face 7 is happy; face 3 (followed) is angry
        driver.spin(3.0)                                     # no face: neutral after 1.5 s
    finally:
        node.stop()
    dry = [(s.label, list(s.targets)) for s in driver.results('dry_run')]
    assert [d for d in dry if d[0] != 'neutral'] == [('angry', ['1']), ('angry', ['Hall'])]
    assert dry[-2:] == [('neutral', ['1']), ('neutral', ['Hall'])]
    angry = next(s for s in driver.results('dry_run') if s.label == 'angry')   # (neutral may come first: idle)
    state = COLORS.lookup('angry')
    assert angry.on and abs(angry.brightness - 80.0) < 1e-3 and angry.transition_ms == 500
    assert (round(angry.x, 3), round(angry.y, 3)) == state.xy and angry.api_version == ''
    assert 'dry run: would send light 1 {"on": true, "bri": 203' in node.output


def test_state_is_latched_for_a_late_subscriber(ros_env, tmp_path):
    node = start_node(ros_env, tmp_path, dry_run=True, hold_s=0.0)
    rclpy.init()
    pub_node = rclpy.create_node('hue_test_pub')
    try:
        pub = pub_node.create_publisher(EmotionArray, 'emotions', results_qos())
        assert spin_until(pub_node, lambda: pub.get_subscription_count() > 0, 60), node.output
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            pub.publish(emotion_array(('1', 100, 'surprise', 0.9)))
            spin_until(pub_node, lambda: False, 0.05)
        late = []
        pub_node.create_subscription(HueState, '/hue_actuator/state', late.append, latched_qos())
        assert spin_until(pub_node, lambda: late, 10)
        assert late[-1].event == 'dry_run' and late[-1].label == 'surprise'
    finally:
        pub_node.destroy_node()
        rclpy.shutdown()
        node.stop()


@pytest.mark.parametrize('params,code,needle', [
    ({}, 2, 'set bridge (host, host:port or auto) or dry_run:=true'),
    ({'dry_run': True, 'colors_file': '/nonexistent/colors.yaml'}, 2, 'cannot read colour file /nonexistent'),
    ({'dry_run': True, 'colors_file': '/dev/zero'}, 2, 'is not a regular file'),
    ({'dry_run': True, 'lights': ' , '}, 2, 'no target'),
    ({'dry_run': True, 'hold_s': -1.0}, 2, 'hold_s'),
    ({'bridge': 'http://x/'}, 2, 'is not host, host:port or auto'),
    ({'bridge': '127.0.0.1:9', 'api': 'v3'}, 2, "api: 'v3' is not one of"),
    ({'bridge': '127.0.0.1:9', 'ca_file': '/nonexistent/ca.pem'}, 2, 'is not a file'),
    ({'bridge': '127.0.0.1:9', 'username_file': str(REPO / 'hue_username.json')}, 2, 'inside the git working tree'),
    ({'bridge': '127.0.0.1:9', 'username_file': 'FIFO'}, 2, 'is not a regular file'),
])
def test_bad_start_exits_with_reason(ros_env, tmp_path, params, code, needle):
    if params.get('username_file') == 'FIFO':                # issue 18 item 6: hung the node with no log line
        fifo = tmp_path / 'cfg' / 'fifo'
        fifo.parent.mkdir()
        os.mkfifo(fifo)
        params = dict(params, username_file=str(fifo))
    node = start_node(ros_env, tmp_path, **params)
    try:
        rc = node.wait(60)
    finally:
        node.stop()
    assert rc == code and 'cannot start' in node.output and needle in node.output, node.output
    assert 'Traceback' not in node.output


def test_pairing_gives_up_after_the_timeout(ros_env, tmp_path):
    bridge = HueBridgeEmulator().start()
    cred = tmp_path / 'cfg' / 'hue.json'
    node = start_node(ros_env, tmp_path, bridge=bridge.address, username_file=str(cred), pairing_timeout_s=1.0,
                      pairing_retry_s=0.3)
    try:
        rc = node.wait(60)
    finally:
        node.stop()
        bridge.stop()
    assert rc == 3, node.output
    assert 'was not pressed within 1 s' in node.output and not cred.exists()
    assert 2 <= len([r for r in bridge.requests if r.method == 'POST' and r.path == '/api']) <= 6


def test_lifecycle_cycles_leave_no_extra_publishers_and_stop_the_controller(tmp_path):
    from rclpy.parameter import Parameter
    from emotion_ros.nodes.hue_actuator_node import HueActuatorNode
    rclpy.init()
    try:
        node = HueActuatorNode(parameter_overrides=[Parameter('dry_run', value=True),
                                                    Parameter('autostart', value=False)])
        try:
            for _ in range(3):
                node.trigger_configure()
                assert node.controller is not None
                node.trigger_activate()
                node.trigger_deactivate()
                node.trigger_cleanup()
                assert node.controller is None
            assert node.count_publishers('/hue_actuator/state') == 0
            node.trigger_configure()
            assert node.count_publishers('/hue_actuator/state') == 1
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown()


def test_bridge_auto_finds_the_v2_emulator_by_mdns_on_loopback(driver, pki, ros_env, tmp_path):
    from zeroconf import IPVersion, ServiceInfo, Zeroconf
    import socket
    bridge = make_bridge('v2', pki)
    cred = tmp_path / 'cfg' / 'hue_username.json'
    store_credentials(cred, DEFAULT_BRIDGE_ID, BridgeCredentials(USER))     # paired earlier, keyed by bridge id
    bridge.users.add(USER)
    zc = Zeroconf(interfaces=['127.0.0.1'], ip_version=IPVersion.V4Only)
    info = ServiceInfo('_hue._tcp.local.', 'Hue Bridge - 4A5B6C._hue._tcp.local.',
                       addresses=[socket.inet_aton('127.0.0.1')], port=bridge.port,
                       properties={'bridgeid': DEFAULT_BRIDGE_ID, 'modelid': 'BSB002'}, server='hue-emu.local.')
    zc.register_service(info)
    node = start_node(ros_env, tmp_path, bridge='auto', discovery_interfaces='127.0.0.1', discovery_timeout_s=5.0,
                      hold_s=0.0, lights=2, username_file=str(cred))          # lights as a bare number works too
    try:
        driver.wait_ready(node)
        t0 = driver.feed(4.0, 'surprise')
        assert spin_until(driver.node, lambda: bridge.state_puts(t0), 20), node.output
    finally:
        node.stop()
        bridge.stop()
        zc.unregister_service(info)
        zc.close()
    assert [r.resource for r in bridge.state_puts()] == [f'/clip/v2/resource/light/{v2_id("light", "2")}']
    sent = driver.results('sent')[0]
    assert (sent.bridge, sent.bridge_id, sent.api_version) == (bridge.address, DEFAULT_BRIDGE_ID, 'v2')
    assert json.loads((cred.parent / 'hue_bridges.json').read_text())['port'] == bridge.port
    assert load_credentials(cred, DEFAULT_BRIDGE_ID).cert_sha256                 # pinned on first use, stored
    assert 'mDNS _hue._tcp' in node.output


def test_pairing_parameters_apply_at_runtime(ros_env, tmp_path):
    """pairing_retry_s and pairing_timeout_s changed while the node waits for the link button (issue 12 e)."""
    bridge = HueBridgeEmulator().start()
    rclpy.init()
    probe = rclpy.create_node('hue_pairing_probe')
    node = start_node(ros_env, tmp_path, bridge=bridge.address, username_file=str(tmp_path / 'cfg' / 'hue.json'),
                      pairing_timeout_s=3600.0, pairing_retry_s=8.0)

    def attempts():
        return len([r for r in bridge.requests if r.method == 'POST' and r.path == '/api'])
    try:
        assert spin_until(probe, lambda: attempts() >= 1, 60), node.output
        spin_until(probe, lambda: False, 2.0)
        assert attempts() == 1                                                  # next one 8 s later
        set_param(probe, 'hue_actuator', 'pairing_retry_s', 0.2)
        first = attempts()
        # the pending 8 s wait, then 0.2 s apart: 5 more within 20 s (at 8 s apart there would be 3 at most; a
        # fixed 9 s window failed with two CPU hogs beside the suite: (1, 3))
        spin_until(probe, lambda: attempts() - first >= 5, 20.0)
        assert attempts() - first >= 5, (first, attempts())
        set_param(probe, 'hue_actuator', 'pairing_timeout_s', 1.0)            # waiting for ~12 s already
        rc = node.wait(30)
    finally:
        node.stop()
        bridge.stop()
        probe.destroy_node()
        rclpy.shutdown()
    assert rc == 3 and 'was not pressed within 1 s' in node.output, node.output


def test_backoff_parameters_apply_at_runtime(ros_env, tmp_path):
    """After a bridge fault the next attempt waits backoff_initial_s (capped by backoff_max_s), as set now."""
    bridge = HueBridgeEmulator(lights=1).start()
    rclpy.init()
    probe = rclpy.create_node('hue_backoff_probe')
    driver = Driver(probe)
    node = start_node(ros_env, tmp_path, bridge=bridge.address, hold_s=0.0, backoff_initial_s=0.1,
                      backoff_max_s=0.2, username_file=str(paired_username_file(tmp_path, bridge)))

    def gap_after_a_fault(label):
        t = time.monotonic()
        bridge.inject('500', count=1)
        driver.feed(0.3, label, decoy=False)
        assert spin_until(probe, lambda: len(bridge.state_puts(t)) >= 1, 60), bridge.summary()
        failed = [r for r in bridge.puts(t) if r.is_state and r.status != 200]
        return bridge.state_puts(t)[0].t - failed[0].t
    try:
        driver.wait_ready(node)
        assert spin_until(probe, lambda: driver.results('connected'), 30), node.output
        short = gap_after_a_fault('happy')
        set_param(probe, 'hue_actuator', 'backoff_initial_s', 6.0)
        set_param(probe, 'hue_actuator', 'backoff_max_s', 3.0)
        capped = gap_after_a_fault('sad')
    finally:
        node.stop()
        bridge.stop()
        probe.destroy_node()
        rclpy.shutdown()
    assert short < 1.5 and 2.8 <= capped < 5.5, (short, capped)             # 0.1 s, then min(6, 3) = 3 s


# --- issue 24 rows 12-15 through the node process (controller-level cases: test_hue_round2.py) ----------------
def key_pieces(text, key=USER, n=8):
    low, k = text.lower(), key.lower()
    return sorted({k[i:i + n] for i in range(len(k) - n + 1) if k[i:i + n] in low})


def all_logs(node: NodeProcess) -> str:
    log_dir = Path(os.environ['ROS_LOG_DIR'])
    return node.output + ''.join(p.read_text(errors='replace') for p in log_dir.rglob('*') if p.is_file())


def test_row12_a_key_quoted_where_texts_are_cut_is_in_no_log_line_nor_state(driver, bridge, ros_env, tmp_path):
    """cf495d6 cut bridge error texts at 200 characters before redacting: a key at 170-200 kept up to 37 of its
    40 characters in the log and on ~/state."""
    node = start_node(ros_env, tmp_path, bridge=bridge.address, hold_s=0.0, backoff_initial_s=0.1,
                      backoff_max_s=0.5, username_file=str(paired_username_file(tmp_path, bridge)))
    try:
        driver.wait_ready(node)
        labels = ['sad', 'fear', 'surprise', 'angry', 'neutral', 'happy', 'disgust']
        for i, pad in enumerate(range(160, 215, 8)):
            bridge.inject('leak', pad=pad)
            t0 = driver.feed(0.5, labels[i % len(labels)], decoy=False)
            spin_until(driver.node, lambda: any(r.fault == 'leak' for r in bridge.puts(t0)), 15)
            driver.spin(0.6)                      # the node's log throttle is per fault kind: 5 s; state is not
        assert sum(r.fault == 'leak' for r in bridge.puts()) >= 6, bridge.summary()
    finally:
        node.stop()
    published = '\n'.join(s.last_error + ' ' + s.reason for s in driver.states)
    assert 'invalid value' in published                                   # the bridge texts went out, redacted
    assert key_pieces(published) == [] and key_pieces(all_logs(node)) == [], (key_pieces(published),
                                                                             key_pieces(all_logs(node)))


@pytest.mark.parametrize('status', ['503', '429'])
def test_row13_busy_https_at_first_start_pairs_over_https_never_http(driver, pki, ros_env, tmp_path, status):
    """The bridge serves HTTPS and plain HTTP on one port; HTTPS answers 503/429 at first. cf495d6 fell back
    to HTTP and paired in clear text (the key stored as v1, no pin)."""
    bridge = make_bridge('v2', pki, plain_http_too=True)
    key_file = tmp_path / 'cfg' / 'hue_username.json'
    try:
        bridge.press_link_button(120)
        bridge.inject(status, count=3, method='*', retry_after='1')
        node = start_node(ros_env, tmp_path, bridge=bridge.address, username_file=str(key_file),
                          pairing_retry_s=0.3, backoff_initial_s=0.2)
        try:
            driver.wait_ready(node)
            assert spin_until(driver.node, lambda: driver.results('paired'), 60), (node.output, bridge.summary())
        finally:
            node.stop()
        assert {r.scheme for r in bridge.requests} == {'https'}, bridge.log_lines()
        assert sum(r.fault == status for r in bridge.requests) == 3
        rec = load_credentials(key_file, bridge.address)
        assert rec.api == 'v2' and len(rec.cert_sha256) == 64 and rec.username in bridge.users
        assert 'HTTPS required' in node.output
    finally:
        bridge.stop()


def test_row14_a_bulb_re_added_under_a_new_id_gets_the_next_state(driver, pki, ros_env, tmp_path):
    """Targeted by its v2 id; re-added, that id answers 404. cf495d6 kept sending to the old id (dark until
    restart); the node re-reads the light list and finds the bulb by the name it had."""
    bridge = make_bridge('v2', pki)
    try:
        node = start_node(ros_env, tmp_path, bridge=bridge.address, hold_s=0.0, backoff_initial_s=0.2,
                          lights=bridge.light_v2_id('1'), username_file=str(paired_username_file(tmp_path, bridge)))
        try:
            driver.wait_ready(node)
            driver.feed(1.0, 'happy', decoy=False)
            assert spin_until(driver.node, lambda: bridge.state_puts(), 20), node.output
            new_id = bridge.readd_light('1', new_lid='4')
            t0 = driver.feed(0.5, 'sad', decoy=False)

            def arrived():
                return any(r.body == body('v2', 'sad') and r.resource.endswith(new_id)
                           for r in bridge.state_puts(t0))
            assert spin_until(driver.node, arrived, 30), (bridge.summary(), node.output)
            driver.spin(2.0)
        finally:
            node.stop()
        assert bridge.light_states()['Desk lamp']['bri'] == body('v1', 'sad')['bri']
        listings = [r for r in bridge.requests if r.t >= t0 and r.method == 'GET'
                    and r.resource == '/clip/v2/resource/light']
        assert 1 <= len(listings) <= 2 + (time.monotonic() - t0) / 2.0, len(listings)   # RELIST_MIN_S = 2 s
        assert 'now id' in node.output
    finally:
        bridge.stop()


def test_row15_an_event_stream_that_keeps_dropping_is_retried_less_often_and_resends_nothing(driver, pki, ros_env,
                                                                                          tmp_path):
    """Answers 200 then drops, over and over. cf495d6 reconnected every ~0.5 s and resent the unchanged state
    at each reconnect."""
    bridge = make_bridge('v2', pki)
    try:
        node = start_node(ros_env, tmp_path, bridge=bridge.address, hold_s=0.0,
                          username_file=str(paired_username_file(tmp_path, bridge)))
        try:
            driver.wait_ready(node)
            driver.feed(1.0, 'fear', decoy=False)
            assert spin_until(driver.node, lambda: bridge.state_puts() and bridge.stream_count() == 1, 30), \
                node.output
            driver.spin(0.5)
            t0 = time.monotonic()
            bridge.drop_new_streams(1000)
            bridge.drop_streams()
            driver.spin(10.0)
            streams = [r for r in bridge.requests if r.t >= t0 and r.path.startswith('/eventstream')]
            assert len(streams) <= 8, len(streams)                        # cf495d6: ~20 in 10 s
            assert bridge.state_puts(t0) == [], [r.body for r in bridge.state_puts(t0)]
            bridge.drop_new_streams(0)
            assert spin_until(driver.node, lambda: bridge.stream_count() == 1, 45), node.output
            driver.spin(1.0)
            assert bridge.state_puts(t0) == []                            # unchanged: not resent on reconnect
        finally:
            node.stop()
        assert node.proc.returncode == 0
    finally:
        bridge.stop()
