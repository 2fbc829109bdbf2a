"""One lifecycle contract for every node, driven as robot users drive it: the real `ros2` CLI (issue 12 d, e;
issue 18 item 14).

The five nodes run as their console scripts (camera on the demo clip, detector, classifier, recorder, Hue in
dry-run); a listener in this process watches their topics. Through `ros2 lifecycle set`: deactivate stops a
node's output and activate resumes it; cleanup -> configure -> activate (once by the CLI, then 20 times by the
same ChangeState service) leaves exactly one publisher per topic (`ros2 topic info -v`) and one subscription per
input; shutdown ends the process with exit code 0 (under live.launch.py it then stays down: test_launch.py). `ros2 param set` refuses
invalid values with the reason and a valid change takes effect. The `ros2` calls share one daemon, started
and stopped by this module in this run's isolated DDS environment (test/conftest.py).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest

from ros_graph import VENV_BIN, NodeProcess, ros_args

rclpy = pytest.importorskip('rclpy')
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from emotion_msgs.msg import DatasetCounts, EmotionArray, FaceArray, HueState  # noqa: E402
from emotion_msgs.srv import Capture  # noqa: E402
from emotion_ros.nodes.qos import latched_qos, results_qos  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROS2 = VENV_BIN / 'ros2'
CYCLES = 20

# node -> (console script, extra parameters, remaps, {output topic: listener key}, input topics)
NODES = {
    'camera': ('camera_node', {'source': 'demo', 'loop': True, 'fps': 10.0}, {},
               {'/image_raw': 'image', '/camera_info': None}, []),
    'face_detector': ('face_detector_node', {}, {'image': 'image_raw'}, {'/faces': 'faces'}, ['/image_raw']),
    'emotion_classifier': ('emotion_classifier_node', {'num_threads': 1}, {'image': 'image_raw'},
                           {'/emotions': 'emotions', '/image_annotated': None}, ['/image_raw', '/faces']),
    'dataset_recorder': ('dataset_recorder_node', {}, {'image': 'image_raw'},
                         {'/dataset_recorder/counts': 'counts'}, ['/image_raw', '/faces']),
    'hue_actuator': ('hue_actuator_node', {'dry_run': True, 'hold_s': 0.0}, {}, {'/hue_actuator/state': 'hue'},
                     ['/emotions']),
}
STREAMING = ('camera', 'face_detector', 'emotion_classifier')   # publish continuously while active


def ros2(env, *args, timeout=90.0, attempts=3) -> subprocess.CompletedProcess:
    """`ros2 <args>` through this module's daemon; retried (3 times, 2 s apart) while the daemon has not yet
    discovered the node (a busy machine), or when a call hangs past `timeout`."""
    for attempt in range(attempts):
        try:
            out = subprocess.run([str(ROS2), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                 text=True, timeout=timeout)
        except subprocess.TimeoutExpired:   # seen once in a full suite: the CLI's service call never returned
            if attempt == attempts - 1:
                raise
            continue
        if 'not found' not in (out.stdout + out.stderr).lower():
            break
        time.sleep(2.0)
    return out


# The module's Listener (set by the `graph` fixture): the node's own ChangeState service, for a CLI that hangs.
PROBE = {}
SHUTDOWN_FROM = {'unconfigured': Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
                 'inactive': Transition.TRANSITION_INACTIVE_SHUTDOWN, 'active': Transition.TRANSITION_ACTIVE_SHUTDOWN}
CLI_FALLBACK = {'deactivate': Transition.TRANSITION_DEACTIVATE, 'activate': Transition.TRANSITION_ACTIVATE,
                'cleanup': Transition.TRANSITION_CLEANUP, 'configure': Transition.TRANSITION_CONFIGURE}


def lifecycle_set(env, node, transition):
    try:
        out = ros2(env, 'lifecycle', 'set', f'/{node}', transition, timeout=60.0, attempts=2)
    except subprocess.TimeoutExpired:
        # `ros2 lifecycle set` waits without a timeout (ros2/ros2cli#853). In 3 of ~7 full CI runs it hung 2-3 x
        # 60-90 s while the node answered get_state by direct call just before and later transitions after: the
        # CLI's fresh participant, not the node. The node must still take the transition through its service.
        listener = PROBE.get('listener')
        if listener is None or transition not in CLI_FALLBACK:
            raise
        warnings.warn(f'`ros2 lifecycle set /{node} {transition}` hung; node state {listener.state(node)!r}; '
                      'transition sent through its change_state service')
        listener.transition(node, CLI_FALLBACK[transition])
        return
    assert out.returncode == 0 and 'Transitioning successful' in out.stdout, (node, transition, out.stdout,
                                                                            out.stderr)


def publisher_count_cli(env, topic, timeout=40.0) -> int:
    """Publisher count `ros2 topic info -v` shows, asked again (the daemon's graph lags a moment behind a
    cleanup) until it is 1 or `timeout` passes; a leak never settles at 1."""
    end = time.monotonic() + timeout
    while True:
        out = ros2(env, 'topic', 'info', '-v', topic)
        match = re.search(r'Publisher count: (\d+)', out.stdout)
        assert match, (topic, out.stdout, out.stderr)
        if int(match.group(1)) == 1 or time.monotonic() > end:
            return int(match.group(1))
        time.sleep(1.0)


class Listener:
    """A node in its own rclpy context, spun by a thread: arrival times per topic, a ChangeState client."""

    def __init__(self):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node('lifecycle_probe', context=self.ctx)
        self.arrivals = {k: [] for k in ('image', 'faces', 'emotions', 'counts', 'hue')}
        self.last = {}
        subs = (('image', Image, '/image_raw', qos_profile_sensor_data), ('faces', FaceArray, '/faces', results_qos()),
                ('emotions', EmotionArray, '/emotions', results_qos()),
                ('counts', DatasetCounts, '/dataset_recorder/counts', latched_qos()),
                ('hue', HueState, '/hue_actuator/state', latched_qos(depth=10)))
        for key, msg_type, topic, qos in subs:
            self.node.create_subscription(msg_type, topic, self._keep(key), qos)
        self.capture = self.node.create_client(Capture, '/dataset_recorder/capture')
        self._change_state = {}
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.running = True
        self.thread.start()

    def _keep(self, key):
        def keep(msg):
            self.arrivals[key].append(time.monotonic())
            self.last[key] = msg
        return keep

    def _spin(self):
        while self.running and self.ctx.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def since(self, key, t) -> int:
        return sum(1 for a in list(self.arrivals[key]) if a > t)

    def wait_for(self, done, timeout) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if done():
                return True
            time.sleep(0.1)
        return bool(done())

    def call(self, client, request, timeout=60.0):
        assert client.wait_for_service(timeout_sec=30.0), client.srv_name
        future = client.call_async(request)
        assert self.wait_for(future.done, timeout), f'no answer from {client.srv_name}'
        return future.result()

    def transition(self, node, transition_id):
        client = self._change_state.get(node)
        if client is None:
            client = self._change_state[node] = self.node.create_client(ChangeState, f'/{node}/change_state')
        result = self.call(client, ChangeState.Request(transition=Transition(id=transition_id)))
        assert result.success, (node, transition_id)

    def state(self, node) -> str:
        client = self.node.create_client(GetState, f'/{node}/get_state')
        try:
            return self.call(client, GetState.Request()).current_state.label
        finally:
            self.node.destroy_client(client)

    def publishers(self, topic, node=None) -> int:
        return sum(1 for i in self.node.get_publishers_info_by_topic(topic) if node in (None, i.node_name))

    def subscriptions(self, topic, node) -> int:
        return sum(1 for i in self.node.get_subscriptions_info_by_topic(topic) if i.node_name == node)

    def close(self):
        self.running = False
        self.thread.join(timeout=10)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


@pytest.fixture(scope='module')
def cli_env(ros_env):
    """The isolated environment plus one ros2 daemon for this module (in it, so on shared memory and this run's
    domain), stopped at the end."""
    if not ROS2.exists():
        pytest.skip('needs the real ros2 CLI in the venv (make setup installs it from ../shared/ros2-tools)')
    env = dict(ros_env, PATH=f'{VENV_BIN}{os.pathsep}{os.environ["PATH"]}')
    subprocess.run([str(ROS2), 'daemon', 'start'], env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    yield env
    stopped = subprocess.run([str(ROS2), 'daemon', 'stop'], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=60)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture(scope='module')
def graph(cli_env, tmp_path_factory):
    logs = tmp_path_factory.mktemp('lifecycle_logs')
    home = tmp_path_factory.mktemp('lifecycle_home')
    env = dict(cli_env, HOME=str(home), XDG_CONFIG_HOME=str(home / '.config'))
    listener = Listener()
    PROBE['listener'] = listener
    procs = {}
    try:
        for name, (script, params, remaps, _, _) in NODES.items():
            if name == 'dataset_recorder':
                params = dict(params, dataset_dir=str(home / 'dataset'))
            procs[name] = NodeProcess(script, ros_args(params, remaps), env, logs)
        assert listener.wait_for(lambda: listener.arrivals['emotions'] and listener.arrivals['counts'], 120), \
            'the graph did not start: ' + '\n'.join(f'{n}: {p.output[-1500:]}' for n, p in procs.items())
        yield env, procs, listener
    finally:
        PROBE.clear()
        listener.close()
        for proc in procs.values():
            proc.stop()


def _flowing(listener, key, timeout=60.0) -> bool:
    t = time.monotonic()
    return listener.wait_for(lambda: listener.since(key, t) >= 2, timeout)


def _state(env, node) -> str:
    try:
        out = ros2(env, 'lifecycle', 'get', f'/{node}', timeout=60.0, attempts=2)
    except subprocess.TimeoutExpired:
        # `ros2 lifecycle get` waits for the answer without a timeout too (ros2lifecycle call_get_states); a CI
        # run saw it hang 3 x 90 s right after 80 ChangeState calls to the same node had been answered.
        state = PROBE['listener'].state(node)
        warnings.warn(f'`ros2 lifecycle get /{node}` hung; the node answered get_state with {state!r}')
        return state
    return out.stdout.strip()


@pytest.mark.parametrize('node', STREAMING)
def test_deactivate_stops_output_and_activate_resumes_it(graph, node):
    env, procs, listener = graph
    key = next(iter(NODES[node][3].values()))
    assert _flowing(listener, key), f'{node}: no output before the test'
    assert listener.state(node) == 'active'
    lifecycle_set(env, node, 'deactivate')
    time.sleep(1.5)                       # what was in flight is delivered
    quiet_from = time.monotonic()
    time.sleep(3.0)
    assert listener.since(key, quiet_from) == 0, f'{node} still publishes while inactive'
    assert listener.since('emotions', quiet_from) == 0, f'emotions still flow with {node} inactive'
    assert listener.state(node) == 'inactive'
    lifecycle_set(env, node, 'activate')
    assert _flowing(listener, key) and _flowing(listener, 'emotions'), f'{node}: output did not resume'
    assert procs[node].proc.poll() is None


def test_recorder_refuses_captures_while_inactive(graph):
    env, procs, listener = graph
    lifecycle_set(env, 'dataset_recorder', 'deactivate')
    refused = listener.call(listener.capture, Capture.Request(label='happy', count=1))
    assert not refused.success and 'not active' in refused.message, refused.message
    seen = len(listener.arrivals['counts'])
    lifecycle_set(env, 'dataset_recorder', 'activate')
    saved = listener.call(listener.capture, Capture.Request(label='happy', count=1))
    assert saved.success and len(saved.saved) == 1, saved.message
    assert listener.wait_for(lambda: len(listener.arrivals['counts']) > seen, 20)
    assert listener.last['counts'].total >= 1 and 'happy' in listener.last['counts'].labels


@pytest.mark.parametrize('node', list(NODES))
def test_cleanup_configure_cycles_leave_one_publisher_per_topic(graph, node):
    env, procs, listener = graph
    _, _, _, outputs, inputs = NODES[node]
    for transition in ('deactivate', 'cleanup', 'configure', 'activate'):
        lifecycle_set(env, node, transition)
    for _ in range(CYCLES):
        for tid in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
                    Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            listener.transition(node, tid)
    for topic in outputs:   # graph changes take a moment to be seen; a leak never settles at 1
        assert listener.wait_for(lambda: listener.publishers(topic, node) == 1, 30), \
            f'{topic}: {listener.publishers(topic, node)} publishers of {node} after {CYCLES + 1} cycles'
        assert publisher_count_cli(env, topic) == 1, topic
    for topic in inputs:
        assert listener.wait_for(lambda: listener.subscriptions(topic, node) == 1, 30), \
            f'{topic}: {listener.subscriptions(topic, node)} subscriptions of {node}'
    assert _state(env, node).startswith('active')
    if node in STREAMING:
        key = next(iter(outputs.values()))
        assert _flowing(listener, key) and _flowing(listener, 'emotions'), f'{node}: no output after the cycles'
    assert procs[node].proc.poll() is None


def test_param_set_refuses_invalid_values_with_the_reason(graph):
    env, _, _ = graph
    cases = [('/emotion_classifier', 'max_faces', '0', r'max_faces.*(out of range|below the minimum)'),
             ('/face_detector', 'backend', 'haar', r'read-only'),
             ('/dataset_recorder', 'crop_size', '8', r'crop_size.*(out of range|below the minimum)'),
             ('/emotion_classifier', 'smoothing_time_constant_s', 'fast', r'smoothing_time_constant_s|type'),
             ('/camera', 'frame_id', "''", r'frame_id: must not be empty')]
    for node, name, value, reason in cases:
        out = ros2(env, 'param', 'set', node, name, value)
        text = out.stdout + out.stderr
        assert 'Setting parameter failed' in text and re.search(reason, text), (node, name, value, text)


def test_param_set_takes_effect_at_runtime_through_the_cli(graph):
    env, _, listener = graph

    def faces_per_list(seconds=3.0):
        t = time.monotonic()
        listener.wait_for(lambda: listener.since('faces', t) >= 5, 30)
        return len(listener.last['faces'].faces)

    assert faces_per_list() >= 1
    out = ros2(env, 'param', 'set', '/face_detector', 'min_score', '1.0')
    assert 'Set parameter successful' in out.stdout, out.stdout + out.stderr
    assert listener.wait_for(lambda: faces_per_list() == 0, 30), 'min_score 1.0 still reports faces'
    out = ros2(env, 'param', 'set', '/face_detector', 'min_score', '0.5')
    assert 'Set parameter successful' in out.stdout
    assert listener.wait_for(lambda: faces_per_list() >= 1, 30)
    got = ros2(env, 'param', 'get', '/face_detector', 'min_score')
    assert '0.5' in got.stdout


@pytest.mark.parametrize('node', ['hue_actuator', 'dataset_recorder', 'emotion_classifier', 'face_detector',
                                  'camera'])
def test_shutdown_transition_ends_the_process_with_exit_0(graph, node):
    env, procs, _ = graph
    proc = procs[node]
    try:
        lifecycle_set(env, node, 'shutdown')
    except subprocess.TimeoutExpired:
        # The CLI's hang (ros2/ros2cli#853, see lifecycle_set): judged by what the node does, as for the others.
        if proc.proc.poll() is None:
            state = PROBE['listener'].state(node)
            warnings.warn(f'`ros2 lifecycle set /{node} shutdown` hung; node state {state!r}; sent through its '
                          'change_state service')
            PROBE['listener'].transition(node, SHUTDOWN_FROM[state])
        else:
            warnings.warn(f'`ros2 lifecycle set /{node} shutdown` hung after the node had ended')
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f'{node} still runs 60 s after shutdown:\n{proc.output[-2000:]}')
    assert code == 0, proc.output[-2000:]
    assert 'Traceback' not in proc.output


def test_second_sigint_during_shutdown_prints_no_traceback(ros_env, tmp_path):
    """`ros2 launch` with stdin not a terminal sends a second SIGINT while nodes shut down (issue 12, fault 5)."""
    node = NodeProcess('emotion_classifier_node', ros_args({'num_threads': 1}), ros_env, tmp_path)
    try:
        deadline = time.monotonic() + 120
        while 'model ' not in node.output and time.monotonic() < deadline and node.proc.poll() is None:
            time.sleep(0.2)
        assert 'model ' in node.output, node.output
        os.killpg(node.proc.pid, signal.SIGINT)
        time.sleep(0.05)
        if node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGINT)
        code = node.wait(timeout=60)
    finally:
        node.stop()
    assert code == 0 and 'Traceback' not in node.output and 'KeyboardInterrupt' not in node.output, node.output
