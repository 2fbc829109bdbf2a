"""`ros2 launch emotion_ros live.launch.py` as robot users run it (real launch, launch_ros, separate node
processes over shared-memory DDS), from the pip venv's ament index (make setup); the colcon install is
exercised by test_colcon_build.py.

Covers issue 12: file clips fully processed (3), namespaces keep the parameter file (4), Ctrl-C with and
without a terminal (5), hue:=true from launch arguments alone and refused unknown arguments (7).
"""
import os
import pty
import signal
import subprocess
import time
from collections import Counter

import pytest

from conftest import require_shared
from launch_process import Launch, launch_env, require_ros2_launch
from ros_graph import spin_until, stamp_ns

pytest.importorskip('rclpy')
from lifecycle_msgs.srv import GetState  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from emotion_msgs.msg import EmotionArray  # noqa: E402
from emotion_ros.nodes.qos import latest_frame_qos, results_qos  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
GRAPH = ('camera', 'face_detector', 'emotion_classifier')


@pytest.fixture(autouse=True)
def _tools():
    require_ros2_launch()


class Topics:
    """What one namespace publishes, as received by the test's node."""

    def __init__(self, node, namespace=''):
        prefix = f'/{namespace}' if namespace else ''
        self.emotions, self.images = [], []
        node.create_subscription(EmotionArray, f'{prefix}/emotions', self.emotions.append, results_qos(500))
        node.create_subscription(Image, f'{prefix}/image_raw', self.images.append, latest_frame_qos(500))
        self.states = {}
        self._clients = {n: node.create_client(GetState, f'{prefix}/{n}/get_state') for n in GRAPH}
        self._pending = {}

    def poll_states(self, resend_after_s=5.0):
        """Ask every node not yet seen active for its lifecycle state (non-blocking; call while spinning).

        A request unanswered after `resend_after_s` is sent again: the server can answer before its reply
        writer has matched this client, and Fast DDS then drops the reply (CI, two hogs: the camera's state
        arrived, the detector's and classifier's never did in 60 s)."""
        now = time.monotonic()
        for name, client in self._clients.items():
            if self.states.get(name) == 'active':
                continue
            future, sent = self._pending.get(name, (None, 0.0))
            if future is not None and future.done():
                self.states[name] = future.result().current_state.label
                self._pending.pop(name)
            elif future is not None and now - sent > resend_after_s:
                client.remove_pending_request(future)
                self._pending.pop(name)
            elif future is None and client.service_is_ready():
                self._pending[name] = (client.call_async(GetState.Request()), now)
        return all(self.states.get(n) == 'active' for n in GRAPH)

    def labels(self):
        return Counter(e.expression for m in self.emotions for e in m.emotions)


def _run_clip(ros_node, launch, topics_list, timeout=240):
    """Spin until every launch's camera has ended and its emotions stopped coming (or timeout)."""
    def done():
        for t in topics_list:
            t.poll_states()
        return all(lch.frames_published() >= 0 for lch in launch)
    assert spin_until(ros_node, done, timeout), '\n'.join(lch.output[-3000:] for lch in launch)
    seen = {'n': -1, 't': time.monotonic()}

    def settled():  # no new emotions for 3 s, and every node's lifecycle state asked (slow on a busy machine)
        states_known = all([t.poll_states() for t in topics_list])
        n = sum(len(t.emotions) for t in topics_list)
        if n != seen['n']:
            seen.update(n=n, t=time.monotonic())
        return states_known and time.monotonic() - seen['t'] > 3.0
    spin_until(ros_node, settled, 60)


def test_male_clip_gives_emotions_for_its_frames_and_nodes_go_active(ros_node, ros_env, tmp_path):
    clip = require_shared('media', 'head-pose-face-detection-male.mp4')
    topics = Topics(ros_node)
    # Half the clip's 12 fps: the graph drops stale frames by design when starved of CPU (measured 54 of 62 at the
    # clip's rate with load average 16 on 2 cores); what this test guards is that none is lost while it starts.
    launch = Launch([f'source:={clip}', 'fps:=6'], launch_env(ros_env), tmp_path)
    try:
        _run_clip(ros_node, [launch], [topics])
    finally:
        code = launch.stop()
    frames = launch.frames_published()
    assert frames == 62, launch.output[-3000:]
    assert len(topics.emotions) >= 0.95 * frames, (len(topics.emotions), launch.output[-3000:])
    labels = topics.labels()
    assert labels.most_common(1)[0][0] == 'happy' and labels['happy'] > sum(labels.values()) / 2, labels
    assert topics.states == {n: 'active' for n in GRAPH}, topics.states
    assert code == 0 and not launch.died(), launch.output[-3000:]
    assert 'starting anyway' not in launch.output  # the camera waited for its consumers, not for its timeout


def test_two_namespaces_deliver_separately_and_keep_the_parameter_file(ros_node, ros_env, tmp_path):
    male = require_shared('media', 'head-pose-face-detection-male.mp4')            # 62 frames
    walking = require_shared('media', 'face-demographics-walking-and-pause.mp4')   # 41 frames
    params = tmp_path / 'params.yaml'
    params.write_text('/**/camera:\n  ros__parameters:\n    width: 320\n    height: 240\n    frame_id: from_file\n')
    cams = {'cam1': male, 'cam2': walking}
    topics = {ns: Topics(ros_node, ns) for ns in cams}
    launches = {ns: Launch([f'namespace:={ns}', f'source:={clip}', f'params:={params}'], launch_env(ros_env),
                           tmp_path, name=ns) for ns, clip in cams.items()}
    try:
        _run_clip(ros_node, list(launches.values()), list(topics.values()), timeout=300)
    finally:
        codes = {ns: lch.stop() for ns, lch in launches.items()}
    assert {ns: lch.frames_published() for ns, lch in launches.items()} == {'cam1': 62, 'cam2': 41}
    stamps = {}
    for ns, t in topics.items():
        out = launches[ns].output[-3000:]
        assert codes[ns] == 0 and not launches[ns].died(), out
        assert t.images, out
        # The parameter file's bound (320x240, aspect kept: 480x270 -> 320x180) and frame_id hold in both.
        assert {(m.width, m.height, m.header.frame_id) for m in t.images} == {(320, 180, 'from_file')}, ns
        # Both deliver. Completeness is test_male_clip's: two graphs (6 processes) on a busy 2-core machine drop
        # frames by design (latest-frame QoS; measured 32 of 41 here with a model training beside them).
        assert len(t.emotions) >= 0.5 * launches[ns].frames_published(), (ns, len(t.emotions), out)
        assert all(m.header.frame_id == 'from_file' for m in t.emotions)
        assert t.states == {n: 'active' for n in GRAPH}, (ns, t.states)
        assert 'starting anyway' not in launches[ns].output, out  # waited for its own namespace's consumers
        assert len(t.emotions) <= launches[ns].frames_published(), (ns, 'more emotion arrays than frames')
        stamps[ns] = ({stamp_ns(m.header) for m in t.emotions}, {stamp_ns(m.header) for m in t.images})
    for ns, other in (('cam1', 'cam2'), ('cam2', 'cam1')):
        emotions, images = stamps[ns]
        assert len(emotions & images) >= 0.8 * len(emotions), ns  # its own frames (best-effort images may drop)
        assert not emotions & stamps[other][1], f'{ns} classified frames of {other}'
    assert topics['cam1'].labels()['happy'] > 0


@pytest.mark.parametrize('stdin', ['pty', 'devnull'])
def test_ctrl_c_ends_every_process_with_0_and_no_traceback(ros_node, ros_env, tmp_path, stdin):
    """With a terminal, Ctrl-C reaches every process once; without one (scripts, systemd) launch sends a
    second SIGINT to its children: both must end cleanly."""
    topics = Topics(ros_node)
    master = slave = None
    if stdin == 'pty':
        master, slave = pty.openpty()
    launch = Launch(['source:=demo', 'loop:=true'], launch_env(ros_env), tmp_path,
                    stdin=slave if slave is not None else subprocess.DEVNULL)
    try:
        assert spin_until(ros_node, lambda: len(topics.emotions) >= 5, 180), launch.output[-3000:]
    finally:
        code = launch.stop()
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
    out = launch.output
    assert code == 0, out[-3000:]
    assert sorted(launch.ended_cleanly()) == sorted(launch.started()) and len(launch.started()) == 3, out[-3000:]
    assert not launch.died(), out[-3000:]
    assert 'Traceback' not in out and 'KeyboardInterrupt' not in out, out[-3000:]


def test_a_crashed_node_restarts_and_a_shut_down_one_stays_down(ros_node, ros_env, tmp_path):
    """respawn:=true (default) is for crashes: a killed classifier comes back and emotions resume; a detector
    shut down through its lifecycle (exit 0) stays down, as `ros2 lifecycle set ... shutdown` means."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    topics = Topics(ros_node)
    launch = Launch(['source:=demo', 'loop:=true'], launch_env(ros_env), tmp_path)
    try:
        assert spin_until(ros_node, lambda: len(topics.emotions) >= 5, 180), launch.output[-3000:]
        os.kill(launch.pids('emotion_classifier_node')[0], signal.SIGKILL)
        assert spin_until(ros_node, lambda: len(launch.pids('emotion_classifier_node')) == 2, 60), launch.output[-3000:]
        before = len(topics.emotions)
        assert spin_until(ros_node, lambda: len(topics.emotions) >= before + 5, 180), launch.output[-3000:]
        change = ros_node.create_client(ChangeState, '/face_detector/change_state')
        assert spin_until(ros_node, change.service_is_ready, 30)
        change.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVE_SHUTDOWN)))
        assert spin_until(ros_node, lambda: 'face_detector_node' in ' '.join(launch.ended_cleanly()), 60), \
            launch.output[-3000:]
        spin_until(ros_node, lambda: False, 3 * 2.0)   # longer than the restart delay
        out = launch.output
    finally:
        code = launch.stop()
    assert len(launch.pids('face_detector_node')) == 1, out[-3000:]
    assert 'emotion_classifier crashed (exit code -9): restarting in 2 s' in out, out[-3000:]
    assert len(launch.pids('emotion_classifier_node')) == 2 and len(launch.pids('camera_node')) == 1
    assert code == 0, launch.output[-3000:]


def test_hue_from_launch_arguments_alone_drives_the_bridge(ros_node, ros_env, tmp_path):
    from hue_bridge_emulator import HueBridgeEmulator
    bridge = HueBridgeEmulator(lights=1).start()
    bridge.press_link_button()  # first start pairs; the key goes to $XDG_CONFIG_HOME/emotion_ros (0600)
    topics = Topics(ros_node)
    launch = Launch(['source:=demo', 'loop:=true', 'hue:=true', f'hue_bridge:={bridge.address}'],
                    launch_env(ros_env, XDG_CONFIG_HOME=tmp_path / 'xdg'), tmp_path)
    try:
        assert spin_until(ros_node, lambda: bool(bridge.state_puts()), 240), \
            (bridge.summary(), [line for line in launch.output.splitlines() if 'hue' in line])
        assert topics.labels()['happy'] > 0
    finally:
        code = launch.stop()
        bridge.stop()
    assert code == 0 and not launch.died(), launch.output[-3000:]
    assert 'respawn' not in launch.output.lower()
    assert len(launch.started()) == 4  # camera, detector, classifier, hue: none restarted


def test_hue_dry_run_from_launch_arguments(ros_node, ros_env, tmp_path):
    launch = Launch(['source:=demo', 'loop:=true', 'hue:=true', 'hue_dry_run:=true'],
                    launch_env(ros_env, XDG_CONFIG_HOME=tmp_path / 'xdg'), tmp_path)
    topics = Topics(ros_node)
    try:
        assert spin_until(ros_node, lambda: len(topics.emotions) >= 30 and 'dry run (no bridge)' in launch.output,
                          240), launch.output[-3000:]
    finally:
        code = launch.stop()
    assert code == 0 and not launch.died() and len(launch.started()) == 4, launch.output[-3000:]


def test_undeclared_launch_argument_is_refused(ros_env, tmp_path):
    launch = Launch(['source:=demo', 'hue_brige:=127.0.0.1'], launch_env(ros_env), tmp_path)
    code = launch.wait(120)
    launch.stop()
    assert code not in (0, None), launch.output
    assert 'unknown launch argument(s) hue_brige' in launch.output and not launch.started(), launch.output
