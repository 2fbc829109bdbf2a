"""The lifecycle contract itself (emotion_ros/nodes/managed_node.py), on a minimal node in this process:
what configure creates is owned and destroyed by cleanup/shutdown/a failed configure; callbacks and
publishers are live only while active; on_change hooks apply runtime parameter changes."""
import time

import pytest

rclpy = pytest.importorskip('rclpy')
from lifecycle_msgs.msg import State  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from lifecycle_msgs.srv import GetState as Trigger  # noqa: E402  (any service type)

from emotion_ros.core.param_spec import ParamSpec  # noqa: E402
from emotion_ros.nodes.managed_node import ManagedNode  # noqa: E402
from emotion_ros.nodes.node_main import StartupError  # noqa: E402

pytestmark = pytest.mark.ros


class Echo(ManagedNode):
    """Republishes `in` on `out` with a prefix; a timer counts ticks; a service and a client for ownership."""
    SPECS = (ParamSpec('prefix', '>', 'text put before each echoed message', on_change='_set_prefix'),
             ParamSpec('fail', '', 'make configure fail with this reason (test)'))

    def __init__(self, **kw):
        self.ticks, self.applied, self.cleanups = 0, [], 0
        super().__init__('echo', **kw)

    def configure(self):
        if self.p['fail']:
            self.create_publisher(String, 'half_made', 10)    # made before the failure: must not survive it
            raise StartupError(self.p['fail'])
        self.prefix = self.p['prefix']
        self.pub = self.create_publisher(String, 'out', 10)
        self.create_subscription(String, 'in', lambda m: self.pub.publish(String(data=self.prefix + m.data)), 10)
        self.create_timer(0.02, self._tick)
        self.create_service(Trigger, '~/ping', lambda req, resp: resp)
        self.create_client(Trigger, '~/ping')

    def _tick(self):
        self.ticks += 1

    def _set_prefix(self, value):
        self.prefix = value
        self.applied.append(value)

    def cleanup(self):
        self.cleanups += 1


@pytest.fixture
def rig():
    rclpy.init()
    ex = SingleThreadedExecutor()
    io = rclpy.create_node('echo_io')
    got = []
    io.create_subscription(String, 'out', got.append, 10)
    pub = io.create_publisher(String, 'in', 10)
    ex.add_node(io)
    made = []

    def make(**params):
        node = Echo(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        ex.add_node(node)
        made.append(node)
        return node

    def spin(seconds, until=lambda: False):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not until():
            ex.spin_once(timeout_sec=0.02)
        return until()

    def echo(text, expect=True):
        pub.publish(String(data=text))
        return spin(3.0 if expect else 1.0, lambda: any(m.data.endswith(text) for m in got))

    yield make, spin, echo, io, got
    for n in made + [io]:
        ex.remove_node(n)
        n.destroy_node()
    rclpy.shutdown()


def _counts(node):
    return (node.count_publishers('/out'), node.count_subscribers('/in'), len(list(node.timers)),
            sum(1 for s in node.services if s.srv_name.endswith('/ping')), len(list(node.clients)))


def test_configure_owns_and_cleanup_releases_everything(rig):
    make, spin, echo, io, got = rig
    node = make()
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE      # autostart
    assert _counts(node) == (1, 1, 1, 1, 1)
    assert spin(5.0, lambda: io.count_subscribers('/in') and node.pub.get_subscription_count())
    assert echo('hello')
    for _ in range(20):
        for step in (node.trigger_deactivate, node.trigger_cleanup, node.trigger_configure, node.trigger_activate):
            assert step() == TransitionCallbackReturn.SUCCESS
    assert _counts(node) == (1, 1, 1, 1, 1) and node.cleanups == 20
    assert echo('again')
    node.trigger_deactivate()
    node.trigger_cleanup()
    assert _counts(node) == (0, 0, 0, 0, 0) and node.owned_entities() == []


def test_inactive_node_neither_calls_back_nor_publishes(rig):
    make, spin, echo, io, got = rig
    node = make()
    assert spin(5.0, lambda: io.count_subscribers('/in') and node.pub.get_subscription_count())
    node.trigger_deactivate()
    ticks = node.ticks
    assert not echo('while inactive', expect=False)
    node.pub.publish(String(data='direct'))                      # a lifecycle publisher drops it
    spin(0.5)
    assert node.ticks == ticks and not any(m.data == 'direct' for m in got)
    node.trigger_activate()
    assert echo('active again') and spin(2.0, lambda: node.ticks > ticks)


def test_failed_configure_leaves_nothing_and_autostart_refuses_with_the_reason(rig):
    make, spin, echo, io, got = rig
    with pytest.raises(StartupError, match='no camera here'):
        make(fail='no camera here')
    node = make(autostart=False, fail='still none')
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node.count_publishers('/half_made') == 0 and node.owned_entities() == []
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    assert node.startup_error == 'still none'


def test_shutdown_releases_and_finishes_with_exit_0(rig):
    make, spin, echo, io, got = rig
    node = make()
    assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
    assert node.finished and node.exit_code == 0 and node.owned_entities() == []
    assert _counts(node) == (0, 0, 0, 0, 0)


def test_on_change_applies_while_configured_and_configure_reads_the_value_otherwise(rig):
    make, spin, echo, io, got = rig
    node = make()
    assert node.set_parameters([Parameter('prefix', value='#')])[0].successful
    assert node.applied == ['#'] and node.prefix == '#'
    assert spin(5.0, lambda: io.count_subscribers('/in') and node.pub.get_subscription_count())
    assert echo('x') and got[-1].data == '#x'
    node.trigger_deactivate()
    node.trigger_cleanup()
    assert node.set_parameters([Parameter('prefix', value='%')])[0].successful
    assert node.applied == ['#']                                 # not configured: no hook, configure reads it
    node.trigger_configure()
    node.trigger_activate()
    assert node.prefix == '%'


def test_on_change_must_name_a_method_and_read_only_has_none():
    with pytest.raises(ValueError, match='read-only'):
        ParamSpec('x', 1, 'a read-only value with a hook', min=0, max=2, read_only=True, on_change='_set_x')

    class Broken(ManagedNode):
        SPECS = (ParamSpec('x', 1, 'hook that does not exist', min=0, max=2, on_change='_nope'),)

    rclpy.init()
    try:
        with pytest.raises(TypeError, match='_nope'):
            Broken('broken')
    finally:
        rclpy.shutdown()


def test_param_defaults_replace_the_spec_default_but_not_a_given_value():
    """A runner's own default (emotion_live's classifier threads) applies unless the user set the parameter."""
    rclpy.init(args=['x', '--ros-args', '-p', 'echo:prefix:=given'])
    try:
        node = Echo(param_defaults={'prefix': '#', 'autostart': False})
        assert node.p['prefix'] == 'given' and node.p['autostart'] is False
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
        node.destroy_node()
        with pytest.raises(ValueError, match='no such parameter: nope'):
            Echo(param_defaults={'nope': 1})
    finally:
        rclpy.shutdown()
