"""Load: 60 s at 30 fps with 5 faces through the real graph (separate processes). Memory must not grow
beyond a stated bound, latency must stay flat (no queue builds up), and every node reports its health
on /diagnostics. Figures are printed and, with EMOTION_ROS_RESULTS_DIR set, written as JSON."""
import json
import os
import time

import numpy as np
import pytest

from ros_graph import NodeProcess, ros_args, stamp_ns

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from emotion_msgs.msg import EmotionArray  # noqa: E402
from emotion_ros.nodes.qos import latest_frame_qos, results_qos  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

DURATION_S = float(os.environ.get('EMOTION_ROS_SOAK_S', 60))
RSS_GROWTH_BOUND_MB = 20.0   # per node, from the end of warm-up (10 s) to the end
WARMUP_S = 10.0


def _rss_mb(pid: int) -> float:
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


def _cpu_s(pid: int) -> float:
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def test_soak_60s_30fps_5_faces(ros_node, ros_env, tmp_path):
    node = ros_node
    frames, latencies, diags = {}, [], {}
    node.create_subscription(Image, 'image_raw', lambda m: frames.__setitem__(stamp_ns(m.header), time.monotonic()),
                             latest_frame_qos(100))

    def on_emotions(msg):
        now = node.get_clock().now().nanoseconds
        latencies.append((time.monotonic(), (now - stamp_ns(msg.header)) / 1e6, len(msg.emotions)))

    node.create_subscription(EmotionArray, 'emotions', on_emotions, results_qos(100))
    node.create_subscription(DiagnosticArray, '/diagnostics',
                             lambda m: [diags.__setitem__(s.name, s) for s in m.status], 50)
    procs = {}
    try:
        for script in ('face_detector_node', 'emotion_classifier_node'):
            procs[script] = NodeProcess(script, ros_args(remaps={'image': 'image_raw'}), ros_env, tmp_path)
        end = time.monotonic() + 60
        while time.monotonic() < end and node.count_publishers('emotions') < 1:
            rclpy.spin_once(node, timeout_sec=0.1)
        n_frames = int(DURATION_S * 30) + 30
        procs['camera_node'] = NodeProcess('camera_node', ros_args(
            {'source': 'demo:5', 'demo_frames': n_frames, 'fps': 30.0, 'wait_for_subscribers': 3}), ros_env, tmp_path)
        samples = []
        start = time.monotonic()
        next_sample = start
        while procs['camera_node'].proc.poll() is None and time.monotonic() - start < DURATION_S + 60:
            rclpy.spin_once(node, timeout_sec=0.02)
            if time.monotonic() >= next_sample:
                next_sample += 1.0
                samples.append((time.monotonic() - start, {k: (_rss_mb(p.proc.pid), _cpu_s(p.proc.pid))
                                                           for k, p in procs.items() if p.proc.poll() is None}))
        settle = time.monotonic() + 2
        while time.monotonic() < settle:
            rclpy.spin_once(node, timeout_sec=0.02)
        for name, p in procs.items():
            assert name == 'camera_node' or p.proc.poll() is None, p.output[-3000:]
    finally:
        for p in procs.values():
            p.stop()

    assert len(frames) >= 0.9 * n_frames and latencies, 'graph produced too little'
    t0 = latencies[0][0]
    lat = np.array([[t - t0, ms, n] for t, ms, n in latencies])
    wall = lat[-1, 0]
    windows = [lat[(lat[:, 0] >= a) & (lat[:, 0] < a + 10), 1] for a in np.arange(0, wall, 10)]
    windows = [w for w in windows if len(w) >= 20]
    p95s = [float(np.percentile(w, 95)) for w in windows]
    warm = [s for s in samples if s[0] >= WARMUP_S]
    growth = {k: warm[-1][1][k][0] - warm[0][1][k][0] for k in procs if k in warm[0][1] and k in warm[-1][1]}
    span = warm[-1][0] - warm[0][0]
    cpu = {k: (warm[-1][1][k][1] - warm[0][1][k][1]) / span for k in growth}
    figures = {
        'duration_s': round(float(wall), 1), 'frames_published': len(frames), 'emotion_arrays': len(latencies),
        'frames_with_emotions_pct': round(100.0 * len(latencies) / len(frames), 1),
        'faces_per_array_median': float(np.median(lat[:, 2])),
        'latency_ms_p50': round(float(np.percentile(lat[:, 1], 50)), 1),
        'latency_ms_p95': round(float(np.percentile(lat[:, 1], 95)), 1),
        'latency_ms_p95_per_10s': [round(p, 1) for p in p95s],
        'rss_mb_start': {k: round(warm[0][1][k][0], 1) for k in growth},
        'rss_growth_mb': {k: round(v, 1) for k, v in growth.items()},
        'cpu_cores': {k: round(v, 2) for k, v in cpu.items()},
        'rss_growth_bound_mb': RSS_GROWTH_BOUND_MB,
    }
    print('soak figures:', json.dumps(figures, indent=1))
    if os.environ.get('EMOTION_ROS_RESULTS_DIR'):
        out = os.path.join(os.environ['EMOTION_ROS_RESULTS_DIR'], 'soak.json')
        with open(out, 'w') as f:
            json.dump(figures, f, indent=1)

    assert figures['faces_per_array_median'] == 5
    assert all(v < RSS_GROWTH_BOUND_MB for v in growth.values()), figures
    assert len(p95s) >= 3 and p95s[-1] <= 2 * p95s[0] + 50, figures        # flat: no queue building up
    assert max(p95s) < 1000, figures                                        # never seconds behind

    names = {n.rsplit('/', 1)[-1]: s for n, s in diags.items()}
    for name in ('camera', 'face_detector', 'emotion_classifier'):
        assert name in names, sorted(diags)
        keys = {kv.key: kv.value for kv in names[name].values}
        assert {'rate_hz', 'processed', 'dropped', 'latency_p95_ms', 'last_error'} <= set(keys), keys
    assert {kv.key: kv.value for kv in names['emotion_classifier'].values}['model'].endswith('.tflite')
    assert {kv.key: kv.value for kv in names['face_detector'].values}['backend']
