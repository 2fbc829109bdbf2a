"""emotion_viewer as a lifecycle node: configure serves the page, cleanup frees the port and every
subscription, configure again serves again; messages on its topics reach /api/state."""
import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('aiohttp')
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from emotion_msgs.msg import Emotion, EmotionArray, HueState  # noqa: E402
from emotion_ros.nodes.qos import latched_qos, latest_frame_qos, results_qos  # noqa: E402
from emotion_ros.nodes.ros_image import bgr_to_image  # noqa: E402

pytestmark = pytest.mark.ros


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def _refused(url) -> bool:
    try:
        _get(url)
    except (ConnectionError, urllib.error.URLError):
        return True
    return False


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def _spin_until(nodes, done, timeout):
    from rclpy.executors import SingleThreadedExecutor
    ex = SingleThreadedExecutor()
    for n in nodes:
        ex.add_node(n)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
            if done():
                return True
        return done()
    finally:
        for n in nodes:
            ex.remove_node(n)


def test_lifecycle_frees_and_reuses_the_port_and_topics_reach_the_page(ros):
    from emotion_ros.nodes.viewer_node import ViewerNode
    node = ViewerNode(parameter_overrides=[Parameter('port', value=0)])
    peer = rclpy.create_node('viewer_test_peer')
    try:
        url = node.server.url
        assert _get(url)[0] == 200
        owned = len(node.owned_entities())
        assert owned >= 4  # image, emotions, /diagnostics, Hue state
        emotions = peer.create_publisher(EmotionArray, 'emotions', results_qos())
        hue = peer.create_publisher(HueState, 'hue_actuator/state', latched_qos())
        diag = peer.create_publisher(DiagnosticArray, '/diagnostics', results_qos())
        msg = EmotionArray()
        msg.header.stamp.sec = 1000
        msg.emotions = [Emotion(expression='surprise', confidence=0.7, valence=0.4, arousal=0.7,
                                labels=['happy', 'surprise'], scores=[0.3, 0.7])]
        msg.emotions[0].face.id = '4'
        hue.publish(HueState(event='dry_run', label='surprise', on=True, brightness=80.0, x=0.3, y=0.3))

        def state():
            return json.loads(_get(url + 'api/state')[1])

        def arrived():
            emotions.publish(msg)
            diag.publish(DiagnosticArray(status=[DiagnosticStatus(name='/peer', level=DiagnosticStatus.WARN,
                                                                  message='hello', values=[KeyValue(key='rate_hz',
                                                                                                    value='3.0')])]))
            s = state()
            return s['faces'] and s['hue'] and s['diagnostics']
        assert _spin_until([node, peer], arrived, 60), state()
        s = state()
        assert s['faces'][0]['id'] == '4' and s['faces'][0]['label'] == 'surprise'
        assert s['faces'][0]['scores'] == [0.3, 0.7] and s['history']['4'][0][1] == 'surprise'
        assert s['hue']['event'] == 'dry_run' and s['hue']['label'] == 'surprise'
        peer_status = [d for d in s['diagnostics'] if d['name'] == '/peer'][0]
        assert peer_status['level'] == 1 and peer_status['values']['rate_hz'] == '3.0'

        # Unwatched, the viewer is not on the image topic (the classifier draws nothing for it); a script that
        # asks for /frame.jpg makes it join and gets the newest frame.
        images = peer.create_publisher(Image, 'image_annotated', latest_frame_qos())
        _spin_until([node, peer], lambda: False, 1.5)
        assert peer.count_subscribers('image_annotated') == 0
        fetched = {}

        def fetch():
            for _ in range(6):
                try:
                    fetched['frame'] = _get(url + 'frame.jpg')
                    return
                except urllib.error.HTTPError as exc:  # 503 until the first frame arrived
                    fetched['error'] = exc.code
        thread = threading.Thread(target=fetch, daemon=True)
        thread.start()
        frame = bgr_to_image(np.full((60, 80, 3), 128, np.uint8), Header())

        def got_frame():
            images.publish(frame)
            return 'frame' in fetched
        assert _spin_until([node, peer], got_frame, 45), fetched
        assert fetched['frame'][0] == 200 and fetched['frame'][1][:2] == b'\xff\xd8'
        assert peer.count_subscribers('image_annotated') == 1

        # Runtime changes reach the running server; an invalid one is refused with the reason.
        assert node.set_parameters([Parameter('max_fps', value=5.0)])[0].successful
        assert node.set_parameters([Parameter('jpeg_quality', value=50)])[0].successful
        assert node.set_parameters([Parameter('draw_faces', value=not node.server.config.draw_faces)])[0].successful
        assert node.server.config.draw_faces == node.get_parameter('draw_faces').value
        assert (node.server.config.max_fps, node.server.config.jpeg_quality) == (5.0, 50)
        refused = node.set_parameters([Parameter('max_fps', value=0.1)])[0]
        assert not refused.successful and 'max_fps' in refused.reason and node.server.config.max_fps == 5.0
        assert not node.set_parameters([Parameter('port', value=9999)])[0].successful  # read-only

        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.server is None and node.owned_entities() == []
        assert _refused(url)  # the socket is closed, nothing listens
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert len(node.owned_entities()) == owned
        url = node.server.url
        assert _get(url)[0] == 200
    finally:
        peer.destroy_node()
        node.destroy_node()
    assert _refused(url)  # destroy_node releases the configuration, the server with it


def test_token_parameter_is_write_only_over_dds(ros, ros_env, tmp_path):
    """Issue 24 (the token parameter): the real node in its own process, `-p token:=...`; everything anyone on
    the DDS domain can read of it (parameter services as `ros2 param get/list/describe/dump` use them,
    /parameter_events, /rosout) never carries the token, which still guards the page."""
    import re
    import secrets

    from rcl_interfaces.msg import Log, ParameterEvent
    from rcl_interfaces.srv import DescribeParameters, GetParameters, GetParameterTypes, ListParameters
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from ros_graph import NodeProcess, ros_args

    token = 'tok' + secrets.token_urlsafe(18)
    probe = rclpy.create_node('viewer_token_probe')
    events, logs = [], []
    probe.create_subscription(ParameterEvent, '/parameter_events', events.append,
                              QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    probe.create_subscription(Log, '/rosout', logs.append, QoSProfile(
        depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    viewer = NodeProcess('emotion_viewer', ros_args({'port': 0, 'token': token,
                                                      'token_file': str(tmp_path / 'unused_token')}),
                         ros_env, tmp_path)
    try:
        calls = {}
        for srv, name in ((GetParameters, 'get_parameters'), (ListParameters, 'list_parameters'),
                          (DescribeParameters, 'describe_parameters'), (GetParameterTypes, 'get_parameter_types')):
            calls[name] = probe.create_client(srv, f'/emotion_viewer/{name}')

        def url():
            m = re.search(r'viewer at (http://127\.0\.0\.1:\d+/)', ' '.join(m.msg for m in logs) + viewer.output)
            return m.group(1) if m else None
        assert _spin_until([probe], lambda: url() and all(c.service_is_ready() for c in calls.values()), 90), \
            viewer.output[-3000:]

        def call(name, request):
            future = calls[name].call_async(request)
            assert _spin_until([probe], future.done, 30), name
            return future.result()
        names = call('list_parameters', ListParameters.Request()).result.names
        assert 'token' in names and 'token_file' in names
        values = call('get_parameters', GetParameters.Request(names=list(names))).values
        got = dict(zip(names, values))
        assert got['token'].string_value == '' and got['port'].integer_value == 0    # reads back as the default
        described = call('describe_parameters', DescribeParameters.Request(names=['token'])).descriptors[0]
        assert described.read_only and 'write-only' in described.description
        types = call('get_parameter_types', GetParameterTypes.Request(names=['token']))

        # A runtime change makes an event on /parameter_events that must arrive (so the listener works).
        from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters
        setter = probe.create_client(SetParameters, '/emotion_viewer/set_parameters')
        assert setter.wait_for_service(timeout_sec=30)
        calls['set_parameters'] = setter
        change = ParameterMsg(name='max_fps', value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                                                   double_value=12.0))
        assert call('set_parameters', SetParameters.Request(parameters=[change])).results[0].successful
        refused = ParameterMsg(name='token', value=ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                                  string_value='other'))
        assert not call('set_parameters', SetParameters.Request(parameters=[refused])).results[0].successful
        assert _spin_until([probe], lambda: any(e.node.endswith('emotion_viewer') and any(
            p.name == 'max_fps' for p in e.changed_parameters) for e in events), 30), events

        # The token still guards the page.
        base = url()
        with pytest.raises(urllib.error.HTTPError) as no_token:
            _get(base + 'api/state')
        assert no_token.value.code == 401
        assert _get(base + f'api/state?token={token}')[0] == 200

        everything = '\n'.join([repr(values), repr(described), repr(types), repr(events),
                                '\n'.join(m.msg for m in logs)])
        assert token not in everything
        assert not (tmp_path / 'unused_token').exists()                  # the given token is used, none written
    finally:
        code = viewer.stop(30)
        probe.destroy_node()
    assert token not in viewer.output and code == 0, viewer.output[-3000:]
