"""hue_actuator_node as a real process: EmotionArray messages over DDS in, requests to the emulated bridge out.

Timing assertions use the emulator's recorded arrival times with generous margins (loaded 2-core box).
"""
import json
import os
import stat
import time
from pathlib import Path

import pytest

from hue_bridge_emulator import HueBridgeEmulator
from ros_graph import NodeProcess, ros_args, spin_until

rclpy = pytest.importorskip('rclpy')
from std_msgs.msg import String  # noqa: E402

from emotion_msgs.msg import Emotion, EmotionArray  # noqa: E402
from emotion_ros.core.hue_colors import load_colors  # noqa: E402
from emotion_ros.core.hue_credentials import store_username  # noqa: E402
from emotion_ros.nodes.qos import results_qos  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[1]
COLORS = load_colors(REPO / 'config' / 'hue_colors.yaml')
USER = 'f00dfeed' * 5
LABELS = ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')


def cmd(label):
    return COLORS.lookup(label).command()


def emotion_array(*faces):
    """faces: (track id, box side in px, label, confidence)."""
    msg = EmotionArray()
    for track, side, label, conf in faces:
        e = Emotion(expression=label, confidence=float(conf))
        e.face.id, e.face.roi.width, e.face.roi.height = track, side, side
        msg.emotions.append(e)
    return msg


class Driver:
    """The test's side of the graph: publishes `emotions`, collects `/hue_actuator/state`."""

    def __init__(self, node):
        self.node = node
        self.pub = node.create_publisher(EmotionArray, 'emotions', results_qos())
        self.states = []
        node.create_subscription(String, '/hue_actuator/state', lambda m: self.states.append(json.loads(m.data)),
                                 results_qos(200))

    def wait_ready(self, proc: NodeProcess, timeout=60.0):
        ok = spin_until(self.node, lambda: proc.proc.poll() is not None or (
            self.pub.get_subscription_count() > 0 and self.node.count_publishers('/hue_actuator/state') > 0), timeout)
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

    def results(self, result):
        return [s for s in self.states if s['result'] == result]


@pytest.fixture
def driver():
    rclpy.init()
    node = rclpy.create_node('hue_test_driver')
    yield Driver(node)
    node.destroy_node()
    rclpy.shutdown()


@pytest.fixture
def bridge():
    emu = HueBridgeEmulator(lights=3).start()
    yield emu
    emu.stop()


def start_node(env, tmp_path, **params):
    quoted = {k: (f"'{v}'" if isinstance(v, str) else v) for k, v in params.items()}
    return NodeProcess('hue_actuator_node', ros_args(quoted), env, tmp_path)


def paired_username_file(tmp_path, bridge):
    path = tmp_path / 'cfg' / 'hue_username.json'
    store_username(path, bridge.address, USER)
    bridge.users.add(USER)
    return path


def logs_contain(text, node: NodeProcess) -> bool:
    if text in node.output:
        return True
    log_dir = Path(os.environ['ROS_LOG_DIR'])
    return any(text in p.read_text(errors='replace') for p in log_dir.rglob('*') if p.is_file())


def test_pairing_hold_and_no_resend(driver, bridge, ros_env, tmp_path):
    cred = tmp_path / 'xdg' / 'emotion_ros' / 'hue_username.json'
    node = start_node(ros_env, tmp_path, bridge=bridge.address, username_file=str(cred), hold_s=0.5,
                      min_confidence=0.5, pairing_retry_s=0.3, lights='Desk lamp')
    try:
        driver.wait_ready(node)
        driver.spin(1.0)
        assert 'PAIRING' in node.output and 'Press the link button' in node.output
        assert not cred.exists() and bridge.state_puts() == []
        bridge.press_link_button()
        assert spin_until(driver.node, lambda: cred.exists() and driver.results('paired'), 20), node.output
        (username,) = bridge.users

        t_happy = driver.feed(3.0, 'happy')
        happy = bridge.state_puts()
        assert [(r.resource, r.body) for r in happy] == [('/lights/1/state', cmd('happy'))]
        assert 0.45 <= happy[0].t - t_happy <= 3.0          # held 0.5 s first
        driver.feed(1.5, 'sad', conf=0.3)                    # below min_confidence: no change
        driver.feed(0.3, 'sad')                              # shorter than hold_s: no change
        driver.feed(0.3, 'happy')
        assert len(bridge.state_puts()) == 1
        t_sad = driver.feed(2.0, 'sad')
        sad = bridge.state_puts(since=t_sad)
        assert [r.body for r in sad] == [cmd('sad')] and 0.45 <= sad[0].t - t_sad <= 2.0
        t_other = driver.feed(2.0, 'contempt')               # not in the table: default state
        driver.feed(2.0, 'boredom')                          # also default: unchanged, nothing sent
        assert [r.body for r in bridge.state_puts(since=t_other)] == [COLORS.default.command()]
        driver.spin(0.5)
    finally:
        code = node.stop()
    assert code in (0, -2), node.output
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert json.loads(cred.read_text()) == {bridge.address: username}
    assert not logs_contain(username, node)
    assert 'PAIRING done' in node.output and str(cred) in node.output
    sent = [(s['label'], s['target']) for s in driver.results('sent')]
    assert sent == [('happy', 'light Desk lamp'), ('sad', 'light Desk lamp'), ('contempt', 'light Desk lamp')]
    assert {'label': 'boredom', 'reason': 'unchanged'}.items() <= driver.results('skipped')[-1].items()
    assert not any(s['label'] == 'angry' for s in driver.states)   # the smaller face is never followed
    assert [r.path for r in bridge.requests if r.method == 'GET'] == ['/api/<user>/lights']


@pytest.mark.parametrize('target', ['lights', 'group'])
def test_burst_of_changing_emotions_respects_rate_limits(driver, bridge, ros_env, tmp_path, target):
    params = {'lights': '1,2,3'} if target == 'lights' else {'group': 'Living room'}
    instant = tmp_path / 'instant_colors.yaml'                # no transitions: only the rate limits hold back
    instant.write_text((REPO / 'config' / 'hue_colors.yaml').read_text().replace('transition_s: ', 'transition_s: 0 #'))
    node = start_node(ros_env, tmp_path, bridge=bridge.address, hold_s=0.0, min_confidence=0.0,
                      colors_file=str(instant), username_file=str(paired_username_file(tmp_path, bridge)), **params)
    try:
        driver.wait_ready(node)
        t0 = driver.feed(3.0, lambda i: LABELS[i % len(LABELS)], hz=30.0)   # a new expression every frame
        driver.feed(2.5, 'neutral')                                          # then one holds
        driver.spin(0.5)
    finally:
        node.stop()
    puts = bridge.state_puts(since=t0, ok_only=False)
    times = [r.t for r in puts]
    if target == 'lights':
        assert 25 <= len(puts) <= 10 * (times[-1] - times[0]) + 10
        assert all(b - a >= 0.9 for a, b in zip(times, times[10:])), times      # <= 10 in any second
        gaps = sorted(b - a for a, b in zip(times, times[1:]))
        assert gaps[len(gaps) // 2] >= 0.09                                      # spaced ~100 ms, no bursts
        finals = {r.resource: r.body for r in puts}
        assert finals == {f'/lights/{i}/state': dict(cmd('neutral'), transitiontime=0) for i in (1, 2, 3)}
    else:
        assert 3 <= len(puts) <= 8 and {r.resource for r in puts} == {'/groups/1/action'}
        assert all(b - a >= 0.9 for a, b in zip(times, times[1:])), times       # <= 1 per second
        assert puts[-1].body == dict(cmd('neutral'), transitiontime=0)
    reasons = {s['reason'] for s in driver.results('skipped')}
    assert 'rate_limited' in reasons and reasons <= {'rate_limited', 'unchanged'}   # unchanged: back to what shows


def test_faults_back_off_and_resend_when_the_bridge_returns(driver, bridge, ros_env, tmp_path):
    node = start_node(ros_env, tmp_path, bridge=bridge.address, hold_s=0.0, request_timeout_s=0.3,
                      backoff_initial_s=0.2, backoff_max_s=1.0,
                      username_file=str(paired_username_file(tmp_path, bridge)))
    try:
        driver.wait_ready(node)
        driver.feed(1.0, 'neutral')
        assert [r.body for r in bridge.state_puts()] == [cmd('neutral')]
        plan = [('429', 'happy', 2, 'rate_limited'), ('500', 'sad', 1, 'server_error'),
                ('malformed', 'fear', 1, 'malformed'), ('unauthorized', 'surprise', 1, 'unauthorized'),
                ('delay', 'disgust', 1, 'timeout')]
        for fault, label, count, kind in plan:
            bridge.inject(fault, count=count, delay_s=1.0)
            t0 = driver.feed(0.5, label)
            assert spin_until(driver.node, lambda: any(r.body == cmd(label) for r in bridge.state_puts(t0)), 15), \
                (fault, bridge.summary(), node.output)
            tries = [r for r in bridge.puts(t0) if r.body == cmd(label)]
            assert [r.fault for r in tries] == [fault] * count + ['']
            assert tries[-1].t - tries[-2].t >= 0.15                       # backed off before resending
            assert kind in {s['reason'] for s in driver.results('failed') if s['label'] == label}
            assert node.proc.poll() is None
            driver.spin(1.2)                                                # let the delayed reply finish
        port = bridge.port
        bridge.stop()                                                       # unreachable
        t_down = driver.feed(2.0, 'angry', decoy=False)
        driver.spin(1.0)
        bridge.port = port
        bridge.start()
        assert spin_until(driver.node, lambda: any(r.body == cmd('angry') for r in bridge.state_puts(t_down)), 15)
        driver.spin(1.5)
        assert 'unreachable' in {s['reason'] for s in driver.results('failed')}
        assert [r.body for r in bridge.state_puts(t_down)] == [cmd('angry')]   # sent once it was back, once
    finally:
        node.stop()
    assert not logs_contain(USER, node)
    out = node.output
    for text in ('HTTP 429', 'HTTP 500', 'not JSON', 'unauthorized user', 'no answer from the bridge within 0.3 s',
                 'unreachable', 'Hue bridge answers again'):
        assert text in out, text
    assert 'delete the entry for' in out                                    # re-pairing hint on unauthorized


def test_dry_run_logs_what_it_would_send_follows_a_track_id_and_idles(driver, ros_env, tmp_path):
    node = start_node(ros_env, tmp_path, dry_run=True, hold_s=0.2, follow_track_id='3', lights='1,Hall',
                      no_face_label='neutral', no_face_after_s=1.5)
    try:
        driver.wait_ready(node)
        driver.feed(1.5, 'happy')                            # face 7 is happy; face 3 (followed) is angry
        driver.spin(3.0)                                     # no face: neutral after 1.5 s
    finally:
        node.stop()
    dry = [(s['label'], s['target'], s['state']) for s in driver.results('dry_run')]
    assert [d for d in dry if d[0] != 'neutral'] == [('angry', 'light 1', cmd('angry')),
                                                     ('angry', 'light Hall', cmd('angry'))]
    assert dry[-2:] == [('neutral', 'light 1', cmd('neutral')), ('neutral', 'light Hall', cmd('neutral'))]
    assert 'dry run: would send light 1 {"on": true, "bri": 203' in node.output


@pytest.mark.parametrize('params,code,needle', [
    ({}, 2, 'set bridge (host or host:port of the Hue bridge) or dry_run:=true'),
    ({'dry_run': True, 'colors_file': '/nonexistent/colors.yaml'}, 2, 'cannot read colour file /nonexistent'),
    ({'dry_run': True, 'lights': ' , '}, 2, 'no target'),
    ({'dry_run': True, 'hold_s': -1.0}, 2, 'hold_s'),
    ({'bridge': 'http://x/'}, 2, 'is not host or host:port'),
    ({'bridge': '127.0.0.1:9', 'username_file': str(REPO / 'hue_username.json')}, 2, 'inside the git working tree'),
])
def test_bad_start_exits_with_reason(ros_env, tmp_path, params, code, needle):
    node = start_node(ros_env, tmp_path, **params)
    try:
        rc = node.wait(60)
    finally:
        node.stop()
    assert rc == code and 'cannot start' in node.output and needle in node.output, node.output
    assert 'Traceback' not in node.output


def test_pairing_gives_up_after_the_timeout(bridge, ros_env, tmp_path):
    cred = tmp_path / 'cfg' / 'hue.json'
    node = start_node(ros_env, tmp_path, bridge=bridge.address, username_file=str(cred), pairing_timeout_s=1.0,
                      pairing_retry_s=0.3)
    try:
        rc = node.wait(60)
    finally:
        node.stop()
    assert rc == 3, node.output
    assert 'was not pressed within 1 s' in node.output and not cred.exists()
    assert 2 <= len([r for r in bridge.requests if r.method == 'POST' and r.path == '/api']) <= 6
