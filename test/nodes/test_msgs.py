"""emotion_msgs: every interface serialises and deserialises losslessly, and crosses real DDS between processes."""
import subprocess
import sys
import textwrap

import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import RegionOfInterest  # noqa: E402

from emotion_msgs.msg import Emotion, EmotionArray, Face, FaceArray  # noqa: E402
from emotion_msgs.srv import Capture  # noqa: E402


def _face(i=3):
    return Face(id=str(i), roi=RegionOfInterest(x_offset=10 + i, y_offset=20, width=64, height=80), confidence=0.875)


def _emotion(i=3):
    e = Emotion(face=_face(i), expression='happy', confidence=0.75, valence=0.5, arousal=-0.25,
                labels=['angry', 'happy', 'neutral'], scores=[0.125, 0.75, 0.125])
    e.header.stamp.sec, e.header.stamp.nanosec, e.header.frame_id = 1700000000, 123456789, 'camera'
    return e


def _same(a, b):
    assert type(a) is type(b)
    for field in a.get_fields_and_field_types():
        va, vb = getattr(a, field), getattr(b, field)
        if hasattr(va, 'get_fields_and_field_types'):
            _same(va, vb)
        elif isinstance(va, (list, tuple)) and va and hasattr(va[0], 'get_fields_and_field_types'):
            assert len(va) == len(vb)
            for x, y in zip(va, vb):
                _same(x, y)
        else:
            assert list(va) == list(vb) if hasattr(va, '__len__') and not isinstance(va, str) else va == vb, field


@pytest.mark.parametrize('msg', [
    _face(), FaceArray(faces=[_face(1), _face(2)]), _emotion(), EmotionArray(emotions=[_emotion(1), _emotion(2)]),
    Face(), FaceArray(), Emotion(), EmotionArray(),
    Capture.Request(label='happy', count=50, interval=0.5),
    Capture.Response(success=True, message='saved 2 happy', saved=['Images/a.png', 'Images/b.png']),
], ids=lambda m: type(m).__name__)
def test_roundtrip(msg):
    data = serialize_message(msg)
    back = deserialize_message(data, type(msg))
    _same(msg, back)
    assert back == msg


def test_field_names_follow_rep155():
    fields = Emotion.get_fields_and_field_types()
    assert {'expression', 'confidence', 'valence', 'arousal'} <= set(fields)
    assert fields['labels'] == 'sequence<string>' and fields['scores'] == 'sequence<float>'


TALKER = textwrap.dedent('''
    import sys, time, rclpy
    from rclpy.duration import Duration
    from emotion_msgs.msg import Emotion, EmotionArray, Face
    from sensor_msgs.msg import RegionOfInterest
    n_msgs = int(sys.argv[1])
    rclpy.init(); node = rclpy.create_node('talker')
    from rclpy.qos import DurabilityPolicy, QoSProfile
    # transient local: a subscriber matched a moment after the publisher still gets the first messages
    pub = node.create_publisher(EmotionArray, 'emotions', QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    deadline = time.time() + 30
    while pub.get_subscription_count() == 0 and time.time() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    for i in range(n_msgs):
        msg = EmotionArray()
        msg.header.stamp.sec, msg.header.frame_id = i, 'camera'
        msg.emotions = [Emotion(face=Face(id=str(k), roi=RegionOfInterest(width=10 + i, height=20)),
                                expression='happy', confidence=0.5, labels=['happy', 'sad'], scores=[0.5, 0.5])
                        for k in range(2)]
        pub.publish(msg); time.sleep(0.01)
    pub.wait_for_all_acked(Duration(seconds=5))
    rclpy.shutdown()
''')

LISTENER = textwrap.dedent('''
    import sys, time, rclpy
    from emotion_msgs.msg import EmotionArray
    n_msgs = int(sys.argv[1]); got = []
    rclpy.init(); node = rclpy.create_node('listener')
    from rclpy.qos import DurabilityPolicy, QoSProfile
    node.create_subscription(EmotionArray, 'emotions', got.append,
                             QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    deadline = time.time() + 30
    while len(got) < n_msgs and time.time() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    print('stamps', ','.join(str(m.header.stamp.sec) for m in got))
    print('faces', ','.join(m.emotions[1].face.id + ':' + str(m.emotions[1].face.roi.width) for m in got))
    rclpy.shutdown()
''')


@pytest.mark.ros
def test_emotion_array_between_two_processes(tmp_path, ros_env):
    (tmp_path / 'talker.py').write_text(TALKER)
    (tmp_path / 'listener.py').write_text(LISTENER)
    listener = subprocess.Popen([sys.executable, str(tmp_path / 'listener.py'), '20'], env=ros_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        talker = subprocess.run([sys.executable, str(tmp_path / 'talker.py'), '20'], env=ros_env,
                                capture_output=True, text=True, timeout=60)
        out, err = listener.communicate(timeout=60)
    finally:
        listener.kill()
    assert talker.returncode == 0, talker.stderr
    assert listener.returncode == 0, err
    lines = dict(line.split(' ', 1) for line in out.strip().splitlines())
    assert lines['stamps'] == ','.join(str(i) for i in range(20))
    assert lines['faces'] == ','.join(f'1:{10 + i}' for i in range(20))
